//! Pure: a snapshot and the live TaskRuns in, the TaskRuns that should exist (with their
//! contextVersion) out.
//!
//! The cluster is the only memory of versions: the live TaskRun carries `spec.contextVersion`
//! and `spec.contentDigest`, so a restart of orchestrator or a lost local clone changes nothing.
//!
//! Markdown is held at most once, by the snapshot, and read from git it is not held at all (the
//! snapshot's files are names, hashes and blob ids): a desired TaskRun shares the snapshot's
//! files and reads their text only when it is written ([`DesiredTaskRun::apply_body`]), and
//! what the sync keeps of a live TaskRun ([`LiveTaskRun`], a few hundred bytes) holds one
//! fingerprint per file, not the file.

use crate::crd::{MarkdownFile, TaskRun, TaskRunSpec};
use crate::names;
use crate::source::SourceError;
use crate::source::markdown::TaskFile;
use crate::source::snapshot::{ContentDigest, FolderContent, Revision, SourceSnapshot, TaskFolder};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

mod live;
pub use live::*;

/// Which repository and path a sync reads: the identity behind the ownership label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceIdentity {
    /// The repository as it identifies the source: a URL without credentials, or (see
    /// [`SourceIdentity::normalised`]) what identifies it to a person, the same in every clone.
    pub repo: String,
    /// The path inside the repository that holds the task folders ("" for the root).
    pub path: String,
    /// An explicit `--source-name`: the mark is derived from it alone.
    pub name: Option<String>,
    /// Repository strings whose marks (written before marks came from the normalised identity)
    /// this source takes over as its own on its next sync.
    pub legacy_repos: Vec<String>,
}

impl SourceIdentity {
    /// Strips credentials from `repo` before they can reach a label, an annotation or a log.
    pub fn new(repo: &str, path: &str) -> Self {
        Self {
            repo: redact_url(repo),
            path: path.trim_matches('/').to_string(),
            name: None,
            legacy_repos: vec![],
        }
    }

    /// The identity of a repository as a person names it: `remote` is normalised (scheme,
    /// credentials, user, port and `.git` dropped, see [`normalise_repo_url`]), so every clone
    /// of one repository, a CI checkout included, has the same identity. `name` (from
    /// `--source-name`) replaces repository and path in the mark.
    pub fn normalised(remote: &str, path: &str, name: Option<&str>) -> Self {
        Self {
            repo: normalise_repo_url(remote),
            path: path.trim_matches('/').to_string(),
            name: name.map(str::to_string),
            legacy_repos: vec![],
        }
    }

    /// The value of [`names::LABEL_SOURCE`] on every TaskRun this source creates.
    pub fn label_value(&self) -> String {
        match &self.name {
            Some(name) => names::source_label_value(&format!("name:{name}"), ""),
            None => names::source_label_value(&self.repo, &self.path),
        }
    }

    /// How the source is shown to a person (and written to [`names::ANNOTATION_SOURCE`]).
    pub fn display(&self) -> String {
        match (&self.name, self.path.is_empty()) {
            (Some(name), _) => format!("{name} (--source-name)"),
            (None, true) => self.repo.clone(),
            (None, false) => format!("{} (path {})", self.repo, self.path),
        }
    }

    /// Whether `live` carries a mark this source wrote under an earlier identity: the mark of
    /// one of [`Self::legacy_repos`], or of the repository its `source-url` annotation names when
    /// that normalises to this source's repository. Such a TaskRun is this source's own: the
    /// next sync rewrites the mark (same contextVersion, no Job), never prunes it.
    pub fn owns_legacy_mark(&self, live: &LiveTaskRun) -> bool {
        let Some(label) = live.marks.source.as_deref() else {
            return false;
        };
        let annotated = live
            .marks
            .source_url
            .as_deref()
            .filter(|url| self.name.is_none() && normalise_repo_url(url) == self.repo);
        self.legacy_repos
            .iter()
            .map(String::as_str)
            .chain(annotated)
            .any(|repo| names::source_label_value(repo, &self.path) == label)
    }
}

/// What identifies a repository to a person, the same for every clone and transport:
/// `https://user:token@GitHub.com/org/tasks.git/` → `github.com/org/tasks`,
/// `git@github.com:org/tasks.git` and `ssh://git@github.com:22/org/tasks` likewise;
/// `file:///srv/git/tasks.git` → `/srv/git/tasks`. Pure.
pub fn normalise_repo_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url
        .strip_suffix(".git")
        .unwrap_or(url)
        .trim_end_matches('/');
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if scheme == "file" {
            return rest.to_string();
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        (authority.to_string(), path.to_string())
    } else if let Some((authority, path)) = url
        .split_once(':')
        .filter(|(host, _)| !host.contains('/') && host.len() > 1)
    {
        // scp-like `git@host:owner/repo`
        (
            authority.to_string(),
            format!("/{}", path.trim_start_matches('/')),
        )
    } else {
        return url.to_string();
    };
    let host = host.rsplit('@').next().unwrap_or(&host);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    format!("{}{path}", host.to_ascii_lowercase())
}

/// One TaskRun as this source wants it, as small as it can be held for every task: its name and
/// version, the snapshot's record of its folder and its path (shared, never copied) and what
/// every TaskRun of the sync shares ([`ApplyTarget`]). The apply body is built per write
/// ([`Self::apply_body`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredTaskRun {
    pub task_id: i64,
    /// Shared with the sync's report.
    pub name: Arc<str>,
    pub context_version: i64,
    /// The folder's content as the snapshot holds it (digest, service and agent, `suspend`
    /// and `priority`, markdown files): the folder cache's own record, never copied.
    pub folder: Arc<FolderContent>,
    /// The task folder's path inside the repository: the snapshot's, shared with the report.
    pub source_path: Arc<str>,
    /// The revision that produced this content version, and its time; shared by every task
    /// that revision produced.
    pub produced_by: Arc<Producer>,
    /// Namespace and source: the same for every TaskRun of one sync.
    pub target: Arc<ApplyTarget>,
}

/// The revision that produced a content version (the revision annotation) and that revision's
/// commit time ([`names::ANNOTATION_REVISION_TIME`]), when known: the queue starts older commits'
/// tasks first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Producer {
    pub revision: Box<str>,
    pub time: Option<Box<str>>,
}

/// What every TaskRun of one sync shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyTarget {
    pub namespace: String,
    /// This source's [`names::LABEL_SOURCE`] value.
    pub source_label: String,
    /// The repository, without credentials ([`names::ANNOTATION_SOURCE_URL`]); none with
    /// `--source-name`, where the repository may be reached under several URLs.
    pub source_url: Option<String>,
    /// The source as a person reads it ([`names::ANNOTATION_SOURCE`]).
    pub source_display: String,
}

impl DesiredTaskRun {
    /// The server-side apply body: every field this source owns, markdown included (read from
    /// the repository when the snapshot left it there). Built for one write and dropped after
    /// it, so that only the writes in flight hold a body.
    pub fn apply_body(&self) -> Result<TaskRun, SourceError> {
        let folder = &*self.folder;
        let markdown_files = markdown_files(&folder.markdown_files)?;
        let mut body = TaskRun::new(
            &self.name,
            TaskRunSpec {
                task_id: self.task_id,
                service_name: folder.service_name.to_string(),
                agent_name: folder.agent_name.to_string(),
                context_version: self.context_version,
                content_digest: folder.digest.0.to_string(),
                source_path: self.source_path.to_string(),
                suspend: folder.suspend,
                priority: folder.priority,
                markdown_files,
            },
        );
        body.metadata.namespace = Some(self.target.namespace.clone());
        body.metadata.labels = Some(self.labels());
        body.metadata.annotations = Some(self.annotations());
        Ok(body)
    }

    /// The labels this source sets.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = task_labels(
            self.task_id,
            &self.folder.service_name,
            self.context_version,
        );
        labels.insert(
            names::LABEL_SOURCE.to_string(),
            self.target.source_label.clone(),
        );
        labels
    }

    /// The annotations this source sets.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut annotations =
            task_annotations(&self.produced_by.revision, self.digest(), &self.source_path);
        if let Some(time) = &self.produced_by.time {
            annotations.insert(
                names::ANNOTATION_REVISION_TIME.to_string(),
                time.to_string(),
            );
        }
        if let Some(url) = &self.target.source_url {
            annotations.insert(names::ANNOTATION_SOURCE_URL.to_string(), url.clone());
        }
        annotations.insert(
            names::ANNOTATION_SOURCE.to_string(),
            self.target.source_display.clone(),
        );
        annotations
    }

    /// (file name, content hash) of each markdown file, as [`LiveSpec::markdown_files`] holds
    /// the live ones.
    pub fn files(&self) -> impl Iterator<Item = (&str, &ContentHash)> {
        self.folder
            .markdown_files
            .iter()
            .map(|f| (&*f.filename, &f.hash))
    }

    /// The folder's content digest.
    pub fn digest(&self) -> &ContentDigest {
        &self.folder.digest
    }

    /// Whether `live` holds these markdown files, in this order.
    pub fn has_files_of(&self, live: &LiveSpec) -> bool {
        live.markdown_files.len() == self.folder.markdown_files.len()
            && live
                .markdown_files
                .iter()
                .zip(self.files())
                .all(|(l, (name, hash))| *l.filename == *name && l.content == *hash)
    }

    /// [`task_labels_hash`] of the labels this TaskRun sets.
    pub fn task_labels_hash(&self) -> u64 {
        task_labels_hash(
            Some(&self.task_id.to_string()),
            Some(&self.folder.service_name),
            Some(&self.context_version.to_string()),
        )
    }

    /// [`task_annotations_hash`] of the annotations this TaskRun sets.
    pub fn task_annotations_hash(&self) -> u64 {
        task_annotations_hash(Some(&self.digest().0), Some(&self.source_path))
    }
}

/// The live TaskRuns of one namespace by name, whole (status included), as a reflector cache
/// holds them: what `--until-done` reads. The sync keeps [`KnownTaskRuns`] instead.
pub type LiveTaskRuns = HashMap<String, TaskRun>;

/// The contextVersion for content `digest` given the live TaskRun of the same name:
/// no live TaskRun → 1; the same digest → the live version; another digest → live version + 1.
/// Versions never go backwards: content that returns to an older digest still gets a new,
/// larger version, because only the live TaskRun is consulted, never history.
pub fn context_version(live: Option<&LiveTaskRun>, digest: &ContentDigest) -> i64 {
    version_for(
        live,
        live.is_some_and(|l| l.spec.content_digest.is(&digest.0)),
    )
}

/// [`context_version`], told whether the live content is the desired one.
fn version_for(live: Option<&LiveTaskRun>, same_content: bool) -> i64 {
    match live {
        None => 1,
        Some(live) if same_content => live.spec.context_version.max(1),
        Some(live) => live.spec.context_version.max(0) + 1,
    }
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-12-01T18:30:00Z`).
pub fn commit_time_text(seconds: i64) -> Option<String> {
    let t = k8s_openapi::jiff::Timestamp::from_second(seconds).ok()?;
    Some(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The revision and revision-time annotations kept from `same_content`, the live TaskRun when
/// its content is the desired one. The revision that produced the current content version is
/// kept while the content stays the same, so a commit that touches one task rewrites one
/// TaskRun; its commit time goes with it. A live TaskRun without a time (written before
/// orchestrator recorded it) keeps none: the queue then orders it by its creation time, so no
/// TaskRun is rewritten only to add it.
fn kept_revision(same_content: Option<&LiveTaskRun>) -> Option<(&str, Option<&str>)> {
    let marks = &same_content?.marks;
    Some((marks.revision.as_deref()?, marks.revision_time.as_deref()))
}

/// The desired TaskRuns of the previous call by task id, reused while everything one is made of
/// (content digest, path, version, producing revision, namespace, source) is the same: a
/// re-sync then builds desired TaskRuns only for the tasks that changed. The entries share the
/// snapshot's markdown and hold no apply body.
#[derive(Clone, Debug, Default)]
pub struct DesiredCache {
    by_task: HashMap<i64, Arc<DesiredTaskRun>>,
}

impl DesiredCache {
    pub fn new() -> Self {
        Self::default()
    }
}

impl DesiredTaskRun {
    fn is_made_of(
        &self,
        task: &TaskFolder,
        version: i64,
        produced_by: &Arc<Producer>,
        target: &Arc<ApplyTarget>,
    ) -> bool {
        // The folder cache's record: a new one for any change to the folder's tree, so also
        // for a commit that only suspends or re-prioritises (not in the digest).
        Arc::ptr_eq(&self.folder, &task.content)
            && self.context_version == version
            && *self.source_path == *task.path
            && (Arc::ptr_eq(&self.produced_by, produced_by) || self.produced_by == *produced_by)
            && (Arc::ptr_eq(&self.target, target) || *self.target == **target)
    }
}

/// Every TaskRun the snapshot describes, sorted by task id.
pub fn desired_task_runs(
    snapshot: &SourceSnapshot,
    source: &SourceIdentity,
    namespace: &str,
    live: &KnownTaskRuns,
) -> Vec<Arc<DesiredTaskRun>> {
    desired_task_runs_reusing(snapshot, source, namespace, live, &mut DesiredCache::new())
}

/// [`desired_task_runs`], reusing the entries of `cache` that are still what the snapshot
/// describes; `cache` is left holding this snapshot's.
pub fn desired_task_runs_reusing(
    snapshot: &SourceSnapshot,
    source: &SourceIdentity,
    namespace: &str,
    live: &KnownTaskRuns,
    cache: &mut DesiredCache,
) -> Vec<Arc<DesiredTaskRun>> {
    let target = ApplyTarget {
        namespace: namespace.to_string(),
        source_label: source.label_value(),
        // With --source-name the repository may be reached under several URLs, none of them
        // the source's identity: plans from each would otherwise "restore" their own.
        source_url: source.name.is_none().then(|| source.repo.clone()),
        source_display: source.display(),
    };
    // The previous sync's, when the same: then each reused desired TaskRun is checked by
    // pointer, not by comparing four strings.
    let target = match cache.by_task.values().next() {
        Some(d) if *d.target == target => d.target.clone(),
        _ => Arc::new(target),
    };
    let current = Arc::new(Producer {
        revision: snapshot.revision.to_string().into(),
        time: snapshot
            .committed_at
            .and_then(commit_time_text)
            .map(Into::into),
    });
    // Producers kept from live TaskRuns, one allocation each.
    let mut kept_producers: HashMap<(&str, Option<&str>), Arc<Producer>> = HashMap::new();
    // Updated in place (a re-sync's cache is the same tasks, mostly the same entries): a second
    // table would be 2 MiB more at the peak of every re-sync at 100,000 tasks.
    cache
        .by_task
        .reserve(snapshot.tasks.len().saturating_sub(cache.by_task.len()));
    // Every task is looked at on every sync, so the per-task work that finds a cached desired
    // TaskRun still right allocates nothing and reads the live digest once.
    let mut name = String::new();
    let desired = snapshot
        .tasks
        .iter()
        .map(|task| {
            name.clear();
            let _ = write!(name, "{}", names::TaskRunName(task.task_id));
            let live = live.get(name.as_str()).map(Box::as_ref);
            let same_content = live.filter(|l| l.spec.content_digest.is(&task.content.digest.0));
            let version = version_for(live, same_content.is_some());
            let kept = kept_revision(same_content);
            let produced_by = match kept {
                Some(kept) if kept != (&*current.revision, current.time.as_deref()) => {
                    kept_producers
                        .entry(kept)
                        .or_insert_with(|| {
                            Arc::new(Producer {
                                revision: kept.0.into(),
                                time: kept.1.map(Into::into),
                            })
                        })
                        .clone()
                }
                _ => current.clone(),
            };
            let desired = match cache.by_task.get(&task.task_id) {
                Some(d) if d.is_made_of(task, version, &produced_by, &target) => d.clone(),
                _ => Arc::new(DesiredTaskRun {
                    task_id: task.task_id,
                    name: name.as_str().into(),
                    context_version: version,
                    // The snapshot's own `Arc`s.
                    folder: task.content.clone(),
                    source_path: task.path.clone(),
                    produced_by,
                    target: target.clone(),
                }),
            };
            cache.by_task.insert(task.task_id, desired.clone());
            desired
        })
        .collect();
    // Then the tasks the snapshot no longer has go (its tasks are sorted by id).
    if cache.by_task.len() > snapshot.tasks.len() {
        cache.by_task.retain(|id, _| {
            snapshot
                .tasks
                .binary_search_by_key(id, |t| t.task_id)
                .is_ok()
        });
    }
    desired
}

/// The TaskRun one task folder describes at content version `version`: spec from the folder,
/// the sketch's labels, and annotations that trace it back to the revision, path and digest.
pub fn task_run_for(
    folder: &TaskFolder,
    version: i64,
    revision: &Revision,
    namespace: &str,
) -> Result<TaskRun, SourceError> {
    let content = &*folder.content;
    let mut task_run = TaskRun::new(
        &names::task_run_name(folder.task_id),
        TaskRunSpec {
            task_id: folder.task_id,
            service_name: content.service_name.to_string(),
            agent_name: content.agent_name.to_string(),
            context_version: version,
            content_digest: content.digest.to_string(),
            source_path: folder.path.to_string(),
            markdown_files: markdown_files(&content.markdown_files)?,
            suspend: content.suspend,
            priority: content.priority,
        },
    );
    task_run.metadata.namespace = Some(namespace.to_string());
    task_run.metadata.labels = Some(task_labels(folder.task_id, &content.service_name, version));
    task_run.metadata.annotations = Some(task_annotations(
        &revision.to_string(),
        &content.digest,
        &folder.path,
    ));
    Ok(task_run)
}

/// The files as a TaskRun's spec holds them, texts read where the snapshot left them.
fn markdown_files(files: &[TaskFile]) -> Result<Vec<MarkdownFile>, SourceError> {
    files.iter().map(TaskFile::to_markdown_file).collect()
}

/// The sketch's labels of a task's TaskRun.
fn task_labels(task_id: i64, service_name: &str, version: i64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_TASK_ID.to_string(), task_id.to_string()),
        (
            names::LABEL_SERVICE_NAME.to_string(),
            service_name.to_string(),
        ),
        (
            names::LABEL_CONTEXT_VERSION.to_string(),
            version.to_string(),
        ),
        (
            names::LABEL_MANAGED_BY.to_string(),
            names::MANAGED_BY.to_string(),
        ),
    ])
}

/// The annotations that trace a TaskRun back to the revision, digest and path.
fn task_annotations(
    revision: &str,
    digest: &ContentDigest,
    path: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::ANNOTATION_REVISION.to_string(), revision.to_string()),
        (
            names::ANNOTATION_CONTENT_DIGEST.to_string(),
            digest.to_string(),
        ),
        (names::ANNOTATION_SOURCE_PATH.to_string(), path.to_string()),
    ])
}

/// `https://user:token@host/repo.git` → `https://host/repo.git`; anything else unchanged.
pub fn redact_url(repo: &str) -> String {
    let Some((scheme, rest)) = repo.split_once("://") else {
        return repo.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => repo.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::MarkdownFile;

    pub(crate) fn revision(commit_char: char) -> Revision {
        Revision {
            branch: "main".into(),
            commit: commit_char.to_string().repeat(40),
        }
    }

    /// A folder of service `web`, agent `codex` and one file `p.md`, with `digest`.
    pub(crate) fn web_codex(digest: &str) -> Arc<FolderContent> {
        FolderContent {
            service_name: "web".into(),
            agent_name: "codex".into(),
            suspend: false,
            priority: 0,
            markdown_files: [TaskFile::held("p.md", "x")].into(),
            digest: ContentDigest(digest.into()),
        }
        .into()
    }

    pub(crate) fn folder(task_id: i64, content: &str) -> TaskFolder {
        TaskFolder {
            task_id,
            path: format!("tasks/{task_id}-t").into(),
            content: FolderContent {
                service_name: "web".into(),
                agent_name: "claude".into(),
                suspend: false,
                priority: 0,
                markdown_files: [TaskFile::held("prompt.md", content)].into(),
                digest: ContentDigest(format!("sha256:{}", names::short_hash(content, 64)).into()),
            }
            .into(),
        }
    }

    pub(crate) fn snapshot(rev: char, tasks: Vec<TaskFolder>) -> SourceSnapshot {
        SourceSnapshot {
            revision: revision(rev),
            path: "tasks".into(),
            tasks,
            errors: vec![],
            committed_at: None,
        }
    }

    pub(crate) fn source() -> SourceIdentity {
        SourceIdentity::new("https://example.com/tasks.git", "tasks")
    }

    /// What the sync would know of the cluster after a sync of `snapshot` over `live`.
    pub(crate) fn live_after(snapshot: &SourceSnapshot, live: &KnownTaskRuns) -> KnownTaskRuns {
        task_runs_after(snapshot, live)
            .into_iter()
            .map(|(name, tr)| (name.into(), tr.into()))
            .collect()
    }

    /// The TaskRuns a sync of `snapshot` over `live` would leave in the cluster.
    pub(crate) fn task_runs_after(snapshot: &SourceSnapshot, live: &KnownTaskRuns) -> LiveTaskRuns {
        desired_task_runs(snapshot, &source(), "default", live)
            .into_iter()
            .map(|d| (d.name.to_string(), d.apply_body().unwrap()))
            .collect()
    }

    #[test]
    fn repository_urls_normalise_to_what_a_person_calls_the_repository() {
        for (url, want) in [
            ("https://github.com/org/tasks.git", "github.com/org/tasks"),
            (
                "https://user:tok@GitHub.com/org/tasks.git/",
                "github.com/org/tasks",
            ),
            ("http://github.com/org/tasks", "github.com/org/tasks"),
            ("git@github.com:org/tasks.git", "github.com/org/tasks"),
            (
                "ssh://git@github.com:22/org/tasks.git",
                "github.com/org/tasks",
            ),
            (
                "https://gitlab.example.com:8443/g/sub/tasks",
                "gitlab.example.com/g/sub/tasks",
            ),
            ("file:///srv/git/tasks.git", "/srv/git/tasks"),
            ("/srv/git/tasks.git", "/srv/git/tasks"),
            ("/srv/git/tasks", "/srv/git/tasks"),
        ] {
            assert_eq!(normalise_repo_url(url), want, "{url}");
        }
    }

    #[test]
    fn clones_share_a_mark_and_other_sources_and_names_do_not() {
        let https = SourceIdentity::normalised("https://github.com/org/tasks.git", "tasks", None);
        let ssh = SourceIdentity::normalised("git@github.com:org/tasks", "/tasks/", None);
        assert_eq!(https.label_value(), ssh.label_value());
        let other_path = SourceIdentity::normalised("git@github.com:org/tasks", "other", None);
        assert_ne!(https.label_value(), other_path.label_value());
        let named = SourceIdentity::normalised("git@github.com:org/tasks", "tasks", Some("prod"));
        let named_elsewhere = SourceIdentity::normalised("/srv/mirror", "x", Some("prod"));
        assert_eq!(named.label_value(), named_elsewhere.label_value());
        assert_ne!(named.label_value(), https.label_value());
        assert_eq!(https.display(), "github.com/org/tasks (path tasks)");
    }

    #[test]
    fn a_mark_of_an_earlier_identity_is_recognised_as_this_sources() {
        let snap = snapshot('1', vec![folder(1, "a")]);
        // Written by a loop given `file:///srv/git/tasks` before identities were normalised.
        let old = SourceIdentity::new("file:///srv/git/tasks", "tasks");
        let live = desired_task_runs(&snap, &old, "default", &KnownTaskRuns::new());
        let live = &LiveTaskRun::from(live[0].apply_body().unwrap());
        let clone = SourceIdentity::normalised("/srv/git/tasks.git", "tasks", None);
        assert_ne!(clone.label_value(), old.label_value());
        assert!(
            clone.owns_legacy_mark(live),
            "the annotation names the same repository"
        );
        let elsewhere = SourceIdentity::normalised("https://example.com/x", "tasks", None);
        assert!(!elsewhere.owns_legacy_mark(live));
        // A loop on a working tree: its old mark came from the working tree's path.
        let working = SourceIdentity::new("/home/me/tasks", "tasks");
        let live = desired_task_runs(&snap, &working, "default", &KnownTaskRuns::new());
        let live = LiveTaskRun::from(live[0].apply_body().unwrap());
        let mut now = SourceIdentity::normalised("https://github.com/org/tasks", "tasks", None);
        assert!(!now.owns_legacy_mark(&live));
        now.legacy_repos.push("/home/me/tasks".into());
        assert!(now.owns_legacy_mark(&live));
    }

    #[test]
    fn context_version_table() {
        let a = folder(1, "a");
        let live_a3 = live_after(&snapshot('1', vec![a.clone()]), &KnownTaskRuns::new());
        let mut at_3 = live_a3["task-1"].clone();
        at_3.spec.context_version = 3;
        let b = folder(1, "b");
        let cases = [
            ("no live TaskRun", None, &a.content.digest, 1),
            (
                "same digest keeps the version",
                Some(&at_3),
                &a.content.digest,
                3,
            ),
            ("new digest is live + 1", Some(&at_3), &b.content.digest, 4),
        ];
        for (what, live, digest, want) in cases {
            assert_eq!(
                context_version(live.map(Box::as_ref), digest),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn a_sequence_of_commits_never_moves_versions_backwards() {
        // a → b → a again (a force-push back) → restart (same live state) → a.
        let mut live = KnownTaskRuns::new();
        let mut seen = vec![];
        for (rev, content) in [('1', "a"), ('2', "b"), ('3', "a"), ('3', "a"), ('4', "a")] {
            live = live_after(&snapshot(rev, vec![folder(1, content)]), &live);
            seen.push(live["task-1"].spec.context_version);
        }
        assert_eq!(seen, [1, 2, 3, 3, 3]);
    }

    #[test]
    fn the_revision_annotation_names_the_commit_that_produced_the_content() {
        let first = live_after(
            &snapshot('1', vec![folder(1, "a"), folder(2, "x")]),
            &KnownTaskRuns::new(),
        );
        // Commit 2 changes only task 2.
        let second = live_after(&snapshot('2', vec![folder(1, "a"), folder(2, "y")]), &first);
        let rev = |live: &KnownTaskRuns, name: &str| {
            live[name].marks.revision.as_deref().unwrap().to_string()
        };
        assert_eq!(rev(&second, "task-1"), revision('1').to_string());
        assert_eq!(rev(&second, "task-2"), revision('2').to_string());
    }

    #[test]
    fn the_revision_time_is_the_producing_commits_and_stays_with_it() {
        let at = |rev, time, tasks| SourceSnapshot {
            committed_at: time,
            ..snapshot(rev, tasks)
        };
        let time = |live: &KnownTaskRuns, name: &str| {
            live[name]
                .marks
                .revision_time
                .as_deref()
                .map(str::to_string)
        };
        // (step, expected revision-time of task-1, of task-2)
        let first = live_after(
            &at(
                '1',
                Some(1_764_612_000),
                vec![folder(1, "a"), folder(2, "x")],
            ),
            &KnownTaskRuns::new(),
        );
        let second = live_after(
            &at(
                '2',
                Some(1_764_615_600),
                vec![folder(1, "a"), folder(2, "y")],
            ),
            &first,
        );
        // A plain folder (no commit) changes task 1: no time to record.
        let third = live_after(
            &at('3', None, vec![folder(1, "b"), folder(2, "y")]),
            &second,
        );
        let cases = [
            (
                "first commit",
                &first,
                Some("2025-12-01T18:00:00Z"),
                Some("2025-12-01T18:00:00Z"),
            ),
            (
                "task 2 changed",
                &second,
                Some("2025-12-01T18:00:00Z"),
                Some("2025-12-01T19:00:00Z"),
            ),
            (
                "task 1 changed, no commit time",
                &third,
                None,
                Some("2025-12-01T19:00:00Z"),
            ),
        ];
        for (step, live, one, two) in cases {
            assert_eq!(
                (
                    time(live, "task-1").as_deref(),
                    time(live, "task-2").as_deref()
                ),
                (one, two),
                "{step}"
            );
        }
        // A TaskRun written before the time was recorded keeps none (no rewrite to add it).
        let mut old = first.clone();
        for tr in old.values_mut() {
            Arc::make_mut(&mut tr.marks).revision_time = None;
        }
        let desired = desired_task_runs(
            &at('2', Some(1_764_615_600), vec![folder(1, "a")]),
            &source(),
            "default",
            &old,
        );
        assert_eq!(desired[0].produced_by.time, None);
        assert_eq!(commit_time_text(0).as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn desired_task_run_carries_names_labels_and_annotations() {
        let desired = desired_task_runs(
            &snapshot('1', vec![folder(42, "a")]),
            &source(),
            "team-a",
            &KnownTaskRuns::new(),
        );
        let tr = &desired[0].apply_body().unwrap();
        assert_eq!(tr.metadata.name.as_deref(), Some("task-42"));
        assert_eq!(tr.metadata.namespace.as_deref(), Some("team-a"));
        let labels = tr.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[names::LABEL_TASK_ID], "42");
        assert_eq!(labels[names::LABEL_CONTEXT_VERSION], "1");
        assert_eq!(labels[names::LABEL_SOURCE], source().label_value());
        assert!(names::is_dns1123_label(&labels[names::LABEL_SOURCE]));
        let annotations = tr.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[names::ANNOTATION_CONTENT_DIGEST],
            *desired[0].digest().0
        );
        assert_eq!(tr.spec.content_digest, *desired[0].digest().0);
        assert_eq!(tr.spec.source_path, "tasks/42-t");
        assert!(tr.status.is_none(), "the sync never writes status");
        let want: Vec<MarkdownFile> = desired[0]
            .folder
            .markdown_files
            .iter()
            .map(|f| f.to_markdown_file().unwrap())
            .collect();
        assert_eq!(tr.spec.markdown_files, want);
    }

    #[test]
    fn a_desired_task_run_shares_the_snapshots_markdown() {
        let snap = snapshot('1', vec![folder(1, "a")]);
        let desired = desired_task_runs(&snap, &source(), "default", &KnownTaskRuns::new());
        assert!(Arc::ptr_eq(&desired[0].folder, &snap.tasks[0].content));
        assert!(Arc::ptr_eq(&desired[0].source_path, &snap.tasks[0].path));
    }

    #[test]
    fn the_cache_reuses_a_desired_task_run_only_while_nothing_it_is_made_of_changed() {
        // One folder read once: its markdown is one allocation, shared by every snapshot.
        let a = folder(1, "a");
        let base = snapshot('1', vec![a.clone()]);
        let live = live_after(&base, &KnownTaskRuns::new());
        let renamed = {
            let mut s = snapshot('2', vec![folder(1, "a")]);
            s.tasks[0].path = "tasks/1-renamed".into();
            s
        };
        let bumped = {
            let mut l = live.clone();
            l.get_mut("task-1").unwrap().spec.context_version = 5;
            l
        };
        let ours = source();
        let other_source = SourceIdentity::new("https://example.com/other.git", "tasks");
        let cases: Vec<(
            &str,
            SourceSnapshot,
            &KnownTaskRuns,
            &str,
            &SourceIdentity,
            bool,
        )> = vec![
            (
                "a new commit, same content",
                snapshot('2', vec![a.clone()]),
                &live,
                "default",
                &ours,
                true,
            ),
            (
                "the same content read again into new memory",
                snapshot('2', vec![folder(1, "a")]),
                &live,
                "default",
                &ours,
                false,
            ),
            (
                "content changed",
                snapshot('2', vec![folder(1, "b")]),
                &live,
                "default",
                &ours,
                false,
            ),
            ("folder renamed", renamed, &live, "default", &ours, false),
            (
                "live version moved",
                snapshot('2', vec![a.clone()]),
                &bumped,
                "default",
                &ours,
                false,
            ),
            (
                "another namespace",
                snapshot('2', vec![a.clone()]),
                &live,
                "team-b",
                &ours,
                false,
            ),
            (
                "another source",
                snapshot('2', vec![a.clone()]),
                &live,
                "default",
                &other_source,
                false,
            ),
        ];
        for (case, snap, live, namespace, source, reused) in cases {
            let mut cache = DesiredCache::new();
            let first = desired_task_runs_reusing(
                &base,
                &ours,
                "default",
                &KnownTaskRuns::new(),
                &mut cache,
            );
            let second = desired_task_runs_reusing(&snap, source, namespace, live, &mut cache);
            assert_eq!(Arc::ptr_eq(&first[0], &second[0]), reused, "{case}");
            assert_eq!(
                second,
                desired_task_runs(&snap, source, namespace, live),
                "{case}: reused or not, the same TaskRuns as built afresh"
            );
        }
    }

    #[test]
    fn credentials_never_reach_the_source_identity() {
        for (input, want) in [
            (
                "https://user:tok@example.com/a.git",
                "https://example.com/a.git",
            ),
            ("https://example.com/a.git", "https://example.com/a.git"),
            ("ssh://git@example.com/a.git", "ssh://example.com/a.git"),
            ("/home/me/repo", "/home/me/repo"),
            ("https://example.com/a@b.git", "https://example.com/a@b.git"),
        ] {
            assert_eq!(redact_url(input), want, "{input}");
        }
        assert_eq!(
            SourceIdentity::new("https://u:p@example.com/tasks.git", "/tasks/").label_value(),
            source().label_value(),
            "rotating a token does not change which TaskRuns the source owns"
        );
    }
}

#[cfg(test)]
mod task_run_for_tests {
    use super::*;

    #[test]
    fn a_folder_becomes_a_traceable_task_run() {
        let folder = TaskFolder {
            task_id: 42,
            path: "tasks/42-login".into(),
            content: super::tests::web_codex("sha256:ab"),
        };
        let revision = Revision {
            branch: "main".into(),
            commit: "c".repeat(40),
        };
        let tr = task_run_for(&folder, 3, &revision, "agents").unwrap();
        assert_eq!(tr.metadata.name.as_deref(), Some("task-42"));
        assert_eq!(tr.metadata.namespace.as_deref(), Some("agents"));
        assert_eq!(tr.spec.context_version, 3);
        assert_eq!(tr.spec.content_digest, "sha256:ab");
        assert_eq!(tr.spec.source_path, "tasks/42-login");
        let labels = tr.metadata.labels.unwrap();
        assert_eq!(labels["task-id"], "42");
        assert_eq!(labels["context-version"], "3");
        assert_eq!(labels["service-name"], "web");
        let annotations = tr.metadata.annotations.unwrap();
        assert_eq!(
            annotations[names::ANNOTATION_REVISION],
            format!("main@sha1:{}", "c".repeat(40))
        );
    }
}
