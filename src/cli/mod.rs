//! Subcommands of the `orchestrator` binary, one file each.
