//! Leader election on a coordination.k8s.io/v1 Lease: the lease as read and the clock in,
//! "is this replica the leader" out.
//!
//! Only the leader syncs, reconciles and writes notes. The rules are client-go's: a lease whose
//! `renewTime + leaseDurationSeconds` has passed may be taken over; the holder renews every
//! `retry_period` and steps down when it could not renew for `renew_deadline`, which is shorter
//! than the lease duration, so it stops writing before anyone else may start.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// The API calls leader election makes, for the RBAC check of deploy/.
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: "coordination.k8s.io",
    resource: "leases",
    verbs: &["get", "create", "update"],
}];

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica: the pod name, or host name plus process id.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: "orchestrator-leader".to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the lease as observed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease exists: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder let it expire or released it: take it over.
    TakeOver,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// Decides from the observed lease; pure.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let expired = match &spec.renew_time {
        Some(MicroTime(renewed)) => renewed.checked_add(duration).map_or(true, |end| end <= now),
        None => true,
    };
    if expired {
        LeaseDecision::TakeOver
    } else {
        LeaseDecision::Follow { holder }
    }
}

/// The lease spec to write for a decision that makes us the holder; pure.
pub fn held_lease_spec(
    previous: Option<&LeaseSpec>,
    decision: &LeaseDecision,
    config: &LeaseConfig,
    now: Timestamp,
) -> LeaseSpec {
    let duration_seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    let (acquire_time, transitions) = match decision {
        LeaseDecision::Renew => (
            previous
                .and_then(|p| p.acquire_time.clone())
                .unwrap_or(MicroTime(now)),
            transitions,
        ),
        LeaseDecision::TakeOver => (MicroTime(now), transitions + 1),
        LeaseDecision::Create | LeaseDecision::Follow { .. } => (MicroTime(now), 0),
    };
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Whether this replica leads, as a watch value that flips as the lease is won and lost.
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// A replica that always leads: a single process with no election.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        // The receiver keeps the value after the sender is gone.
        drop(tx);
        Self { rx }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once this replica leads; never resolves if the election ended without winning.
    pub async fn acquired(&mut self) {
        if self.rx.wait_for(|leading| *leading).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once this replica, having led, no longer does (or the election ended).
    pub async fn lost(&mut self) {
        let _ = self.rx.wait_for(|leading| !*leading).await;
    }
}

/// Runs the election until `shutdown` resolves, then releases the lease if held.
pub fn spawn_election(
    client: kube::Client,
    config: LeaseConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        tokio::pin!(shutdown);
        let mut last_renewed: Option<tokio::time::Instant> = None;
        // An unreachable API server is logged once per outage, not every retry period.
        let outage = crate::outage_log::OutageLog::new("leader election", config.retry_period);
        loop {
            let asked_at = std::time::Instant::now();
            let attempt = try_acquire_or_renew(&api, &config).await;
            if attempt.is_ok() {
                outage.succeeded(Some(asked_at));
            }
            match attempt {
                Ok(true) => {
                    if !*tx.borrow() {
                        info!(identity = %config.identity, lease = %config.name, "became the leader");
                    }
                    last_renewed = Some(tokio::time::Instant::now());
                    tx.send_replace(true);
                }
                Ok(false) => {
                    if *tx.borrow() {
                        warn!(identity = %config.identity, "another replica holds the lease; stepping down");
                    }
                    last_renewed = None;
                    tx.send_replace(false);
                }
                Err(error) => {
                    if crate::outage_log::is_connection_error(&error) {
                        outage.failed(&error);
                    } else {
                        warn!(%error, lease = %config.name, "could not read or write the leader lease");
                    }
                    let overdue =
                        last_renewed.is_some_and(|t| t.elapsed() >= config.renew_deadline);
                    if overdue && *tx.borrow() {
                        warn!(identity = %config.identity, "lease not renewed within the renew deadline; stepping down");
                        tx.send_replace(false);
                        last_renewed = None;
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(config.retry_period) => {}
            }
        }
        if *tx.borrow() {
            tx.send_replace(false);
            if let Err(error) = release(&api, &config).await {
                warn!(%error, "could not release the leader lease; it expires on its own");
            }
        }
    });
    (Leadership { rx }, handle)
}

/// One round: read the lease, decide, write. Ok(true) when we hold it afterwards.
async fn try_acquire_or_renew(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<bool> {
    let live = api.get_opt(&config.name).await?;
    let now = Timestamp::now();
    let spec = live.as_ref().and_then(|l| l.spec.as_ref());
    let decision = decide(spec, &config.identity, now);
    if let LeaseDecision::Follow { .. } = decision {
        return Ok(false);
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: live
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(held_lease_spec(spec, &decision, config, now)),
    };
    let written = match decision {
        LeaseDecision::Create => api.create(&PostParams::default(), &lease).await,
        _ => {
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(true),
        // Another replica wrote first: the optimistic-concurrency check lost the race.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Gives the lease up so that another replica takes over at once instead of after expiry.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<()> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn lease(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_string()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(3),
            acquire_time: Some(MicroTime(at(0))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let cases = [
            (None, 0, LeaseDecision::Create),
            (Some(lease("me", 0, 15)), 100, LeaseDecision::Renew),
            (
                Some(lease("other", 0, 15)),
                14,
                LeaseDecision::Follow {
                    holder: "other".into(),
                },
            ),
            (Some(lease("other", 0, 15)), 15, LeaseDecision::TakeOver),
            (Some(lease("", 0, 15)), 1, LeaseDecision::TakeOver),
        ];
        for (spec, now, want) in cases {
            assert_eq!(
                decide(spec.as_ref(), "me", at(now)),
                want,
                "{spec:?} at {now}"
            );
        }
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_keeps_acquire_time() {
        let config = LeaseConfig::new("ns", "me");
        let previous = lease("other", 0, 15);
        let taken = held_lease_spec(Some(&previous), &LeaseDecision::TakeOver, &config, at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));

        let renewed = held_lease_spec(Some(&taken), &LeaseDecision::Renew, &config, at(22));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(22))));
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.lease_duration_seconds, Some(15));
    }

    #[test]
    fn renew_deadline_is_shorter_than_the_lease() {
        let config = LeaseConfig::new("ns", "me");
        assert!(config.renew_deadline < config.lease_duration);
        assert!(config.retry_period < config.renew_deadline);
    }
}
