//! The API over real HTTP on a loopback port, writing to real git repositories (a bare
//! repository, and a staging clone pushing to a bare remote).

mod api_common;

use api_common::*;
use git2::Repository;
use serde_json::json;

fn assert_failed(reply: &Reply, status: u16, needle: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    let body = reply.json();
    assert_eq!(body["success"], json!(false), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{message:?} should contain {needle:?}"
    );
}

#[tokio::test]
async fn submit_commits_the_folder_pushes_it_and_triggers_a_sync() {
    let api = start(Layout::Remote, |_| {}).await;
    let http = Http::new();
    let before = api.origin_tip();
    let reply = http.post(&api.url("/api/v1/tasks"), &task_body(42)).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["data"]["name"], json!("task-42"));
    assert_eq!(body["data"]["namespace"], json!("orchestrator"));
    assert_eq!(body["data"]["pushed"], json!(true));
    let commit = body["data"]["commit"].as_str().unwrap().to_string();
    assert_eq!(
        api.origin_tip(),
        commit,
        "the remote's branch holds the commit"
    );

    let files = files_at(&api.origin, &commit, "tasks/42-web");
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["acceptance.md", "prompt.md", "task.yaml"]
    );
    assert_eq!(files["prompt.md"], "# Task 42\nBuild it.\n");
    assert_eq!(files["task.yaml"], "serviceName: web\nagentName: claude\n");
    // The seed's files are still there.
    assert_eq!(files_at(&api.origin, &commit, "tasks/1-web").len(), 2);

    let repo = Repository::open(&api.origin).unwrap();
    let c = repo
        .find_commit(git2::Oid::from_str(&commit).unwrap())
        .unwrap();
    assert_eq!(c.parent_id(0).unwrap().to_string(), before);
    assert_eq!(c.author().email().unwrap(), "pm@example.com");
    assert_eq!(c.committer().email().unwrap(), "orchestrator@example.com");
    let summary = c.summary().unwrap().unwrap().to_string();
    assert!(summary.contains("task 42"), "{summary:?}");
    assert_eq!(api.trigger_count(), 1);

    let again = http.post(&api.url("/api/v1/tasks"), &task_body(42)).await;
    assert_failed(&again, 409, "Task already exists");
    assert_eq!(api.origin_tip(), commit, "a conflict writes nothing");
    assert_eq!(api.trigger_count(), 1);
}

#[tokio::test]
async fn a_task_that_exists_as_folder_or_taskrun_is_a_conflict() {
    let mut api = start(Layout::Local, |_| {}).await;
    let http = Http::new();
    // The seed has tasks/1-web.
    let reply = http.post(&api.url("/api/v1/tasks"), &task_body(1)).await;
    assert_failed(&reply, 409, "Task already exists");

    let mut task_run = TaskRun::new(
        "task-77",
        orchestrator::crd::TaskRunSpec {
            task_id: 77,
            service_name: "web".into(),
            agent_name: "claude".into(),
            context_version: 1,
            content_digest: String::new(),
            source_path: String::new(),
            suspend: false,
            priority: 0,
            markdown_files: vec![],
        },
    );
    task_run.metadata.namespace = Some("orchestrator".into());
    api.task_runs
        .apply_watcher_event(&kube::runtime::watcher::Event::Apply(task_run));
    let before = api.origin_tip();
    let reply = http.post(&api.url("/api/v1/tasks"), &task_body(77)).await;
    assert_failed(&reply, 409, "Task already exists");
    assert_eq!(api.origin_tip(), before);
}

use orchestrator::crd::TaskRun;

#[tokio::test]
async fn invalid_tasks_are_400_naming_the_field_and_write_nothing() {
    let api = start(Layout::Local, |_| {}).await;
    let http = Http::new();
    let before = api.origin_tip();
    let url = api.url("/api/v1/tasks");

    let mut empty = task_body(5);
    empty["markdownFiles"] = json!([]);
    let reply = http.post(&url, &empty).await;
    assert_failed(&reply, 400, "No markdown files provided");
    assert_eq!(reply.json()["data"]["field"], json!("markdownFiles"));

    for name in ["../x.md", "/etc/passwd", "a/b.md"] {
        let mut body = task_body(5);
        body["markdownFiles"][1]["filename"] = json!(name);
        let reply = http.post(&url, &body).await;
        assert_failed(&reply, 400, "markdownFiles[1].filename");
        assert_eq!(
            reply.json()["data"]["field"],
            json!("markdownFiles[1].filename")
        );
    }

    let cases = [
        ("agentName", json!("gpt-unknown"), "unknown agent"),
        ("serviceName", json!("Web Service"), "DNS-1123"),
        ("id", json!(-3), "non-negative"),
    ];
    for (field, value, needle) in cases {
        let mut body = task_body(5);
        body[field] = value;
        let reply = http.post(&url, &body).await;
        assert_failed(&reply, 400, needle);
        assert_eq!(reply.json()["data"]["field"], json!(field));
    }

    let mut big = task_body(5);
    big["markdownFiles"][0]["content"] = json!("x".repeat(950 * 1024));
    let reply = http.post(&url, &big).await;
    assert_failed(&reply, 400, "markdownFiles[0].content");

    assert_eq!(api.origin_tip(), before, "nothing was written");
    assert_eq!(api.trigger_count(), 0);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_answer_in_the_api_shape() {
    let api = start(Layout::Local, |s| s.body_limit = 64 * 1024).await;
    let http = Http::new();
    let url = api.url("/api/v1/tasks");

    let reply = http.post_as(&url, Some(TOKEN), "{not json".into()).await;
    assert_failed(&reply, 400, "not valid JSON");
    let reply = http
        .post_as(&url, Some(TOKEN), r#"{"id": "x"}"#.into())
        .await;
    assert_failed(&reply, 400, "does not match");

    let mut huge = task_body(5);
    huge["markdownFiles"][0]["content"] = json!("x".repeat(100 * 1024));
    let reply = http.post(&url, &huge).await;
    assert_failed(&reply, 413, "65536 bytes");

    let reply = http.get(&api.url("/api/v1/nothing")).await;
    assert_failed(&reply, 404, "no endpoint GET /api/v1/nothing");
    let reply = http.send("DELETE", &url, &[], "").await;
    assert_failed(&reply, 405, "does not take DELETE");
}

#[tokio::test]
async fn writes_need_the_bearer_token() {
    let api = start(Layout::Local, |_| {}).await;
    let http = Http::new();
    let before = api.origin_tip();
    let body = task_body(9).to_string();
    let context = json!({"additionalContext": "more"}).to_string();
    for token in [None, Some("wrong"), Some("")] {
        let reply = http
            .post_as(&api.url("/api/v1/tasks"), token, body.clone())
            .await;
        assert_failed(&reply, 401, "token");
        let reply = http
            .post_as(&api.url("/api/v1/tasks/1/context"), token, context.clone())
            .await;
        assert_failed(&reply, 401, "token");
    }
    assert_eq!(api.origin_tip(), before);

    // A server without a token accepts no writes at all.
    let closed = start(Layout::Local, |s| s.token = None).await;
    let reply = http
        .post_as(&closed.url("/api/v1/tasks"), Some(TOKEN), body)
        .await;
    assert_failed(&reply, 401, "no API token configured");
}

#[tokio::test]
async fn add_context_commits_the_next_context_file() {
    let api = start(Layout::Local, |_| {}).await;
    let http = Http::new();
    let before = api.origin_tip();
    let reply = http
        .post(
            &api.url("/api/v1/tasks/1/context"),
            &json!({"additionalContext": "Use the design system.\n"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["data"]["name"], json!("task-1"));
    assert_eq!(body["data"]["contextFileVersion"], json!(2));
    assert_eq!(body["data"]["pushed"], json!(false));
    let commit = body["data"]["commit"].as_str().unwrap();
    assert_eq!(api.origin_tip(), commit);
    let files = files_at(&api.origin, commit, "tasks/1-web");
    assert_eq!(files["context-v2.md"], "Use the design system.\n");
    assert_eq!(files.len(), 3, "{files:?}");
    let repo = Repository::open(&api.origin).unwrap();
    let c = repo
        .find_commit(git2::Oid::from_str(commit).unwrap())
        .unwrap();
    assert_eq!(c.parent_id(0).unwrap().to_string(), before);
    assert_eq!(c.summary().unwrap(), Some("Add context v2 to task 1"));
    assert_eq!(api.trigger_count(), 1);

    // An explicit version must be larger than the latest.
    let reply = http
        .post(
            &api.url("/api/v1/tasks/1/context"),
            &json!({"additionalContext": "again", "version": 2}),
        )
        .await;
    assert_failed(&reply, 409, "latest context version is 2");
    let reply = http
        .post(
            &api.url("/api/v1/tasks/1/context"),
            &json!({"additionalContext": "jump", "version": 7}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["data"]["files"], json!(["context-v7.md"]));

    let reply = http
        .post(
            &api.url("/api/v1/tasks/404/context"),
            &json!({"additionalContext": "x"}),
        )
        .await;
    assert_failed(&reply, 404, "task 404 has no folder");
    let reply = http
        .post(
            &api.url("/api/v1/tasks/1/context"),
            &json!({"additionalContext": " "}),
        )
        .await;
    assert_failed(&reply, 400, "additionalContext");
}

#[tokio::test]
async fn twenty_concurrent_contexts_all_land_in_order() {
    let api = start(Layout::Remote, |_| {}).await;
    let http = Http::new();
    let url = api.url("/api/v1/tasks/1/context");
    let requests = (0..20).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(
                &url,
                &json!({"additionalContext": format!("context number {i}\n")}),
            )
            .await
        }
    });
    let replies = futures::future::join_all(requests).await;
    let mut versions = Vec::new();
    for reply in &replies {
        assert_eq!(reply.status, 201, "{}", reply.text());
        versions.push(reply.json()["data"]["contextFileVersion"].as_u64().unwrap());
    }
    versions.sort();
    assert_eq!(
        versions,
        (2..=21).collect::<Vec<_>>(),
        "each got its own number"
    );

    let files = files_at(&api.origin, &api.origin_tip(), "tasks/1-web");
    let mut contents: Vec<_> = files
        .iter()
        .filter(|(name, _)| name.starts_with("context-v"))
        .map(|(_, c)| c.clone())
        .collect();
    contents.sort();
    let mut want: Vec<_> = (0..20).map(|i| format!("context number {i}\n")).collect();
    want.sort();
    assert_eq!(contents, want, "none lost");

    // The history is one linear chain of 20 commits on top of the seed.
    let repo = Repository::open(&api.origin).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    assert_eq!(walk.count(), 21);
    assert_eq!(api.trigger_count(), 20);
}

#[tokio::test]
async fn two_writers_racing_on_one_remote_rebase_and_retry() {
    // Two API instances (two staging clones) push to the same remote at once: pushes lose races
    // and must re-apply on the new tip, with nothing lost.
    let mut dirs = Vec::new();
    let (origin, first) = remote_writer(&mut dirs);
    let staging = tempfile::tempdir().unwrap();
    let second = orchestrator::api::RepoWriter::for_remote(
        origin.to_str().unwrap(),
        &staging.path().join("clone.git"),
        writer_config(),
    )
    .unwrap();
    let mut jobs = Vec::new();
    for i in 0..10 {
        for writer in [first.clone(), second.clone()] {
            jobs.push(tokio::spawn(async move {
                writer
                    .write(orchestrator::api::change::Change::Context(
                        orchestrator::api::change::NewContext {
                            task_id: 1,
                            content: format!("from a racing writer {i}\n"),
                            version: None,
                        },
                    ))
                    .await
            }));
        }
    }
    for job in jobs {
        job.await.unwrap().expect("every write lands");
    }
    let files = files_at(&origin, &tip(&origin), "tasks/1-web");
    let contexts = files.keys().filter(|n| n.starts_with("context-v")).count();
    assert_eq!(contexts, 20, "{:?}", files.keys());
}

#[tokio::test]
async fn webhook_checks_the_signature_and_triggers_a_sync() {
    let api = start(Layout::Local, |_| {}).await;
    let http = Http::new();
    let url = api.url("/api/v1/webhook/git");
    let body = r#"{"ref":"refs/heads/main","after":"0123"}"#;
    let secret = orchestrator::api::auth::WebhookSecret::new(WEBHOOK_SECRET);
    let good = secret.sign(body.as_bytes());

    let reply = http
        .send(
            "POST",
            &url,
            &[("x-hub-signature-256", "sha256=00ff")],
            body,
        )
        .await;
    assert_failed(&reply, 401, "signature does not match");
    let forged = orchestrator::api::auth::WebhookSecret::new("guess").sign(body.as_bytes());
    let reply = http
        .send("POST", &url, &[("x-hub-signature-256", &forged)], body)
        .await;
    assert_failed(&reply, 401, "signature does not match");
    let reply = http.send("POST", &url, &[], body).await;
    assert_failed(&reply, 401, "missing X-Hub-Signature-256");
    assert_eq!(api.trigger_count(), 0);

    let reply = http
        .send(
            "POST",
            &url,
            &[("x-hub-signature-256", &good), ("x-github-event", "push")],
            body,
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(api.trigger_count(), 1);

    let other = r#"{"ref":"refs/heads/feature"}"#;
    let sig = secret.sign(other.as_bytes());
    let reply = http
        .send("POST", &url, &[("x-hub-signature-256", &sig)], other)
        .await;
    assert_eq!(reply.status, 202);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("ignored")
    );
    assert_eq!(api.trigger_count(), 1);

    let closed = start(Layout::Local, |s| s.webhook_secret = None).await;
    let reply = http
        .send(
            "POST",
            &closed.url("/api/v1/webhook/git"),
            &[("x-hub-signature-256", &good)],
            body,
        )
        .await;
    assert_failed(&reply, 403, "webhooks are disabled");
}

#[tokio::test]
async fn reads_come_from_the_cache_and_the_latest_report() {
    use orchestrator::crd::{TaskPhase, TaskRunSpec, TaskRunStatus};
    use orchestrator::health::SyncStatus;
    use orchestrator::source::snapshot::Revision;
    use orchestrator::sync::report::{SyncReport, SyncedTask};

    let mut api = start(Layout::Local, |_| {}).await;
    let http = Http::new();
    let reply = http.get(&api.url("/api/v1/tasks")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["data"], json!([]));

    let mut tr = TaskRun::new(
        "task-1",
        TaskRunSpec {
            task_id: 1,
            service_name: "web".into(),
            agent_name: "claude".into(),
            context_version: 2,
            content_digest: "sha256:ab".into(),
            source_path: "tasks/1-web".into(),
            suspend: false,
            priority: 0,
            markdown_files: vec![],
        },
    );
    tr.metadata.namespace = Some("orchestrator".into());
    tr.status = Some(TaskRunStatus {
        phase: Some(TaskPhase::Running),
        job_name: Some("web-1-v2".into()),
        message: Some("Job running".into()),
        context_version: Some(2),
        ..Default::default()
    });
    api.task_runs
        .apply_watcher_event(&kube::runtime::watcher::Event::Apply(tr));
    let reply = http.get(&api.url("/api/v1/tasks")).await;
    let task = &reply.json()["data"][0];
    assert_eq!(task["name"], json!("task-1"));
    assert_eq!(task["phase"], json!("Running"));
    assert_eq!(task["contextVersion"], json!(2));
    assert_eq!(task["jobName"], json!("web-1-v2"));
    assert_eq!(task["message"], json!("Job running"));
    let reply = http.get(&api.url("/api/v1/tasks/1")).await;
    assert_eq!(reply.json()["data"]["jobName"], json!("web-1-v2"));
    assert_failed(
        &http.get(&api.url("/api/v1/tasks/2")).await,
        404,
        "no TaskRun",
    );
    assert_failed(
        &http.get(&api.url("/api/v1/tasks/x")).await,
        400,
        "not a task id",
    );

    assert_eq!(
        http.get(&api.url("/api/v1/status")).await.json()["data"]["sync"],
        json!("Unknown")
    );
    let commit = api.origin_tip();
    let revision = Revision {
        branch: "main".into(),
        commit: commit.clone(),
    };
    api.reports
        .send(Some(SyncReport {
            revision: revision.clone(),
            status: SyncStatus::Synced,
            applied_revision: Some(revision.clone()),
            tasks: vec![SyncedTask {
                task_id: 1,
                name: "task-1".into(),
                context_version: 2,
                digest: "sha256:ab".into(),
                path: "tasks/1-web".into(),
            }]
            .into(),
            folder_errors: vec![],
            apply_errors: vec![],
            created: 1,
            updated: 0,
            pruned: 0,
            unchanged: 0,
            synced_at: "2026-11-26T19:00:00Z".into(),
        }))
        .unwrap();
    let status = http.get(&api.url("/api/v1/status")).await.json();
    assert_eq!(status["data"]["sync"], json!("Synced"));
    assert_eq!(status["data"]["health"], json!("Progressing"));
    assert_eq!(
        status["data"]["revision"],
        json!(format!("main@sha1:{commit}"))
    );
    let by_rev = http
        .get(&api.url(&format!("/api/v1/status/{}", &commit[..8])))
        .await;
    assert_eq!(by_rev.status, 200, "{}", by_rev.text());
    assert_eq!(by_rev.json()["data"]["tasks"][0]["phase"], json!("Running"));
    assert_failed(
        &http.get(&api.url("/api/v1/status/deadbeef")).await,
        404,
        "no sync state",
    );

    let badge = http.get(&api.url("/api/v1/status/badge.svg")).await;
    assert_eq!(badge.status, 200);
    assert_eq!(badge.content_type, "image/svg+xml");
    assert!(
        badge.text().contains("orchestrator: Progressing, Synced"),
        "{}",
        badge.text()
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cluster = Arc::new(AtomicBool::new(false));
    let flag = cluster.clone();
    let api = start(Layout::Local, move |s| {
        s.readiness = orchestrator::api::Readiness::default()
            .with("source", Arc::new(|| true))
            .with("cluster", Arc::new(move || flag.load(Ordering::SeqCst)));
        let registry = orchestrator::metrics::Metrics::new();
        s.api_metrics = orchestrator::api::metrics::ApiMetrics::register(&registry);
        s.metrics = Arc::new(move || registry.render());
    })
    .await;
    let http = Http::new();
    assert_eq!(http.get(&api.url("/healthz")).await.status, 200);
    let reply = http.get(&api.url("/readyz")).await;
    assert_failed(&reply, 503, "not ready: cluster");
    assert_eq!(
        reply.json()["data"],
        json!({"source": true, "cluster": false})
    );
    cluster.store(true, Ordering::SeqCst);
    assert_eq!(http.get(&api.url("/readyz")).await.status, 200);
    assert_eq!(http.get(&api.url("/api/v1/tasks/7")).await.status, 404);
    let metrics = http.get(&api.url("/metrics")).await;
    assert!(
        metrics
            .content_type
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text();
    assert!(
        text.contains(r#"orchestrator_api_requests_total{route="/api/v1/tasks/{id}",method="GET",code="4xx"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/readyz""#), "{text}");

    let doc = http.get(&api.url("/api/v1/openapi.json")).await.json();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/tasks", "post"),
        ("/api/v1/tasks", "get"),
        ("/api/v1/tasks/{id}", "get"),
        ("/api/v1/tasks/{id}/context", "post"),
        ("/api/v1/status", "get"),
        ("/api/v1/status/{rev}", "get"),
        ("/api/v1/status/badge.svg", "get"),
        ("/api/v1/webhook/git", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
    assert!(doc["components"]["schemas"]["PmTaskRequest"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn a_checked_out_branch_without_remote_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let err = orchestrator::api::RepoWriter::open(dir.path(), writer_config()).unwrap_err();
    assert!(err.to_string().contains("checked out"), "{err}");
}

#[tokio::test]
async fn older_revisions_are_read_from_their_git_note() {
    use orchestrator::crd::TaskPhase;
    use orchestrator::health::{Health, SyncStatus};
    use orchestrator::notes::model::{NOTE_API_VERSION, NOTES_REF, Note, NoteCounts, NoteTask};
    use orchestrator::notes::read::NoteQuery;

    let dir = tempfile::tempdir().unwrap();
    let repo = seeded_bare_repo(dir.path());
    let commit = tip(dir.path());
    let note = Note {
        api_version: NOTE_API_VERSION.into(),
        revision: format!("main@sha1:{commit}"),
        synced_at: "2026-11-26T19:00:00Z".into(),
        sync: SyncStatus::Synced,
        health: Health::Degraded,
        health_reason: Some("task-1 Failed (BackoffLimitExceeded)".into()),
        superseded_by: None,
        counts: NoteCounts::default(),
        tasks: vec![NoteTask {
            task_id: 1,
            name: "task-1".into(),
            path: "tasks/1-web".into(),
            context_version: 1,
            digest: "sha256:ab".into(),
            phase: Some(TaskPhase::Failed),
            job_name: Some("web-1-v1".into()),
            message: Some("exit 1".into()),
            reason: Some("BackoffLimitExceeded".into()),
            result: Some("tests failed".into()),
            stalled: false,
        }],
        errors: vec![],
    };
    let sig = git2::Signature::now("orchestrator", "orchestrator@localhost").unwrap();
    repo.note(
        &sig,
        &sig,
        Some(NOTES_REF),
        git2::Oid::from_str(&commit).unwrap(),
        &orchestrator::notes::render::note_text(&note),
        false,
    )
    .unwrap();
    // A newer commit without a note.
    let newer = commit_files(&repo, &[("tasks/2-api/prompt.md", "x")], "newer").to_string();

    let path = dir.path().to_str().unwrap().to_string();
    let api = start(Layout::Local, move |s| {
        let mut query = NoteQuery::new(path);
        query.branch = Some("main".into());
        s.notes = Some(query);
    })
    .await;
    let http = Http::new();
    let reply = http
        .get(&api.url(&format!("/api/v1/status/{commit}")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let data = &reply.json()["data"];
    assert_eq!(data["from"], json!("note"));
    assert_eq!(data["health"], json!("Degraded"));
    assert_eq!(data["tasks"][0]["phase"], json!("Failed"));
    assert_failed(
        &http.get(&api.url(&format!("/api/v1/status/{newer}"))).await,
        404,
        "has no orchestrator note",
    );
    assert_failed(
        &http.get(&api.url("/api/v1/status/no-such-branch")).await,
        404,
        "not a revision",
    );
}

#[tokio::test]
async fn a_server_without_a_writable_repository_still_serves_reads() {
    let api = start(Layout::Local, |s| {
        s.writes = orchestrator::api::Writes::Disabled {
            reason: "branch \"main\" is checked out in the working tree /src".into(),
            branch: "main".into(),
        };
    })
    .await;
    let http = Http::new();
    let reply = http.post(&api.url("/api/v1/tasks"), &task_body(3)).await;
    assert_failed(
        &reply,
        503,
        "accepts no writes: branch \"main\" is checked out",
    );
    assert_eq!(http.get(&api.url("/api/v1/tasks")).await.status, 200);
}

#[tokio::test]
async fn a_commit_pushed_by_someone_else_is_seen_before_refusing() {
    let api = start(Layout::Remote, |_| {}).await;
    let http = Http::new();
    let reply = http.post(&api.url("/api/v1/tasks"), &task_body(10)).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    // A human pushes task 50 straight to the remote; the API's clone has not fetched it.
    let remote = Repository::open(&api.origin).unwrap();
    commit_files(
        &remote,
        &[
            (
                "tasks/50-api/task.yaml",
                "serviceName: api\nagentName: claude\n",
            ),
            ("tasks/50-api/prompt.md", "Rate limits.\n"),
        ],
        "Add task 50 by hand",
    );
    let reply = http
        .post(
            &api.url("/api/v1/tasks/50/context"),
            &json!({"additionalContext": "Per user.\n"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = http.post(&api.url("/api/v1/tasks"), &task_body(50)).await;
    assert_failed(&reply, 409, "Task already exists");
    let files = files_at(&api.origin, &api.origin_tip(), "tasks/50-api");
    assert_eq!(files["context-v2.md"], "Per user.\n");
    assert!(files_at(&api.origin, &api.origin_tip(), "tasks/10-web").contains_key("prompt.md"));
}

/// What schemathesis found (issue 16): the document said `data` was an object where the list is
/// an array, left out the 400 for an id that does not fit, and left out the rules the server
/// enforces; and a service named "0" was written to task.yaml as the number 0.
#[tokio::test]
async fn the_openapi_document_says_what_the_server_does() {
    let api = start(Layout::Local, |_| {}).await;
    let http = Http::new();
    let doc = http.get(&api.url("/api/v1/openapi.json")).await.json();
    let schemas = &doc["components"]["schemas"];
    let response_schema = |path: &str, method: &str, code: &str| {
        let r = &doc["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
            ["$ref"];
        let name = r
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} {code}: {r}"));
        schemas[name.trim_start_matches("#/components/schemas/")].clone()
    };

    let list = http.get(&api.url("/api/v1/tasks")).await;
    assert!(list.json()["data"].is_array());
    assert_eq!(
        response_schema("/api/v1/tasks", "get", "200")["properties"]["data"]["type"],
        "array"
    );

    let too_big = http
        .get(&api.url("/api/v1/tasks/9223372036854775808"))
        .await;
    assert_eq!(too_big.status, 400);
    assert_eq!(too_big.json()["data"]["field"], "id");
    assert_eq!(http.get(&api.url("/api/v1/tasks/+5")).await.status, 400);
    let bad_request = response_schema("/api/v1/tasks/{id}", "get", "400");
    assert!(
        bad_request["properties"]["data"].is_object(),
        "{bad_request}"
    );

    let task = &schemas["PmTaskRequest"]["properties"];
    assert_eq!(task["serviceName"]["minLength"], 1);
    assert_eq!(task["serviceName"]["maxLength"], 63);
    assert!(task["agentName"]["pattern"].is_string());
    assert_eq!(task["markdownFiles"]["minItems"], 1);
    assert_eq!(task["id"]["minimum"], 0);
    let file = &schemas["MarkdownFileRequest"]["properties"]["filename"];
    assert!(
        file["pattern"].as_str().unwrap().ends_with(r"\.md$"),
        "{file}"
    );
    let context = &schemas["AddContextRequest"]["properties"];
    assert_eq!(context["additionalContext"]["minLength"], 1);
    assert_eq!(context["version"]["minimum"], 1);
    assert_eq!(context["version"]["maximum"], u32::MAX);

    // Labels that YAML would read as a number or a boolean still make a valid task.
    let mut body = task_body(77);
    body["serviceName"] = serde_json::json!("0");
    body["agentName"] = serde_json::json!("codex");
    let reply = http.post(&api.url("/api/v1/tasks"), &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let commit = reply.json()["data"]["commit"].as_str().unwrap().to_string();
    assert_eq!(
        files_at(&api.origin, &commit, "tasks/77-0")["task.yaml"],
        "serviceName: \"0\"\nagentName: codex\n"
    );
}
