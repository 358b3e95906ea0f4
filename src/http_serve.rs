//! Serving an axum router on a listener: connections in, answers out, with a deadline on request
//! headers so that a client that never finishes them (slow-loris) cannot hold a connection, a
//! file descriptor and memory forever. The API server and the controller's /metrics use it.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// How long a client has to send a request's headers: from opening the connection to the end of
/// the first request's headers, and from the start of each later request to the end of its
/// headers. An idle keep-alive connection is closed after it too.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Each connection holds a receiver: `closed()` below resolves when the last one is done.
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(serve_connection(
            tcp,
            router.clone(),
            header_read_timeout,
            close_rx.clone(),
        ));
    }
    drop(listener);
    drop(close_rx);
    let _ = close_tx.send(true);
    close_tx.closed().await;
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    header_read_timeout: Duration,
    mut close: tokio::sync::watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + header_read_timeout;
    let first_request = Arc::new(AtomicBool::new(false));
    let seen = first_request.clone();
    let service = hyper::service::service_fn(move |request| {
        seen.store(true, Ordering::Relaxed);
        router.clone().oneshot(request)
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    let mut conn = std::pin::pin!(conn);
    // hyper's timer covers HTTP/1 headers once it knows the protocol; this covers the time
    // before (a client that sends nothing, or half an HTTP/2 preface) and HTTP/2's first request.
    let no_first_request = async {
        tokio::time::sleep_until(deadline).await;
        if first_request.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    let mut no_first_request = std::pin::pin!(no_first_request);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut no_first_request => {
                tracing::debug!("no request headers within {header_read_timeout:?}; closing");
                return;
            }
            changed = close.changed(), if !closing => {
                closing = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
