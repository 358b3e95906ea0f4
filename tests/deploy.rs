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
    // The agent profiles ConfigMap is watched under the name kustomize generated (no hash
    // suffix: an edit needs no rollout).
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let wanted = format!(
        "--agents-configmap={}",
        cm["metadata"]["name"].as_str().unwrap()
    );
    assert!(
        args.iter().any(|a| a.as_str() == Some(wanted.as_str())),
        "the Deployment does not read the generated agents ConfigMap: {args:?}"
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

// ---- What the agent profiles need, and who creates it --------------------------------------

mod docs_support;

use orchestrator::controller::agents::AgentProfiles;
use std::collections::BTreeSet;

/// The two ways deploy/ is installed: as it is, and with the agent-namespace component on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Install {
    Base,
    AgentNamespace,
}

/// The lines of deploy/kustomization.yaml that the docs tell you to uncomment for the
/// agent-namespace component.
const COMPONENT_LINES: [(&str, &str); 2] = [
    ("# components:", "components:"),
    (
        "#   - overlays/agent-namespace",
        "  - overlays/agent-namespace",
    ),
];

/// What the install steps tell the user to create outside Git, per install; docs/agent-image.md
/// shows these commands (checked below) and this test runs each with `--dry-run=client -o yaml`
/// to learn the objects it creates.
const INSTALL_STEPS: &[(Install, &str)] = &[
    (
        Install::Base,
        r#"kubectl -n orchestrator create secret generic agent-credentials --from-literal=anthropic-api-key="$ANTHROPIC_API_KEY" --from-literal=openai-api-key="$OPENAI_API_KEY" --from-literal=git-token="$AGENT_GIT_TOKEN""#,
    ),
    (
        Install::AgentNamespace,
        r#"kubectl -n orchestrator-agents create secret generic agent-credentials --from-literal=anthropic-api-key="$ANTHROPIC_API_KEY" --from-literal=openai-api-key="$OPENAI_API_KEY" --from-literal=git-token="$AGENT_GIT_TOKEN""#,
    ),
];

/// `kubectl kustomize` of deploy/ for one install; None (with a printed reason) without kubectl.
fn render(install: Install) -> Option<Vec<Value>> {
    match install {
        Install::Base => kustomize_build(),
        Install::AgentNamespace => {
            let kustomization =
                std::fs::read_to_string(root().join("deploy/kustomization.yaml")).unwrap();
            let mut enabled = kustomization.clone();
            for (commented, on) in COMPONENT_LINES {
                assert!(
                    kustomization.lines().any(|l| l == commented),
                    "deploy/kustomization.yaml lacks the line {commented:?} the docs tell you to \
                     uncomment"
                );
                enabled = enabled.replace(commented, on);
            }
            let tmp = tempfile::tempdir().unwrap();
            docs_support::copy_dir(&root().join("deploy"), &tmp.path().join("deploy"));
            docs_support::copy_dir(&root().join("crds"), &tmp.path().join("crds"));
            std::fs::write(tmp.path().join("deploy/kustomization.yaml"), enabled).unwrap();
            kustomize(&tmp.path().join("deploy"))
        }
    }
}

fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) if out.status.success() => Some(documents(&String::from_utf8(out.stdout).unwrap())),
        Ok(out) => panic!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("skipping: kubectl is not available ({e})");
            None
        }
    }
}

/// The objects an install step's command creates (kubectl --dry-run=client, no cluster).
fn created_by(command: &str) -> Vec<Value> {
    let out = Command::new("bash")
        .args(["-c", &format!("{command} --dry-run=client -o yaml")])
        .env("ANTHROPIC_API_KEY", "sk-test-anthropic")
        .env("OPENAI_API_KEY", "sk-test-openai")
        .env("AGENT_GIT_TOKEN", "ghp-test")
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).unwrap())
}

/// An object a profile needs: kind, namespace, name, and for Secret/ConfigMap keys the key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Needed {
    kind: &'static str,
    namespace: String,
    name: String,
    key: Option<String>,
}

/// What the profiles reference, in the namespace their Jobs run in. Pure.
fn needed_by(profiles: &AgentProfiles, namespace: &str) -> BTreeSet<Needed> {
    let mut out = BTreeSet::new();
    for profile in profiles.agents.values() {
        if let Some(sa) = &profile.service_account_name {
            out.insert(Needed {
                kind: "ServiceAccount",
                namespace: namespace.into(),
                name: sa.clone(),
                key: None,
            });
        }
        for source in profile.env.iter().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &source.secret_key_ref
                && r.optional != Some(true)
            {
                out.insert(Needed {
                    kind: "Secret",
                    namespace: namespace.into(),
                    name: r.name.clone(),
                    key: Some(r.key.clone()),
                });
            }
            if let Some(r) = &source.config_map_key_ref
                && r.optional != Some(true)
            {
                out.insert(Needed {
                    kind: "ConfigMap",
                    namespace: namespace.into(),
                    name: r.name.clone(),
                    key: Some(r.key.clone()),
                });
            }
        }
    }
    out
}

/// Whether `objects` hold what `need` names (for a key: the object has that key). Pure.
fn provided(need: &Needed, objects: &[Value]) -> bool {
    objects.iter().any(|o| {
        o["kind"] == need.kind
            && o["metadata"]["name"] == need.name.as_str()
            && o["metadata"]["namespace"] == need.namespace.as_str()
            && need.key.as_ref().is_none_or(|key| {
                ["data", "stringData", "binaryData"]
                    .iter()
                    .any(|field| !o[field][key.as_str()].is_null())
            })
    })
}

/// The problems of one install: each thing a profile needs that nothing provides. Pure.
fn missing(profiles: &AgentProfiles, namespace: &str, objects: &[Value]) -> Vec<String> {
    needed_by(profiles, namespace)
        .into_iter()
        .filter(|need| !provided(need, objects))
        .map(|n| match &n.key {
            Some(key) => format!("{} {}/{} with key {key}", n.kind, n.namespace, n.name),
            None => format!("{} {}/{}", n.kind, n.namespace, n.name),
        })
        .collect()
}

/// The Deployment's `--flag=` value, `$(POD_NAMESPACE)` resolved to its own namespace.
fn deployment_flag(docs: &[Value], flag: &str) -> String {
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let own = deployment["metadata"]["namespace"].as_str().unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    args.iter()
        .filter_map(|a| a.as_str()?.strip_prefix(&format!("{flag}=")))
        .next()
        .unwrap_or_else(|| panic!("the Deployment has no {flag}"))
        .replace("$(POD_NAMESPACE)", own)
}

/// The agent profiles as the Deployment reads them: key `agents.yaml` of the ConfigMap named by
/// --agents-configmap. (Where the profiles come from another way, teach this function that way,
/// so the reference check keeps seeing the profiles the cluster runs.)
fn mounted_profiles(docs: &[Value]) -> AgentProfiles {
    let cm_name = deployment_flag(docs, "--agents-configmap");
    let file = "agents.yaml";
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name.as_str())
        .unwrap_or_else(|| panic!("the agents ConfigMap {cm_name} is not in deploy/"));
    let text = cm["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has no key {file}"));
    AgentProfiles::parse(text, &format!("ConfigMap {cm_name} key {file}")).unwrap()
}

fn install_objects(install: Install, docs: &[Value]) -> Vec<Value> {
    let mut objects = docs.to_vec();
    for (_, command) in INSTALL_STEPS.iter().filter(|(i, _)| *i == install) {
        objects.extend(created_by(command));
    }
    objects
}

#[test]
fn every_object_an_agent_profile_needs_is_created_by_deploy_or_the_install_steps() {
    for install in [Install::Base, Install::AgentNamespace] {
        let Some(docs) = render(install) else {
            return;
        };
        let task_namespace = deployment_flag(&docs, "--namespace");
        let profiles = mounted_profiles(&docs);
        assert!(
            !needed_by(&profiles, &task_namespace).is_empty(),
            "{install:?}: the profiles reference nothing, so this test checks nothing"
        );
        let problems = missing(&profiles, &task_namespace, &install_objects(install, &docs));
        assert!(
            problems.is_empty(),
            "{install:?}: agent profiles need objects that neither deploy/ nor the install steps \
             create: {problems:#?}"
        );
        // The agents' ServiceAccount mounts no API token by default.
        let sa = docs
            .iter()
            .find(|d| {
                d["kind"] == "ServiceAccount"
                    && d["metadata"]["name"] == "orchestrator-agent"
                    && d["metadata"]["namespace"] == task_namespace.as_str()
            })
            .unwrap();
        assert_eq!(sa["automountServiceAccountToken"], false, "{install:?}");
    }
}

#[test]
fn a_profile_that_needs_an_object_nobody_creates_fails_the_check() {
    let Some(docs) = render(Install::Base) else {
        return;
    };
    let broken = AgentProfiles::parse(
        r#"agents:
  ghost:
    image: example/agent:1
    serviceAccountName: ghost-agent
    env:
      - name: API_KEY
        valueFrom: {secretKeyRef: {name: agent-credentials, key: no-such-key}}
      - name: OTHER
        valueFrom: {secretKeyRef: {name: ghost-credentials, key: token}}
      - name: MAYBE
        valueFrom: {secretKeyRef: {name: ghost-credentials, key: token2, optional: true}}
      - name: SETTINGS
        valueFrom: {configMapKeyRef: {name: ghost-settings, key: mode}}
  fine:
    image: example/agent:1
    serviceAccountName: orchestrator-agent
    env:
      - name: ANTHROPIC_API_KEY
        valueFrom: {secretKeyRef: {name: agent-credentials, key: anthropic-api-key}}
"#,
        "broken profile",
    )
    .unwrap();
    let objects = install_objects(Install::Base, &docs);
    assert_eq!(
        missing(&broken, "orchestrator", &objects),
        vec![
            "ConfigMap orchestrator/ghost-settings with key mode",
            "Secret orchestrator/agent-credentials with key no-such-key",
            "Secret orchestrator/ghost-credentials with key token",
            "ServiceAccount orchestrator/ghost-agent",
        ]
    );
    // Without the install steps, the Secret the profiles read is missing too.
    let shipped = mounted_profiles(&docs);
    let missing_without_steps = missing(&shipped, "orchestrator", &docs);
    assert!(
        missing_without_steps
            .iter()
            .any(|m| m.starts_with("Secret orchestrator/agent-credentials")),
        "{missing_without_steps:?}"
    );
    // In another namespace than the one holding the objects, everything is missing.
    assert!(!missing(&shipped, "elsewhere", &objects).is_empty());
}

#[test]
fn the_install_steps_are_shown_in_the_docs() {
    let shown: Vec<String> = docs_support::all_doc_commands(&root())
        .into_iter()
        .map(|c| c.text)
        .collect();
    for (install, command) in INSTALL_STEPS {
        let command = docs_support::normalize(command);
        assert!(
            shown.contains(&command),
            "{install:?}: the install step `{command}` is not shown in README.md or docs/*.md"
        );
    }
}

/// Rules granted to `subject` (namespace/name) by Roles bound to it, per namespace. Pure.
fn granted_rules(
    docs: &[Value],
    subject: (&str, &str),
) -> BTreeMap<String, orchestrator::rbac::Rules> {
    let mut out: BTreeMap<String, orchestrator::rbac::Rules> = BTreeMap::new();
    for binding in docs.iter().filter(|d| d["kind"] == "RoleBinding") {
        let ns = binding["metadata"]["namespace"].as_str().unwrap();
        let binds = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["namespace"] == subject.0
                    && s["name"] == subject.1
            });
        if !binds {
            continue;
        }
        assert_eq!(binding["roleRef"]["kind"], "Role", "{binding}");
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == "Role"
                    && d["metadata"]["namespace"] == ns
                    && d["metadata"]["name"] == binding["roleRef"]["name"]
            })
            .unwrap_or_else(|| {
                panic!(
                    "RoleBinding {ns}/{} names no Role",
                    binding["metadata"]["name"]
                )
            });
        let role: Role = serde_json::from_value(role.clone()).unwrap();
        let rules = out.entry(ns.to_string()).or_default();
        for rule in role.rules.unwrap_or_default() {
            for group in rule.api_groups.clone().unwrap_or_default() {
                for resource in rule.resources.clone().unwrap_or_default() {
                    rules
                        .entry((group.clone(), resource))
                        .or_default()
                        .extend(rule.verbs.iter().cloned());
                }
            }
        }
    }
    out
}

use std::collections::BTreeMap;

#[test]
fn rbac_follows_the_tasks_into_the_agent_namespace() {
    use orchestrator::rbac::{required_access, required_rules};
    let (needed, _) = required_rules(&required_access());
    for install in [Install::Base, Install::AgentNamespace] {
        let Some(docs) = render(install) else {
            return;
        };
        let task_namespace = deployment_flag(&docs, "--namespace");
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let own = deployment["metadata"]["namespace"].as_str().unwrap();
        let expected_ns = match install {
            Install::Base => "orchestrator",
            Install::AgentNamespace => "orchestrator-agents",
        };
        assert_eq!(task_namespace, expected_ns, "{install:?}");
        assert_eq!(own, "orchestrator", "{install:?}");
        // orchestrator holds exactly what the code calls, in the TaskRuns' namespace only.
        let granted = granted_rules(&docs, ("orchestrator", "orchestrator"));
        assert_eq!(
            granted.keys().collect::<Vec<_>>(),
            vec![&task_namespace],
            "{install:?}: orchestrator must be granted rights in the TaskRuns' namespace only"
        );
        assert_eq!(granted[&task_namespace], needed, "{install:?}");
        // Agents get no API rights at all.
        let agent = granted_rules(&docs, (task_namespace.as_str(), "orchestrator-agent"));
        assert!(
            agent.is_empty(),
            "{install:?}: agents are granted {agent:?}"
        );
        // The one cluster-wide grant is the read-only CRD check (`orchestrator-crd-reader`).
        assert!(
            docs.iter()
                .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding")
                .all(|d| d["metadata"]["name"] == "orchestrator-crd-reader"),
            "{install:?}"
        );
    }
}

/// Runs `bash -c line` with `env`; panics with the output unless it succeeds.
fn sh_ok(line: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new("bash")
        .args(["-c", line])
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "$ {line}\n{text}");
    text
}

#[test]
fn the_install_step_secret_reaches_the_shipped_profiles_env_on_the_embedded_cluster() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("skipping: kubectl is not available");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_orchestrator");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 1. The documented install step, for real, against an embedded API server that keeps its
    //    objects in state/.
    let mut apiserver = Command::new(bin)
        .args([
            "apiserver",
            "--port",
            "0",
            "--data-dir",
            "state",
            "--kubeconfig-out",
            "kc",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !dir.join("kc").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no kubeconfig within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kc = dir.join("kc").display().to_string();
    let keys = [
        ("ANTHROPIC_API_KEY", "sk-ant-test-1"),
        ("OPENAI_API_KEY", "sk-openai-test-2"),
        ("AGENT_GIT_TOKEN", "ghp-test-3"),
    ];
    let mut env: Vec<(&str, &str)> = vec![("KUBECONFIG", &kc)];
    env.extend(keys);
    sh_ok("kubectl create namespace orchestrator", dir, &env);
    let (_, step) = INSTALL_STEPS
        .iter()
        .find(|(i, _)| *i == Install::Base)
        .unwrap();
    sh_ok(step, dir, &env);
    // SAFETY: kill(2) on the pid of the child started above, not yet reaped.
    unsafe { libc::kill(apiserver.id() as i32, libc::SIGINT) };
    apiserver.wait().unwrap();

    // 2. Every shipped profile's env, run by a local shell agent that checks each value.
    let shipped = AgentProfiles::load(&root().join("deploy/agents.yaml")).unwrap();
    let mut checks = Vec::new();
    let mut agents = serde_json::Map::new();
    for (name, profile) in &shipped.agents {
        let mut script = Vec::new();
        for e in &profile.env {
            let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            else {
                continue;
            };
            let want = match r.key.as_str() {
                "anthropic-api-key" => keys[0].1,
                "openai-api-key" => keys[1].1,
                "git-token" => keys[2].1,
                other => panic!("{name} reads key {other}, which the install step does not set"),
            };
            script.push(format!("test \"${}\" = {want}", e.name));
            checks.push(format!("{name}: {}", e.name));
        }
        script.push(format!("echo {name}: every credential arrived"));
        agents.insert(
            name.clone(),
            serde_json::json!({
                "image": "local/shell",
                "command": ["sh", "-c"],
                "args": [script.join(" && ")],
                "env": profile.env,
            }),
        );
    }
    assert!(!checks.is_empty(), "the shipped profiles read no Secret");
    let profiles = serde_json::json!({"defaults": {"activeDeadlineSeconds": 30, "backoffLimit": 0}, "agents": agents});
    std::fs::write(
        dir.join("agents.yaml"),
        serde_json::to_string(&profiles).unwrap(),
    )
    .unwrap();
    sh_ok(&format!("{bin} init tasks"), dir, &[]);
    // One task per shipped profile.
    for (i, name) in shipped.agents.keys().enumerate() {
        let folder = dir.join(format!("tasks/{}-{name}", i + 10));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("task.yaml"),
            format!("serviceName: svc\nagentName: {name}\n"),
        )
        .unwrap();
        std::fs::write(folder.join("prompt.md"), "# Check the credentials\n").unwrap();
    }
    std::fs::remove_dir_all(dir.join("tasks/1-hello")).unwrap();
    let identity = [
        ("GIT_AUTHOR_NAME", "t"),
        ("GIT_AUTHOR_EMAIL", "t@example.com"),
        ("GIT_COMMITTER_NAME", "t"),
        ("GIT_COMMITTER_EMAIL", "t@example.com"),
    ];
    sh_ok(
        "git -C tasks add -A && git -C tasks commit -qm 'one task per profile'",
        dir,
        &identity,
    );
    let out = sh_ok(
        &format!(
            "{bin} run --embedded --embedded-data-dir state -n orchestrator --repo tasks \
             --agents agents.yaml --until-done"
        ),
        dir,
        &[],
    );
    assert_eq!(
        out.matches("Succeeded").count(),
        shipped.agents.len(),
        "every profile's agent got its credentials: {checks:?}\n{out}"
    );
}
