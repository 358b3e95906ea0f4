//! The git source: repository in, `SourceSnapshot` of task folders out.

pub mod snapshot;
