//! The resources the server serves: built-in kinds and those registered by CRDs, each described
//! once (group, version, names, scope, subresources, printer columns, schema). Pure.

use super::table;
use serde_json::Value;

/// One printer column (`additionalPrinterColumns` or a built-in kind's table column).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
}

/// One served resource at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// Whether `metadata.generation` is kept (bumped on changes outside metadata and status).
    pub has_generation: bool,
    pub printer_columns: Vec<PrinterColumn>,
    /// The CRD's `openAPIV3Schema` for this version; `None` for built-in kinds.
    pub schema: Option<Value>,
    /// The CRD that registered it; `None` for built-in kinds.
    pub crd_name: Option<String>,
}

impl ResourceInfo {
    /// `v1` or `batch/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key objects are stored under, shared by every version of the resource.
    pub fn storage_key(&self) -> String {
        super::status::group_resource(&self.group, &self.plural)
    }

    pub fn is_custom(&self) -> bool {
        self.crd_name.is_some()
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

fn column(name: &str, type_: &str, json_path: &str, description: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: json_path.into(),
        description: description.into(),
        priority: 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
    status_subresource: bool,
    has_generation: bool,
    columns: Vec<PrinterColumn>,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: if matches!(plural, "pods" | "jobs") {
            vec!["all".into()]
        } else {
            vec![]
        },
        status_subresource,
        has_generation,
        printer_columns: columns,
        schema: None,
        crd_name: None,
    }
}

const AGE: &str = ".metadata.creationTimestamp";

/// The built-in resources, in discovery order.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            false,
            vec![
                column(
                    "Status",
                    "string",
                    ".status.phase",
                    "The phase of the namespace",
                ),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            false,
            false,
            vec![
                column("Data", "integer", ".data", "Number of keys in data"),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "",
            "v1",
            "secrets",
            "Secret",
            true,
            &[],
            false,
            false,
            vec![
                column("Type", "string", ".type", "The type of the secret"),
                column("Data", "integer", ".data", "Number of keys in data"),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
            vec![
                column("Type", "string", ".type", ""),
                column("Reason", "string", ".reason", ""),
                column("Object", "string", ".involvedObject.name", ""),
                column("Message", "string", ".message", ""),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
            vec![
                column("Secrets", "integer", ".secrets", ""),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "",
            "v1",
            "pods",
            "Pod",
            true,
            &["po"],
            true,
            true,
            vec![
                column("Status", "string", ".status.phase", "The phase of the pod"),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "batch",
            "v1",
            "jobs",
            "Job",
            true,
            &[],
            true,
            true,
            // kube-apiserver's Job columns (v1.28): computed cells, see table::cell.
            vec![
                column(
                    "Completions",
                    "string",
                    table::JOB_COMPLETIONS,
                    "The desired number of successfully finished pods the job should be run with.",
                ),
                column(
                    "Duration",
                    "string",
                    table::JOB_DURATION,
                    "Time required to complete the job.",
                ),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
            false,
            vec![
                column(
                    "Holder",
                    "string",
                    ".spec.holderIdentity",
                    "The holder of the lease",
                ),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
            vec![
                column("Type", "string", ".type", ""),
                column("Reason", "string", ".reason", ""),
                column("Object", "string", ".regarding.name", ""),
                column("Note", "string", ".note", ""),
                column("Age", "date", AGE, ""),
            ],
        ),
        // Stored and served only (no controller acts on them), so that a cluster install such
        // as orchestrator's deploy/ can be applied and uninstalled here.
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            true,
            vec![
                column("Ready", "string", ".status.readyReplicas", ""),
                column("Age", "date", AGE, ""),
            ],
        ),
        builtin(
            "",
            "v1",
            "services",
            "Service",
            true,
            &["svc"],
            true,
            false,
            vec![column("Age", "date", AGE, "")],
        ),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
            vec![column("Age", "date", AGE, "")],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
            false,
            vec![column("Age", "date", AGE, "")],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
            false,
            vec![column("Age", "date", AGE, "")],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
            false,
            vec![column("Age", "date", AGE, "")],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
            false,
            vec![column("Age", "date", AGE, "")],
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            true,
            vec![column("Created At", "string", AGE, "")],
        ),
    ]
}

/// The resources a CRD registers: one per served version. `crd` is the CRD object as JSON.
pub fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let plural = str_of(&names["plural"]);
    let kind = str_of(&names["kind"]);
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let crd_name = crd["metadata"]["name"].as_str().map(String::from);
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .map(|v| {
            let mut columns: Vec<PrinterColumn> = v["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: str_of(&c["name"]),
                    type_: str_of(&c["type"]),
                    json_path: str_of(&c["jsonPath"]),
                    description: str_of(&c["description"]),
                    priority: c["priority"].as_i64().unwrap_or(0),
                })
                .collect();
            // A CRD without printer columns still shows its age, as the real server does.
            if columns.is_empty() {
                columns.push(column("Age", "date", AGE, ""));
            }
            ResourceInfo {
                group: str_of(&spec["group"]),
                version: str_of(&v["name"]),
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: v["subresources"]["status"].is_object(),
                has_generation: true,
                printer_columns: columns,
                schema: v["schema"]["openAPIV3Schema"]
                    .is_object()
                    .then(|| v["schema"]["openAPIV3Schema"].clone()),
                crd_name: crd_name.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_run_crd_registers_one_namespaced_version_with_status() {
        let crd = crate::testdata::example_crd();
        let rs = crd_resources(&crd);
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("orchestrator.io", "v1", "taskruns")
        );
        assert!(r.namespaced && r.status_subresource && r.schema.is_some());
        assert_eq!(r.short_names, vec!["tr"]);
        assert_eq!(r.storage_key(), "taskruns.orchestrator.io");
        assert!(r.printer_columns.iter().any(|c| c.name == "Phase"));
    }
}
