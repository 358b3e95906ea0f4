//! Where `run`'s agent profiles come from, and how they follow it: exactly one of a file
//! (`--agents`, reloaded through notify when it changes), a ConfigMap (`--agents-configmap`,
//! watched) or a file in the synced revision (`--agents-from-repo`, read from the same commit
//! as the tasks). Each source hands new versions to [`LiveProfiles::offer`], which keeps the last
//! good profiles when a new version is invalid.

use crate::controller::AgentProfiles;
use crate::controller::profiles::{LiveProfiles, Update};
use crate::sync::report::ReportReceiver;
use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::path::{Path, PathBuf};
use tokio::sync::watch;

/// How long a profiles file must be left alone after a change before it is read.
const FILE_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// The key of the agent profiles in a ConfigMap.
pub const CONFIGMAP_KEY: &str = "agents.yaml";

/// The one source of the agent profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSource {
    File(PathBuf),
    ConfigMap(String),
    /// A path inside the repository, read at the synced revision.
    Repo(String),
}

impl AgentSource {
    pub fn describe(&self) -> String {
        match self {
            AgentSource::File(path) => format!("file {}", path.display()),
            AgentSource::ConfigMap(name) => format!("ConfigMap {name} (key {CONFIGMAP_KEY})"),
            AgentSource::Repo(path) => format!("{path} in the synced revision"),
        }
    }
}

/// Loads a profiles file and reloads it whenever it changes. The watch is on the file's folder,
/// so that an editor's write-and-rename and a ConfigMap volume's symlink swap are both seen.
pub fn watch_file(path: &Path) -> anyhow::Result<(LiveProfiles, notify::RecommendedWatcher)> {
    use notify::Watcher;
    let profiles = AgentProfiles::load(path)?;
    let origin = path.display().to_string();
    let live = LiveProfiles::new(profiles, origin.clone());
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let file = path.to_path_buf();
    let target = live.clone();
    let (events, quiet) = std::sync::mpsc::channel::<()>();
    // A write is often several events (truncate, write, rename): read once it has been quiet
    // for a moment, so a half-written file is not mistaken for an invalid version.
    std::thread::spawn(move || {
        while quiet.recv().is_ok() {
            while quiet.recv_timeout(FILE_SETTLE).is_ok() {}
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    target.offer(&text, &origin);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Between an editor's delete and rename: the next event brings it back.
                }
                Err(e) => target.source_failed(format!("cannot read {origin}: {e}")),
            }
        }
    });
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = events.send(());
        }
    })
    .context("starting the agent profiles file watch")?;
    watcher
        .watch(&folder, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {} for agent profile changes", folder.display()))?;
    Ok((live, watcher))
}

/// Reads the ConfigMap's profiles; a missing ConfigMap or key is an error naming the fix.
pub async fn load_configmap(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<LiveProfiles> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(cm) = api
        .get_opt(name)
        .await
        .with_context(|| format!("reading the agent profiles ConfigMap {namespace}/{name}"))?
    else {
        bail!(
            "--agents-configmap {name}: no such ConfigMap in namespace {namespace}; create it with `kubectl create configmap {name} -n {namespace} --from-file={CONFIGMAP_KEY}`"
        );
    };
    let origin = format!("ConfigMap {namespace}/{name}");
    let text =
        configmap_text(&cm).with_context(|| format!("{origin} has no key {CONFIGMAP_KEY}"))?;
    Ok(LiveProfiles::new(
        AgentProfiles::parse(text, &origin)?,
        origin,
    ))
}

fn configmap_text(cm: &ConfigMap) -> Option<&str> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(CONFIGMAP_KEY))
        .map(String::as_str)
}

/// Watches the ConfigMap and offers each new version until `shutdown`.
pub async fn follow_configmap(
    client: Client,
    namespace: String,
    name: String,
    live: LiveProfiles,
    mut shutdown: watch::Receiver<bool>,
) {
    let recorder = crate::controller::events::recorder(client.clone());
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let origin = format!("ConfigMap {namespace}/{name}");
    let mut events = std::pin::pin!(
        watcher::watcher(api, config).backoff(crate::watch_backoff::watch_backoff())
    );
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match event {
            Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                let rejected = match configmap_text(&cm) {
                    Some(text) => match live.offer(text, &origin) {
                        Update::Rejected(problem) => Some(problem),
                        _ => None,
                    },
                    None => {
                        let problem = format!("{origin} has no key {CONFIGMAP_KEY}");
                        live.source_failed(problem.clone());
                        Some(problem)
                    }
                };
                if let Some(problem) = rejected {
                    publish_rejection(&recorder, &cm, problem).await;
                }
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                live.source_failed(format!("{origin} was deleted"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "agent profiles ConfigMap watch"),
            None => return,
        }
    }
}

/// The reason of the Warning event on a ConfigMap whose new profiles were not taken.
pub const REASON_INVALID_PROFILES: &str = "InvalidAgentProfiles";

/// A Warning event on the ConfigMap, so `kubectl describe configmap` shows why an edit did not
/// take effect. A failed publish is logged only.
async fn publish_rejection(
    recorder: &crate::controller::events::Recorder,
    cm: &ConfigMap,
    problem: String,
) {
    use crate::controller::events::{Event, EventType};
    use kube::Resource;
    let event = Event {
        type_: EventType::Warning,
        reason: REASON_INVALID_PROFILES.to_string(),
        note: Some(problem.chars().take(1000).collect()),
        action: "LoadAgentProfiles".to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &cm.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish the invalid agent profiles event");
    }
}

/// The profiles file at `path` in `commit` of the repository at `repo`, read from the object
/// database like the tasks: the blob id (to skip unchanged versions) and its text.
pub fn read_at_revision(repo: &Path, commit: &str, path: &str) -> Result<(String, String), String> {
    let git = git2::Repository::open(repo).map_err(|e| e.message().to_string())?;
    let oid = git2::Oid::from_str(commit).map_err(|e| e.message().to_string())?;
    let tree = git
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| e.message().to_string())?;
    let entry = tree
        .get_path(Path::new(path.trim_matches('/')))
        .map_err(|_| format!("{path} does not exist at {commit}"))?;
    let blob = git
        .find_blob(entry.id())
        .map_err(|_| format!("{path} at {commit} is not a file"))?;
    let text = std::str::from_utf8(blob.content())
        .map_err(|_| format!("{path} at {commit} is not UTF-8"))?;
    Ok((entry.id().to_string(), text.to_string()))
}

/// Reads the profiles of each newly synced revision until `shutdown`; an unchanged file is not
/// parsed again.
pub async fn follow_repo(
    repo: PathBuf,
    path: String,
    mut reports: ReportReceiver,
    live: LiveProfiles,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_blob = None;
    loop {
        let revision = reports
            .borrow_and_update()
            .as_ref()
            .map(|r| r.revision.clone());
        if let Some(revision) = revision {
            let (repo, path_in_repo, commit) =
                (repo.clone(), path.clone(), revision.commit.clone());
            let read = tokio::task::spawn_blocking(move || {
                read_at_revision(&repo, &commit, &path_in_repo)
            })
            .await;
            match read {
                Ok(Ok((blob, text))) if last_blob.as_ref() != Some(&blob) => {
                    live.offer(&text, &format!("{path} at {revision}"));
                    last_blob = Some(blob);
                }
                Ok(Ok(_)) => {}
                Ok(Err(problem)) => live.source_failed(problem),
                Err(e) => live.source_failed(e.to_string()),
            }
        }
        tokio::select! {
            changed = reports.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Where a problem with the agent profiles is listed among the note's errors.
pub const NOTE_AT: &str = "agent-profiles";

/// The report as the note shows it: a problem with the newest agent profiles is listed among
/// its errors (at [`NOTE_AT`]), so that it is seen on the commit, not only in the log. The sync
/// status is left as it is: the tasks were synced, and run with the last good profiles. Pure.
pub fn note_profiles_problem(
    mut report: crate::sync::report::SyncReport,
    problem: Option<String>,
) -> crate::sync::report::SyncReport {
    if let Some(message) = problem {
        report.apply_errors.push(crate::sync::report::ApplyError {
            name: NOTE_AT.to_string(),
            message,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profiles_file_is_read_at_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        std::fs::write(dir.path().join("agents.yaml"), "agents: {}\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("agents.yaml")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@e").unwrap();
        let commit = repo
            .commit(Some("HEAD"), &sig, &sig, "m", &tree, &[])
            .unwrap()
            .to_string();
        let (_, text) = read_at_revision(dir.path(), &commit, "agents.yaml").unwrap();
        assert_eq!(text, "agents: {}\n");
        let missing = read_at_revision(dir.path(), &commit, "tasks/agents.yaml").unwrap_err();
        assert!(missing.contains("does not exist"), "{missing}");
    }
}
