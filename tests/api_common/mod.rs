//! Shared by the API tests and bench: real git repositories in temp dirs, the API served on a
//! loopback port, and a small HTTP client.
#![allow(dead_code)]

use bytes::Bytes;
use git2::{Repository, Signature};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::runtime::reflector::{self, store::Writer};
use orchestrator::api::auth::{ApiToken, WebhookSecret};
use orchestrator::api::{AppState, Person, RepoWriter, WriterConfig, Writes};
use orchestrator::crd::TaskRun;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tempfile::TempDir;

pub const TOKEN: &str = "test-token-6f1c";
pub const WEBHOOK_SECRET: &str = "webhook-secret-91ab";
pub const BRANCH: &str = "main";
pub const ROOT: &str = "tasks";

/// A bare repository with one commit: `README.md` and the task folder `tasks/1-web/`.
pub fn seeded_bare_repo(dir: &Path) -> Repository {
    let repo = Repository::init_bare(dir).unwrap();
    repo.set_head(&format!("refs/heads/{BRANCH}")).unwrap();
    commit_files(
        &repo,
        &[
            ("README.md", "# tasks\n"),
            (
                "tasks/1-web/task.yaml",
                "serviceName: web\nagentName: claude\n",
            ),
            ("tasks/1-web/prompt.md", "Build the login page.\n"),
        ],
        "Seed the task repository",
    );
    repo
}

/// Commits `files` (path → content) on top of the branch tip.
pub fn commit_files(repo: &Repository, files: &[(&str, &str)], message: &str) -> git2::Oid {
    let parent = repo
        .refname_to_id(&format!("refs/heads/{BRANCH}"))
        .ok()
        .map(|id| repo.find_commit(id).unwrap());
    let mut index = git2::Index::new().unwrap();
    if let Some(p) = &parent {
        index.read_tree(&p.tree().unwrap()).unwrap();
    }
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        let entry = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: content.len() as u32,
            id: blob,
            flags: path.len() as u16,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        index.add(&entry).unwrap();
    }
    let tree_id = index.write_tree_to(repo).unwrap();
    let tree = repo.find_tree(tree_id).unwrap();
    let sig = Signature::now("Test Human", "human@example.com").unwrap();
    let parents: Vec<_> = parent.iter().collect();
    repo.commit(
        Some(&format!("refs/heads/{BRANCH}")),
        &sig,
        &sig,
        message,
        &tree,
        &parents,
    )
    .unwrap()
}

/// The branch tip of the repository at `path`.
pub fn tip(path: &Path) -> String {
    let repo = Repository::open(path).unwrap();
    repo.refname_to_id(&format!("refs/heads/{BRANCH}"))
        .unwrap()
        .to_string()
}

/// Every file under `folder` at commit `commit`: name → content.
pub fn files_at(path: &Path, commit: &str, folder: &str) -> BTreeMap<String, String> {
    let repo = Repository::open(path).unwrap();
    let commit = repo
        .find_commit(git2::Oid::from_str(commit).unwrap())
        .unwrap();
    let tree = commit.tree().unwrap();
    let Ok(entry) = tree.get_path(Path::new(folder)) else {
        return BTreeMap::new();
    };
    let sub = repo.find_tree(entry.id()).unwrap();
    sub.iter()
        .map(|e| {
            let blob = repo.find_blob(e.id()).unwrap();
            (
                e.name().unwrap().to_string(),
                String::from_utf8(blob.content().to_vec()).unwrap(),
            )
        })
        .collect()
}

/// The entry names (files and folders) under `folder` at commit `commit`.
pub fn names_at(path: &Path, commit: &str, folder: &str) -> Vec<String> {
    let repo = Repository::open(path).unwrap();
    let commit = repo
        .find_commit(git2::Oid::from_str(commit).unwrap())
        .unwrap();
    let entry = commit.tree().unwrap().get_path(Path::new(folder)).unwrap();
    let tree = repo.find_tree(entry.id()).unwrap();
    tree.iter().map(|e| e.name().unwrap().to_string()).collect()
}

/// How the API's repository is set up.
pub enum Layout {
    /// The API commits straight into a bare repository (no remote, no push).
    Local,
    /// The API keeps its own bare clone and pushes to a bare "remote".
    Remote,
}

pub struct TestApi {
    pub base: String,
    /// Where commits land: the bare repository (Local) or the remote (Remote).
    pub origin: PathBuf,
    pub triggers: Arc<AtomicUsize>,
    pub task_runs: Writer<TaskRun>,
    pub reports: tokio::sync::watch::Sender<Option<orchestrator::sync::report::SyncReport>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dirs: Vec<TempDir>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApi {
    pub fn trigger_count(&self) -> usize {
        self.triggers.load(Ordering::SeqCst)
    }

    pub fn origin_tip(&self) -> String {
        tip(&self.origin)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub fn writer_config() -> WriterConfig {
    let mut config = WriterConfig::new(BRANCH, ROOT);
    config.author = Person::parse("PM Bot <pm@example.com>").unwrap();
    config.committer = Person::parse("Orchestrator <orchestrator@example.com>").unwrap();
    config
}

/// A bare remote seeded like [`seeded_bare_repo`] and a writer with its own staging clone.
pub fn remote_writer(dirs: &mut Vec<TempDir>) -> (PathBuf, RepoWriter) {
    let remote = tempfile::tempdir().unwrap();
    seeded_bare_repo(remote.path());
    let staging = tempfile::tempdir().unwrap();
    let writer = RepoWriter::for_remote(
        remote.path().to_str().unwrap(),
        &staging.path().join("clone.git"),
        writer_config(),
    )
    .unwrap();
    let origin = remote.path().to_path_buf();
    dirs.push(remote);
    dirs.push(staging);
    (origin, writer)
}

/// Serves the API on 127.0.0.1:0 over a freshly seeded repository.
pub async fn start(layout: Layout, tune: impl FnOnce(&mut AppState)) -> TestApi {
    let mut dirs = Vec::new();
    let (origin, writer) = match layout {
        Layout::Local => {
            let dir = tempfile::tempdir().unwrap();
            seeded_bare_repo(dir.path());
            let origin = dir.path().to_path_buf();
            dirs.push(dir);
            (
                origin.clone(),
                RepoWriter::open(&origin, writer_config()).unwrap(),
            )
        }
        Layout::Remote => remote_writer(&mut dirs),
    };
    let (store, task_runs) = reflector::store::<TaskRun>();
    let (reports, reports_rx) = tokio::sync::watch::channel(None);
    let triggers = Arc::new(AtomicUsize::new(0));
    let counted = triggers.clone();
    let mut state = AppState::new(Writes::To(writer), store);
    state.reports = reports_rx;
    state.trigger = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    state.token = Some(ApiToken::new(TOKEN));
    state.webhook_secret = Some(WebhookSecret::new(WEBHOOK_SECRET));
    state.known_agents = Some(Arc::new(vec!["claude".into(), "codex".into()]));
    tune(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(orchestrator::api::serve_on(listener, state, async move {
        let _ = rx.await;
    }));
    TestApi {
        base,
        origin,
        triggers,
        task_runs,
        reports,
        shutdown: Some(tx),
        _dirs: dirs,
    }
}

/// A keep-alive HTTP/1 client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self
            .client
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send("GET", url, &[], Bytes::new()).await
    }

    /// POST JSON with the test token.
    pub async fn post(&self, url: &str, body: &Value) -> Reply {
        self.post_as(url, Some(TOKEN), body.to_string()).await
    }

    pub async fn post_as(&self, url: &str, token: Option<&str>, body: String) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        self.send("POST", url, &headers, body).await
    }
}

pub fn task_body(id: i64) -> Value {
    serde_json::json!({
        "id": id,
        "serviceName": "web",
        "agentName": "claude",
        "markdownFiles": [
            {"filename": "prompt.md", "content": format!("# Task {id}\nBuild it.\n")},
            {"filename": "acceptance.md", "content": "- it works\n"}
        ]
    })
}
