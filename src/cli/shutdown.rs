//! The one way every long-running subcommand learns it should stop: Ctrl-C (SIGINT) or SIGTERM,
//! which is what Kubernetes and process supervisors send a process that is stopping.

use std::future::Future;

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: call it before announcing that the process is up, so that a
/// signal sent right after the announcement is not met by the default action (exit by signal).
/// Call it inside the runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => tokio::select! {
                    _ = term.recv() => {},
                    _ = interrupt.recv() => {},
                },
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// [`signal`], saying `message` (at INFO) when the signal comes: what the process now finishes.
pub fn signal_logged(message: &'static str) -> impl Future<Output = ()> + Send + Sync + 'static {
    let signal = signal();
    async move {
        signal.await;
        tracing::info!("{message}");
    }
}
