//! deploy/ as `kubectl kustomize` renders it, and the pieces a kubelet would make of it: the
//! rendered documents in; the orchestrator container's arguments and environment (filled from
//! the rendered Secret and downward-API test values, `$(VAR)` expanded), the objects applied to
//! a cluster, and a bare task repository holding the example tasks out.
//!
//! Use it with `mod deploy_support;`.
#![allow(dead_code)]

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize deploy`; `None` (with a printed reason) when kubectl is not installed.
pub fn render_deploy() -> Option<Vec<Value>> {
    let out = Command::new("kubectl")
        .args(["kustomize", "deploy"])
        .current_dir(root())
        .output();
    match out {
        Ok(out) if out.status.success() => Some(documents(&String::from_utf8(out.stdout).unwrap())),
        Ok(out) => panic!(
            "kubectl kustomize deploy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("skipping: kubectl is not available ({e})");
            None
        }
    }
}

/// The one rendered object of `kind` (and `name`, when given).
pub fn find<'a>(docs: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n))
        .unwrap_or_else(|| panic!("the rendered deploy/ has no {kind} {name:?}"))
}

/// The rendered objects moved to `namespace`, as `namespace:` in a kustomization would move
/// them: the Namespace object, every namespaced object and the RoleBindings' subjects.
pub fn in_namespace(docs: &[Value], namespace: &str) -> Vec<Value> {
    docs.iter()
        .cloned()
        .map(|mut doc| {
            if doc["kind"] == "Namespace" {
                doc["metadata"]["name"] = namespace.into();
            } else if doc["metadata"].get("namespace").is_some() {
                doc["metadata"]["namespace"] = namespace.into();
            }
            if let Some(subjects) = doc["subjects"].as_array_mut() {
                for s in subjects {
                    s["namespace"] = namespace.into();
                }
            }
            doc
        })
        .collect()
}

/// A Secret's values by key, from `stringData` and (base64) `data`.
pub fn secret_values(secret: &Value) -> BTreeMap<String, String> {
    use base64::Engine;
    let mut out = BTreeMap::new();
    if let Some(data) = secret["data"].as_object() {
        for (k, v) in data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .unwrap();
            out.insert(k.clone(), String::from_utf8(bytes).unwrap());
        }
    }
    if let Some(data) = secret["stringData"].as_object() {
        for (k, v) in data {
            out.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    out
}

/// The container's environment as the kubelet fills it: literal values, `secretKeyRef` from
/// the rendered Secrets (an optional missing key leaves the variable unset, a required one
/// fails the container), `fieldRef` from `fields`.
pub fn container_env(
    container: &Value,
    docs: &[Value],
    fields: &BTreeMap<&str, String>,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_string();
        if let Some(value) = var["value"].as_str() {
            env.push((name, expand(value, &env)));
            continue;
        }
        let from = &var["valueFrom"];
        if let Some(field) = from["fieldRef"]["fieldPath"].as_str() {
            let value = fields
                .get(field)
                .unwrap_or_else(|| panic!("no test value for the downward API field {field}"));
            env.push((name, value.clone()));
        } else if let Some(key_ref) = from["secretKeyRef"].as_object() {
            let secret_name = key_ref["name"].as_str().unwrap();
            let key = key_ref["key"].as_str().unwrap();
            let optional = key_ref.get("optional").and_then(Value::as_bool) == Some(true);
            let secret = docs
                .iter()
                .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret_name);
            match secret.and_then(|s| secret_values(s).get(key).cloned()) {
                Some(value) => env.push((name, value)),
                None if optional => {}
                None => panic!(
                    "{name}: the kubelet would not start the container: Secret {secret_name} \
                     key {key} is missing and not optional"
                ),
            }
        } else {
            panic!("{name}: a valueFrom this test does not fill: {from}");
        }
    }
    env
}

/// The kubelet's `$(VAR)` expansion of an argument: a defined variable is replaced, `$$` is a
/// literal `$`, anything else stays as written.
pub fn expand(raw: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some((_, value)) = env.iter().rev().find(|(n, _)| n == &inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Server-side applies each document (field manager `kubectl`, as `kubectl apply
/// --server-side` would), in order; waits for a CRD to be Established before going on.
pub async fn apply_all(client: &kube::Client, docs: &[Value]) {
    for doc in docs {
        let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                doc["apiVersion"].as_str().unwrap().to_string(),
            ),
        };
        let kind = doc["kind"].as_str().unwrap();
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let (resource, caps) = pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("the cluster does not serve {kind}: {e}"));
        let name = doc["metadata"]["name"].as_str().unwrap();
        let api: kube::Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
            Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
                kube::Api::namespaced_with(client.clone(), ns, &resource)
            }
            _ => kube::Api::all_with(client.clone(), &resource),
        };
        api.patch(
            name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(doc),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
        if kind == "CustomResourceDefinition" {
            let crds: kube::Api<
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            > = kube::Api::all(client.clone());
            let established = kube::runtime::wait::await_condition(
                crds,
                name,
                kube::runtime::conditions::is_crd_established(),
            );
            tokio::time::timeout(std::time::Duration::from_secs(30), established)
                .await
                .expect("the CRD is Established within 30 s")
                .unwrap();
        }
    }
}

/// A bare repository (branch main) whose `tasks/` holds example-repo/: the repository the
/// Deployment's `--path=tasks` expects. Returns its path.
pub fn example_tasks_repo(dir: &Path) -> PathBuf {
    let bare = dir.join("tasks.git");
    let work = dir.join("work");
    let mut init = git2::RepositoryInitOptions::new();
    init.bare(true).initial_head("main");
    git2::Repository::init_opts(&bare, &init).unwrap();
    let repo = git2::Repository::init_opts(
        &work,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .unwrap();
    copy_dir(&root().join("example-repo"), &work.join("tasks"));
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@example.com").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "example tasks", &tree, &[])
        .unwrap();
    repo.remote("origin", &bare.display().to_string())
        .unwrap()
        .push(&["+refs/heads/main:refs/heads/main"], None)
        .unwrap();
    bare
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The task ids of example-repo/ (its `<id>-<slug>` folders).
pub fn example_task_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root().join("example-repo"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path().is_dir().then(|| {
                let name = e.file_name().to_string_lossy().to_string();
                name.split('-').next().unwrap().to_string()
            })
        })
        .collect();
    ids.sort();
    ids
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of a plain HTTP GET on loopback, or None when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_expansion() {
        let env = vec![("A".to_string(), "x".to_string())];
        for (raw, want) in [
            ("--n=$(A)", "--n=x"),
            ("$(B)", "$(B)"),
            ("$$(A)", "$(A)"),
            ("a$b", "a$b"),
            ("$(A", "$(A"),
        ] {
            assert_eq!(expand(raw, &env), want, "{raw}");
        }
    }
}
