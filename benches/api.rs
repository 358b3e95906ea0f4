//! Load figure of the API: requests per second and latency percentiles for submit and for
//! add-context, with 50 concurrent clients over loopback HTTP, against a real git repository.
//!
//! Bounded in count and time: `API_BENCH_REQUESTS` requests per phase (default 500) and at most
//! `API_BENCH_SECONDS` seconds per phase (default 60). Both repository layouts are measured:
//! commits into a local bare repository, and a staging clone pushing to a bare remote.

#[path = "../tests/api_common/mod.rs"]
mod api_common;

use api_common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 50;

struct Figure {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figure {
    fn print(&self, label: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{label:<28} {:>5} ok {:>3} failed in {:>6.2} s  {:>7.1} req/s  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.ok as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
}

/// Sends `total` requests from `CLIENTS` concurrent clients; `make(i)` gives request i's URL and
/// body. Clients stop taking new requests once `limit` has passed.
async fn load(
    total: usize,
    limit: Duration,
    make: impl Fn(usize) -> (String, serde_json::Value) + Send + Sync + 'static,
) -> Figure {
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let start = Instant::now();
    let deadline = start + limit;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (next, make) = (next.clone(), make.clone());
        clients.push(tokio::spawn(async move {
            let http = Http::new();
            let mut mine = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total || Instant::now() > deadline {
                    break;
                }
                let (url, body) = make(i);
                let sent = Instant::now();
                let reply = http.post(&url, &body).await;
                if reply.status == 201 {
                    mine.push(sent.elapsed());
                } else {
                    failed += 1;
                    if failed == 1 {
                        eprintln!("request {i}: {} {}", reply.status, reply.text());
                    }
                }
            }
            (mine, failed)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for c in clients {
        let (mine, f) = c.await.expect("client task");
        latencies.extend(mine);
        failed += f;
    }
    Figure {
        ok: latencies.len(),
        failed,
        elapsed: start.elapsed(),
        latencies,
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let total = env_or("API_BENCH_REQUESTS", 500) as usize;
    let limit = Duration::from_secs(env_or("API_BENCH_SECONDS", 60));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "API load: {CLIENTS} concurrent clients over loopback HTTP/1.1 keep-alive, {total} requests per phase, at most {} s each",
        limit.as_secs()
    );
    runtime.block_on(async {
        for (name, layout) in [
            ("local bare repo", Layout::Local),
            ("push to bare remote", Layout::Remote),
        ] {
            let api = start(layout, |s| s.known_agents = None).await;
            let base = api.base.clone();
            let submit = load(total, limit, move |i| {
                (format!("{base}/api/v1/tasks"), task_body(1000 + i as i64))
            })
            .await;
            submit.print(&format!("submit ({name})"));
            let base = api.base.clone();
            let tasks = submit.ok.max(1);
            let context = load(total, limit, move |i| {
                (
                    format!("{base}/api/v1/tasks/{}/context", 1000 + (i % tasks)),
                    serde_json::json!({"additionalContext": format!("More context number {i}.\n")}),
                )
            })
            .await;
            context.print(&format!("add-context ({name})"));
            let files = names_at(&api.origin, &api.origin_tip(), "tasks").len();
            println!(
                "  {files} task folders in the final commit; {} sync triggers",
                api.trigger_count()
            );
        }
    });
}
