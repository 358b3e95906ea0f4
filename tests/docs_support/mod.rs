//! The commands of the documentation: README.md and docs/*.md in; every command line of their
//! ```sh blocks out, with the file and line it is on. Pure parsing, shared by the tests that
//! keep the docs true (docs_commands, deploy).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One command as a user would type it: continuation lines joined, comments dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocCommand {
    /// `README.md` or `docs/x.md`.
    pub file: String,
    /// 1-based line of the command's first line.
    pub line: usize,
    /// Normalised: one line, single spaces between words, no trailing `# comment`.
    pub text: String,
}

/// README.md and every docs/*.md, relative to the repository root, sorted.
pub fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut pages: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
            .collect();
        pages.sort();
        files.extend(pages);
    }
    files
}

/// Every command of every ```sh block of `markdown`.
pub fn sh_commands(file: &str, markdown: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.starts_with("```") {
            if in_sh {
                in_sh = false;
                if let Some((line, text)) = pending.take() {
                    out.push(command(file, line, &text));
                }
            } else {
                let info = trimmed.trim_start_matches('`').trim();
                in_sh = matches!(info, "sh" | "bash" | "shell" | "console");
            }
            continue;
        }
        if !in_sh {
            continue;
        }
        let joined = match pending.take() {
            Some((line, mut text)) => {
                text.push('\n');
                text.push_str(raw);
                (line, text)
            }
            None => {
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                (i + 1, raw.to_string())
            }
        };
        if continues(&joined.1) {
            pending = Some(joined);
        } else {
            out.push(command(file, joined.0, &joined.1));
        }
    }
    out
}

fn command(file: &str, line: usize, text: &str) -> DocCommand {
    DocCommand {
        file: file.to_string(),
        line,
        text: normalize(text),
    }
}

/// A command goes on when its last line ends in `\` or a quote is still open.
fn continues(text: &str) -> bool {
    let without_comment = strip_comment(text);
    without_comment.trim_end().ends_with('\\') || open_quote(&without_comment)
}

fn open_quote(text: &str) -> bool {
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
    }
    single || double
}

/// The text without a trailing `# comment` (a `#` outside quotes after whitespace), per line.
fn strip_comment(text: &str) -> String {
    let mut out = String::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut prev_space = true;
    let mut skipping = false;
    for c in text.chars() {
        if skipping {
            if c == '\n' {
                skipping = false;
                out.push(c);
                prev_space = true;
            }
            continue;
        }
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => {
                skipping = true;
                continue;
            }
            _ => {}
        }
        prev_space = c.is_whitespace();
        out.push(c);
    }
    out
}

/// One line: `\`-newline continuations removed, whitespace runs outside quotes collapsed to a
/// space, trailing comments dropped. Text inside quotes is kept as written.
pub fn normalize(text: &str) -> String {
    let text = strip_comment(text).replace("\\\n", " ");
    let mut out = String::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in text.chars() {
        let quoted = single || double;
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
        if c.is_whitespace() && !quoted {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// Every command of README.md and docs/*.md.
pub fn all_doc_commands(root: &Path) -> Vec<DocCommand> {
    doc_files(root)
        .into_iter()
        .flat_map(|file| {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(root.join(&file)).unwrap_or_default();
            sh_commands(&name, &text)
        })
        .collect()
}

#[test]
fn commands_are_joined_and_stripped() {
    let md = "text\n```sh\n# a comment\norchestrator init my-tasks   # makes it\n\nkubectl -n x create secret generic s \\\n  --from-literal=a=\"$A\" \\\n  --from-literal=b=c\ncurl -d '{\"a\": 1,\n  \"b\": \"# not a comment\"}' http://x\n```\n```yaml\nnot: a command\n```\n";
    let got: Vec<(usize, String)> = sh_commands("f.md", md)
        .into_iter()
        .map(|c| (c.line, c.text))
        .collect();
    assert_eq!(
        got,
        vec![
            (4, "orchestrator init my-tasks".to_string()),
            (
                6,
                "kubectl -n x create secret generic s --from-literal=a=\"$A\" --from-literal=b=c"
                    .to_string()
            ),
            (
                9,
                "curl -d '{\"a\": 1,\n  \"b\": \"# not a comment\"}' http://x".to_string()
            ),
        ]
    );
}

/// A temp directory for running documented commands: `bin/orchestrator` links to the binary
/// under test, and `repo/` is a git repository (branch main, one commit) holding a copy of
/// example-repo/, so `--repo . --path example-repo` works there as in a clone of this project.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// `orchestrator apiserver` serving `repo/kubeconfig`, for [`Sandbox::for_doc_commands`].
    server: Option<std::process::Child>,
    /// Process groups of the lines that ended in `&` (servers), killed on drop, and their logs.
    background: std::cell::RefCell<Vec<(u32, PathBuf)>>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        for (group, _) in self.background.borrow().iter() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
        }
    }
}

impl Sandbox {
    pub fn with_example_repo(binary: &Path) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(binary, dir.path().join("bin/orchestrator")).unwrap();
        let repo_dir = dir.path().join("repo");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("example-repo"), &repo_dir.join("example-repo"));
        // The install page renders and applies deploy/ (which includes ../crds) on the sandbox's
        // API server; they are copied beside the tasks, not committed.
        copy_dir(&root.join("deploy"), &repo_dir.join("deploy"));
        copy_dir(&root.join("crds"), &repo_dir.join("crds"));
        let mut options = git2::RepositoryInitOptions::new();
        options.initial_head("main");
        let repo = git2::Repository::init_opts(&repo_dir, &options).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["example-repo"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Docs Test", "docs@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "example tasks", &tree, &[])
            .unwrap();
        Sandbox {
            dir,
            server: None,
            background: Default::default(),
        }
    }

    /// The sandbox the docs' commands run in: [`Sandbox::with_example_repo`], plus, in the same
    /// commit, example-repo's task folders under `tasks/` and its `agents.yaml` at the top; a
    /// branch `pr-branch`; a remote `origin` (the repository itself, so `git fetch origin`
    /// works offline); and `repo/kubeconfig` (also in `KUBECONFIG`) naming an embedded API
    /// server, `orchestrator apiserver`, that lives as long as the sandbox.
    pub fn for_doc_commands(binary: &Path) -> Sandbox {
        let mut sandbox = Sandbox::with_example_repo(binary);
        let repo_dir = sandbox.repo();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-repo");
        for entry in std::fs::read_dir(&example).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                copy_dir(
                    &path,
                    &repo_dir.join("tasks").join(path.file_name().unwrap()),
                );
            }
        }
        std::fs::copy(example.join("agents.yaml"), repo_dir.join("agents.yaml")).unwrap();
        let repo = git2::Repository::open(&repo_dir).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(
                ["tasks", "agents.yaml"],
                git2::IndexAddOption::DEFAULT,
                None,
            )
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let parent = repo.head().unwrap().peel_to_commit().unwrap();
        let sig = git2::Signature::now("Docs Test", "docs@example.com").unwrap();
        let commit = repo
            .commit(
                Some("HEAD"),
                &sig,
                &sig,
                "tasks and agents",
                &tree,
                &[&parent],
            )
            .unwrap();
        repo.branch("pr-branch", &repo.find_commit(commit).unwrap(), false)
            .unwrap();
        repo.remote("origin", repo_dir.to_str().unwrap()).unwrap();
        std::fs::write(repo_dir.join(".git/info/exclude"), "kubeconfig\n").unwrap();

        let kubeconfig = repo_dir.join("kubeconfig");
        let server = std::process::Command::new(binary)
            .args(["apiserver", "--port", "0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .current_dir(sandbox.dir.path())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("orchestrator apiserver starts");
        sandbox.server = Some(server);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !kubeconfig.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "orchestrator apiserver wrote no kubeconfig within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        sandbox
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// PATH with `bin/` first.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Runs one command line with bash in `repo/`; output (stdout, then stderr) and exit code.
    /// A line ending in `&` starts a server: it runs on in its own process group, its output
    /// goes to a log that later failures show, and the sandbox kills it when dropped.
    pub fn sh(&self, line: &str) -> (String, Option<i32>) {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new("bash");
        command
            .args(["-o", "pipefail", "-c", line])
            .current_dir(self.repo())
            .env("PATH", self.path_env())
            .env("RUST_LOG", "warn");
        if self.server.is_some() {
            command.env("KUBECONFIG", self.repo().join("kubeconfig"));
        }
        if line.trim_end().ends_with('&') {
            let mut background = self.background.borrow_mut();
            let log = self
                .dir
                .path()
                .join(format!("background-{}.log", background.len()));
            let file = std::fs::File::create(&log).unwrap();
            let mut child = command
                .process_group(0)
                .stdin(std::process::Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("bash runs");
            background.push((child.id(), log));
            let status = child.wait().expect("bash runs");
            return (format!("$ {line}\n(in the background)"), status.code());
        }
        let out = command.output().expect("bash runs");
        let mut text = format!(
            "$ {line}\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for (_, log) in self.background.borrow().iter() {
            let server = std::fs::read_to_string(log).unwrap_or_default();
            text.push_str(&format!("\n--- {}\n{server}", log.display()));
        }
        (text, out.status.code())
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
