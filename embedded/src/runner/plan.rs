//! What one attempt runs, pure: a Job, the ConfigMaps and Secrets it references and a run
//! directory in; the program, args, env, working directory and the files to write out.
//!
//! From the Job's pod template the first container is run. Its volumeMounts of `configMap`,
//! `secret` and `emptyDir` volumes become directories under the run directory (see
//! [`super::mounts`] for how the paths reach the process); `env` (literal values with `$(VAR)`
//! expansion, `configMapKeyRef`, `secretKeyRef`, `fieldRef` on `metadata.name` and
//! `metadata.namespace`) and `envFrom` (ConfigMaps and Secrets) become the process's env.

use super::mounts::{
    self, BadPath, VolumeFileError, expand_vars, local_mount_dir, mount_env_name,
    rewrite_mount_paths,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, KeyToPath, PodSpec, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A ConfigMap's or Secret's data by key (ConfigMap `data` and `binaryData` together).
pub type Data = BTreeMap<String, Vec<u8>>;

/// The referenced objects that exist, by name. A name missing here does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub config_maps: BTreeMap<String, Data>,
    pub secrets: BTreeMap<String, Data>,
}

/// Names of the ConfigMaps and Secrets a Job's first container needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

/// Everything needed to start one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub program: String,
    pub args: Vec<String>,
    /// In order; later entries override earlier ones, as in a pod.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Directories to create (mounts, emptyDirs, the working directory).
    pub dirs: Vec<PathBuf>,
    /// Files to write, absolute paths under the run directory.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// The container's `terminationMessagePath` (default `/dev/termination-log`) as a local
    /// file, created empty by `workspace::write_files`; the process finds it in `TERMINATION_MESSAGE_PATH` and wherever
    /// the command, args or env name the container path.
    pub termination_message: PathBuf,
    /// `terminationMessagePolicy: FallbackToLogsOnError`: an empty message of a failed
    /// container is taken from the end of its log.
    pub fallback_to_logs: bool,
}

/// The kubelet's default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The env var that names the local termination message file.
pub const ENV_TERMINATION_MESSAGE_PATH: &str = "TERMINATION_MESSAGE_PATH";

/// Why a Job cannot be run locally. Each message names the part of the Job at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the Job has no pod template containers to run")]
    NoContainer,
    #[error(
        "container {container:?} has no command: the local runner has no image entrypoint to \
         fall back on; set `command` in the Job's pod template (the agent profile)"
    )]
    NoCommand { container: String },
    #[error(
        "volumeMount {mount:?} names volume {volume:?}, which the pod template does not define"
    )]
    UnknownVolume { mount: String, volume: String },
    #[error(
        "volume {volume:?} is of a kind the local runner does not support (only configMap, \
         secret and emptyDir are)"
    )]
    UnsupportedVolume { volume: String },
    #[error("{kind} {name:?} does not exist (needed by {by}); create it or mark it optional")]
    Missing {
        kind: &'static str,
        name: String,
        by: String,
    },
    #[error("{kind} {name:?} has no key {key:?} (needed by {by})")]
    MissingKey {
        kind: &'static str,
        name: String,
        key: String,
        by: String,
    },
    #[error("volume {volume:?}: {source}")]
    VolumeFiles {
        volume: String,
        #[source]
        source: VolumeFileError,
    },
    #[error(transparent)]
    BadPath(#[from] BadPath),
    #[error(
        "env {name:?}: {what} is not supported by the local runner (use a literal value, \
         configMapKeyRef, secretKeyRef or fieldRef metadata.name/metadata.namespace)"
    )]
    UnsupportedEnv { name: String, what: String },
}

fn pod_spec(job: &Job) -> Option<&PodSpec> {
    job.spec.as_ref()?.template.spec.as_ref()
}

fn first_container(job: &Job) -> Result<&Container, PlanError> {
    pod_spec(job)
        .and_then(|p| p.containers.first())
        .ok_or(PlanError::NoContainer)
}

/// The termination grace period of the pod template, when it sets one.
pub fn grace_seconds(job: &Job) -> Option<i64> {
    pod_spec(job)?.termination_grace_period_seconds
}

/// Which ConfigMaps and Secrets to fetch before planning.
pub fn references(job: &Job) -> References {
    let mut refs = References::default();
    let Ok(container) = first_container(job) else {
        return refs;
    };
    let volumes = pod_spec(job).and_then(|p| p.volumes.as_ref());
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes.into_iter().flatten().find(|v| v.name == mount.name);
        if let Some(v) = volume {
            if let Some(cm) = &v.config_map {
                refs.config_maps.insert(cm.name.clone());
            }
            if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                refs.secrets.insert(name);
            }
        }
    }
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            refs.secrets.insert(s.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            refs.config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            refs.secrets.insert(r.name.clone());
        }
    }
    refs
}

/// The plan for one attempt of `job` in `run_dir`.
pub fn plan_run(job: &Job, sources: &Sources, run_dir: &Path) -> Result<RunPlan, PlanError> {
    let container = first_container(job)?;
    let mut dirs = vec![run_dir.to_path_buf()];
    let mut files = Vec::new();
    let mut mount_dirs: Vec<(String, PathBuf)> = Vec::new();
    let volumes: &[Volume] = pod_spec(job)
        .and_then(|p| p.volumes.as_deref())
        .unwrap_or_default();

    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| PlanError::UnknownVolume {
                mount: mount.mount_path.clone(),
                volume: mount.name.clone(),
            })?;
        let local = local_mount_dir(run_dir, &mount.mount_path)?;
        let by = format!("volume {:?}", volume.name);
        let content = if let Some(cm) = &volume.config_map {
            Some(volume_content(
                "ConfigMap",
                &cm.name,
                sources.config_maps.get(&cm.name),
                cm.optional.unwrap_or(false),
                cm.items.as_deref(),
                &by,
            )?)
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            Some(volume_content(
                "Secret",
                &name,
                sources.secrets.get(&name),
                secret.optional.unwrap_or(false),
                secret.items.as_deref(),
                &by,
            )?)
        } else if volume.empty_dir.is_some() {
            None
        } else {
            return Err(PlanError::UnsupportedVolume {
                volume: volume.name.clone(),
            });
        };
        let content = content.map(|c| {
            mounts::volume_files(&c.0, c.1.as_deref()).map_err(|source| PlanError::VolumeFiles {
                volume: volume.name.clone(),
                source,
            })
        });
        let content = content.transpose()?.unwrap_or_default();
        match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            // A subPath mounts one entry of the volume at the mountPath itself.
            Some(sub) => {
                let sub = mounts::relative_file(sub)?;
                let nested: Vec<_> = content
                    .into_iter()
                    .filter_map(|(path, bytes)| {
                        if path == sub {
                            Some((local.clone(), bytes))
                        } else {
                            let rest = path.strip_prefix(&sub).ok()?;
                            Some((local.join(rest), bytes))
                        }
                    })
                    .collect();
                if nested.is_empty() {
                    dirs.push(local.clone());
                }
                files.extend(nested);
            }
            None => {
                dirs.push(local.clone());
                files.extend(content.into_iter().map(|(p, b)| (local.join(p), b)));
            }
        }
        mount_dirs.push((mount.mount_path.clone(), local));
    }

    let pod_name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let lookup = |env: &[(String, String)], name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional, data) = if let Some(r) = &from.config_map_ref {
            let d = sources.config_maps.get(&r.name);
            ("ConfigMap", &r.name, r.optional, d)
        } else if let Some(r) = &from.secret_ref {
            ("Secret", &r.name, r.optional, sources.secrets.get(&r.name))
        } else {
            continue;
        };
        match data {
            Some(data) => env.extend(
                data.iter()
                    .filter(|(k, _)| is_env_name(&format!("{prefix}{k}")))
                    .map(|(k, v)| (format!("{prefix}{k}"), lossy(v))),
            ),
            None if optional.unwrap_or(false) => {}
            None => {
                return Err(PlanError::Missing {
                    kind,
                    name: name.clone(),
                    by: "envFrom".to_string(),
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        let by = format!("env {:?}", var.name);
        let value = match &var.value_from {
            None => Some(expand_vars(var.value.as_deref().unwrap_or(""), |n| {
                lookup(&env, n)
            })),
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    key_value(
                        "ConfigMap",
                        &r.name,
                        &r.key,
                        r.optional,
                        sources.config_maps.get(&r.name),
                        &by,
                    )?
                } else if let Some(r) = &from.secret_key_ref {
                    key_value(
                        "Secret",
                        &r.name,
                        &r.key,
                        r.optional,
                        sources.secrets.get(&r.name),
                        &by,
                    )?
                } else if let Some(f) = &from.field_ref {
                    match f.field_path.as_str() {
                        "metadata.name" => Some(pod_name.clone()),
                        "metadata.namespace" => Some(namespace.clone()),
                        other => {
                            return Err(PlanError::UnsupportedEnv {
                                name: var.name.clone(),
                                what: format!("fieldRef {other:?}"),
                            });
                        }
                    }
                } else {
                    return Err(PlanError::UnsupportedEnv {
                        name: var.name.clone(),
                        what: "resourceFieldRef".to_string(),
                    });
                }
            }
        };
        if let Some(value) = value {
            env.push((var.name.clone(), value));
        }
    }
    let message_path = container
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH);
    let termination_message = local_mount_dir(run_dir, message_path)?;
    // The termination message file is rewritten like a mount path.
    let mut rewrites = mount_dirs.clone();
    rewrites.push((message_path.to_string(), termination_message.clone()));
    for (_, value) in &mut env {
        *value = rewrite_mount_paths(value, &rewrites);
    }
    env.push((
        ENV_TERMINATION_MESSAGE_PATH.to_string(),
        termination_message.to_string_lossy().into_owned(),
    ));
    env.push((
        "ORCHESTRATOR_RUN_DIR".to_string(),
        run_dir.to_string_lossy().into_owned(),
    ));
    for (mount_path, local) in &mount_dirs {
        env.push((
            mount_env_name(mount_path),
            local.to_string_lossy().into_owned(),
        ));
    }

    let expand = |s: &String| rewrite_mount_paths(&expand_vars(s, |n| lookup(&env, n)), &rewrites);
    let mut command: Vec<String> = container.command.iter().flatten().map(expand).collect();
    if command.is_empty() {
        return Err(PlanError::NoCommand {
            container: container.name.clone(),
        });
    }
    let program = command.remove(0);
    let args = command
        .into_iter()
        .chain(container.args.iter().flatten().map(expand))
        .collect();
    // The working directory is a path in the container's filesystem, which the run directory
    // stands in for: /app → <run dir>/app.
    let cwd = match container.working_dir.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => {
            let rewritten = rewrite_mount_paths(w, &mount_dirs);
            if rewritten != w {
                PathBuf::from(rewritten)
            } else {
                local_mount_dir(run_dir, w)?
            }
        }
        None => run_dir.to_path_buf(),
    };
    dirs.push(cwd.clone());
    Ok(RunPlan {
        program,
        args,
        env,
        cwd,
        dirs,
        files,
        termination_message,
        fallback_to_logs: container.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError"),
    })
}

type VolumeContent = (Data, Option<Vec<(String, String)>>);

fn volume_content(
    kind: &'static str,
    name: &str,
    data: Option<&Data>,
    optional: bool,
    items: Option<&[KeyToPath]>,
    by: &str,
) -> Result<VolumeContent, PlanError> {
    let items = items.map(|items| {
        items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect()
    });
    match data {
        Some(data) => Ok((data.clone(), items)),
        None if optional => Ok((Data::new(), None)),
        None => Err(PlanError::Missing {
            kind,
            name: name.to_string(),
            by: by.to_string(),
        }),
    }
}

fn key_value(
    kind: &'static str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    data: Option<&Data>,
    by: &str,
) -> Result<Option<String>, PlanError> {
    match data.map(|d| d.get(key)) {
        Some(Some(v)) => Ok(Some(lossy(v))),
        _ if optional.unwrap_or(false) => Ok(None),
        None => Err(PlanError::Missing {
            kind,
            name: name.to_string(),
            by: by.to_string(),
        }),
        Some(None) => Err(PlanError::MissingKey {
            kind,
            name: name.to_string(),
            key: key.to_string(),
            by: by.to_string(),
        }),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Kubernetes' C_IDENTIFIER-ish rule for env names taken from envFrom keys.
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn job(pod_spec: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "web-42-v1", "namespace": "tasks"},
            "spec": {"template": {"spec": pod_spec}}
        }))
        .expect("valid Job")
    }

    fn agent_job() -> Job {
        job(json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "agent",
                "image": "agent:1",
                "command": ["sh", "-c"],
                "args": ["cat $TASK_DIR/*.md; echo $(GREETING) /workspace/task/prompt.md"],
                "env": [
                    {"name": "TASK_DIR", "value": "/workspace/task"},
                    {"name": "GREETING", "value": "hello"},
                    {"name": "GREETING_TWICE", "value": "$(GREETING) $(GREETING) $(NOPE)"},
                    {"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "agent-settings", "key": "model"}}},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "agent-secret", "key": "token"}}},
                    {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": true}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
                ],
                "volumeMounts": [
                    {"name": "task-files", "mountPath": "/workspace/task"},
                    {"name": "scratch", "mountPath": "/scratch"}
                ]
            }],
            "volumes": [
                {"name": "task-files", "configMap": {"name": "web-42-v1-files"}},
                {"name": "scratch", "emptyDir": {}}
            ]
        }))
    }

    fn sources() -> Sources {
        Sources {
            config_maps: [
                (
                    "web-42-v1-files".to_string(),
                    [
                        ("prompt.md".to_string(), b"# Prompt".to_vec()),
                        ("acceptance.md".to_string(), b"# Done".to_vec()),
                    ]
                    .into(),
                ),
                (
                    "agent-settings".to_string(),
                    [("model".to_string(), b"big".to_vec())].into(),
                ),
            ]
            .into(),
            secrets: [(
                "agent-secret".to_string(),
                [("token".to_string(), b"s3cret".to_vec())].into(),
            )]
            .into(),
        }
    }

    #[test]
    fn an_agent_job_becomes_a_local_process_with_its_files_and_env() {
        let run = Path::new("/tmp/run");
        let plan = plan_run(&agent_job(), &sources(), run).expect("plan");
        assert_eq!(plan.program, "sh");
        assert_eq!(
            plan.args,
            vec![
                "-c".to_string(),
                "cat $TASK_DIR/*.md; echo hello /tmp/run/workspace/task/prompt.md".to_string()
            ]
        );
        let env: BTreeMap<_, _> = plan.env.iter().cloned().collect();
        assert_eq!(env["TASK_DIR"], "/tmp/run/workspace/task");
        assert_eq!(env["GREETING_TWICE"], "hello hello $(NOPE)");
        assert_eq!(env["MODEL"], "big");
        assert_eq!(env["TOKEN"], "s3cret");
        assert!(!env.contains_key("OPTIONAL"));
        assert_eq!(env["POD"], "web-42-v1");
        assert_eq!(env["NS"], "tasks");
        assert_eq!(env["ORCHESTRATOR_RUN_DIR"], "/tmp/run");
        assert_eq!(
            env["ORCHESTRATOR_MOUNT_WORKSPACE_TASK"],
            "/tmp/run/workspace/task"
        );
        assert_eq!(env["ORCHESTRATOR_MOUNT_SCRATCH"], "/tmp/run/scratch");
        assert_eq!(
            env["TERMINATION_MESSAGE_PATH"], "/tmp/run/dev/termination-log",
            "the kubelet's default path, as a local file"
        );
        assert_eq!(
            plan.termination_message,
            PathBuf::from("/tmp/run/dev/termination-log")
        );
        assert!(!plan.fallback_to_logs);
        assert_eq!(plan.cwd, PathBuf::from("/tmp/run"));
        assert_eq!(
            plan.files,
            vec![
                (
                    PathBuf::from("/tmp/run/workspace/task/acceptance.md"),
                    b"# Done".to_vec()
                ),
                (
                    PathBuf::from("/tmp/run/workspace/task/prompt.md"),
                    b"# Prompt".to_vec()
                ),
            ]
        );
        assert!(plan.dirs.contains(&PathBuf::from("/tmp/run/scratch")));
        assert_eq!(
            references(&agent_job()),
            References {
                config_maps: ["agent-settings".to_string(), "web-42-v1-files".to_string()].into(),
                secrets: ["absent".to_string(), "agent-secret".to_string()].into(),
            }
        );
    }

    #[test]
    fn what_cannot_run_is_named_in_the_error() {
        let run = Path::new("/tmp/run");
        let missing_cm = Sources {
            config_maps: BTreeMap::new(),
            ..sources()
        };
        assert_eq!(
            plan_run(&agent_job(), &missing_cm, run),
            Err(PlanError::Missing {
                kind: "ConfigMap",
                name: "web-42-v1-files".to_string(),
                by: "volume \"task-files\"".to_string()
            })
        );
        let no_command = job(json!({"containers": [{"name": "agent", "image": "x"}]}));
        assert_eq!(
            plan_run(&no_command, &sources(), run),
            Err(PlanError::NoCommand {
                container: "agent".to_string()
            })
        );
        assert_eq!(
            plan_run(&job(json!({"containers": []})), &sources(), run),
            Err(PlanError::NoContainer)
        );
        let unknown_volume = job(json!({"containers": [{
            "name": "a", "command": ["true"],
            "volumeMounts": [{"name": "nope", "mountPath": "/x"}]
        }]}));
        assert!(matches!(
            plan_run(&unknown_volume, &sources(), run),
            Err(PlanError::UnknownVolume { .. })
        ));
        let host_path = job(json!({
            "containers": [{"name": "a", "command": ["true"], "volumeMounts": [{"name": "h", "mountPath": "/h"}]}],
            "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]
        }));
        assert!(matches!(
            plan_run(&host_path, &sources(), run),
            Err(PlanError::UnsupportedVolume { .. })
        ));
        let escaping = job(json!({
            "containers": [{"name": "a", "command": ["true"], "volumeMounts": [{"name": "s", "mountPath": "/../../etc"}]}],
            "volumes": [{"name": "s", "emptyDir": {}}]
        }));
        assert!(matches!(
            plan_run(&escaping, &sources(), run),
            Err(PlanError::BadPath(_))
        ));
    }

    #[test]
    fn sub_paths_items_and_working_dirs_land_under_the_run_dir() {
        let run = Path::new("/tmp/run");
        let j = job(json!({
            "containers": [{
                "name": "a", "command": ["true"], "workingDir": "/workspace/task",
                "volumeMounts": [
                    {"name": "files", "mountPath": "/workspace/task"},
                    {"name": "files", "mountPath": "/etc/prompt.md", "subPath": "prompt.md"}
                ]
            }],
            "volumes": [{"name": "files", "configMap": {"name": "web-42-v1-files",
                "items": [{"key": "prompt.md", "path": "prompt.md"}]}}]
        }));
        let plan = plan_run(&j, &sources(), run).expect("plan");
        assert_eq!(plan.cwd, PathBuf::from("/tmp/run/workspace/task"));
        assert_eq!(
            plan.files,
            vec![
                (
                    PathBuf::from("/tmp/run/workspace/task/prompt.md"),
                    b"# Prompt".to_vec()
                ),
                (
                    PathBuf::from("/tmp/run/etc/prompt.md"),
                    b"# Prompt".to_vec()
                ),
            ]
        );
        let app =
            job(json!({"containers": [{"name": "a", "command": ["true"], "workingDir": "/app"}]}));
        assert_eq!(
            plan_run(&app, &sources(), run).expect("plan").cwd,
            PathBuf::from("/tmp/run/app")
        );
    }

    #[test]
    fn env_from_adds_every_valid_key_with_its_prefix() {
        let j = job(json!({"containers": [{
            "name": "a", "command": ["true"],
            "envFrom": [{"configMapRef": {"name": "agent-settings"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "agent-secret"}}]
        }]}));
        let plan = plan_run(&j, &sources(), Path::new("/tmp/run")).expect("plan");
        let env: BTreeMap<_, _> = plan.env.into_iter().collect();
        assert_eq!(env["CFG_model"], "big");
        assert_eq!(env["token"], "s3cret");
    }
}
