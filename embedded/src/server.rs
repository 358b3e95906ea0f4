//! Starting and stopping the embedded API server: a config in, a [`RunningApiServer`] (URL,
//! kube clients, kubeconfig, request counts) out. Listens on 127.0.0.1 only.

use super::error::EmbeddedError;
use super::handler::{ServerState, handle};
use super::stats::{RequestStats, StatsRecorder};
use super::store::Store;
use super::{gc, persist, tls};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How to run the embedded server.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where objects (SQLite), certificates and the token are kept; `None` keeps everything in
    /// memory and generates fresh credentials.
    pub data_dir: Option<PathBuf>,
    /// How many recent events a watch can resume from; older resourceVersions get 410 Expired.
    pub watch_history: usize,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// The Kubernetes version to behave as: `/version` reports it, and version-gated behaviour
    /// follows it (`sendInitialEvents` on a watch needs 1.32, where the WatchList feature gate
    /// is on by default).
    pub kubernetes_version: KubernetesVersion,
    /// A connection that has not finished its TLS handshake and first request's headers this
    /// long after it opened, or the headers of a later request this long after it began, is
    /// closed (kube-apiserver's `ReadHeaderTimeout` is 32 s).
    pub header_read_timeout: Duration,
}

/// A Kubernetes minor release, such as 1.28.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
}

impl KubernetesVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        KubernetesVersion { major, minor }
    }

    /// Whether watches take `sendInitialEvents=true` (the WatchList feature gate, on by
    /// default from 1.32; v1.28 refuses it with 422).
    pub fn serves_watch_list(self) -> bool {
        self >= KubernetesVersion::new(1, 32)
    }
}

impl Default for KubernetesVersion {
    /// The version the k8s-openapi types are built for (its `v1_33` feature).
    fn default() -> Self {
        KubernetesVersion::new(1, 33)
    }
}

impl std::fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for KubernetesVersion {
    type Err = String;

    /// `1.28` or `v1.28` (a patch level is ignored).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid Kubernetes version {s:?}: expected MAJOR.MINOR, such as 1.28");
        let mut parts = s.trim().trim_start_matches('v').split('.');
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        Ok(KubernetesVersion::new(major, minor))
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            port: 0,
            data_dir: None,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(5),
            kubernetes_version: KubernetesVersion::default(),
            header_read_timeout: Duration::from_secs(32),
        }
    }
}

/// The embedded Kubernetes API server.
pub struct ApiServer;

/// A started server; dropping it stops accepting connections.
pub struct RunningApiServer {
    addr: SocketAddr,
    creds: tls::Credentials,
    config: kube::Config,
    state: Arc<ServerState>,
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl ApiServer {
    /// Binds 127.0.0.1:`port`, loads or creates the store and credentials, and serves HTTPS.
    pub async fn start(config: ApiServerConfig) -> Result<RunningApiServer, EmbeddedError> {
        let (creds, db) = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| EmbeddedError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                (
                    tls::load_or_generate(dir)?,
                    Some(persist::Db::open(&dir.join("state.db"))?),
                )
            }
            None => (tls::generate()?, None),
        };
        let store = Arc::new(Store::new(config.watch_history, db)?);
        bootstrap_namespaces(&store);
        // Like the real watch cache, which holds only what happened since it started: a watch
        // from an earlier resourceVersion (such as `1`) is answered 410 Expired.
        store.lock().compact_to_now();
        let tls_config = tls::server_config(&creds)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(|source| EmbeddedError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmbeddedError::Bind {
                port: config.port,
                source,
            })?;
        let state = Arc::new(ServerState {
            store: store.clone(),
            stats: StatsRecorder::default(),
            token: creds.token.clone(),
            address: addr.to_string(),
            bookmark_interval: config.bookmark_interval,
            kubernetes_version: config.kubernetes_version,
        });
        let kube_config = kube_config(addr, &creds)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
        let accept_state = state.clone();
        // Flipped on shutdown: open connections (keep-alive, watches) close with the server, so
        // a client never keeps talking to a stopped server's state.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let header_timeout = config.header_read_timeout;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = accept_state.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    // A client that never finishes its handshake and first request's headers
                    // (slow-loris) is dropped at the deadline; hyper's header-read timeout
                    // covers each later request on the connection.
                    let deadline = tokio::time::Instant::now() + header_timeout;
                    let Ok(Ok(tls)) = tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let first_request = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let seen = first_request.clone();
                    let service = hyper::service::service_fn(move |req| {
                        seen.store(true, std::sync::atomic::Ordering::Relaxed);
                        let state = state.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(handle_guarded(state, req).await)
                        }
                    });
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(header_timeout);
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    let no_first_request = async {
                        tokio::time::sleep_until(deadline).await;
                        if first_request.load(std::sync::atomic::Ordering::Relaxed) {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.wait_for(|stopped| *stopped) => {}
                        _ = no_first_request => {}
                    }
                });
            }
        });
        let collector = tokio::spawn(gc::run(store));
        tracing::info!(url = %format!("https://{addr}"), "embedded API server listening");
        Ok(RunningApiServer {
            addr,
            creds,
            config: kube_config,
            state,
            tasks: vec![accept, collector],
            stop: stop_tx,
        })
    }
}

/// The namespaces every cluster starts with.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn bootstrap_namespaces(store: &Store) {
    let mut inner = store.lock();
    let Some(info) = inner.registry.lookup("", "v1", "namespaces") else {
        return;
    };
    let now = super::meta::now();
    let ctx = super::objects::WriteCtx {
        manager: "kube-apiserver",
        now: &now,
        dry_run: false,
        strict: false,
    };
    for ns in SYSTEM_NAMESPACES {
        if inner.get("namespaces", "", ns).is_none() {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Err(e) = super::objects::create(&mut inner, &info, None, obj, ctx, false) {
                tracing::warn!(namespace = ns, error = %e, "could not create a system namespace");
            }
        }
    }
}

/// A bug in a handler answers 500 with a Status instead of resetting the connection.
async fn handle_guarded(
    state: Arc<ServerState>,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<super::handler::Body> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(handle(state, req))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(_) => super::handler::error_response(&super::status::ApiError::internal(
            "the embedded API server hit an internal error; please report it",
        )),
    }
}

fn kube_config(addr: SocketAddr, creds: &tls::Credentials) -> Result<kube::Config, EmbeddedError> {
    let url: http::Uri = format!("https://{addr}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| EmbeddedError::Client(e.to_string()))?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(vec![tls::ca_der(creds)?]);
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": creds.token }))
        .map_err(|e| EmbeddedError::Client(e.to_string()))?;
    config.default_namespace = "default".into();
    Ok(config)
}

impl RunningApiServer {
    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A kube::Config that trusts the server's CA and carries its token.
    pub fn config(&self) -> kube::Config {
        self.config.clone()
    }

    /// A new kube::Client for this server. Call from within a Tokio runtime.
    pub fn client(&self) -> kube::Client {
        match kube::Client::try_from(self.config()) {
            Ok(c) => c,
            // The config is built by this module from a valid URL and CA; failing here is a
            // programming error, not user input.
            Err(e) => panic!("kube client for the embedded server: {e}"),
        }
    }

    /// A kubeconfig for kubectl: the server URL, its CA and the bearer token.
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.creds.ca_pem);
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: orchestrator-embedded
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: orchestrator-embedded
  user:
    token: {token}
contexts:
- name: orchestrator-embedded
  context:
    cluster: orchestrator-embedded
    user: orchestrator-embedded
    namespace: default
current-context: orchestrator-embedded
",
            url = self.url(),
            token = self.creds.token,
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`, readable by the owner only.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), EmbeddedError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| EmbeddedError::WriteKubeconfig {
            path: path.to_path_buf(),
            source,
        };
        // Written beside it and renamed into place: whoever waits for the file to appear (a
        // script, kubectl, a test) reads all of it or nothing, never a half-written one.
        let mut partial = path.as_os_str().to_owned();
        partial.push(format!(".partial-{}", std::process::id()));
        let partial = std::path::PathBuf::from(partial);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .and_then(|mut f| f.write_all(self.kubeconfig_yaml().as_bytes()))
            .and_then(|()| std::fs::rename(&partial, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written.map_err(err)
    }

    /// Requests answered so far, by verb and resource.
    pub fn request_stats(&self) -> RequestStats {
        self.state.stats.snapshot()
    }

    /// Stops accepting connections, closes open ones (watches included) and stops the garbage
    /// collector.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for RunningApiServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
