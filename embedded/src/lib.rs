//! kube-envtest: a Kubernetes API server on loopback and a local Job runner, for running and
//! testing kube-rs clients and controllers without a cluster (an envtest for kube-rs).
//!
//! [`ApiServer::start`] serves the part of the Kubernetes API that orchestrator, kube-rs and
//! kubectl use (discovery, CRDs, CRUD, watch, status subresource, patches and server-side
//! apply, finalizers, garbage collection) over HTTPS on 127.0.0.1, with a generated CA and a
//! bearer token; [`RunningApiServer`] hands out kube clients and a kubeconfig.

mod convert;
mod discovery;
mod error;
mod gc;
mod handler;
mod kinds;
mod logs;
mod merge_schema;
mod meta;
mod objects;
mod openapi;
pub mod patch;
mod persist;
mod protobuf;
mod reads;
mod registry;
mod resources;
mod router;
pub mod runner;
mod schema;
/// Label and field selector parsing, public for property tests and fuzzing.
pub mod selector;
mod server;
mod stats;
mod status;
mod store;
mod table;
pub mod tls;
mod watch;
mod writes;

#[cfg(test)]
mod testdata;

pub use error::EmbeddedError;
pub use server::{ApiServer, ApiServerConfig, KubernetesVersion, RunningApiServer};
pub use stats::RequestStats;
