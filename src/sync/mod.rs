//! The sync: desired TaskRuns and live TaskRuns in, server-side applies and prunes out.

pub mod report;
