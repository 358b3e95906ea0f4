//! The children of a TaskRun: a TaskRun and its agent profile in, the ConfigMap with its markdown
//! files and the Job that runs the agent out. Pure: no client, no clock.

use super::agents::ResolvedProfile;
use crate::crd::TaskRun;
use crate::{names, prompt};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, PodSpec, PodTemplateSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use std::collections::BTreeMap;

/// Records which desired content an object was built from, so that a later reconcile can tell
/// "same object" from "same name, different content" without comparing server-defaulted fields.
pub const ANNOTATION_SPEC_HASH: &str = "orchestrator.io/spec-hash";
/// The name of the agent's container and of the volume holding the markdown files.
pub const CONTAINER_NAME: &str = "agent";
pub const VOLUME_NAME: &str = "task-files";

/// Env vars every agent gets, so a command can find its task without knowing the profile.
pub const ENV_TASK_DIR: &str = "TASK_DIR";
pub const ENV_TASK_ID: &str = "TASK_ID";
pub const ENV_SERVICE_NAME: &str = "TASK_SERVICE_NAME";
pub const ENV_CONTEXT_VERSION: &str = "TASK_CONTEXT_VERSION";
pub const ENV_AGENT_NAME: &str = "TASK_AGENT_NAME";
/// Env var naming the file the agent writes its result to. Kubernetes does not set it; the
/// local runner does (to a writable file it reads back), so an agent writes to
/// `"${TERMINATION_MESSAGE_PATH:-/dev/termination-log}"` and works in both.
pub const ENV_TERMINATION_MESSAGE_PATH: &str = "TERMINATION_MESSAGE_PATH";
/// The kubelet keeps the termination message file, or on a failure without one, the last lines
/// of the log: so a crashed agent still reports why.
pub const TERMINATION_MESSAGE_POLICY: &str = "FallbackToLogsOnError";

/// The TaskRun lacks what an owner reference needs (it was never stored by a server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TaskRun {name:?} has no uid yet; children need an owner reference to it")]
pub struct MissingUid {
    pub name: String,
}

/// The owner reference every child carries: controller=true, blockOwnerDeletion=true, so the
/// garbage collector removes children with their TaskRun and `.owns()` maps them back to it.
pub fn owner_reference(tr: &TaskRun) -> Result<OwnerReference, MissingUid> {
    let mut owner = tr.controller_owner_ref(&()).ok_or_else(|| MissingUid {
        name: tr.metadata.name.clone().unwrap_or_default(),
    })?;
    // kube leaves this unset; with it, a foreground deletion of the TaskRun waits for its Jobs.
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// Labels on both children: task-id, service-name, context-version and managed-by.
pub fn child_labels(tr: &TaskRun) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            names::LABEL_TASK_ID.to_string(),
            tr.spec.task_id.to_string(),
        ),
        (
            names::LABEL_SERVICE_NAME.to_string(),
            names::fit_label(&tr.spec.service_name),
        ),
        (
            names::LABEL_CONTEXT_VERSION.to_string(),
            tr.spec.context_version.to_string(),
        ),
        (
            names::LABEL_MANAGED_BY.to_string(),
            names::MANAGED_BY.to_string(),
        ),
    ])
}

pub fn config_map_name(tr: &TaskRun) -> String {
    names::config_map_name(
        &tr.spec.service_name,
        tr.spec.task_id,
        tr.spec.context_version,
    )
}

pub fn job_name(tr: &TaskRun) -> String {
    names::job_name(
        &tr.spec.service_name,
        tr.spec.task_id,
        tr.spec.context_version,
    )
}

/// The Job of one attempt: [`job_name`] for the first, `-r<N>` after it for a retry.
pub fn attempt_job_name(tr: &TaskRun, attempt: u32) -> String {
    names::attempt_job_name(
        &tr.spec.service_name,
        tr.spec.task_id,
        tr.spec.context_version,
        attempt,
    )
}

fn child_meta(tr: &TaskRun, name: String, owner: &OwnerReference, hash: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: tr.metadata.namespace.clone(),
        labels: Some(child_labels(tr)),
        annotations: Some(BTreeMap::from([(ANNOTATION_SPEC_HASH.to_string(), hash)])),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// `<service>-<taskId>-v<version>-files`, one key per markdown file, plus `TASK.md`: every file
/// in reading order under a heading (see [`crate::prompt`]), so `$TASK_DIR/TASK.md` is the
/// whole task.
pub fn build_config_map(tr: &TaskRun, owner: &OwnerReference) -> ConfigMap {
    let mut data: BTreeMap<String, String> = tr
        .spec
        .markdown_files
        .iter()
        .map(|f| (f.filename.clone(), f.content.clone()))
        .collect();
    data.insert(
        prompt::TASK_FILE.to_string(),
        prompt::task_markdown(&tr.spec.markdown_files),
    );
    let hash = content_hash(&data);
    ConfigMap {
        metadata: child_meta(tr, config_map_name(tr), owner, hash),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// `<service>-<taskId>-v<version>`: the agent's container with the ConfigMap mounted read-only
/// at the profile's mount path, never restarted in place (the Job's backoffLimit retries it),
/// and always bounded by activeDeadlineSeconds.
pub fn build_job(tr: &TaskRun, profile: &ResolvedProfile<'_>, owner: &OwnerReference) -> Job {
    build_attempt_job(tr, profile, owner, 1)
}

/// [`build_job`] for attempt `attempt` (1 is the first run, 2 the first retry): named by
/// [`attempt_job_name`] and labelled `orchestrator.io/attempt`, on the Job and its Pods.
pub fn build_attempt_job(
    tr: &TaskRun,
    profile: &ResolvedProfile<'_>,
    owner: &OwnerReference,
    attempt: u32,
) -> Job {
    let agent = profile.profile;
    let mut labels = child_labels(tr);
    labels.insert(names::LABEL_ATTEMPT.to_string(), attempt.max(1).to_string());
    let mut env = vec![
        env_var(ENV_TASK_DIR, profile.mount_path),
        env_var(ENV_TASK_ID, &tr.spec.task_id.to_string()),
        env_var(ENV_SERVICE_NAME, &tr.spec.service_name),
        env_var(ENV_CONTEXT_VERSION, &tr.spec.context_version.to_string()),
        env_var(ENV_AGENT_NAME, profile.name),
    ];
    // The profile's own env comes last so it can override ours.
    env.extend(agent.env.iter().cloned());
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(agent.image.clone()),
        command: (!agent.command.is_empty()).then(|| agent.command.clone()),
        args: (!agent.args.is_empty()).then(|| agent.args.clone()),
        env: Some(env),
        resources: agent.resources.clone(),
        termination_message_path: agent.termination_message_path.clone(),
        termination_message_policy: Some(TERMINATION_MESSAGE_POLICY.to_string()),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME_NAME.to_string(),
            mount_path: profile.mount_path.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let spec = JobSpec {
        backoff_limit: Some(profile.backoff_limit),
        active_deadline_seconds: Some(profile.active_deadline_seconds),
        ttl_seconds_after_finished: Some(profile.ttl_seconds_after_finished),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".to_string()),
                service_account_name: agent.service_account_name.clone(),
                automount_service_account_token: agent.automount_service_account_token,
                containers: vec![container],
                volumes: Some(vec![Volume {
                    name: VOLUME_NAME.to_string(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: config_map_name(tr),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                }]),
                ..PodSpec::default()
            }),
        },
        ..JobSpec::default()
    };
    let hash = content_hash(&spec);
    let mut metadata = child_meta(tr, attempt_job_name(tr, attempt), owner, hash);
    metadata.labels = Some(labels);
    Job {
        metadata,
        spec: Some(spec),
        ..Job::default()
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

/// sha256 over the JSON of what we built; serde_json writes k8s-openapi structs and BTreeMaps in
/// a fixed order, so equal content gives an equal hash.
fn content_hash<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    names::short_hash(&json, 16)
}

/// The spec hash an existing child was built from, if it carries one.
pub fn spec_hash_of(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(ANNOTATION_SPEC_HASH)
        .map(String::as_str)
}

/// Whether an existing child is controlled by this TaskRun (same uid, controller=true).
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner_uid && r.controller == Some(true))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::controller::agents::AgentProfiles;
    use crate::crd::{MarkdownFile, TaskRunSpec};

    pub(crate) fn task_run(service: &str, task_id: i64, version: i64) -> TaskRun {
        let mut tr = TaskRun::new(
            &names::task_run_name(task_id),
            TaskRunSpec {
                task_id,
                service_name: service.to_string(),
                agent_name: "claude-code".to_string(),
                context_version: version,
                content_digest: "sha256:abc".to_string(),
                source_path: format!("tasks/{task_id}-x"),
                suspend: false,
                priority: 0,
                markdown_files: vec![
                    MarkdownFile {
                        filename: "acceptance.md".into(),
                        content: "# Done when\n".into(),
                    },
                    MarkdownFile {
                        filename: "prompt.md".into(),
                        content: "# Build it\n".into(),
                    },
                ],
            },
        );
        tr.metadata.namespace = Some("tasks".into());
        tr.metadata.uid = Some(format!("uid-{task_id}"));
        tr
    }

    fn profiles() -> AgentProfiles {
        AgentProfiles::parse(
            "agents:\n  claude-code:\n    image: img:1\n    command: [sh, -c]\n    args: ['cat $TASK_DIR/prompt.md']\n    serviceAccountName: agent\n    env: [{name: TASK_DIR, value: /override}]\n  slow:\n    image: img:2\n    activeDeadlineSeconds: 5\n    mountPath: /in\n",
            "test",
        )
        .unwrap()
    }

    #[test]
    fn names_and_labels_follow_the_task() {
        let long = "s".repeat(70);
        let cases: &[(&str, i64, i64, &str, &str)] = &[
            ("web", 42, 3, "web-42-v3", "web-42-v3-files"),
            ("api", 7, 12, "api-7-v12", "api-7-v12-files"),
        ];
        let p = profiles();
        let profile = p.resolve("claude-code").unwrap();
        for (service, id, version, job, cm) in cases {
            let tr = task_run(service, *id, *version);
            let owner = owner_reference(&tr).unwrap();
            let j = build_job(&tr, &profile, &owner);
            let c = build_config_map(&tr, &owner);
            assert_eq!(j.metadata.name.as_deref(), Some(*job));
            assert_eq!(c.metadata.name.as_deref(), Some(*cm));
            for labels in [&j.metadata.labels, &c.metadata.labels] {
                let l = labels.as_ref().unwrap();
                assert_eq!(l[names::LABEL_TASK_ID], id.to_string());
                assert_eq!(l[names::LABEL_SERVICE_NAME], *service);
                assert_eq!(l[names::LABEL_CONTEXT_VERSION], version.to_string());
            }
            assert_eq!(j.metadata.namespace.as_deref(), Some("tasks"));
        }
        // Too long for a label: cut to 63 with a hash suffix, valid and distinct per task.
        let a = task_run(&long, 1, 1);
        let b = task_run(&long, 2, 1);
        let (ja, jb) = (job_name(&a), job_name(&b));
        let (ca, cb) = (config_map_name(&a), config_map_name(&b));
        for n in [&ja, &jb, &ca, &cb] {
            assert!(names::is_dns1123_label(n), "{n}");
            assert_eq!(n.len(), names::MAX_LABEL_LEN, "{n}");
        }
        assert_ne!(ja, jb);
        assert_ne!(ca, cb);
        assert_ne!(ja, ca);
        let label = &child_labels(&a)[names::LABEL_SERVICE_NAME];
        assert!(names::is_dns1123_label(label), "{label}");
    }

    #[test]
    fn owner_reference_makes_the_task_run_the_controller() {
        let tr = task_run("web", 42, 1);
        let owner = owner_reference(&tr).unwrap();
        assert_eq!(owner.api_version, "orchestrator.io/v1");
        assert_eq!(owner.kind, "TaskRun");
        assert_eq!(owner.name, "task-42");
        assert_eq!(owner.uid, "uid-42");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let p = profiles();
        let job = build_job(&tr, &p.resolve("claude-code").unwrap(), &owner);
        assert!(is_controlled_by(&job.metadata, "uid-42"));
        assert!(!is_controlled_by(&job.metadata, "uid-other"));
        let cm = build_config_map(&tr, &owner);
        assert_eq!(cm.metadata.owner_references, Some(vec![owner]));

        let mut unsaved = tr.clone();
        unsaved.metadata.uid = None;
        assert_eq!(
            owner_reference(&unsaved).unwrap_err().to_string(),
            "TaskRun \"task-42\" has no uid yet; children need an owner reference to it"
        );
    }

    #[test]
    fn config_map_holds_one_key_per_markdown_file() {
        let tr = task_run("web", 42, 1);
        let cm = build_config_map(&tr, &owner_reference(&tr).unwrap());
        let data = cm.data.unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data["prompt.md"], "# Build it\n");
        assert_eq!(data["acceptance.md"], "# Done when\n");
        // prompt.md first although the TaskRun lists acceptance.md first.
        assert_eq!(
            data["TASK.md"],
            "# prompt.md\n\n# Build it\n\n# acceptance.md\n\n# Done when\n"
        );
    }

    #[test]
    fn the_agent_container_reports_its_result_by_termination_message() {
        let p = AgentProfiles::parse(
            "agents:\n  a: {image: x}\n  b: {image: x, terminationMessagePath: /tmp/result}\n",
            "t",
        )
        .unwrap();
        let tr = task_run("web", 42, 1);
        let owner = owner_reference(&tr).unwrap();
        for (agent, path) in [("a", None), ("b", Some("/tmp/result"))] {
            let job = build_job(&tr, &p.resolve(agent).unwrap(), &owner);
            let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
            assert_eq!(
                c.termination_message_policy.as_deref(),
                Some("FallbackToLogsOnError"),
                "{agent}"
            );
            assert_eq!(c.termination_message_path.as_deref(), path, "{agent}");
        }
    }

    #[test]
    fn a_retry_is_a_new_job_of_the_same_version() {
        let p = profiles();
        let profile = p.resolve("claude-code").unwrap();
        let tr = task_run("web", 42, 3);
        let owner = owner_reference(&tr).unwrap();
        // (attempt, Job name, attempt label)
        let cases = [
            (1, "web-42-v3", "1"),
            (2, "web-42-v3-r2", "2"),
            (10, "web-42-v3-r10", "10"),
        ];
        for (attempt, name, label) in cases {
            let job = build_attempt_job(&tr, &profile, &owner, attempt);
            assert_eq!(job.metadata.name.as_deref(), Some(name));
            let labels = job.metadata.labels.as_ref().unwrap();
            assert_eq!(labels[names::LABEL_ATTEMPT], label);
            assert_eq!(labels[names::LABEL_CONTEXT_VERSION], "3");
            let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
            assert_eq!(pod_labels[names::LABEL_ATTEMPT], label);
            // Same ConfigMap: a retry runs the same content.
            assert_eq!(config_map_name(&tr), "web-42-v3-files");
        }
        assert_eq!(
            build_job(&tr, &profile, &owner),
            build_attempt_job(&tr, &profile, &owner, 1)
        );
    }

    #[test]
    fn job_mounts_the_files_and_is_bounded() {
        let p = profiles();
        let tr = task_run("web", 42, 1);
        let owner = owner_reference(&tr).unwrap();
        // (agent, mount path, deadline, backoff, env TASK_DIR as the container sees it last)
        let cases = [
            ("claude-code", "/workspace/task", 3600, 2, "/override"),
            ("slow", "/in", 5, 2, "/in"),
        ];
        for (agent, mount, deadline, backoff, task_dir) in cases {
            let job = build_job(&tr, &p.resolve(agent).unwrap(), &owner);
            let spec = job.spec.as_ref().unwrap();
            assert_eq!(spec.active_deadline_seconds, Some(deadline), "{agent}");
            assert_eq!(spec.backoff_limit, Some(backoff), "{agent}");
            assert_eq!(spec.ttl_seconds_after_finished, Some(86_400), "{agent}");
            let pod = spec.template.spec.as_ref().unwrap();
            assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
            let volume = &pod.volumes.as_ref().unwrap()[0];
            assert_eq!(volume.name, VOLUME_NAME);
            assert_eq!(volume.config_map.as_ref().unwrap().name, "web-42-v1-files");
            let c = &pod.containers[0];
            let m = &c.volume_mounts.as_ref().unwrap()[0];
            assert_eq!(
                (m.name.as_str(), m.mount_path.as_str()),
                (VOLUME_NAME, mount)
            );
            assert_eq!(m.read_only, Some(true));
            let last_task_dir = c
                .env
                .iter()
                .flatten()
                .rfind(|e| e.name == ENV_TASK_DIR)
                .and_then(|e| e.value.clone());
            assert_eq!(last_task_dir.as_deref(), Some(task_dir), "{agent}");
        }
        let job = build_job(&tr, &p.resolve("claude-code").unwrap(), &owner);
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("agent"));
        assert_eq!(
            pod.containers[0].command,
            Some(vec!["sh".into(), "-c".into()])
        );
        assert_eq!(pod.containers[0].image.as_deref(), Some("img:1"));
    }

    #[test]
    fn the_api_token_is_mounted_only_when_the_profile_asks() {
        let p = AgentProfiles::parse(
            "agents:\n  quiet: {image: i}\n  operator: {image: i, automountServiceAccountToken: true}\n  no: {image: i, automountServiceAccountToken: false}\n",
            "test",
        )
        .unwrap();
        let tr = task_run("web", 42, 1);
        let owner = owner_reference(&tr).unwrap();
        for (agent, want) in [
            ("quiet", None),
            ("operator", Some(true)),
            ("no", Some(false)),
        ] {
            let job = build_job(&tr, &p.resolve(agent).unwrap(), &owner);
            let pod = job.spec.unwrap().template.spec.unwrap();
            // Unset leaves it to the ServiceAccount (deploy/'s agent account mounts none).
            assert_eq!(pod.automount_service_account_token, want, "{agent}");
        }
    }

    #[test]
    fn spec_hash_changes_with_content_only() {
        let p = profiles();
        let tr = task_run("web", 42, 1);
        let owner = owner_reference(&tr).unwrap();
        let claude = p.resolve("claude-code").unwrap();
        let hash = |j: &Job| spec_hash_of(&j.metadata).unwrap().to_string();
        let a = build_job(&tr, &claude, &owner);
        assert_eq!(hash(&a), hash(&build_job(&tr, &claude, &owner)));
        assert_ne!(
            hash(&a),
            hash(&build_job(&tr, &p.resolve("slow").unwrap(), &owner))
        );
        let mut edited = tr.clone();
        edited.spec.markdown_files[0].content.push('!');
        let cm = |t: &TaskRun| {
            spec_hash_of(&build_config_map(t, &owner).metadata)
                .unwrap()
                .to_string()
        };
        assert_ne!(cm(&tr), cm(&edited));
    }
}
