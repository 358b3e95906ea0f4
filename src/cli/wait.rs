//! `orchestrator wait [REV] --timeout 10m [--for synced|healthy] [--interval 5s]`: polls a
//! commit's note until it reaches the wanted state, gives up early when it cannot, or times out
//! (exit code of the last state seen). The pull-request / CI check.

use super::status::{NoteArgs, exit_with, render_table};
use crate::notes::read::read_note;
use crate::notes::verdict::{State, Target, WaitStep, exit_code, wait_step};
use anyhow::Context;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = super::status::EXIT_CODES_HELP)]
pub struct WaitArgs {
    #[command(flatten)]
    pub note: NoteArgs,
    /// Give up after this long, e.g. `90s`, `10m`, `1h30m`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The state to wait for.
    #[arg(long = "for", value_enum, default_value = "healthy")]
    pub target: Target,
    /// How often to read the note (a remote repository is fetched each time).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
}

/// Waits; exit 0 when reached, else the code of the state it stopped at.
pub fn run(args: WaitArgs) -> anyhow::Result<()> {
    let mut query = args.note.query()?;
    let start = Instant::now();
    let mut last_state = None;
    let mut label = None;
    loop {
        let mut lookup =
            read_note(&query).with_context(|| format!("reading the note in {}", query.repo))?;
        // Pin the commit: a branch that moves on while we wait does not change what we wait for.
        query.revision = Some(lookup.commit.to_string());
        match (&label, &lookup.note) {
            (None, _) => label = Some(lookup.revision.clone()),
            (Some(first), None) => lookup.revision.clone_from(first),
            (Some(_), Some(_)) => {}
        }
        let state = State::of(lookup.note.as_ref());
        if last_state != Some(state) {
            eprintln!(
                "{}: {} (waiting for {:?}, {}s elapsed)",
                lookup.revision,
                state.describe(),
                args.target,
                start.elapsed().as_secs()
            );
            last_state = Some(state);
        }
        match wait_step(
            lookup.note.as_ref(),
            lookup.skipped_for.is_some(),
            args.target,
        ) {
            WaitStep::Reached => {
                super::output::print(&render_table(&lookup))?;
                return exit_with(exit_code::OK);
            }
            WaitStep::GiveUp(code) => {
                super::output::print(&render_table(&lookup))?;
                let why = match (code, &lookup.skipped_for) {
                    (exit_code::SUPERSEDED, Some(newer)) => format!(
                        "the sync skipped it (commits came faster than a sync) and synced the newer {newer}; wait for that one"
                    ),
                    (exit_code::SUPERSEDED, None) => "a newer revision superseded it".to_string(),
                    _ => "a task Failed".to_string(),
                };
                eprintln!(
                    "gave up: {} cannot become {:?}: {why}",
                    lookup.revision, args.target
                );
                return exit_with(code);
            }
            WaitStep::KeepWaiting => {}
        }
        if start.elapsed() + args.interval > args.timeout {
            super::output::print(&render_table(&lookup))?;
            eprintln!(
                "timed out after {:?} waiting for {} to be {:?}; last state: {}",
                args.timeout,
                lookup.revision,
                args.target,
                state.describe()
            );
            return exit_with(state.exit_code().max(exit_code::ERROR));
        }
        std::thread::sleep(args.interval);
    }
}

/// `500ms`, `90s`, `10m`, `1h30m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: use e.g. 500ms, 90s, 10m or 1h30m");
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value * 60),
            "h" => Duration::from_secs(value * 3600),
            _ => return Err(bad()),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("10m", 600_000),
            ("90s", 90_000),
            ("500ms", 500),
            ("1h30m", 5_400_000),
            ("2m5s", 125_000),
            ("7", 7_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in ["", "m", "10x", "1.5m", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
