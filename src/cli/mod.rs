//! Subcommands of the `orchestrator` binary, one file each.

pub mod agent_check;
pub mod agent_sources;
pub mod api;
pub mod apiserver;
pub mod controller;
pub mod git_args;
pub mod init;
pub mod output;
pub mod plan;
pub mod plan_live;
pub mod run;
pub mod run_checks;
pub mod shutdown;
pub mod source_args;
pub mod source_identity;
pub mod status;
pub mod task_ops;
pub mod uninstall;
pub mod validate;
pub mod wait;
