//! `pods/{name}/log` for the Pods the local runner creates: a Pod's log annotations (the
//! runner's log file and this attempt's byte range in it) and the query (`tailLines`,
//! `limitBytes`, `follow`, `container`) in, the container's output as text/plain out.
//! [`select`] is the pure part; following polls the file until the attempt ends.

use super::handler::{Body, ServerState};
use super::meta::str_at;
use super::status::ApiError;
use bytes::Bytes;
use http::{Response, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The annotations the runner sets on its Pods (see `runner::pod`).
const LOG_PATH: &str = "kube-envtest.io/log-path";
const LOG_START: &str = "kube-envtest.io/log-start";
const LOG_END: &str = "kube-envtest.io/log-end";

/// How often a followed log is read again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Where one Pod's log is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogSource {
    path: PathBuf,
    start: u64,
    /// `None` while the container runs.
    end: Option<u64>,
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The Pod's log, or the kubelet's answer for a container that has none yet.
fn source(pod: &Value, name: &str) -> Result<LogSource, ApiError> {
    let container = str_at(pod, "/spec/containers/0/name").unwrap_or("");
    let waiting = pod
        .pointer("/status/containerStatuses/0/state/waiting/reason")
        .and_then(Value::as_str);
    let start = annotation(pod, LOG_START).and_then(|s| s.parse().ok());
    match (annotation(pod, LOG_PATH), start, waiting) {
        (Some(path), Some(start), None) => Ok(LogSource {
            path: PathBuf::from(path),
            start,
            end: annotation(pod, LOG_END).and_then(|s| s.parse().ok()),
        }),
        (_, _, Some(reason)) => Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        ))),
        (None, _, None) => Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" has no log: the pod was not started by the local Job runner"
        ))),
        (Some(_), None, None) => Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        ))),
    }
}

/// The options of one log request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub follow: bool,
}

impl LogOptions {
    fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let number = |k: &str| -> Result<Option<usize>, ApiError> {
            query
                .get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .ok()
                        .and_then(|n| usize::try_from(n.max(0)).ok())
                        .ok_or_else(|| ApiError::bad_request(format!("invalid {k} {v:?}")))
                })
                .transpose()
        };
        Ok(LogOptions {
            tail_lines: number("tailLines")?,
            limit_bytes: number("limitBytes")?,
            follow: query.get("follow").is_some_and(|f| f == "true" || f == "1"),
        })
    }
}

/// The part of a log the options ask for: the last `tailLines` lines, then at most
/// `limitBytes` bytes from the start. Pure.
pub fn select(log: &[u8], opts: &LogOptions) -> Vec<u8> {
    let mut from = 0;
    if let Some(n) = opts.tail_lines {
        let body = log.strip_suffix(b"\n").unwrap_or(log);
        from = if n == 0 {
            log.len()
        } else {
            body.iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| **b == b'\n')
                .nth(n - 1)
                .map_or(0, |(i, _)| i + 1)
        };
    }
    let out = &log[from..];
    let cut = opts.limit_bytes.map_or(out.len(), |l| l.min(out.len()));
    out[..cut].to_vec()
}

fn read(path: &PathBuf, from: u64, to: Option<u64>) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = match to {
            Some(to) => f.take(to.saturating_sub(from)).read_to_end(&mut out),
            None => f.read_to_end(&mut out),
        };
    }
    out
}

fn pod_of(state: &ServerState, ns: &str, name: &str) -> Option<Arc<Value>> {
    state.store.lock().get("pods", ns, name).cloned()
}

/// Answers `GET .../pods/{name}/log`.
pub fn pod_log(
    state: &Arc<ServerState>,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let pod = pod_of(state, ns, name).ok_or_else(|| ApiError::not_found("", "pods", name))?;
    if let Some(c) = query.get("container")
        && str_at(&pod, "/spec/containers/0/name") != Some(c.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if query.get("previous").is_some_and(|p| p == "true") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{}\" in pod \"{name}\" not found",
            str_at(&pod, "/spec/containers/0/name").unwrap_or("")
        )));
    }
    let opts = LogOptions::parse(query)?;
    let src = source(&pod, name)?;
    // Read the file before the end mark is known, then cut at the mark: the runner writes its
    // own closing line only after the mark is stored.
    let mut bytes = read(&src.path, src.start, None);
    let end = pod_of(state, ns, name)
        .and_then(|p| source(&p, name).ok())
        .and_then(|s| s.end)
        .or(src.end);
    if let Some(end) = end {
        bytes.truncate(usize::try_from(end.saturating_sub(src.start)).unwrap_or(usize::MAX));
    }
    let first = select(&bytes, &opts);
    let builder = Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/plain");
    if !opts.follow || end.is_some() {
        return builder
            .body(Full::new(Bytes::from(first)).boxed())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let state = state.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    let mut offset = src.start + bytes.len() as u64;
    let mut budget = opts.limit_bytes.map(|l| l.saturating_sub(first.len()));
    tokio::spawn(async move {
        if tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tx.closed() => return,
            }
            let mut more = read(&src.path, offset, None);
            let end = pod_of(&state, &ns, &name)
                .and_then(|p| source(&p, &name).ok())
                .map(|s| s.end);
            let Some(end) = end else {
                return; // the Pod is gone
            };
            if let Some(end) = end {
                more.truncate(usize::try_from(end.saturating_sub(offset)).unwrap_or(0));
            }
            offset += more.len() as u64;
            if let Some(b) = &mut budget {
                more.truncate(*b);
                *b -= more.len();
            }
            if !more.is_empty() && tx.send(Bytes::from(more)).await.is_err() {
                return;
            }
            if end.is_some() || budget == Some(0) {
                return;
            }
        }
    });
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |b| {
        Ok::<_, Infallible>(Frame::data(b))
    });
    builder
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_and_limit_bytes_select_as_the_kubelet_does() {
        let log = b"one\ntwo\nthree\n";
        let o = |tail, limit| LogOptions {
            tail_lines: tail,
            limit_bytes: limit,
            follow: false,
        };
        assert_eq!(select(log, &o(None, None)), log.to_vec());
        assert_eq!(select(log, &o(Some(2), None)), b"two\nthree\n".to_vec());
        assert_eq!(select(log, &o(Some(9), None)), log.to_vec());
        assert_eq!(select(log, &o(Some(0), None)), b"".to_vec());
        assert_eq!(select(b"a\nb", &o(Some(1), None)), b"b".to_vec());
        assert_eq!(select(log, &o(None, Some(5))), b"one\nt".to_vec());
    }
}
