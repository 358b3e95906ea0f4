//! Agent profiles: a YAML file in, the profile that runs a TaskRun's `agentName` out.
//!
//! A profile says which image and command run the agent, with which env, resources and service
//! account, how long it may run, how often it is retried and where the task's markdown files are
//! mounted. Every limit has a default, so no task runs forever.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Used when neither the profile nor the file's `defaults` say otherwise.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 3600;
pub const DEFAULT_BACKOFF_LIMIT: i32 = 2;
pub const DEFAULT_TTL_SECONDS_AFTER_FINISHED: i32 = 86_400;
pub const DEFAULT_MOUNT_PATH: &str = "/workspace/task";
/// How long a task may be blocked (Pending for a reason other than Queued or Suspended) before
/// its `Stalled` condition turns True.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(300);

/// How one agent runs. Limits left out come from [`ProfileDefaults`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentProfile {
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Mount the service account's API token into the agent's Pod. Unset: the ServiceAccount
    /// decides (deploy/'s `orchestrator-agent` mounts none); `true` only for an agent that
    /// must call the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Directory in the container that holds one file per markdown file of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Where the agent writes its one-line result (the container's `terminationMessagePath`);
    /// Kubernetes' default is `/dev/termination-log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    /// Jobs of this agent that may run at once; the rest wait as `Pending/Queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// How long a task may stay Pending for a reason other than Queued or Suspended before its
    /// `Stalled` condition turns True: seconds, or a number with `s`, `m` or `h` (`"5m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<StallAfter>,
}

/// `stallAfter`: `300`, `"90s"`, `"5m"` or `"1h"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StallAfter {
    Seconds(u64),
    Text(String),
}

impl StallAfter {
    /// The duration, or why the text is not one.
    pub fn duration(&self) -> Result<Duration, String> {
        let text = match self {
            StallAfter::Seconds(s) => return Ok(Duration::from_secs(*s)),
            StallAfter::Text(t) => t.trim(),
        };
        let (number, unit) = text.split_at(
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len()),
        );
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => 0,
        };
        match number.parse::<u64>() {
            Ok(n) if scale > 0 => Ok(Duration::from_secs(n.saturating_mul(scale))),
            _ => Err(format!(
                "{text:?} is not a duration: write seconds (300) or a number with s, m or h (\"5m\")"
            )),
        }
    }
}

/// File-wide defaults for the limits of every profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileDefaults {
    #[serde(default = "default_deadline")]
    pub active_deadline_seconds: i64,
    #[serde(default = "default_backoff")]
    pub backoff_limit: i32,
    #[serde(default = "default_ttl")]
    pub ttl_seconds_after_finished: i32,
    #[serde(default = "default_mount")]
    pub mount_path: String,
}

fn default_deadline() -> i64 {
    DEFAULT_ACTIVE_DEADLINE_SECONDS
}
fn default_backoff() -> i32 {
    DEFAULT_BACKOFF_LIMIT
}
fn default_ttl() -> i32 {
    DEFAULT_TTL_SECONDS_AFTER_FINISHED
}
fn default_mount() -> String {
    DEFAULT_MOUNT_PATH.to_string()
}

impl Default for ProfileDefaults {
    fn default() -> Self {
        ProfileDefaults {
            active_deadline_seconds: DEFAULT_ACTIVE_DEADLINE_SECONDS,
            backoff_limit: DEFAULT_BACKOFF_LIMIT,
            ttl_seconds_after_finished: DEFAULT_TTL_SECONDS_AFTER_FINISHED,
            mount_path: DEFAULT_MOUNT_PATH.to_string(),
        }
    }
}

/// The contents of an agent-profiles file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentProfiles {
    #[serde(default)]
    pub defaults: ProfileDefaults,
    pub agents: BTreeMap<String, AgentProfile>,
}

/// A profile with every limit filled in: what the Job builder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedProfile<'a> {
    pub name: &'a str,
    pub profile: &'a AgentProfile,
    pub active_deadline_seconds: i64,
    pub backoff_limit: i32,
    pub ttl_seconds_after_finished: i32,
    pub mount_path: &'a str,
    /// `None`: no limit of its own (the global cap still applies).
    pub max_concurrent: Option<u32>,
    pub stall_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    #[error("cannot read agent profiles file {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "agent profiles file {path} is not valid: {source} (see deploy/agents.yaml for the format)"
    )]
    Parse {
        path: String,
        #[source]
        source: serde_norway::Error,
    },
    #[error("agent profiles file {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// `agentName` names no profile; the message lists the ones that exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("agent {name:?} is not defined; known agents: {}", known_list(.known))]
pub struct UnknownAgent {
    pub name: String,
    pub known: Vec<String>,
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none (the agent profiles file defines no agents)".to_string()
    } else {
        known.join(", ")
    }
}

impl AgentProfiles {
    /// Reads and checks a profiles file.
    pub fn load(path: &Path) -> Result<AgentProfiles, AgentsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AgentsError::ReadFile {
            path: shown.clone(),
            source,
        })?;
        AgentProfiles::parse(&text, &shown)
    }

    /// Parses and checks profiles; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<AgentProfiles, AgentsError> {
        let profiles: AgentProfiles =
            serde_norway::from_str(text).map_err(|source| AgentsError::Parse {
                path: origin.to_string(),
                source,
            })?;
        profiles.check().map_err(|problem| AgentsError::Invalid {
            path: origin.to_string(),
            problem,
        })?;
        Ok(profiles)
    }

    fn check(&self) -> Result<(), String> {
        let positive = |what: &str, agent: &str, v: i64| {
            if v <= 0 {
                Err(format!("{what} of {agent} must be positive, got {v}"))
            } else {
                Ok(())
            }
        };
        positive(
            "defaults.activeDeadlineSeconds",
            "the file",
            self.defaults.active_deadline_seconds,
        )?;
        for (name, p) in &self.agents {
            if p.image.trim().is_empty() {
                return Err(format!("agent {name:?} has no image"));
            }
            if let Some(d) = p.active_deadline_seconds {
                positive("activeDeadlineSeconds", name, d)?;
            }
            if p.backoff_limit.is_some_and(|b| b < 0) {
                return Err(format!("backoffLimit of {name} must not be negative"));
            }
            if p.mount_path.as_deref().is_some_and(|m| !m.starts_with('/')) {
                return Err(format!("mountPath of {name} must be an absolute path"));
            }
            if p.termination_message_path
                .as_deref()
                .is_some_and(|m| !m.starts_with('/'))
            {
                return Err(format!(
                    "terminationMessagePath of {name} must be an absolute path"
                ));
            }
            if p.max_concurrent == Some(0) {
                return Err(format!(
                    "maxConcurrent of {name} must be at least 1 (leave it out for no limit)"
                ));
            }
            if let Some(stall) = &p.stall_after {
                stall
                    .duration()
                    .map_err(|e| format!("stallAfter of {name}: {e}"))?;
            }
        }
        if !self.defaults.mount_path.starts_with('/') {
            return Err("defaults.mountPath must be an absolute path".to_string());
        }
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// The profile for `name` with every default applied.
    pub fn resolve<'a>(&'a self, name: &str) -> Result<ResolvedProfile<'a>, UnknownAgent> {
        let (name, profile) = self
            .agents
            .get_key_value(name)
            .ok_or_else(|| UnknownAgent {
                name: name.to_string(),
                known: self.names(),
            })?;
        Ok(ResolvedProfile {
            name,
            profile,
            active_deadline_seconds: profile
                .active_deadline_seconds
                .unwrap_or(self.defaults.active_deadline_seconds),
            backoff_limit: profile.backoff_limit.unwrap_or(self.defaults.backoff_limit),
            ttl_seconds_after_finished: profile
                .ttl_seconds_after_finished
                .unwrap_or(self.defaults.ttl_seconds_after_finished),
            mount_path: profile
                .mount_path
                .as_deref()
                .unwrap_or(&self.defaults.mount_path),
            max_concurrent: profile.max_concurrent,
            stall_after: profile
                .stall_after
                .as_ref()
                .and_then(|s| s.duration().ok())
                .unwrap_or(DEFAULT_STALL_AFTER),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
defaults:
  activeDeadlineSeconds: 600
agents:
  claude-code:
    image: ghcr.io/example/claude-code:1
    command: ["claude"]
    args: ["--print"]
    env: [{name: MODE, value: batch}]
    backoffLimit: 0
    mountPath: /task
  codex:
    image: ghcr.io/example/codex:1
    activeDeadlineSeconds: 60
"#;

    #[test]
    fn defaults_fill_what_a_profile_leaves_out() {
        let p = AgentProfiles::parse(FILE, "test").unwrap();
        let cases = [
            (
                "claude-code",
                600,
                0,
                DEFAULT_TTL_SECONDS_AFTER_FINISHED,
                "/task",
            ),
            (
                "codex",
                60,
                DEFAULT_BACKOFF_LIMIT,
                DEFAULT_TTL_SECONDS_AFTER_FINISHED,
                DEFAULT_MOUNT_PATH,
            ),
        ];
        for (name, deadline, backoff, ttl, mount) in cases {
            let r = p.resolve(name).unwrap();
            assert_eq!(r.active_deadline_seconds, deadline, "{name}");
            assert_eq!(r.backoff_limit, backoff, "{name}");
            assert_eq!(r.ttl_seconds_after_finished, ttl, "{name}");
            assert_eq!(r.mount_path, mount, "{name}");
        }
        assert_eq!(
            p.resolve("claude-code").unwrap().profile.env[0].name,
            "MODE"
        );
    }

    #[test]
    fn limits_and_stall_threshold_resolve_with_defaults() {
        let p = AgentProfiles::parse(
            "agents:\n  a: {image: x, maxConcurrent: 5, stallAfter: 90s}\n  b: {image: x, stallAfter: 120}\n  c: {image: x, stallAfter: 2m}\n  d: {image: x}\n",
            "t",
        )
        .unwrap();
        let cases = [
            ("a", Some(5), 90),
            ("b", None, 120),
            ("c", None, 120),
            ("d", None, DEFAULT_STALL_AFTER.as_secs()),
        ];
        for (name, max, stall) in cases {
            let r = p.resolve(name).unwrap();
            assert_eq!(r.max_concurrent, max, "{name}");
            assert_eq!(r.stall_after, Duration::from_secs(stall), "{name}");
        }
    }

    #[test]
    fn an_unknown_agent_names_itself_and_the_known_ones() {
        let p = AgentProfiles::parse(FILE, "test").unwrap();
        let err = p.resolve("gpt-9").unwrap_err();
        assert_eq!(
            err.to_string(),
            "agent \"gpt-9\" is not defined; known agents: claude-code, codex"
        );
        let empty = AgentProfiles::default().resolve("x").unwrap_err();
        assert!(empty.to_string().contains("defines no agents"), "{empty}");
    }

    #[test]
    fn bad_files_are_rejected_with_the_reason() {
        let cases = [
            ("agents: {a: {image: ''}}", "has no image"),
            (
                "agents: {a: {image: x, activeDeadlineSeconds: 0}}",
                "must be positive",
            ),
            (
                "agents: {a: {image: x, backoffLimit: -1}}",
                "must not be negative",
            ),
            ("agents: {a: {image: x, mountPath: rel}}", "absolute path"),
            ("agents: {a: {image: x, imgae: y}}", "unknown field"),
            ("agent: {}", "unknown field"),
            (
                "agents: {a: {image: x, maxConcurrent: 0}}",
                "maxConcurrent of a must be at least 1",
            ),
            (
                "agents: {a: {image: x, stallAfter: 5 minutes}}",
                "stallAfter of a: \"5 minutes\" is not a duration",
            ),
            (
                "agents: {a: {image: x, terminationMessagePath: out.txt}}",
                "terminationMessagePath of a must be an absolute path",
            ),
        ];
        for (text, want) in cases {
            let err = AgentProfiles::parse(text, "f.yaml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("f.yaml"), "{text}: {err}");
        }
    }

    #[test]
    fn shipped_profile_files_parse() {
        for file in ["deploy/agents.yaml", "example-repo/agents.yaml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let p = AgentProfiles::load(&path).unwrap_or_else(|e| panic!("{e}"));
            for agent in ["claude-code", "codex", "aider"] {
                assert!(p.resolve(agent).is_ok(), "{file} lacks {agent}");
            }
        }
    }
}
