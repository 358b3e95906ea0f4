//! Subcommands of the `orchestrator` binary, one file each.

pub mod api;
pub mod apiserver;
pub mod controller;
pub mod git_args;
pub mod output;
pub mod plan;
pub mod plan_live;
pub mod run;
pub mod source_args;
pub mod status;
pub mod validate;
pub mod wait;
