//! Every command shown in README.md and docs/*.md is run by a test, so the docs cannot go stale.
//!
//! Each command line of a ```sh block (continuations joined, comments dropped) must be listed in
//! [`COMMANDS`] with how it is checked:
//! - [`Check::Here`]: this test runs it with bash, in order, in one sandbox: a temp git
//!   repository (branch main) holding a copy of example-repo/, with `orchestrator` on PATH
//!   (`cargo run [--release] --` is run as `orchestrator`), and it must exit 0;
//! - [`Check::By`]: another test runs it; that test file must contain the command verbatim (as
//!   this table writes it) and the named test function;
//! - [`Check::NotRun`]: README.md only, until its rewrite: shown but run by no test, with the
//!   reason. A docs/ page may not use it.
//!
//! A command in the docs that the table lacks fails the test, which prints the line to add.

mod docs_support;

use docs_support::{DocCommand, Sandbox, all_doc_commands};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Clone, Copy, Debug)]
enum Check {
    Here,
    By {
        file: &'static str,
        test: &'static str,
    },
    NotRun(&'static str),
}

use Check::{By, Here, NotRun};

const INIT: &str = "init.rs";
const DEPLOY: &str = "deploy.rs";

/// Every documented command, as `docs_support::normalize` writes it, and how it is checked.
/// Extend it when a page gains a command; remove a line when no page shows it any more.
const COMMANDS: &[(&str, Check)] = &[
    // docs/quick-start.md
    (
        "orchestrator init my-tasks",
        By {
            file: INIT,
            test: "the_quick_start_runs_as_written",
        },
    ),
    (
        "orchestrator run --embedded --repo my-tasks --until-done",
        By {
            file: INIT,
            test: "the_quick_start_runs_as_written",
        },
    ),
    (
        "orchestrator status --repo my-tasks",
        By {
            file: INIT,
            test: "the_quick_start_runs_as_written",
        },
    ),
    (
        "echo 'Then say goodbye.' >> my-tasks/1-hello/prompt.md",
        By {
            file: INIT,
            test: "the_quick_start_runs_as_written",
        },
    ),
    (
        "git -C my-tasks commit -am 'Ask for a goodbye too'",
        By {
            file: INIT,
            test: "the_quick_start_runs_as_written",
        },
    ),
    // docs/agent-image.md and README.md: run against the embedded API server, and with
    // --dry-run=client to learn the objects they create.
    (
        r#"kubectl -n orchestrator create secret generic agent-credentials --from-literal=anthropic-api-key="$ANTHROPIC_API_KEY" --from-literal=openai-api-key="$OPENAI_API_KEY" --from-literal=git-token="$AGENT_GIT_TOKEN""#,
        By {
            file: DEPLOY,
            test: "the_install_step_secret_reaches_the_shipped_profiles_env_on_the_embedded_cluster",
        },
    ),
    (
        r#"kubectl -n orchestrator-agents create secret generic agent-credentials --from-literal=anthropic-api-key="$ANTHROPIC_API_KEY" --from-literal=openai-api-key="$OPENAI_API_KEY" --from-literal=git-token="$AGENT_GIT_TOKEN""#,
        By {
            file: DEPLOY,
            test: "every_object_an_agent_profile_needs_is_created_by_deploy_or_the_install_steps",
        },
    ),
    // README.md (until its rewrite into a front door; the pages that take these sections over
    // must run their commands, since NotRun is allowed in README.md only).
    (
        "cargo run --release -- run --embedded --repo . --path example-repo --until-done",
        Here,
    ),
    ("git log --notes=orchestrator", Here),
    ("orchestrator validate --path example-repo", Here),
    (
        "orchestrator validate --repo . --revision main --path example-repo",
        Here,
    ),
    ("orchestrator plan --repo . --path example-repo", Here),
    (r#"echo "$(openssl rand -hex 32)" > api-token"#, Here),
    ("TOKEN=$(cat api-token)", Here),
    ("cargo test", NotRun("the test suite itself")),
    (
        "orchestrator validate --repo https://github.com/acme/tasks.git --revision main --path tasks",
        NotRun("a network repository"),
    ),
    (
        "orchestrator plan --repo . --revision main@sha1:<commit> --path example-repo -o yaml",
        NotRun("a placeholder"),
    ),
    (
        "orchestrator run --repo https://github.com/acme/tasks.git --branch main --path tasks --interval 1m --namespace agents [--kubeconfig FILE] [--prune=false] [--skip-crd-install]",
        NotRun("a synopsis, not a command"),
    ),
    (
        "orchestrator plan --repo . --revision pr-branch --path tasks -n agents",
        NotRun("needs a live cluster and a pr-branch"),
    ),
    (
        "orchestrator plan --repo . --revision pr-branch --path tasks -n agents -o json",
        NotRun("needs a live cluster and a pr-branch"),
    ),
    (
        "orchestrator plan --repo . --revision pr-branch --path tasks -n agents -o markdown > comment.md",
        NotRun("needs a live cluster and a pr-branch"),
    ),
    (
        "cargo run -- controller --embedded --agents example-repo/agents.yaml -n tasks &",
        NotRun("a server; tests/docs_metrics.rs starts it on a free port instead of 9464"),
    ),
    (
        "curl -s localhost:9464/metrics",
        NotRun("needs the controller above"),
    ),
    (
        "git fetch origin refs/notes/orchestrator:refs/notes/orchestrator",
        NotRun("needs a remote"),
    ),
    (
        r#"orchestrator api --repo /srv/git/tasks.git --path tasks --api-token-file api-token --agents agents.yaml --commit-author "PM Bot <pm@example.com>""#,
        NotRun("a server on a fixed path"),
    ),
    (
        r##"curl -s -X POST http://127.0.0.1:8080/api/v1/tasks -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"id": 42, "serviceName": "web", "agentName": "claude-code",
       "markdownFiles": [{"filename": "prompt.md", "content": "# Login page\nBuild it."}]}'"##,
        NotRun("needs the API server"),
    ),
    (
        r#"curl -s -X POST http://127.0.0.1:8080/api/v1/tasks/42/context -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"additionalContext": "Use the form components of the design system."}'"#,
        NotRun("needs the API server"),
    ),
    (
        "kubectl create namespace orchestrator",
        NotRun("a real cluster"),
    ),
    (
        r#"kubectl -n orchestrator create secret generic orchestrator-credentials --from-literal=git-token="$GIT_TOKEN" --from-literal=api-token="$(openssl rand -hex 32)" --from-literal=webhook-secret="$(openssl rand -hex 32)""#,
        NotRun("a real cluster"),
    ),
    ("kubectl apply -k deploy/", NotRun("a real cluster")),
    ("kubectl -n orchestrator get tr", NotRun("a real cluster")),
    (
        "kubectl -n orchestrator wait tr --all --for=condition=Ready --timeout=10m",
        NotRun("a real cluster"),
    ),
    (
        "kubectl -n orchestrator get lease orchestrator-leader",
        NotRun("a real cluster"),
    ),
    (
        "orchestrator status --repo https://github.com/example/tasks.git",
        NotRun("a network repository"),
    ),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check_of(text: &str) -> Option<Check> {
    COMMANDS
        .iter()
        .find(|(command, _)| *command == text)
        .map(|(_, check)| *check)
}

/// What is wrong with the docs' commands against the table. Pure.
fn accounting_problems(commands: &[DocCommand]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in commands {
        match check_of(&c.text) {
            None => problems.push(format!(
                "{}:{}: `{}` is run by no test. Run it in a test, then add to COMMANDS in \
                 tests/docs_commands.rs:\n    ({:?}, By {{ file: \"<file>.rs\", test: \"<fn>\" }}),",
                c.file, c.line, c.text, c.text
            )),
            Some(NotRun(_)) if c.file != "README.md" => problems.push(format!(
                "{}:{}: `{}` is marked NotRun, which only README.md may use: run it in a test",
                c.file, c.line, c.text
            )),
            Some(_) => {}
        }
    }
    let shown: BTreeSet<&str> = commands.iter().map(|c| c.text.as_str()).collect();
    for (command, _) in COMMANDS {
        if !shown.contains(command) {
            problems.push(format!(
                "COMMANDS lists `{command}`, which no page shows any more: remove it"
            ));
        }
    }
    problems
}

#[test]
fn every_documented_command_is_accounted_for() {
    let commands = all_doc_commands(root());
    assert!(
        !commands.is_empty(),
        "no ```sh command in README.md or docs/"
    );
    let problems = accounting_problems(&commands);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    let not_run: Vec<String> = commands
        .iter()
        .filter_map(|c| match check_of(&c.text) {
            Some(NotRun(why)) => Some(format!("  {}:{}: {} ({why})", c.file, c.line, c.text)),
            _ => None,
        })
        .collect();
    if !not_run.is_empty() {
        eprintln!(
            "{} README.md command(s) are run by no test yet:\n{}",
            not_run.len(),
            not_run.join("\n")
        );
    }
}

#[test]
fn an_unlisted_or_stale_command_is_reported() {
    let shown = |file: &str, text: &str| DocCommand {
        file: file.into(),
        line: 7,
        text: text.into(),
    };
    let mut commands: Vec<DocCommand> = COMMANDS
        .iter()
        .filter(|(_, check)| !matches!(check, NotRun(_)))
        .map(|(text, _)| shown("docs/x.md", text))
        .collect();
    commands.extend(
        COMMANDS
            .iter()
            .filter(|(_, check)| matches!(check, NotRun(_)))
            .map(|(text, _)| shown("README.md", text)),
    );
    assert_eq!(accounting_problems(&commands), Vec::<String>::new());
    commands.push(shown("docs/new.md", "orchestrator frobnicate --all"));
    let removed = commands.remove(0);
    let problems = accounting_problems(&commands);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0]
            .starts_with("docs/new.md:7: `orchestrator frobnicate --all` is run by no test."),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains(&format!("`{}`, which no page shows", removed.text)),
        "{problems:#?}"
    );
}

#[test]
fn commands_run_by_other_tests_are_in_those_tests() {
    let mut problems = Vec::new();
    for (command, check) in COMMANDS {
        let By { file, test } = check else {
            continue;
        };
        let path = root().join("tests").join(file);
        let Ok(source) = std::fs::read_to_string(&path) else {
            problems.push(format!("tests/{file} does not exist (for `{command}`)"));
            continue;
        };
        if !source.contains(&format!("fn {test}(")) {
            problems.push(format!(
                "tests/{file} has no test fn {test} (for `{command}`)"
            ));
        }
        if !source.contains(command) {
            problems.push(format!(
                "tests/{file} does not hold `{command}` verbatim, so {test} cannot be running it"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `cargo run [--release] -- ARGS` is the binary under test with ARGS.
fn as_run(command: &str) -> String {
    for prefix in ["cargo run --release -- ", "cargo run -- "] {
        if let Some(rest) = command.strip_prefix(prefix) {
            return format!("orchestrator {rest}");
        }
    }
    command.to_string()
}

#[test]
fn commands_marked_here_run_in_a_sandbox() {
    let here: Vec<&str> = all_doc_commands(root())
        .into_iter()
        .filter(|c| matches!(check_of(&c.text), Some(Here)))
        .map(|c| c.text)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|t| COMMANDS.iter().find(|(c, _)| *c == t).unwrap().0)
        .collect();
    if here.is_empty() {
        return;
    }
    let sandbox = Sandbox::with_example_repo(Path::new(env!("CARGO_BIN_EXE_orchestrator")));
    // In table order, which is the order a reader follows.
    for (command, _) in COMMANDS.iter().filter(|(c, _)| here.contains(c)) {
        let (out, code) = sandbox.sh(&as_run(command));
        assert_eq!(code, Some(0), "{out}");
    }
}

/// Every markdown file under docs/, recursively.
fn docs_pages(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            docs_pages(&path, out);
        } else if path.extension().is_some_and(|x| x == "md") {
            out.push(path);
        }
    }
}

/// Focused pages: a docs/ page over 400 lines is split.
const MAX_PAGE_LINES: usize = 400;

#[test]
fn every_docs_page_stays_short() {
    let mut pages = Vec::new();
    docs_pages(&root().join("docs"), &mut pages);
    assert!(!pages.is_empty());
    let long: Vec<String> = pages
        .iter()
        .map(|p| (p, std::fs::read_to_string(p).unwrap().lines().count()))
        .filter(|(_, n)| *n >= MAX_PAGE_LINES)
        .map(|(p, n)| format!("{}: {n} lines", p.display()))
        .collect();
    assert!(
        long.is_empty(),
        "pages of {MAX_PAGE_LINES} lines or more: {long:?}"
    );
}
