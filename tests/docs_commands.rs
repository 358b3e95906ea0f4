//! Every command shown in README.md and docs/*.md is run by a test, so the docs cannot go stale.
//!
//! Each command line of a ```sh block (continuations joined, comments dropped) must be listed in
//! [`COMMANDS`] with how it is checked:
//! - [`Check::Here`] / [`Check::Exits`]: this test runs it with bash, in table order, in one
//!   sandbox (see `docs_support::Sandbox`): a temp git repository `repo/` (branch main, a branch
//!   `pr-branch`, remote `origin`) holding a copy of example-repo/, its task folders again under
//!   `tasks/` and its `agents.yaml` at the top; `orchestrator` on PATH (`cargo run [--release]
//!   --` is run as `orchestrator`); `kubeconfig` naming an embedded API server that
//!   `orchestrator apiserver` serves for the sandbox, which `kubectl` lines talk to. It must exit
//!   0 (`Here`) or the code given (`Exits`);
//! - [`Check::By`]: another test runs it; that test file must contain the command verbatim (as
//!   this table writes it) and the named test function;
//! - [`Check::InScript`]: a file of the project (a CI recipe) holds the command verbatim, and the
//!   named test runs that file's commands;
//! - [`Check::ThisSuite`]: `cargo test` itself, which is what runs this test.
//!
//! A command that cannot run here (a server that runs until stopped, `docker build`, a cluster
//! with Deployments) is shown in a ```text block with prose saying what to substitute.
//! A command in the docs that the table lacks fails the test, which prints the line to add.

mod docs_support;

use docs_support::{DocCommand, Sandbox, all_doc_commands};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Clone, Copy, Debug)]
enum Check {
    Here,
    Exits(i32),
    By {
        file: &'static str,
        test: &'static str,
    },
    InScript {
        script: &'static str,
        test_file: &'static str,
        test: &'static str,
    },
    ThisSuite,
}

use Check::{By, Exits, Here, InScript, ThisSuite};

const INIT: &str = "init.rs";
const DEPLOY: &str = "deploy.rs";
const QUICK_START: Check = By {
    file: INIT,
    test: "the_quick_start_runs_as_written",
};

/// Every documented command, as `docs_support::normalize` writes it, and how it is checked.
/// Extend it when a page gains a command; remove a line when no page shows it any more. `Here`
/// and `Exits` lines run in this order, which is the order a reader follows.
const COMMANDS: &[(&str, Check)] = &[
    // README.md: the set-up.
    (
        "cargo run --release -- run --embedded --repo . --path example-repo --until-done",
        Here,
    ),
    ("cargo test", ThisSuite),
    // README.md and docs/quick-start.md: your own repository.
    ("orchestrator init my-tasks", QUICK_START),
    (
        "orchestrator run --embedded --repo my-tasks --until-done",
        QUICK_START,
    ),
    ("orchestrator status --repo my-tasks", QUICK_START),
    (
        "echo 'Then say goodbye.' >> my-tasks/1-hello/prompt.md",
        QUICK_START,
    ),
    (
        "git -C my-tasks commit -am 'Ask for a goodbye too'",
        QUICK_START,
    ),
    // docs/notes.md: the note the first command wrote.
    (
        "git fetch origin refs/notes/orchestrator:refs/notes/orchestrator",
        Here,
    ),
    ("git log --notes=orchestrator", Here),
    // docs/validate-and-plan.md
    ("orchestrator validate --path example-repo", Here),
    (
        "orchestrator validate --repo . --revision main --path example-repo",
        Here,
    ),
    (
        r#"orchestrator validate --repo "file://$PWD" --revision main --path example-repo"#,
        Here,
    ),
    ("orchestrator plan --repo . --path example-repo", Here),
    (
        r#"orchestrator plan --repo . --revision "main@sha1:$(git rev-parse main)" --path example-repo -o yaml"#,
        Here,
    ),
    (
        "orchestrator plan --repo . --revision pr-branch --path example-repo -n agents --kubeconfig kubeconfig",
        Here,
    ),
    (
        "orchestrator plan --repo . --revision pr-branch --path example-repo -n agents --kubeconfig kubeconfig -o json",
        Here,
    ),
    (
        "orchestrator plan --repo . --revision pr-branch --path example-repo -n agents --kubeconfig kubeconfig -o markdown > comment.md",
        Here,
    ),
    // docs/review-and-ci.md
    (
        "orchestrator validate --repo . --path tasks --agents agents.yaml",
        Here,
    ),
    (
        "orchestrator plan --repo . --path tasks --agents agents.yaml -o markdown > plan.md || true",
        Here,
    ),
    (
        r#"orchestrator wait --repo "$REPO_URL" --timeout 15m --interval 1s "$GITHUB_SHA""#,
        InScript {
            script: "examples/ci/github-actions.yml",
            test_file: "ci_recipe.rs",
            test: "the_ci_examples_validate_plan_and_gate_in_a_fresh_clone",
        },
    ),
    (
        r#"orchestrator run --embedded --repo "file://$PWD" --path tasks --until-done --agents agents.yaml --source-name tasks-prod"#,
        Here,
    ),
    (
        "orchestrator plan --repo . --path tasks --source-name tasks-prod",
        Here,
    ),
    (
        "orchestrator run --embedded --path tasks --repo . --agents agents.yaml --branch HEAD --until-done",
        Here,
    ),
    (
        "orchestrator run --embedded --path tasks --until-done --repo . --agents agents.yaml --environment staging",
        Here,
    ),
    (
        "orchestrator status --repo . --environment staging HEAD",
        Here,
    ),
    (
        "orchestrator wait --repo . --environment staging --timeout 5s HEAD",
        Here,
    ),
    (
        "orchestrator run --embedded --repo . --path tasks --until-done",
        Here,
    ),
    (
        "orchestrator run --embedded --repo . --path tasks --until-done --no-controller --controller-wait 2s",
        Exits(4),
    ),
    (
        "orchestrator run --embedded --repo . --path nosuch --until-done --agents agents.yaml",
        Exits(2),
    ),
    // docs/agents.md
    (
        r#"orchestrator run --embedded --path tasks --until-done --agents-from-repo agents.yaml --repo "file://$PWD""#,
        Here,
    ),
    // docs/api.md: the API alone, in the background, and requests to it.
    ("git clone -q --bare . ../tasks.git", Here),
    (r#"echo "$(openssl rand -hex 32)" > api-token"#, Here),
    (
        r#"orchestrator api --repo ../tasks.git --path example-repo --api-token-file api-token --agents example-repo/agents.yaml --commit-author "PM Bot <pm@example.com>" &"#,
        Here,
    ),
    (
        "curl -s --retry 30 --retry-connrefused --retry-delay 1 http://127.0.0.1:8080/healthz",
        Here,
    ),
    (
        r##"curl -s --fail-with-body -X POST http://127.0.0.1:8080/api/v1/tasks -H "Authorization: Bearer $(cat api-token)" -H 'Content-Type: application/json' -d '{"id": 42, "serviceName": "web", "agentName": "claude-code",
       "markdownFiles": [{"filename": "prompt.md", "content": "# Login page\nBuild it."}]}'"##,
        Here,
    ),
    (
        r#"curl -s --fail-with-body -X POST http://127.0.0.1:8080/api/v1/tasks/42/context -H "Authorization: Bearer $(cat api-token)" -H 'Content-Type: application/json' -d '{"additionalContext": "Use the form components of the design system."}'"#,
        Here,
    ),
    // docs/controller.md: the controller alone, in the background, and its metrics.
    (
        "orchestrator controller --embedded --agents example-repo/agents.yaml -n tasks &",
        Here,
    ),
    (
        "curl -s --retry 30 --retry-connrefused --retry-delay 1 localhost:9464/metrics",
        Here,
    ),
    // README.md and docs/install.md, against the sandbox's API server; the agents' Secret is
    // checked by tests/deploy.rs, which also renders deploy/ (`kubectl apply -k` needs a real
    // cluster, so the docs show it as text).
    ("kubectl create namespace orchestrator", Here),
    (
        r#"kubectl -n orchestrator create secret generic orchestrator-credentials --from-literal=git-token="$GIT_TOKEN" --from-literal=api-token="$(openssl rand -hex 32)" --from-literal=webhook-secret="$(openssl rand -hex 32)""#,
        Here,
    ),
    (
        r#"kubectl -n orchestrator create secret generic agent-credentials --from-literal=anthropic-api-key="$ANTHROPIC_API_KEY" --from-literal=openai-api-key="$OPENAI_API_KEY" --from-literal=git-token="$AGENT_GIT_TOKEN""#,
        By {
            file: DEPLOY,
            test: "the_install_step_secret_reaches_the_shipped_profiles_env_on_the_embedded_cluster",
        },
    ),
    // docs/agent-image.md
    (
        r#"kubectl -n orchestrator-agents create secret generic agent-credentials --from-literal=anthropic-api-key="$ANTHROPIC_API_KEY" --from-literal=openai-api-key="$OPENAI_API_KEY" --from-literal=git-token="$AGENT_GIT_TOKEN""#,
        By {
            file: DEPLOY,
            test: "every_object_an_agent_profile_needs_is_created_by_deploy_or_the_install_steps",
        },
    ),
    // docs/task-lifecycle.md
    (
        "orchestrator run --embedded --repo . --path example-repo --until-done --runner-log-dir logs --agents example-repo/agents.yaml",
        Here,
    ),
    ("orchestrator status --repo . -o json", Here),
    // docs/operations.md
    ("orchestrator status -o json", Here),
    (
        "orchestrator run --embedded --repo . --path tasks --until-done --agents agents.yaml",
        Here,
    ),
    // docs/install.md, applied to the sandbox's API server (which stores Deployments, Services
    // and RBAC objects), then uninstalled: last, because uninstall removes the CRD.
    ("kubectl kustomize deploy", Here),
    ("kubectl apply -k deploy/", Here),
    (
        "orchestrator crd | kubectl apply --server-side --field-manager=orchestrator-crd --force-conflicts -f -",
        Here,
    ),
    (
        "orchestrator uninstall --namespace orchestrator --keep-crd",
        Here,
    ),
    ("orchestrator uninstall", Here),
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
        if check_of(&c.text).is_none() {
            problems.push(format!(
                "{}:{}: `{}` is run by no test. Add it to COMMANDS in tests/docs_commands.rs, \
                 run here in the sandbox:\n    ({:?}, Here),\nor by a test that holds it \
                 verbatim:\n    ({:?}, By {{ file: \"<file>.rs\", test: \"<fn>\" }}),\nor show \
                 it in a ```text block with what to substitute",
                c.file, c.line, c.text, c.text, c.text
            ));
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
        .map(|(text, _)| shown("docs/x.md", text))
        .collect();
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
        if matches!(check, ThisSuite) && *command != "cargo test" {
            problems.push(format!(
                "`{command}` is marked ThisSuite, which only `cargo test` is: run it in a test"
            ));
        }
        if let InScript {
            script,
            test_file,
            test,
        } = check
        {
            let held = std::fs::read_to_string(root().join(script)).unwrap_or_default();
            let runner =
                std::fs::read_to_string(root().join("tests").join(test_file)).unwrap_or_default();
            let name = Path::new(script).file_name().unwrap().to_str().unwrap();
            if !held.contains(command) {
                problems.push(format!("{script} does not hold `{command}` verbatim"));
            }
            if !runner.contains(&format!("fn {test}(")) || !runner.contains(name) {
                problems.push(format!(
                    "tests/{test_file} has no test fn {test} running {script} (for `{command}`)"
                ));
            }
            continue;
        }
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

/// The exit code a `Here` or `Exits` line must give; None for lines another test runs.
fn expected_exit(check: Check) -> Option<i32> {
    match check {
        Here => Some(0),
        Exits(code) => Some(code),
        _ => None,
    }
}

#[test]
fn commands_marked_here_run_in_a_sandbox() {
    let shown: BTreeSet<String> = all_doc_commands(root())
        .into_iter()
        .map(|c| c.text)
        .collect();
    let here: Vec<(&str, i32)> = COMMANDS
        .iter()
        .filter(|(command, _)| shown.contains(*command))
        .filter_map(|(command, check)| expected_exit(*check).map(|code| (*command, code)))
        .collect();
    if here.is_empty() {
        return;
    }
    let kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    let sandbox = Sandbox::for_doc_commands(Path::new(env!("CARGO_BIN_EXE_orchestrator")));
    // In table order, which is the order a reader follows.
    for (command, code) in here {
        if command.starts_with("kubectl ") && !kubectl {
            eprintln!("skipping `{command}`: kubectl is not available");
            continue;
        }
        let (out, got) = sandbox.sh(&as_run(command));
        assert_eq!(
            got,
            Some(code),
            "`{command}` (docs) should exit {code} in the sandbox:\n{out}"
        );
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

/// Focused pages: a docs/ page of 400 lines or more is split.
const MAX_PAGE_LINES: usize = 400;

/// The README is the front door, not the manual: reference text goes to docs/.
const MAX_README_LINES: usize = 200;

#[test]
fn the_readme_stays_a_front_door() {
    let lines = std::fs::read_to_string(root().join("README.md"))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines < MAX_README_LINES,
        "README.md has {lines} lines, {MAX_README_LINES} or more: move reference text into a \
         docs/ page and link it"
    );
}

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
