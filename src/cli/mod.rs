//! Subcommands of the `orchestrator` binary, one file each.

pub mod controller;
