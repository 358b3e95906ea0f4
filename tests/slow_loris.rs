//! Slow-loris clients on loopback against every HTTP server orchestrator runs: the API, the
//! /metrics server's serving loop and the embedded Kubernetes API server. Each client opens a
//! connection and sends a request's headers one line at a time, never finishing them; each
//! server must close every such connection soon after its header deadline, and still answer a
//! well-behaved client meanwhile. Bounded: 40 connections per server, a few seconds each.

mod api_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 40;
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// A header line this often: well inside the deadline, so only a deadline on the whole set of
/// headers (not an idle timer reset by each byte) closes the connection.
const LINE_EVERY: Duration = Duration::from_millis(200);
/// The client gives up (and the test fails) if the server has not closed by then.
const GIVE_UP_AFTER: Duration = Duration::from_secs(8);

/// Sends `GET` and then one header line every [`LINE_EVERY`] until the server closes the
/// connection; returns how long that took, or `None` if it stayed open for [`GIVE_UP_AFTER`].
async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Option<Duration> {
    let start = Instant::now();
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .is_err()
    {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 512];
    let mut line = 0;
    while start.elapsed() < GIVE_UP_AFTER {
        match tokio::time::timeout(LINE_EVERY, stream.read(&mut buf)).await {
            // Closed (or a 408 answer and then closed: keep reading until the end).
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => {}
        }
        line += 1;
        let header = format!("X-Slow-{line}: still coming\r\n");
        if stream.write_all(header.as_bytes()).await.is_err() {
            return Some(start.elapsed());
        }
    }
    None
}

/// A client that connects and sends nothing at all.
async fn silent(mut stream: TcpStream) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(GIVE_UP_AFTER, stream.read(&mut buf)).await {
        Ok(_) => Some(start.elapsed()),
        Err(_) => None,
    }
}

/// Runs `CONNECTIONS` slow clients (half trickling headers, half silent) at once; asserts that
/// every one was closed after about the header deadline, not before it and not much after.
async fn assert_slow_clients_are_closed<F, Fut>(addr: SocketAddr, wrap: F)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Duration>> + Send + 'static,
{
    let wrap = Arc::new(wrap);
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let wrap = wrap.clone();
        clients.push(tokio::spawn(async move {
            if i % 2 == 0 {
                wrap(tcp).await
            } else {
                silent(tcp).await
            }
        }));
    }
    let mut closed_after = Vec::new();
    for client in clients {
        closed_after.push(client.await.unwrap());
    }
    let open = closed_after.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open, 0,
        "{open} of {CONNECTIONS} slow connections were still open after {GIVE_UP_AFTER:?}"
    );
    let slowest = closed_after.iter().flatten().max().copied().unwrap();
    let fastest = closed_after.iter().flatten().min().copied().unwrap();
    assert!(
        fastest >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed before the deadline: {fastest:?}"
    );
    assert!(
        slowest < HEADER_TIMEOUT * 4,
        "closed {slowest:?} after opening"
    );
    eprintln!("{CONNECTIONS} slow connections closed after {fastest:?}..{slowest:?}");
}

async fn plain(tcp: TcpStream) -> Option<Duration> {
    trickle(tcp).await
}

/// One plain HTTP/1 request; the status code.
async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_api_closes_connections_that_never_finish_their_headers() {
    let api = api_common::start(api_common::Layout::Local, |state| {
        state.header_read_timeout = HEADER_TIMEOUT;
    })
    .await;
    let addr: SocketAddr = api.base.trim_start_matches("http://").parse().unwrap();
    let slow = tokio::spawn(assert_slow_clients_are_closed(addr, plain));
    // A well-behaved client is served while the slow ones hold their connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_status(addr, "/healthz").await, 200);
    slow.await.unwrap();
    assert_eq!(get_status(addr, "/healthz").await, 200);
}

#[tokio::test]
async fn the_metrics_server_loop_closes_connections_that_never_finish_their_headers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { "up 1\n" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(orchestrator::http_serve::serve(
        listener,
        app,
        HEADER_TIMEOUT,
        async move {
            let _ = stopped.await;
        },
    ));
    let slow = tokio::spawn(assert_slow_clients_are_closed(addr, plain));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_status(addr, "/metrics").await, 200);
    slow.await.unwrap();
    // Shutting down waits for open requests, not for anything a slow client holds.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_embedded_api_server_closes_connections_that_never_finish_their_headers() {
    use kube_envtest::{ApiServer, ApiServerConfig};
    let server = ApiServer::start(ApiServerConfig {
        header_read_timeout: HEADER_TIMEOUT,
        ..ApiServerConfig::default()
    })
    .await
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for der in server.config().root_cert.unwrap_or_default() {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    // Half trickle headers over a finished TLS handshake; half never start the handshake.
    let slow = tokio::spawn(assert_slow_clients_are_closed(addr, move |tcp| {
        let connector = connector.clone();
        async move {
            let start = Instant::now();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            match connector.connect(name, tcp).await {
                Ok(stream) => trickle(stream).await.map(|_| start.elapsed()),
                Err(_) => Some(start.elapsed()),
            }
        }
    }));
    // The kube client still works meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(server.client());
    assert!(
        namespaces
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len()
            >= 4
    );
    slow.await.unwrap();
    server.shutdown().await;
}
