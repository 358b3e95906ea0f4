//! A Kubernetes API server on loopback and a local Job runner, for running without a cluster.

pub mod patch;
pub mod runner;
