//! The one way every long-running subcommand learns it should stop: Ctrl-C (SIGINT) or SIGTERM,
//! which is what Kubernetes and process supervisors send a process that is stopping.

/// Resolves on the first SIGINT or SIGTERM. Where SIGTERM cannot be listened for, only Ctrl-C.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
