//! orchestrator: a GitOps reconciler for AI-agent tasks.
//!
//! git repo → [`source`] → [`desired`] → [`sync`] → cluster → [`controller`] → [`notes`].
//! [`api`] writes commits; [`cluster`] connects to a real cluster or starts the embedded one
//! (the `kube-envtest` crate: a Kubernetes API server and Job runner on loopback).

pub mod api;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod git_ref;
pub mod health;
pub mod http_serve;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod notes;
pub mod operate;
pub mod outage_log;
pub mod progress;
pub mod prompt;
pub mod rbac;
pub mod scratch;
pub mod secret_source;
pub mod source;
pub mod sync;
pub mod text_table;
pub mod uninstall;
pub mod watch_backoff;
