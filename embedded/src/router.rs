//! Request paths in, the route they name out (discovery document or resource request). Pure.

/// A request for objects of one resource, before the resource is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Version,
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    Resources {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3,
    /// `/openapi/v3/apis/{group}/{version}` or `/openapi/v3/api/v1`
    OpenApiV3Group {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    NotFound,
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// `rest` is everything after `/api/v1` or `/apis/{g}/{v}`.
fn resource_path(group: &str, version: &str, rest: &[&str]) -> Route {
    let owned = |s: &str| s.to_string();
    let mut rp = ResourcePath {
        group: owned(group),
        version: owned(version),
        namespace: None,
        plural: String::new(),
        name: None,
        subresource: None,
    };
    // `namespaces/{ns}` followed by more segments scopes a namespaced resource; on its own
    // (or with `status`/`finalize`) it is the namespace object itself.
    let rest = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            rp.namespace = Some(owned(ns));
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    match rest.as_slice() {
        [plural] => rp.plural = owned(plural),
        [plural, name] => {
            rp.plural = owned(plural);
            rp.name = Some(owned(name));
        }
        [plural, name, sub] => {
            rp.plural = owned(plural);
            rp.name = Some(owned(name));
            rp.subresource = Some(owned(sub));
        }
        _ => return Route::NotFound,
    }
    Route::Resource(rp)
}

pub fn route(path: &str) -> Route {
    let segs = segments(path);
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["livez"] | ["readyz"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", "v1"] => Route::Resources {
            group: String::new(),
            version: "v1".into(),
        },
        ["apis", group, version] => Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3,
        ["openapi", "v3", "api", "v1"] => Route::OpenApiV3Group {
            group: String::new(),
            version: "v1".into(),
        },
        ["openapi", "v3", "apis", group, version] => Route::OpenApiV3Group {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", "v1", rest @ ..] => resource_path("", "v1", rest),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        _ => Route::NotFound,
    }
}

/// Percent-decodes a query component (`+` is a space).
pub fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, decoded; a repeated key keeps its last value.
pub fn parse_query(query: Option<&str>) -> std::collections::HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        g: &str,
        ns: Option<&str>,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Route {
        Route::Resource(ResourcePath {
            group: g.into(),
            version: "v1".into(),
            namespace: ns.map(String::from),
            plural: plural.into(),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        })
    }

    #[test]
    fn routes() {
        let cases = [
            ("/version", Route::Version),
            ("/api", Route::CoreVersions),
            ("/apis", Route::Groups),
            (
                "/api/v1",
                Route::Resources {
                    group: "".into(),
                    version: "v1".into(),
                },
            ),
            (
                "/apis/batch/v1",
                Route::Resources {
                    group: "batch".into(),
                    version: "v1".into(),
                },
            ),
            (
                "/api/v1/namespaces",
                res("", None, "namespaces", None, None),
            ),
            (
                "/api/v1/namespaces/a",
                res("", None, "namespaces", Some("a"), None),
            ),
            (
                "/api/v1/namespaces/a/status",
                res("", None, "namespaces", Some("a"), Some("status")),
            ),
            (
                "/api/v1/namespaces/a/configmaps",
                res("", Some("a"), "configmaps", None, None),
            ),
            (
                "/api/v1/namespaces/a/configmaps/c",
                res("", Some("a"), "configmaps", Some("c"), None),
            ),
            (
                "/api/v1/configmaps",
                res("", None, "configmaps", None, None),
            ),
            (
                "/apis/orchestrator.io/v1/namespaces/n/taskruns/t/status",
                res(
                    "orchestrator.io",
                    Some("n"),
                    "taskruns",
                    Some("t"),
                    Some("status"),
                ),
            ),
            (
                "/apis/batch/v1/jobs",
                res("batch", None, "jobs", None, None),
            ),
            ("/nope", Route::NotFound),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("labelSelector=app%20in%20(a%2Cb)&watch=1&x=a+b"));
        assert_eq!(q["labelSelector"], "app in (a,b)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["x"], "a b");
    }
}
