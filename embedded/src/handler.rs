//! HTTP requests in, Kubernetes API answers out: authentication, routing, body limits,
//! discovery, and the verbs (get, list, watch, create, update, patch, delete,
//! deletecollection) on the store.

use super::meta;
use super::objects::{self, WriteCtx};
use super::resources::ResourceInfo;
use super::router::{ResourcePath, Route, parse_query, route};
use super::selector::{FieldSelector, LabelSelector};
use super::stats::StatsRecorder;
use super::status::ApiError;
use super::store::Store;
use super::{convert, discovery, openapi};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub type Body = BoxBody<Bytes, Infallible>;

/// The real server's request body limit: 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Everything a request handler needs.
pub struct ServerState {
    pub store: Arc<Store>,
    pub stats: StatsRecorder,
    pub token: String,
    pub address: String,
    pub bookmark_interval: Duration,
    pub kubernetes_version: super::server::KubernetesVersion,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(super) fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

fn authorized(state: &ServerState, headers: &HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim().as_bytes().ct_eq(state.token.as_bytes()).into())
}

/// Reads the whole body, or fails with 413 past the limit (after draining what was sent, so
/// the client reads the answer instead of a reset connection).
async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = Vec::new();
    let mut too_large = false;
    let mut drained = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if too_large {
                drained += data.len();
                if drained > 16 * MAX_BODY_BYTES {
                    break;
                }
            } else if buf.len() + data.len() > MAX_BODY_BYTES {
                too_large = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(&data);
            }
        }
    }
    if too_large {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(Bytes::from(buf))
}

pub(super) fn parse_json(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    // kubectl's create generators send protobuf; CBOR is not served.
    if media == super::protobuf::CONTENT_TYPE {
        return super::protobuf::decode(bytes).map_err(|e| match e {
            super::protobuf::ProtobufError::UnsupportedKind(_) => {
                ApiError::unsupported_media_type_message(e.to_string())
            }
            super::protobuf::ProtobufError::Malformed(_) => ApiError::bad_request(e.to_string()),
        });
    }
    if !(media.is_empty() || media.ends_with("json") || media.ends_with("yaml")) {
        return Err(ApiError::unsupported_media_type(media));
    }
    if content_type.contains("yaml") {
        return serde_norway::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON: {e} (send a JSON object)"
        ))
    })
}

pub async fn handle(state: Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    if !authorized(&state, req.headers()) {
        return error_response(&ApiError::unauthorized());
    }
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    match route(&path) {
        Route::Resource(rp) => match resource_request(&state, rp, query, req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
        other => {
            state.stats.record("discovery", None);
            discovery_response(&state, other)
        }
    }
}

fn discovery_response(state: &ServerState, r: Route) -> Response<Body> {
    let inner = state.store.lock();
    let reg = &inner.registry;
    let doc = match r {
        Route::Version => Some(discovery::version(state.kubernetes_version)),
        Route::Health => {
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(full("ok"))
                .unwrap_or_else(|_| Response::new(full("")));
        }
        Route::CoreVersions => Some(discovery::core_versions(&state.address)),
        Route::Groups => Some(discovery::groups(reg)),
        Route::Group(g) => discovery::group(reg, &g),
        Route::Resources { group, version } => discovery::resources(reg, &group, &version),
        Route::OpenApiV3 => Some(openapi::v3_index(reg)),
        Route::OpenApiV3Group { group, version } => openapi::v3_group(reg, &group, &version),
        // The v2 document is protobuf for kubectl; without it kubectl uses v3.
        Route::OpenApiV2 | Route::NotFound | Route::Resource(_) => None,
    };
    match doc {
        Some(d) => json_response(200, &d),
        None => error_response(&ApiError::no_such_path()),
    }
}

/// The verb a request is, as Kubernetes names it.
fn verb(
    method: &Method,
    rp: &ResourcePath,
    query: &HashMap<String, String>,
) -> Result<&'static str, ApiError> {
    let watch = query.get("watch").is_some_and(|w| w == "1" || w == "true");
    Ok(match (method.as_str(), rp.name.is_some()) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            )));
        }
    })
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn resource_request(
    state: &Arc<ServerState>,
    rp: ResourcePath,
    query: HashMap<String, String>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (view, info) = {
        let inner = state.store.lock();
        let view = inner
            .registry
            .lookup(&rp.group, &rp.version, &rp.plural)
            .ok_or_else(ApiError::no_such_path)?;
        // events.k8s.io/v1 Events are stored as core/v1 Events, as on the real server.
        let storage = if view.group == "events.k8s.io" {
            inner.registry.lookup("", "v1", "events")
        } else {
            None
        };
        (view.clone(), storage.unwrap_or(view))
    };
    if rp.subresource.as_deref() == Some("log") && info.storage_key() == "pods" {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource (pods/log)",
            ));
        }
        state.stats.record("get", Some("pods/log"));
        return super::logs::pod_log(
            state,
            rp.namespace.as_deref().unwrap_or(""),
            rp.name.as_deref().unwrap_or(""),
            &query,
        );
    }
    let status = match rp.subresource.as_deref() {
        None => false,
        Some("status") if info.status_subresource => true,
        Some(_) => return Err(ApiError::no_such_path()),
    };
    if rp.namespace.is_some() && !info.namespaced {
        return Err(ApiError::no_such_path());
    }
    let verb = verb(req.method(), &rp, &query)?;
    let label = if status {
        format!("{}/status", view.storage_key())
    } else {
        view.storage_key()
    };
    state.stats.record(verb, Some(&label));
    if status && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({verb} on {label})"
        )));
    }
    let accept = header_str(&req, header::ACCEPT).to_string();
    let content_type = header_str(&req, header::CONTENT_TYPE).to_string();
    let user_agent = header_str(&req, header::USER_AGENT).to_string();
    let body = if matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) {
        read_body(req.into_body()).await?
    } else {
        Bytes::new()
    };
    let now = meta::now();
    let default_manager = user_agent.split('/').next().unwrap_or("").to_string();
    let manager = query
        .get("fieldManager")
        .cloned()
        .unwrap_or(if default_manager.is_empty() {
            "unknown".into()
        } else {
            default_manager
        });
    let ctx = WriteCtx {
        manager: &manager,
        now: &now,
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
    };
    let r = Req {
        state,
        info: &info,
        view: &view,
        rp: &rp,
        query: &query,
        status,
        ctx,
    };
    match verb {
        "get" => r.get(&accept),
        "list" => r.list(&accept),
        "watch" => r.watch(&accept),
        "create" => r.create(&body, &content_type),
        "update" => r.update(&body, &content_type),
        "patch" => r.patch(&body, &content_type),
        "delete" => r.delete(&body),
        _ => r.delete_collection(&body),
    }
}

pub(super) struct Req<'a> {
    pub(super) state: &'a Arc<ServerState>,
    /// The resource as stored.
    pub(super) info: &'a ResourceInfo,
    /// The resource as the request's endpoint shows it (differs for events.k8s.io).
    pub(super) view: &'a ResourceInfo,
    pub(super) rp: &'a ResourcePath,
    pub(super) query: &'a HashMap<String, String>,
    pub(super) status: bool,
    pub(super) ctx: WriteCtx<'a>,
}

impl Req<'_> {
    pub(super) fn ns(&self) -> &str {
        self.rp.namespace.as_deref().unwrap_or("")
    }

    pub(super) fn name(&self) -> &str {
        self.rp.name.as_deref().unwrap_or("")
    }

    pub(super) fn converts(&self) -> bool {
        self.view.group == "events.k8s.io"
    }

    /// The object as this endpoint's version presents it.
    pub(super) fn present(&self, obj: &Value) -> Value {
        let mut o = if self.converts() {
            convert::event_to_events_v1(obj)
        } else {
            obj.clone()
        };
        o["apiVersion"] = json!(self.view.api_version());
        o
    }

    /// A request body in this endpoint's version as the stored version.
    pub(super) fn to_storage(&self, mut body: Value) -> Result<Value, ApiError> {
        if !self.converts() {
            return Ok(body);
        }
        objects::check_type(self.view, &mut body)?;
        Ok(convert::event_from_events_v1(&body))
    }

    pub(super) fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels =
            LabelSelector::parse(self.query.get("labelSelector").map_or("", String::as_str))
                .map_err(ApiError::bad_request)?;
        let mut raw_fields = self.query.get("fieldSelector").cloned().unwrap_or_default();
        if self.converts() {
            raw_fields = raw_fields
                .split(',')
                .map(|req| {
                    let cut = req.find(['=', '!']).unwrap_or(req.len());
                    format!(
                        "{}{}",
                        convert::events_v1_field_to_core(req[..cut].trim()),
                        &req[cut..]
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
        }
        let fields =
            FieldSelector::parse(&raw_fields, &self.info.plural).map_err(ApiError::bad_request)?;
        Ok((labels, fields))
    }
}
