//! The read verbs of a resource request: get, list (with pagination and Tables) and watch.

use super::handler::{Body, Req, json_response};
use super::meta::str_at;
use super::selector::FieldSelector;
use super::status::ApiError;
use super::{convert, table, watch};
use base64::Engine;
use http::{Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The continue token: the list's resourceVersion and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

fn encode_continue(t: &ContinueToken) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid continue token {s:?}: pass the token a previous list returned"
            ))
        })
}

impl Req<'_> {
    pub(super) fn get(&self, accept: &str) -> Result<Response<Body>, ApiError> {
        let inner = self.state.store.lock();
        let obj = inner
            .get(&self.info.storage_key(), self.ns(), self.name())
            .ok_or_else(|| ApiError::not_found(&self.info.group, &self.info.plural, self.name()))?;
        let obj = self.present(obj);
        drop(inner);
        if table::wants_table(accept) {
            let rv = str_at(&obj, "/metadata/resourceVersion")
                .unwrap_or("")
                .to_string();
            return Ok(json_response(200, &self.table(&[obj], &rv, None)));
        }
        Ok(json_response(200, &obj))
    }

    fn table(&self, objects: &[Value], rv: &str, cont: Option<&str>) -> Value {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let include = self
            .query
            .get("includeObject")
            .map_or("Metadata", String::as_str);
        table::table(self.view, objects, rv, cont, include, now)
    }

    pub(super) fn list(&self, accept: &str) -> Result<Response<Body>, ApiError> {
        let (labels, fields) = self.selectors()?;
        let limit: usize = match self.query.get("limit") {
            Some(l) if !l.is_empty() => l.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid limit {l:?}: must be a non-negative integer"
                ))
            })?,
            _ => 0,
        };
        let start = match self.query.get("continue").filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(decode_continue(c)?),
        };
        let inner = self.state.store.lock();
        let list_rv = match &start {
            Some(t) => {
                if t.rv < inner.compacted() {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ));
                }
                t.rv
            }
            None => inner.rv(),
        };
        let metadata_only = table::wants_partial_metadata(accept);
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0usize;
        // As on the real server, only an unfiltered list counts what is left.
        let filtered = ["labelSelector", "fieldSelector"]
            .iter()
            .any(|k| self.query.get(*k).is_some_and(|v| !v.is_empty()));
        let after = start.as_ref().map(|t| (t.ns.clone(), t.name.clone()));
        let objects = inner.list_after(
            &self.info.storage_key(),
            self.rp.namespace.as_deref(),
            after.as_ref(),
        );
        for o in objects {
            if !(labels.matches(o) && fields.matches(o)) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                if next.is_none() {
                    let (ns, name) = items.last().map(super::store::obj_key).unwrap_or_default();
                    next = Some(encode_continue(&ContinueToken {
                        rv: list_rv,
                        ns,
                        name,
                    }));
                }
                if filtered {
                    // Nothing more to know of the rest: a filtered list does not count it.
                    break;
                }
                remaining += 1;
                continue;
            }
            items.push(if metadata_only {
                table::partial_metadata(o)
            } else {
                self.present(o)
            });
        }
        drop(inner);
        let rv = list_rv.to_string();
        if table::wants_table(accept) {
            return Ok(json_response(
                200,
                &self.table(&items, &rv, next.as_deref()),
            ));
        }
        let mut metadata = json!({"resourceVersion": rv});
        if let Some(n) = &next {
            metadata["continue"] = json!(n);
            if !filtered {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        let (kind, api_version) = if metadata_only {
            (
                "PartialObjectMetadataList".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (format!("{}List", self.view.kind), self.view.api_version())
        };
        Ok(json_response(
            200,
            &json!({
                "kind": kind,
                "apiVersion": api_version,
                "metadata": metadata,
                "items": items,
            }),
        ))
    }

    pub(super) fn watch(&self, accept: &str) -> Result<Response<Body>, ApiError> {
        let (labels, fields) = self.selectors()?;
        let mut fields = fields;
        if let Some(name) = &self.rp.name {
            // GET .../name?watch=1 is a watch with a name field selector.
            fields = FieldSelector::parse(&format!("metadata.name={name}"), &self.info.plural)
                .map_err(ApiError::bad_request)?;
        }
        let rv = match self.query.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {s:?}: must be an integer"))
            })?),
        };
        let flag = |k: &str| self.query.get(k).is_some_and(|v| v == "true" || v == "1");
        let timeout = self
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(Duration::from_secs(1800), Duration::from_secs);
        let send_initial = flag("sendInitialEvents");
        if send_initial && !self.state.kubernetes_version.serves_watch_list() {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![super::status::Cause::new(
                    "FieldValueForbidden",
                    "sendInitialEvents",
                    "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                )],
            ));
        }
        let req = watch::WatchRequest {
            table: table::wants_table(accept).then(|| {
                self.query
                    .get("includeObject")
                    .cloned()
                    .unwrap_or_else(|| "Metadata".into())
            }),
            metadata_only: table::wants_partial_metadata(accept),
            info: Arc::new(self.view.clone()),
            key: self.info.storage_key(),
            convert: if self.converts() {
                Some(convert::event_to_events_v1)
            } else {
                None
            },
            namespace: self.rp.namespace.clone(),
            resource_version: if send_initial { None } else { rv },
            labels,
            fields,
            bookmarks: flag("allowWatchBookmarks"),
            send_initial_events: send_initial,
            timeout,
            bookmark_interval: self.state.bookmark_interval,
        };
        let rx = watch::start(self.state.store.clone(), req);
        let stream =
            futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |b| {
                Ok::<_, Infallible>(Frame::data(b))
            });
        Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}
