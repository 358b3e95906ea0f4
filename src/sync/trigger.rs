//! The manual sync trigger: any number of `SyncTrigger` handles (webhook, API, notify watch) in,
//! one coalesced stream of sync requests for the loop out.

use std::fmt;
use tokio::sync::mpsc;

/// Why a sync was asked for; logged and counted, never decides anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerReason {
    /// A webhook from the Git host.
    Webhook,
    /// The API wrote a commit.
    Api,
    /// A local ref changed (notify watch).
    RefChanged,
    /// Anything else that asked explicitly.
    Manual,
}

impl TriggerReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerReason::Webhook => "webhook",
            TriggerReason::Api => "api",
            TriggerReason::RefChanged => "ref-changed",
            TriggerReason::Manual => "manual",
        }
    }
}

impl fmt::Display for TriggerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cloneable handle that asks the sync loop to fetch and sync now.
#[derive(Clone, Debug)]
pub struct SyncTrigger {
    tx: mpsc::Sender<TriggerReason>,
}

/// The loop's end: yields one request per pending sync, however many triggers fired meanwhile.
#[derive(Debug)]
pub struct SyncRequests {
    rx: mpsc::Receiver<TriggerReason>,
}

/// A trigger and the stream of requests it feeds.
pub fn sync_trigger() -> (SyncTrigger, SyncRequests) {
    // One slot: a request waiting is as good as many, the sync it starts reads the newest commit.
    let (tx, rx) = mpsc::channel(1);
    (SyncTrigger { tx }, SyncRequests { rx })
}

impl SyncTrigger {
    /// Asks for a sync. Returns false only when the loop is gone (shut down).
    pub fn request(&self, reason: TriggerReason) -> bool {
        match self.tx.try_send(reason) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl SyncRequests {
    /// The next request; `None` once every trigger handle is dropped.
    pub async fn next(&mut self) -> Option<TriggerReason> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn triggers_coalesce_and_report_a_closed_loop() {
        let (trigger, mut requests) = sync_trigger();
        let webhook = trigger.clone();
        assert!(webhook.request(TriggerReason::Webhook));
        assert!(
            trigger.request(TriggerReason::Api),
            "a full slot still counts as requested"
        );
        assert_eq!(requests.next().await, Some(TriggerReason::Webhook));
        assert!(
            requests.rx.try_recv().is_err(),
            "two requests became one sync"
        );
        drop(requests);
        assert!(!trigger.request(TriggerReason::Manual));
    }
}
