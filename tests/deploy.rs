//! deploy/ as a user applies it: every manifest parses into its k8s-openapi type with no unknown
//! field, RBAC grants exactly what the code declares, the probes hit served paths, and the CRD is
//! the generated one.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every YAML document under `dir`, with the file it came from; kustomizations excluded.
fn manifests(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // agents.yaml is agent-profile config that kustomize wraps into a ConfigMap.
            if !name.ends_with(".yaml") || name == "kustomization.yaml" || name == "agents.yaml" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(documents(&text).into_iter().map(|doc| (path.clone(), doc)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

/// Fields present in `original` that the typed round trip dropped: fields the type doesn't know.
fn unknown_fields(original: &Value, round_trip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => unknown_fields(value, other, &here, out),
                    // An explicit empty value that serializes away is not an unknown field.
                    None if is_empty(value) => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn check_typed<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(doc, &back, "", &mut unknown);
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("unknown fields {unknown:?}"))
    }
}

fn check_document(doc: &Value) -> Result<(), String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    match kind {
        "Namespace" => check_typed::<Namespace>(doc),
        "ServiceAccount" => check_typed::<ServiceAccount>(doc),
        "Secret" => check_typed::<Secret>(doc),
        "ConfigMap" => check_typed::<ConfigMap>(doc),
        "Service" => check_typed::<Service>(doc),
        "Deployment" => check_typed::<Deployment>(doc),
        "Role" => check_typed::<Role>(doc),
        "RoleBinding" => check_typed::<RoleBinding>(doc),
        "ClusterRole" => check_typed::<ClusterRole>(doc),
        "ClusterRoleBinding" => check_typed::<ClusterRoleBinding>(doc),
        "CustomResourceDefinition" => check_typed::<CustomResourceDefinition>(doc),
        // Not a k8s-openapi type (Prometheus Operator CRD): only its shape is checked.
        "ServiceMonitor" => match doc["spec"]["endpoints"].as_array() {
            Some(endpoints) if !endpoints.is_empty() => Ok(()),
            _ => Err("ServiceMonitor without endpoints".into()),
        },
        other => Err(format!(
            "kind {other:?} has no check: add it to tests/deploy.rs"
        )),
    }
}

#[test]
fn every_manifest_parses_with_no_unknown_field() {
    let docs = manifests(&root().join("deploy"));
    assert!(
        docs.len() >= 8,
        "deploy/ holds too few manifests: {}",
        docs.len()
    );
    let failures: Vec<String> = docs
        .iter()
        .filter_map(|(path, doc)| {
            check_document(doc)
                .err()
                .map(|e| format!("{}: {}: {e}", path.display(), doc["kind"]))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn injected_unknown_field_is_caught() {
    let mut doc: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80, "targetPortt": 8080}]}
    });
    let err = check_document(&doc).unwrap_err();
    assert!(err.contains(".spec.ports[0].targetPortt"), "{err}");
    doc["spec"]["ports"][0] = serde_json::json!({"port": 80});
    check_document(&doc).unwrap();
}

fn kustomize_build() -> Option<Vec<Value>> {
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

#[test]
fn kustomization_builds_and_every_object_parses() {
    let Some(docs) = kustomize_build() else {
        return;
    };
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for wanted in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Secret",
        "ConfigMap",
        "Deployment",
        "Service",
    ] {
        assert!(
            kinds.contains(&wanted),
            "kustomize output lacks a {wanted}: {kinds:?}"
        );
    }
    for doc in &docs {
        check_document(doc).unwrap_or_else(|e| panic!("{}: {e}", doc["kind"]));
        let cluster_scoped = [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        if !cluster_scoped.contains(&doc["kind"].as_str().unwrap_or_default()) {
            assert_eq!(
                doc["metadata"]["namespace"], "orchestrator",
                "{}",
                doc["kind"]
            );
        }
    }
    // The agent profiles ConfigMap is mounted under the name kustomize generated.
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == cm["metadata"]["name"]),
        "the Deployment does not mount the generated agents ConfigMap"
    );
}

#[test]
fn crd_in_deploy_is_the_generated_one() {
    let kustomization = std::fs::read_to_string(root().join("deploy/kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("- ../crds"),
        "deploy/ must include ../crds"
    );
    let crds = std::fs::read_to_string(root().join("crds/kustomization.yaml")).unwrap();
    assert!(crds.contains("- taskrun.yaml"));
    let on_disk = std::fs::read_to_string(root().join("crds/taskrun.yaml")).unwrap();
    assert_eq!(on_disk, orchestrator::crd::task_run_crd_yaml());
}

fn deployment() -> Deployment {
    let docs = manifests(&root().join("deploy"));
    let doc = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Deployment")
        .map(|(_, d)| d.clone())
        .expect("deploy/ has a Deployment");
    serde_json::from_value(doc).unwrap()
}

#[test]
fn deployment_runs_locked_down() {
    let deployment = deployment();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("orchestrator"));
    assert!(pod.termination_grace_period_seconds.unwrap_or(30) >= 30);
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let resources = container.resources.clone().unwrap();
    assert!(resources.requests.is_some() && resources.limits.is_some());
    let liveness = container.liveness_probe.clone().unwrap().http_get.unwrap();
    let readiness = container.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
}

#[test]
fn agent_profiles_in_deploy_and_example_repo_load() {
    for file in ["deploy/agents.yaml", "example-repo/agents.yaml"] {
        let profiles = orchestrator::controller::agents::AgentProfiles::load(&root().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!profiles.names().is_empty(), "{file} defines no agent");
    }
}

fn container_args() -> Vec<String> {
    deployment().spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap_or_default()
}

#[test]
fn rbac_grants_exactly_what_the_code_calls() {
    use orchestrator::rbac::{Rules, crd_install_access, required_access, required_rules};
    let docs = manifests(&root().join("deploy"));
    let granted_by = |kind: &str| {
        let mut granted = Rules::new();
        for (_, doc) in docs.iter().filter(|(_, d)| d["kind"] == kind) {
            let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
                serde_json::from_value(doc["rules"].clone()).unwrap();
            for rule in rules {
                for group in rule.api_groups.clone().unwrap_or_default() {
                    for resource in rule.resources.clone().unwrap_or_default() {
                        let verbs = granted.entry((group.clone(), resource)).or_default();
                        verbs.extend(rule.verbs.iter().cloned());
                    }
                }
            }
        }
        granted
    };
    let (namespaced, cluster) = required_rules(&required_access());
    assert_eq!(
        granted_by("Role"),
        namespaced,
        "deploy/rbac.yaml must grant exactly the API calls declared next to the code (src/rbac.rs)"
    );
    assert_eq!(
        granted_by("ClusterRole"),
        cluster,
        "deploy/rbac.yaml's ClusterRole must grant exactly the cluster-scoped calls (the CRD check)"
    );
    // The one cluster-wide right is read-only and limited to the TaskRun CRD.
    for (_, doc) in docs.iter().filter(|(_, d)| d["kind"] == "ClusterRole") {
        for rule in doc["rules"].as_array().unwrap() {
            assert_eq!(rule["verbs"], serde_json::json!(["get"]), "{rule}");
            assert_eq!(
                rule["resourceNames"],
                serde_json::json!([orchestrator::crd::task_run_crd().metadata.name.unwrap()]),
                "{rule}"
            );
        }
    }
    // The CRD install is the one cluster-scoped call; the Deployment must skip it.
    let (_, crd_rules) = required_rules(&crd_install_access());
    assert!(!crd_rules.is_empty());
    let args = container_args();
    assert!(args.iter().any(|a| a == "--skip-crd-install"), "{args:?}");
    assert!(args.iter().any(|a| a == "--leader-elect"), "{args:?}");
}

#[test]
fn probes_point_at_served_paths() {
    let document = orchestrator::api::openapi_document();
    let served: Vec<&String> = document.paths.paths.keys().collect();
    let pod = deployment().spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    for probe in [&container.liveness_probe, &container.readiness_probe] {
        let path = probe.clone().unwrap().http_get.unwrap().path.unwrap();
        assert!(
            served.iter().any(|p| **p == path),
            "{path} is not served: {served:?}"
        );
        let port = probe.clone().unwrap().http_get.unwrap().port;
        let named = container.ports.iter().flatten().any(|p| {
            port == k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                p.name.clone().unwrap_or_default(),
            )
        });
        assert!(
            named,
            "the probe port {port:?} is not a named container port"
        );
    }
}

#[test]
fn deployment_args_are_flags_orchestrator_run_accepts() {
    let args = container_args();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    // clap rejects an unknown flag before it reaches --help, so this parses every argument.
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "orchestrator {args:?} is rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bogus = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["run", "--no-such-flag", "--help"])
        .output()
        .unwrap();
    assert!(!bogus.status.success(), "the check must be able to fail");
}
