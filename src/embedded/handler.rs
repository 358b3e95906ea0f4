//! HTTP requests in, Kubernetes API answers out: authentication, routing, body limits,
//! discovery, and the verbs (get, list, watch, create, update, patch, delete,
//! deletecollection) on the store.

use super::meta::{self, str_at};
use super::objects::{self, DeleteOpts, Deleted, Propagation, WriteCtx};
use super::patch::{self as patching, PatchError, WriteContext};
use super::resources::ResourceInfo;
use super::router::{ResourcePath, Route, parse_query, route};
use super::selector::{FieldSelector, LabelSelector};
use super::stats::StatsRecorder;
use super::status::ApiError;
use super::store::Store;
use super::{convert, discovery, merge_schema, openapi, table, watch};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
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
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
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

fn parse_json(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
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
        Route::Version => Some(discovery::version()),
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

struct Req<'a> {
    state: &'a Arc<ServerState>,
    /// The resource as stored.
    info: &'a ResourceInfo,
    /// The resource as the request's endpoint shows it (differs for events.k8s.io).
    view: &'a ResourceInfo,
    rp: &'a ResourcePath,
    query: &'a HashMap<String, String>,
    status: bool,
    ctx: WriteCtx<'a>,
}

/// The continue token: the list's resourceVersion and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

impl Req<'_> {
    fn ns(&self) -> &str {
        self.rp.namespace.as_deref().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.rp.name.as_deref().unwrap_or("")
    }

    fn converts(&self) -> bool {
        self.view.group == "events.k8s.io"
    }

    /// The object as this endpoint's version presents it.
    fn present(&self, obj: &Value) -> Value {
        let mut o = if self.converts() {
            convert::event_to_events_v1(obj)
        } else {
            obj.clone()
        };
        o["apiVersion"] = json!(self.view.api_version());
        o
    }

    /// A request body in this endpoint's version as the stored version.
    fn to_storage(&self, mut body: Value) -> Result<Value, ApiError> {
        if !self.converts() {
            return Ok(body);
        }
        objects::check_type(self.view, &mut body)?;
        Ok(convert::event_from_events_v1(&body))
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
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

    fn get(&self, accept: &str) -> Result<Response<Body>, ApiError> {
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

    fn list(&self, accept: &str) -> Result<Response<Body>, ApiError> {
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
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0usize;
        for o in inner.list(&self.info.storage_key(), self.rp.namespace.as_deref()) {
            if let Some(t) = &start {
                let k = super::store::obj_key(o);
                if (k.0.as_str(), k.1.as_str()) <= (t.ns.as_str(), t.name.as_str()) {
                    continue;
                }
            }
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
                remaining += 1;
                continue;
            }
            items.push(self.present(o));
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
            // As on the real server, only an unfiltered list counts what is left.
            let filtered = ["labelSelector", "fieldSelector"]
                .iter()
                .any(|k| self.query.get(*k).is_some_and(|v| !v.is_empty()));
            if !filtered {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json_response(
            200,
            &json!({
                "kind": format!("{}List", self.view.kind),
                "apiVersion": self.view.api_version(),
                "metadata": metadata,
                "items": items,
            }),
        ))
    }

    fn watch(&self, accept: &str) -> Result<Response<Body>, ApiError> {
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
        let req = watch::WatchRequest {
            table: table::wants_table(accept).then(|| {
                self.query
                    .get("includeObject")
                    .cloned()
                    .unwrap_or_else(|| "Metadata".into())
            }),
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

    fn create(&self, body: &[u8], content_type: &str) -> Result<Response<Body>, ApiError> {
        let obj = self.to_storage(parse_json(body, content_type)?)?;
        let mut inner = self.state.store.lock();
        let created = objects::create(
            &mut inner,
            self.info,
            self.rp.namespace.as_deref(),
            obj,
            self.ctx,
            true,
        )?;
        Ok(json_response(201, &self.present(&created)))
    }

    fn update(&self, body: &[u8], content_type: &str) -> Result<Response<Body>, ApiError> {
        let mut obj = self.to_storage(parse_json(body, content_type)?)?;
        let mut inner = self.state.store.lock();
        let key = self.info.storage_key();
        let old = inner
            .get(&key, self.ns(), self.name())
            .cloned()
            .ok_or_else(|| ApiError::not_found(&self.info.group, &self.info.plural, self.name()))?;
        objects::check_type(self.info, &mut obj)?;
        let rv = str_at(&obj, "/metadata/resourceVersion").unwrap_or("");
        if rv.is_empty() && self.info.is_custom() {
            return Err(ApiError::invalid(
                &self.info.group,
                &self.info.kind,
                self.name(),
                vec![super::status::Cause::new(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ));
        }
        let body_ns = str_at(&obj, "/metadata/namespace").unwrap_or("");
        if !body_ns.is_empty() && self.info.namespaced && body_ns != self.ns() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let updated = objects::commit_update(
            &mut inner,
            self.info,
            &old,
            obj,
            self.status,
            true,
            self.ctx,
        )?;
        Ok(json_response(200, &self.present(&updated)))
    }

    fn patch(&self, body: &[u8], content_type: &str) -> Result<Response<Body>, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        let key = self.info.storage_key();
        let group = self.info.group.as_str();
        let mut inner = self.state.store.lock();
        let old = inner.get(&key, self.ns(), self.name()).cloned();
        let schema = merge_schema::for_apply(self.info);
        let invalid = |e: PatchError| match e {
            PatchError::Invalid(m) => ApiError {
                code: 422,
                reason: "Invalid",
                message: m,
                details: None,
            },
            PatchError::Conflict(conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.field}))
                    .collect();
                let message = PatchError::Conflict(conflicts).to_string();
                ApiError {
                    code: 409,
                    reason: "Conflict",
                    message,
                    details: Some(
                        json!({"name": self.name(), "group": group, "kind": self.info.plural, "causes": causes}),
                    ),
                }
            }
        };
        let not_found = || ApiError::not_found(group, &self.info.plural, self.name());
        match media {
            "application/apply-patch+yaml" => {
                let applied: Value = serde_norway::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                if !applied.is_object() {
                    return Err(ApiError::bad_request(
                        "the apply patch must be a YAML or JSON object",
                    ));
                }
                if !self.query.contains_key("fieldManager") {
                    return Err(ApiError::invalid(
                        "meta.k8s.io",
                        "PatchOptions",
                        "",
                        vec![super::status::Cause::new(
                            "FieldValueRequired",
                            "fieldManager",
                            "Required value: is required for apply patch",
                        )],
                    ));
                }
                let force = self.query.get("force").is_some_and(|f| f == "true");
                let wctx = WriteContext {
                    manager: self.ctx.manager,
                    subresource: if self.status { Some("status") } else { None },
                    now: self.ctx.now,
                };
                let mut applied = applied;
                if !self.status
                    && self.info.status_subresource
                    && let Some(o) = applied.as_object_mut()
                {
                    // The main endpoint ignores status when the status subresource is on.
                    o.remove("status");
                }
                let mut probe = applied.clone();
                objects::check_type(self.view, &mut probe)?;
                let applied_name = meta::name(&applied);
                if !applied_name.is_empty() && applied_name != self.name() {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({})",
                        self.name()
                    )));
                }
                match old {
                    Some(old) => {
                        let live = self.present(&old);
                        let new = patching::server_side_apply(
                            Some(&live),
                            &applied,
                            force,
                            wctx,
                            &schema,
                        )
                        .map_err(invalid)?;
                        let new = self.to_storage(new)?;
                        let updated = objects::commit_update(
                            &mut inner,
                            self.info,
                            &old,
                            new,
                            self.status,
                            false,
                            self.ctx,
                        )?;
                        Ok(json_response(200, &self.present(&updated)))
                    }
                    None if self.status => Err(not_found()),
                    None => {
                        let mut new =
                            patching::server_side_apply(None, &applied, force, wctx, &schema)
                                .map_err(invalid)?;
                        new["metadata"]["name"] = json!(self.name());
                        let new = self.to_storage(new)?;
                        let created = objects::create(
                            &mut inner,
                            self.info,
                            self.rp.namespace.as_deref(),
                            new,
                            self.ctx,
                            false,
                        )?;
                        Ok(json_response(201, &self.present(&created)))
                    }
                }
            }
            "application/merge-patch+json"
            | "application/json-patch+json"
            | "application/strategic-merge-patch+json" => {
                let old = old.ok_or_else(not_found)?;
                let patch: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the patch is not valid JSON: {e}"))
                })?;
                let mut new = self.present(&old);
                match media {
                    "application/merge-patch+json" => {
                        if !patch.is_object() {
                            return Err(ApiError::bad_request(
                                "a JSON merge patch must be a JSON object",
                            ));
                        }
                        patching::json_merge_patch(&mut new, &patch)
                    }
                    "application/json-patch+json" => {
                        if serde_json::from_value::<json_patch::Patch>(patch.clone()).is_err() {
                            return Err(ApiError::bad_request(
                                "the patch is not a valid JSON patch: expected an array of operations with op and path",
                            ));
                        }
                        patching::json_patch(&mut new, &patch).map_err(invalid)?
                    }
                    _ => {
                        if self.info.is_custom() {
                            return Err(ApiError::unsupported_media_type(media));
                        }
                        if !patch.is_object() {
                            return Err(ApiError::bad_request(
                                "a strategic merge patch must be a JSON object",
                            ));
                        }
                        patching::strategic_merge_patch(
                            &mut new,
                            &patch,
                            &merge_schema::for_strategic(self.info),
                        )
                        .map_err(invalid)?
                    }
                }
                if !new.is_object() {
                    return Err(ApiError::bad_request(
                        "the patched object is not a JSON object",
                    ));
                }
                let new = self.to_storage(new)?;
                let updated = objects::commit_update(
                    &mut inner,
                    self.info,
                    &old,
                    new,
                    self.status,
                    true,
                    self.ctx,
                )?;
                Ok(json_response(200, &self.present(&updated)))
            }
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    fn delete_opts(&self, body: &[u8]) -> Result<DeleteOpts, ApiError> {
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("DeleteOptions is not valid JSON: {e}"))
            })?
        };
        let policy = self
            .query
            .get("propagationPolicy")
            .map(String::as_str)
            .or_else(|| options["propagationPolicy"].as_str());
        let orphan = self
            .query
            .get("orphanDependents")
            .map(|v| v == "true")
            .or_else(|| options["orphanDependents"].as_bool());
        let propagation = match (policy, orphan) {
            (Some("Background"), _) => Some(Propagation::Background),
            (Some("Foreground"), _) => Some(Propagation::Foreground),
            (Some("Orphan"), _) => Some(Propagation::Orphan),
            (Some(other), _) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {other:?} is not supported: use Background, Foreground or Orphan"
                )));
            }
            (None, Some(true)) => Some(Propagation::Orphan),
            (None, Some(false)) => Some(Propagation::Background),
            (None, None) => None,
        };
        let dry_run = self.ctx.dry_run
            || options["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d == "All"));
        Ok(DeleteOpts {
            propagation,
            uid: options["preconditions"]["uid"].as_str().map(String::from),
            resource_version: options["preconditions"]["resourceVersion"]
                .as_str()
                .map(String::from),
            dry_run,
        })
    }

    fn delete(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let opts = self.delete_opts(body)?;
        let mut inner = self.state.store.lock();
        let key = self.info.storage_key();
        let outcome = objects::delete(
            &mut inner,
            &key,
            self.ns(),
            self.name(),
            &opts,
            self.ctx.now,
        )?;
        drop(inner);
        Ok(match outcome {
            Deleted::Pending(o) => json_response(200, &self.present(&o)),
            // Custom resources and namespaces answer with the object; other built-ins with a
            // Success Status, as the real server's registries do.
            Deleted::Gone(o) if self.info.is_custom() || self.info.plural == "namespaces" => {
                json_response(200, &self.present(&o))
            }
            Deleted::Gone(o) => {
                let mut details = json!({"name": self.name(), "kind": self.info.plural, "uid": str_at(&o, "/metadata/uid")});
                if !self.info.group.is_empty() {
                    details["group"] = json!(self.info.group);
                }
                json_response(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
                )
            }
        })
    }

    fn delete_collection(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let (labels, fields) = self.selectors()?;
        let opts = self.delete_opts(body)?;
        let mut inner = self.state.store.lock();
        let key = self.info.storage_key();
        let targets: Vec<(String, String)> = inner
            .list(&key, self.rp.namespace.as_deref())
            .filter(|o| labels.matches(o) && fields.matches(o))
            .map(|o| super::store::obj_key(o))
            .collect();
        let mut items = Vec::new();
        for (ns, name) in targets {
            let outcome = objects::delete(&mut inner, &key, &ns, &name, &opts, self.ctx.now)?;
            let (Deleted::Gone(o) | Deleted::Pending(o)) = outcome;
            items.push(self.present(&o));
        }
        let rv = inner.rv().to_string();
        drop(inner);
        Ok(json_response(
            200,
            &json!({
                "kind": format!("{}List", self.view.kind),
                "apiVersion": self.view.api_version(),
                "metadata": {"resourceVersion": rv},
                "items": items,
            }),
        ))
    }
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
