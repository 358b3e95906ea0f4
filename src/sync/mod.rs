//! The sync: desired TaskRuns and live TaskRuns in, server-side applies and prunes out.

pub mod apply;
pub mod crd_install;
pub mod diff;
pub mod live_watch;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod run_loop;
pub mod trigger;
pub mod until_done;
