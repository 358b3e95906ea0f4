//! The runner's node heartbeat: like a kubelet, the runner renews a Lease named after its node
//! in `kube-node-lease`, so that a client can tell whether Jobs on an embedded server will run.
//! [`is_fresh`] is the pure decision; [`runner_attached`] asks a server.

use super::pod::NODE_NAME;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the Lease is renewed, and how long it counts as held (the kubelet's defaults).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Renews the node Lease once (server-side apply, so a restarted runner takes it over).
pub async fn renew(client: &Client) {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let now = Timestamp::now();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NODE_NAME, "namespace": NODE_LEASE_NAMESPACE},
        "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                 "renewTime": MicroTime(now)},
    });
    if let Err(e) = api
        .patch(
            NODE_NAME,
            &PatchParams::apply("kube-envtest-runner").force(),
            &Patch::Apply(&lease),
        )
        .await
    {
        tracing::debug!(error = %e, "renewing the runner's node Lease failed");
    }
}

/// Whether a Lease renewed at `renewed` with `duration_seconds` is still held at `now`.
pub fn is_fresh(renewed: Timestamp, duration_seconds: i32, now: Timestamp) -> bool {
    renewed
        .checked_add(SignedDuration::from_secs(i64::from(
            duration_seconds.max(0),
        )))
        .is_ok_and(|until| now <= until)
}

/// `Some(attached)` when the server is a kube-envtest server, `None` for any other.
pub async fn runner_attached(client: &Client) -> Option<bool> {
    let version = client.apiserver_version().await.ok()?;
    if !version.git_version.contains("kube-envtest") {
        return None;
    }
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let lease = api.get_opt(NODE_NAME).await.ok()?;
    let spec = lease.and_then(|l| l.spec);
    Some(spec.is_some_and(|s| {
        s.renew_time.is_some_and(|t| {
            is_fresh(
                t.0,
                s.lease_duration_seconds.unwrap_or(LEASE_DURATION_SECONDS),
                Timestamp::now(),
            )
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_fresh_for_its_duration() {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        assert!(is_fresh(t(0), 40, t(40)));
        assert!(!is_fresh(t(0), 40, t(41)));
    }
}
