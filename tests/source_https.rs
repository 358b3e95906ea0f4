//! The git source over https with a token, against a real git smart-HTTP server on loopback:
//! `git http-backend` behind TLS (a CA generated for the test) and HTTP basic auth, as GitHub,
//! GitLab and Gitea answer. The right token fetches the task folders; a wrong one fails with an
//! authentication error that shows no token.
//!
//! `orchestrator validate --git-ca-file` is run against the same server: the CLI trusts a
//! private CA only when given it.

mod source_support;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use orchestrator::source::GitSource;
use orchestrator::source::credentials::{Credentials, Secret};
use source_support::{TestRepo, YAML_WEB};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "s3cr3t-token-value";

/// Serves the repositories under `root` over https until the test ends; the port.
async fn serve_git(root: PathBuf, tls: Arc<rustls::ServerConfig>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, root) = (acceptor.clone(), root.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let root = root.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&root, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// Basic auth with the token (any user name), then `git http-backend` as a CGI.
async fn handle(root: &Path, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", "Basic realm=\"git\"")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cgi = tokio::process::Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", req.method().as_str())
        .env("PATH_INFO", req.uri().path())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut child = cgi.spawn().expect("git http-backend runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    cgi_response(&output.stdout)
}

/// A CGI answer (headers, a blank line, the body) as an HTTP response.
fn cgi_response(out: &[u8]) -> Response<Full<Bytes>> {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Full::new(Bytes::new()))
            .unwrap();
    };
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(&out[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            response = response.status(code.parse::<u16>().unwrap_or(200));
        } else {
            response = response.header(name, value);
        }
    }
    response
        .body(Full::new(Bytes::copy_from_slice(&out[end + gap..])))
        .unwrap()
}

fn source(url: String, token: &str, mirrors: &Path) -> GitSource {
    let credentials = Credentials {
        token: Some(Secret::new(token)),
        ..Credentials::default()
    };
    source_support::git_source(url, mirrors, credentials)
}

/// The test CA's file, trusted by this process's libgit2 before any test uses libgit2.
fn trusted_ca() -> (&'static kube_envtest::tls::Credentials, &'static Path) {
    static CA: std::sync::OnceLock<(kube_envtest::tls::Credentials, PathBuf)> =
        std::sync::OnceLock::new();
    let (tls, path) = CA.get_or_init(|| {
        let tls = kube_envtest::tls::generate().unwrap();
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("ca.crt");
        std::fs::write(&path, &tls.ca_pem).unwrap();
        // SAFETY: every test calls this first, and OnceLock holds the others back until it
        // is done, so no thread uses libgit2 while the option changes.
        unsafe { git2::opts::set_ssl_cert_file(&path).unwrap() };
        (tls, path)
    });
    (tls, path)
}

/// A bare repository with one task, served over https; the URL and the directory that must
/// outlive it.
async fn https_repo() -> (String, tempfile::TempDir) {
    let (tls, _) = trusted_ca();
    let dir = tempfile::tempdir().unwrap();
    let work = TestRepo::new();
    work.task("tasks/1-a", YAML_WEB, &[("prompt.md", "one")]);
    work.commit("one");
    let root = dir.path().join("srv");
    std::fs::create_dir_all(&root).unwrap();
    git2::build::RepoBuilder::new()
        .bare(true)
        .clone(&work.path().display().to_string(), &root.join("tasks.git"))
        .unwrap();
    let port = serve_git(root, kube_envtest::tls::server_config(tls).unwrap()).await;
    (format!("https://127.0.0.1:{port}/tasks.git"), dir)
}

#[tokio::test]
async fn a_token_fetches_over_https_and_a_wrong_one_is_an_authentication_error() {
    let (url, _dir) = https_repo().await;
    let mirrors = tempfile::tempdir().unwrap();
    let snapshot = source(url.clone(), TOKEN, mirrors.path())
        .fetch_snapshot()
        .await
        .unwrap();
    let ids: Vec<i64> = snapshot.tasks.iter().map(|t| t.task_id).collect();
    assert_eq!(ids, vec![1]);

    let mirrors = tempfile::tempdir().unwrap();
    let err = source(url, "wrong-token", mirrors.path())
        .fetch_snapshot()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("auth"), "{err}");
    assert!(
        !err.contains("wrong-token") && !err.contains(TOKEN),
        "{err}"
    );
}

#[tokio::test]
async fn the_cli_trusts_a_private_ca_only_with_git_ca_file() {
    let (url, _dir) = https_repo().await;
    let (_, ca) = trusted_ca();
    let validate = |ca: Option<&Path>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"));
        cmd.args(["validate", "--repo", &url, "--path", "tasks"])
            .args(["--git-token-env", "TEST_GIT_TOKEN"])
            .env("TEST_GIT_TOKEN", TOKEN)
            .env("NO_COLOR", "1");
        if let Some(ca) = ca {
            cmd.arg("--git-ca-file").arg(ca);
        }
        cmd.output()
    };

    let trusted = validate(Some(ca)).await.unwrap();
    let stdout = String::from_utf8_lossy(&trusted.stdout);
    assert!(
        trusted.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(
        stdout.starts_with("ok: 1 task folder(s) in tasks"),
        "{stdout}"
    );

    let untrusted = validate(None).await.unwrap();
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(!untrusted.status.success());
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert!(
        stderr.contains("--git-ca-file"),
        "the error says how to fix it: {stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
}
