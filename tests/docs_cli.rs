//! docs/cli.md and docs/cli/<command>.md, the CLI reference, are generated from the binary's own
//! `--help` (clap): this test renders every subcommand's help into markdown and fails when the
//! checked-in pages differ. `UPDATE_DOCS=1 cargo test --test docs_cli` rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const PAGE: &str = "docs/cli.md";
const DIR: &str = "docs/cli";

/// `orchestrator <path…> --help`, with an empty environment so that no `[env: X=value]` of the
/// machine running the test leaks into the page.
fn help(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(path)
        .arg("--help")
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "orchestrator {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names of a help text's `Commands:` section (without `help`). Pure.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // Only the lines that name a command; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

/// One section per command, depth first, in the order `--help` lists them.
fn render_command(path: &mut Vec<String>, out: &mut String) {
    let text = help(path);
    let title = std::iter::once("orchestrator".to_string())
        .chain(path.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let level = if path.len() <= 1 { "#" } else { "##" };
    out.push_str(&format!(
        "{level} `{title}`\n\n```text\n{}\n```\n",
        text.trim_end()
    ));
    for sub in subcommands(&text) {
        path.push(sub);
        out.push('\n');
        render_command(path, out);
        path.pop();
    }
}

const GENERATED: &str = "Generated from the binary's `--help` by `tests/docs_cli.rs`; do not edit it by \
                         hand. After changing a flag or a command, run\n\
                         `UPDATE_DOCS=1 cargo test --test docs_cli`.\n";

/// Every page of the reference by its path: docs/cli.md (the top-level help and an index) and
/// docs/cli/<command>.md per command (one page each keeps every page short).
fn render() -> BTreeMap<PathBuf, String> {
    let mut pages = BTreeMap::new();
    let top = help(&[]);
    let commands = subcommands(&top);
    let mut index = format!(
        "# CLI reference\n\n{GENERATED}\n```text\n{}\n```\n\nOne page per command:\n\n",
        top.trim_end()
    );
    for c in &commands {
        index.push_str(&format!("- [`orchestrator {c}`](cli/{c}.md)\n"));
        let mut page = String::new();
        render_command(&mut vec![c.clone()], &mut page);
        page.push_str(&format!("\n{GENERATED}"));
        pages.insert(PathBuf::from(format!("{DIR}/{c}.md")), page);
    }
    pages.insert(PathBuf::from(PAGE), index);
    pages
}

/// The pages of the reference on disk: docs/cli.md and every file in docs/cli/.
fn on_disk(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(root.join(PAGE)) {
        files.insert(PathBuf::from(PAGE), text);
    }
    for entry in std::fs::read_dir(root.join(DIR)).into_iter().flatten() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        files.insert(rel, std::fs::read_to_string(&path).unwrap_or_default());
    }
    files
}

/// The first difference between the generated pages and the files, if any. Pure.
fn first_difference(
    want: &BTreeMap<PathBuf, String>,
    have: &BTreeMap<PathBuf, String>,
) -> Option<String> {
    for (path, text) in want {
        let Some(existing) = have.get(path) else {
            return Some(format!("{} is missing", path.display()));
        };
        if existing != text {
            let line = existing
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(existing.lines().count().min(text.lines().count()));
            return Some(format!(
                "{} line {}: {:?} in the file, {:?} from the binary",
                path.display(),
                line + 1,
                existing.lines().nth(line).unwrap_or("<end>"),
                text.lines().nth(line).unwrap_or("<end>"),
            ));
        }
    }
    have.keys()
        .find(|path| !want.contains_key(*path))
        .map(|path| format!("{} documents no command", path.display()))
}

#[test]
fn docs_cli_md_is_the_binarys_help() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = render();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let _ = std::fs::remove_dir_all(root.join(DIR));
        std::fs::create_dir_all(root.join(DIR)).unwrap();
        for (path, text) in &want {
            std::fs::write(root.join(path), text).unwrap();
        }
        return;
    }
    if let Some(difference) = first_difference(&want, &on_disk(root)) {
        panic!("{PAGE} is stale: run `UPDATE_DOCS=1 cargo test --test docs_cli` ({difference})");
    }
    for (path, text) in &want {
        assert!(
            text.lines().count() < 400,
            "{} has {} lines; docs pages stay under 400",
            path.display(),
            text.lines().count()
        );
    }
}

#[test]
fn a_changed_missing_or_extra_page_is_stale() {
    let page = |p: &str, t: &str| (PathBuf::from(p), t.to_string());
    let want = BTreeMap::from([
        page("docs/cli.md", "a\nb\n"),
        page("docs/cli/run.md", "r\n"),
    ]);
    assert_eq!(first_difference(&want, &want.clone()), None);
    let mut changed = want.clone();
    changed.insert(PathBuf::from("docs/cli.md"), "a\nc\n".into());
    assert_eq!(
        first_difference(&want, &changed).unwrap(),
        "docs/cli.md line 2: \"c\" in the file, \"b\" from the binary"
    );
    let mut missing = want.clone();
    missing.remove(&PathBuf::from("docs/cli/run.md"));
    assert_eq!(
        first_difference(&want, &missing).unwrap(),
        "docs/cli/run.md is missing"
    );
    let mut extra = want.clone();
    extra.insert(PathBuf::from("docs/cli/gone.md"), "old\n".into());
    assert_eq!(
        first_difference(&want, &extra).unwrap(),
        "docs/cli/gone.md documents no command"
    );
}

#[test]
fn every_command_is_in_the_reference() {
    let top = help(&[]);
    let commands = subcommands(&top);
    for wanted in ["init", "run", "validate", "plan", "status", "wait"] {
        assert!(
            commands.iter().any(|c| c == wanted),
            "{wanted} is not listed: {commands:?}"
        );
    }
    let pages = render();
    for c in &commands {
        let page = &pages[&PathBuf::from(format!("{DIR}/{c}.md"))];
        assert!(page.starts_with(&format!("# `orchestrator {c}`")), "{c}");
        assert!(
            pages[&PathBuf::from(PAGE)].contains(&format!("(cli/{c}.md)")),
            "{c}"
        );
    }
}

#[test]
fn subcommands_are_read_from_the_commands_section() {
    let help = "Usage: x <COMMAND>\n\nCommands:\n  init   Create a task\n         repository\n  run    Run it\n  help   Print this\n\nOptions:\n  -h, --help  Print help\n";
    assert_eq!(subcommands(help), ["init", "run"]);
}
