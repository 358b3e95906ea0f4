//! Metric names in README.md and docs/*.md are the served ones: this test starts
//! `orchestrator run --api` and `orchestrator controller` on the embedded cluster, scrapes their
//! /metrics, and fails on any documented name that neither serves, and on a name written
//! without its `orchestrator_` prefix.

mod docs_support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every sample name a scrape can show, from its `# TYPE` lines (so a labelled family with no
/// sample yet counts) and its samples. Pure.
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            out.insert(name.to_string());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[],
            };
            for suffix in suffixes {
                out.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A metric name as a page mentions it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mention {
    line: usize,
    name: String,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Every `orchestrator_…` word, and every `backticked` lower_snake word that looks like a
/// metric (ends in a metric suffix) or would be one with the prefix. Pure.
fn mentions(markdown: &str, served: &BTreeSet<String>) -> Vec<Mention> {
    const SUFFIXES: &[&str] = &["_total", "_seconds", "_bucket", "_count", "_sum", "_bytes"];
    let mut out = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("orchestrator_") {
            let before = rest[..at].chars().next_back();
            let word: String = rest[at..]
                .chars()
                .take_while(|c| is_name_char(*c))
                .collect();
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(Mention {
                    line: i + 1,
                    name: word.trim_end_matches('_').to_string(),
                });
            }
            rest = &rest[at + word.len().max(1)..];
        }
        for (n, quoted) in line.split('`').enumerate() {
            if n % 2 == 0 || quoted.starts_with("orchestrator_") {
                continue;
            }
            let word = quoted.split('{').next().unwrap_or_default();
            let snake = !word.is_empty()
                && word.contains('_')
                && word.chars().all(is_name_char)
                && word.starts_with(|c: char| c.is_ascii_lowercase());
            if snake
                && (SUFFIXES.iter().any(|s| word.ends_with(s))
                    || served.contains(&format!("orchestrator_{word}")))
            {
                out.push(Mention {
                    line: i + 1,
                    name: word.to_string(),
                });
            }
        }
    }
    out
}

/// What is wrong with each mention of `file`. Pure.
fn problems(file: &str, mentions: &[Mention], served: &BTreeSet<String>) -> Vec<String> {
    mentions
        .iter()
        .filter(|m| !served.contains(&m.name))
        .map(|m| {
            let prefixed = format!("orchestrator_{}", m.name);
            if served.contains(&prefixed) {
                format!(
                    "{file}:{}: `{}` is served as `{prefixed}`: write the full name",
                    m.line, m.name
                )
            } else {
                format!(
                    "{file}:{}: `{}` is not a served metric (neither `orchestrator run` nor \
                     `orchestrator controller` exports it)",
                    m.line, m.name
                )
            }
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` over plain HTTP/1.0: the status code and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

/// A process that is stopped with SIGTERM (and reaped) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cwd: &Path, args: &[String]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("orchestrator starts"),
    )
}

/// Polls `ready` until it answers 200 (60 s at most), then scrapes /metrics on `port`.
fn scrape_when_ready(port: u16, ready: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = get(port, ready) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} on port {port} did not answer 200 within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every stage registers its metrics as it starts; give the last one a moment.
    std::thread::sleep(Duration::from_secs(1));
    let (code, body) = get(port, "/metrics").unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

/// The names the stages register, in the registry `run` builds, with one sample in each family
/// that a healthy run leaves empty (errors).
fn labelled_families_with_a_sample() -> BTreeSet<String> {
    let metrics = orchestrator::metrics::Metrics::new();
    orchestrator::sync::metrics::SyncMetrics::register(&metrics).error("fetch", 1);
    metrics
        .register_with(orchestrator::controller::metrics::ControllerMetrics::register)
        .count_error("apply");
    metrics.register_with(orchestrator::notes::NotesMetrics::register);
    let api = orchestrator::api::metrics::ApiMetrics::register(&metrics);
    api.request("/api/v1/tasks", "POST", 201, Duration::from_millis(1));
    api.write("task", "committed");
    served_names(&metrics.render())
}

#[test]
fn every_metric_name_in_the_docs_is_served() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sandbox =
        docs_support::Sandbox::with_example_repo(Path::new(env!("CARGO_BIN_EXE_orchestrator")));

    // A bare clone, so that the API can commit and reports itself ready.
    let (out, code) = sandbox.sh("git clone -q --bare . ../tasks.git");
    assert_eq!(code, Some(0), "{out}");
    let api_port = free_port();
    let run = start(
        &sandbox.repo(),
        &[
            "run",
            "--embedded",
            "--repo",
            "../tasks.git",
            "--path",
            "example-repo",
            // A bare repository has no agents.yaml on disk to find by default.
            "--agents",
            "example-repo/agents.yaml",
            "--api",
            "--api-addr",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("127.0.0.1:{api_port}")])
        .collect::<Vec<_>>(),
    );
    let from_run = served_names(&scrape_when_ready(api_port, "/readyz"));
    drop(run);

    let metrics_port = free_port();
    let controller = start(
        root,
        &[
            "controller",
            "--embedded",
            "--agents",
            "example-repo/agents.yaml",
            "-n",
            "tasks",
            "--metrics-addr",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("127.0.0.1:{metrics_port}")])
        .collect::<Vec<_>>(),
    );
    let from_controller = served_names(&scrape_when_ready(metrics_port, "/metrics"));
    drop(controller);

    // One name per metric: the controller alone serves its metrics as `run` does.
    let only_controller: Vec<&String> = from_controller.difference(&from_run).collect();
    assert!(
        only_controller.is_empty(),
        "`orchestrator controller` serves names `orchestrator run` does not: {only_controller:?}"
    );
    for family in ["orchestrator_taskrun_total", "orchestrator_sync_runs_total"] {
        assert!(from_run.contains(family), "{family} in {from_run:?}");
    }

    // A labelled family is exposed only once it has a sample, and a healthy run has no errors:
    // those names come from the stages' own registration, given one sample each.
    let with_samples = labelled_families_with_a_sample();
    let known: BTreeSet<String> = from_run.union(&with_samples).cloned().collect();
    let mut all = Vec::new();
    let mut checked = 0;
    for file in docs_support::doc_files(root) {
        let text = std::fs::read_to_string(root.join(&file)).unwrap();
        let found = mentions(&text, &known);
        checked += found.len();
        all.extend(problems(&file.display().to_string(), &found, &known));
    }
    assert!(checked > 0, "no metric is mentioned in the docs");
    assert!(all.is_empty(), "{all:#?}");
}

#[test]
fn wrong_and_unprefixed_names_are_found() {
    let served = served_names(
        "# TYPE orchestrator_taskrun counter\n\
         orchestrator_taskrun_total 3\n\
         # TYPE orchestrator_sync_duration_seconds histogram\n\
         # TYPE orchestrator_taskrun_phase gauge\n\
         orchestrator_taskrun_phase{phase=\"Running\"} 1\n# EOF\n",
    );
    for name in [
        "orchestrator_taskrun_total",
        "orchestrator_sync_duration_seconds_bucket",
        "orchestrator_taskrun_phase",
    ] {
        assert!(served.contains(name), "{name}: {served:?}");
    }
    let page = "| `taskrun_total` | counter |\n\
                `orchestrator_taskrun_phase{phase}` and orchestrator_sync_duration_seconds_count\n\
                `orchestrator_tasks_total`, `notes_written_total`, `some_setting`, `kube_envtest`\n\
                ORCHESTRATOR_API_TOKEN, my_orchestrator_thing\n";
    let found = mentions(page, &served);
    assert_eq!(
        found.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        [
            "taskrun_total",
            "orchestrator_taskrun_phase",
            "orchestrator_sync_duration_seconds_count",
            "orchestrator_tasks_total",
            "notes_written_total",
        ]
    );
    assert_eq!(
        problems("README.md", &found, &served),
        [
            "README.md:1: `taskrun_total` is served as `orchestrator_taskrun_total`: write the full name",
            "README.md:3: `orchestrator_tasks_total` is not a served metric (neither `orchestrator run` nor `orchestrator controller` exports it)",
            "README.md:3: `notes_written_total` is not a served metric (neither `orchestrator run` nor `orchestrator controller` exports it)",
        ]
    );
}
