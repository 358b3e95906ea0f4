//! `orchestrator status [--repo R] [--branch B] [REV] [-o table|json]`: a commit's note in, the
//! sync, health and per-task table (or JSON) out, with an exit code per state (the CI check).

use crate::notes::read::{NoteLookup, NoteQuery, read_note};
use crate::notes::verdict::{State, exit_code};
use anyhow::Context;
use std::io::Write;

/// Where the note is read from; shared by `status` and `wait`.
#[derive(clap::Args, Debug, Clone)]
pub struct NoteArgs {
    /// Commit, branch, tag or `<branch>@sha1:<commit>` (default: the head of --branch).
    pub revision: Option<String>,
    /// The repository: a local path (its notes ref is read as is) or an https, ssh or file://
    /// URL (branches and refs/notes/orchestrator are fetched into a cached mirror).
    #[arg(long, default_value = ".")]
    pub repo: String,
    /// Branch whose head is read when REV is not given (default: HEAD / the remote's default).
    #[arg(long)]
    pub branch: Option<String>,
    /// The environment whose note is read (as given to `run --environment`).
    #[arg(long, default_value = crate::notes::DEFAULT_ENVIRONMENT, env = "ORCHESTRATOR_ENVIRONMENT")]
    pub environment: String,
    #[command(flatten)]
    pub git: crate::cli::git_args::GitCredentialArgs,
}

impl NoteArgs {
    pub fn query(&self) -> anyhow::Result<NoteQuery> {
        let credentials = self.git.load()?;
        let notes_ref =
            crate::notes::notes_ref_for(&self.environment).map_err(anyhow::Error::msg)?;
        Ok(NoteQuery {
            notes_ref,
            branch: self.branch.clone(),
            revision: self.revision.clone(),
            credentials,
            ..NoteQuery::new(self.repo.clone())
        })
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// The exit codes, as `--help` of `status` and `wait` prints them (the README has the table).
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 Synced and Healthy (wait --for synced: Synced), 1 error, 2 bad arguments, \
3 no note yet, 4 OutOfSync, 5 sync Unknown, 6 Progressing, 7 Degraded (a task Failed or Stalled), \
8 Missing (a task has no TaskRun/status yet), 9 superseded by a newer commit, or skipped by the \
sync in favour of a newer commit that has a note (wait only: it gives up at once).";

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct StatusArgs {
    #[command(flatten)]
    pub note: NoteArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// The RESULT column's width; `-o json` has the whole result.
pub const RESULT_WIDTH: usize = 40;

/// Prints the note and exits with the state's code (0 only for Synced and Healthy).
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let query = args.note.query()?;
    let lookup =
        read_note(&query).with_context(|| format!("reading the note in {}", query.repo))?;
    let state = State::of(lookup.note.as_ref());
    match args.output {
        Output::Table => super::output::print(&render_table(&lookup))?,
        Output::Json => super::output::println(&render_json(&lookup))?,
    }
    exit_with(state.exit_code())
}

/// Flushes stdout and exits with `code` (0 returns normally).
pub fn exit_with(code: i32) -> anyhow::Result<()> {
    if code == exit_code::OK {
        return Ok(());
    }
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Pure: the human-readable status of one commit.
pub fn render_table(lookup: &NoteLookup) -> String {
    let state = State::of(lookup.note.as_ref());
    let Some(note) = &lookup.note else {
        return format!(
            "Revision  {}\nNo note yet: orchestrator has not synced this commit, or its notes were not pushed\n(read them with `git fetch origin refs/notes/orchestrator:refs/notes/orchestrator`, or pass --repo <url>).\nResult    {} (exit {})\n",
            lookup.revision,
            state.describe(),
            state.exit_code()
        );
    };
    let health = match &note.health_reason {
        Some(reason) => format!("{}: {reason}", note.health),
        None => note.health.to_string(),
    };
    let mut out = format!(
        "Revision  {}\nSynced at {}\nSync      {}\nHealth    {health}\n",
        note.revision, note.synced_at, note.sync
    );
    if let Some(newer) = &note.superseded_by {
        out.push_str(&format!(
            "Superseded by {newer} (this note is no longer updated)\n"
        ));
    }
    if note.tasks.is_empty() {
        out.push_str("\nNo tasks at this revision.\n");
    } else {
        let rows: Vec<[String; 7]> = note
            .tasks
            .iter()
            .map(|t| {
                [
                    t.task_id.to_string(),
                    t.name.clone(),
                    t.context_version.to_string(),
                    match (t.phase, t.stalled) {
                        (None, _) => "-".to_string(),
                        (Some(p), false) => p.to_string(),
                        (Some(p), true) => format!("{p} (Stalled)"),
                    },
                    t.job_name.clone().unwrap_or_else(|| "-".to_string()),
                    crate::text_table::short_cell(t.result.as_deref(), RESULT_WIDTH),
                    t.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            [
                "TASK", "TASKRUN", "VERSION", "PHASE", "JOB", "RESULT", "MESSAGE",
            ],
            &rows,
        ));
    }
    if !note.errors.is_empty() {
        out.push_str("\nErrors:\n");
        for e in &note.errors {
            let kind = match e.kind {
                crate::notes::model::NoteErrorKind::Folder => "folder",
                crate::notes::model::NoteErrorKind::Apply => "apply",
            };
            out.push_str(&format!("  {kind} {}: {}\n", e.at, e.message));
        }
    }
    out.push_str(&format!(
        "\nResult    {} (exit {})\n",
        state.describe(),
        state.exit_code()
    ));
    out
}

/// Pure: `{revision, commit, state, exitCode, note}`; `note` is null when there is none.
pub fn render_json(lookup: &NoteLookup) -> String {
    let state = State::of(lookup.note.as_ref());
    let value = serde_json::json!({
        "revision": lookup.revision,
        "commit": lookup.commit.to_string(),
        "state": state.describe(),
        "exitCode": state.exit_code(),
        "note": lookup.note,
    });
    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaskPhase;
    use crate::health::{Health, SyncStatus};
    use crate::notes::model::{NOTE_API_VERSION, Note, NoteCounts, NoteTask};
    use pretty_assertions::assert_eq;

    fn lookup(note: Option<Note>) -> NoteLookup {
        NoteLookup {
            commit: git2::Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap(),
            revision: "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
            note,
            skipped_for: None,
        }
    }

    #[test]
    fn table_shows_sync_health_tasks_and_the_exit_code() {
        let note = Note {
            api_version: NOTE_API_VERSION.into(),
            revision: "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
            synced_at: "2026-11-26T19:30:00Z".into(),
            sync: SyncStatus::Synced,
            health: Health::Progressing,
            health_reason: None,
            superseded_by: None,
            counts: NoteCounts::default(),
            tasks: vec![
                NoteTask {
                    task_id: 42,
                    name: "task-42".into(),
                    path: "tasks/42-login".into(),
                    context_version: 2,
                    digest: "sha256:aa".into(),
                    phase: Some(TaskPhase::Running),
                    job_name: Some("web-42-v2".into()),
                    message: None,
                    reason: Some("Running".into()),
                    result: None,
                    stalled: false,
                },
                NoteTask {
                    task_id: 7,
                    name: "task-7".into(),
                    path: "tasks/7-x".into(),
                    context_version: 1,
                    digest: "sha256:bb".into(),
                    phase: Some(TaskPhase::Succeeded),
                    job_name: Some("web-7-v1".into()),
                    message: Some("done".into()),
                    reason: Some("Succeeded".into()),
                    result: Some(format!(
                        "{}\nopened PR #12 with the login page and its tests",
                        "log"
                    )),
                    stalled: false,
                },
            ],
            errors: vec![],
        };
        let stalled_note = {
            let mut n = note.clone();
            n.health = Health::Degraded;
            n.health_reason = Some("task-42 Stalled (FailedCreate)".into());
            n.tasks[0].phase = Some(TaskPhase::Pending);
            n.tasks[0].reason = Some("FailedCreate".into());
            n.tasks[0].stalled = true;
            n.tasks[0].message =
                Some("Job web-42-v2 cannot create its Pod: serviceaccount \"sa\" not found".into());
            n
        };
        assert_eq!(
            render_table(&lookup(Some(note))),
            "Revision  main@sha1:0123456789abcdef0123456789abcdef01234567
Synced at 2026-11-26T19:30:00Z
Sync      Synced
Health    Progressing

TASK  TASKRUN  VERSION  PHASE      JOB        RESULT                                    MESSAGE
42    task-42  2        Running    web-42-v2  -
7     task-7   1        Succeeded  web-7-v1   opened PR #12 with the login page and i…  done

Result    Synced, Progressing (exit 6)
"
        );
        assert_eq!(
            render_table(&lookup(Some(stalled_note))),
            "Revision  main@sha1:0123456789abcdef0123456789abcdef01234567
Synced at 2026-11-26T19:30:00Z
Sync      Synced
Health    Degraded: task-42 Stalled (FailedCreate)

TASK  TASKRUN  VERSION  PHASE              JOB        RESULT                                    MESSAGE
42    task-42  2        Pending (Stalled)  web-42-v2  -                                         Job web-42-v2 cannot create its Pod: serviceaccount \"sa\" not found
7     task-7   1        Succeeded          web-7-v1   opened PR #12 with the login page and i…  done

Result    Synced, Degraded (exit 7)
"
        );
    }

    #[test]
    fn help_lists_the_exit_codes_the_code_uses() {
        for (code, meaning) in [
            (exit_code::OK, "Synced and Healthy"),
            (exit_code::ERROR, "error"),
            (exit_code::USAGE, "bad arguments"),
            (exit_code::NO_NOTE, "no note yet"),
            (exit_code::OUT_OF_SYNC, "OutOfSync"),
            (exit_code::SYNC_UNKNOWN, "sync Unknown"),
            (exit_code::PROGRESSING, "Progressing"),
            (exit_code::DEGRADED, "Degraded"),
            (exit_code::MISSING, "Missing"),
            (exit_code::SUPERSEDED, "superseded"),
        ] {
            let entry = format!("{code} {meaning}");
            assert!(EXIT_CODES_HELP.contains(&entry), "{entry} missing");
        }
    }

    #[test]
    fn no_note_says_how_to_get_one() {
        let text = render_table(&lookup(None));
        assert!(text.contains("No note yet"), "{text}");
        assert!(text.contains("(exit 3)"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&lookup(None))).unwrap();
        assert_eq!(json["exitCode"], 3);
        assert!(json["note"].is_null());
    }
}
