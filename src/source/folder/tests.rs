use super::*;
use pretty_assertions::assert_eq;

type Expected = Vec<(Option<String>, String)>;

fn file(name: &str, content: &str) -> RawEntry {
    bytes(name, content.as_bytes())
}

fn bytes(name: &str, content: &[u8]) -> RawEntry {
    RawEntry {
        name: name.into(),
        kind: EntryKind::File {
            size: content.len() as u64,
            content: Some(content.to_vec()),
        },
    }
}

fn kind(name: &str, kind: EntryKind) -> RawEntry {
    RawEntry {
        name: name.into(),
        kind,
    }
}

const YAML: &str = "serviceName: web\nagentName: claude-code\n";

fn errors(entries: Vec<RawEntry>) -> Vec<(Option<String>, String)> {
    match parse_folder(entries) {
        Ok(content) => panic!("expected errors, got {content:?}"),
        Err(errors) => errors.into_iter().map(|e| (e.file, e.message)).collect(),
    }
}

fn err(file: Option<&str>, message: &str) -> (Option<String>, String) {
    (file.map(str::to_string), message.to_string())
}

#[test]
fn valid_folders() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<RawEntry>, (&str, &str, Vec<&str>))> = vec![
        (
            "minimal",
            vec![file("task.yaml", YAML), file("prompt.md", "# Do it")],
            ("web", "claude-code", vec!["prompt.md"]),
        ),
        (
            "markdown in reading order whatever the input order",
            vec![
                file("z.md", "z"),
                file("task.yaml", YAML),
                file("context-v10.md", ""),
                file("prompt.md", "p"),
                file("a.md", "a"),
                file("context-v2.md", ""),
            ],
            (
                "web",
                "claude-code",
                vec![
                    "prompt.md",
                    "a.md",
                    "context-v2.md",
                    "context-v10.md",
                    "z.md",
                ],
            ),
        ),
        (
            "hidden files ignored",
            vec![
                file("task.yaml", YAML),
                file("p.md", "x"),
                file(".gitkeep", ""),
                kind(".cache", EntryKind::Dir),
            ],
            ("web", "claude-code", vec!["p.md"]),
        ),
        (
            "keys in any order, yaml comments allowed",
            vec![
                file(
                    "task.yaml",
                    "# owner: payments\nagentName: codex\nserviceName: billing-api\n",
                ),
                file("p.md", "x"),
            ],
            ("billing-api", "codex", vec!["p.md"]),
        ),
        (
            "unicode markdown and an empty file",
            vec![
                file("task.yaml", YAML),
                file("p.md", "naïve café ✓"),
                file("empty.md", ""),
            ],
            ("web", "claude-code", vec!["empty.md", "p.md"]),
        ),
        (
            "exactly at the size limit",
            vec![
                file("task.yaml", YAML),
                file(
                    "big.md",
                    &"x".repeat(MAX_TASK_BYTES as usize - "big.md".len()),
                ),
            ],
            ("web", "claude-code", vec!["big.md"]),
        ),
    ];
    for (what, entries, (service, agent, files)) in cases {
        let content = parse_folder(entries).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(&*content.service_name, service, "{what}");
        assert_eq!(&*content.agent_name, agent, "{what}");
        let names: Vec<_> = content
            .markdown_files
            .iter()
            .map(|f| &*f.filename)
            .collect();
        assert_eq!(names, files, "{what}");
    }
}

#[test]
fn digest_covers_task_yaml_and_markdown() {
    let a = parse_folder(vec![file("task.yaml", YAML), file("p.md", "x")]).unwrap();
    let b = parse_folder(vec![
        file("p.md", "x"),
        file("task.yaml", YAML),
        file(".gitkeep", ""),
    ])
    .unwrap();
    assert_eq!(a.digest, b.digest, "order and hidden files do not matter");
    let c = parse_folder(vec![
        file("task.yaml", "serviceName: web\nagentName: codex\n"),
        file("p.md", "x"),
    ])
    .unwrap();
    assert_ne!(a.digest, c.digest, "task.yaml is part of the content");
    assert_eq!(
        a.digest,
        content_digest([("task.yaml", YAML.as_bytes()), ("p.md", b"x".as_slice())])
    );
}

#[test]
fn invalid_folders_report_every_problem_exactly() {
    let big = "x".repeat(2 * 1024 * 1024);
    let cases: Vec<(&str, Vec<RawEntry>, Expected)> = vec![
        (
            "empty",
            vec![],
            vec![err(
                None,
                "folder is empty: add a task.yaml and at least one *.md file, or delete the folder",
            )],
        ),
        (
            "only hidden files",
            vec![file(".gitkeep", "")],
            vec![err(
                None,
                "folder is empty: add a task.yaml and at least one *.md file, or delete the folder",
            )],
        ),
        (
            "missing task.yaml",
            vec![file("p.md", "x")],
            vec![err(
                Some("task.yaml"),
                "is missing: add a task.yaml with serviceName and agentName, e.g. \"serviceName: web\" and \"agentName: claude-code\"",
            )],
        ),
        (
            "no markdown",
            vec![file("task.yaml", YAML)],
            vec![err(
                None,
                "has no *.md files: add at least one markdown file, e.g. prompt.md",
            )],
        ),
        (
            "unknown key and a near miss",
            vec![
                file(
                    "task.yaml",
                    "serviceName: web\nagentName: codex\npriority: high\nservice_name: x\n",
                ),
                file("p.md", "x"),
            ],
            vec![
                err(
                    Some("task.yaml"),
                    "priority must be a whole number between -2147483648 and 2147483647, not \"high\": write e.g. \"priority: 10\" (higher starts first; the default is 0)",
                ),
                err(
                    Some("task.yaml"),
                    "unknown key \"service_name\" (did you mean serviceName?): only serviceName, agentName, suspend and priority are allowed: remove or rename it",
                ),
            ],
        ),
        (
            "missing keys",
            vec![file("task.yaml", "agent: codex\n"), file("p.md", "x")],
            vec![
                err(
                    Some("task.yaml"),
                    "unknown key \"agent\" (did you mean agentName?): only serviceName, agentName, suspend and priority are allowed: remove or rename it",
                ),
                err(
                    Some("task.yaml"),
                    "serviceName is missing: add e.g. \"serviceName: web\"",
                ),
                err(
                    Some("task.yaml"),
                    "agentName is missing: add e.g. \"agentName: claude-code\"",
                ),
            ],
        ),
        (
            "invalid service name",
            vec![
                file("task.yaml", "serviceName: Billing_API\nagentName: codex\n"),
                file("p.md", "x"),
            ],
            vec![err(
                Some("task.yaml"),
                "serviceName \"Billing_API\" is not a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters) and it becomes part of Kubernetes names and labels: use e.g. \"billing-api\"",
            )],
        ),
        (
            "service name too long",
            vec![
                file(
                    "task.yaml",
                    &format!("serviceName: {}\nagentName: codex\n", "s".repeat(64)),
                ),
                file("p.md", "x"),
            ],
            vec![err(
                Some("task.yaml"),
                &format!(
                    "serviceName \"{}\" is not a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters) and it becomes part of Kubernetes names and labels: use e.g. \"{}\"",
                    "s".repeat(64),
                    "s".repeat(63)
                ),
            )],
        ),
        (
            "non-string value",
            vec![
                file("task.yaml", "serviceName: 42\nagentName: [a]\n"),
                file("p.md", "x"),
            ],
            vec![
                err(
                    Some("task.yaml"),
                    "serviceName must be a string, not 42: write e.g. \"serviceName: web\"",
                ),
                err(
                    Some("task.yaml"),
                    "agentName must be a string, not a list: write e.g. \"agentName: claude-code\"",
                ),
            ],
        ),
        (
            "empty task.yaml",
            vec![file("task.yaml", ""), file("p.md", "x")],
            vec![err(
                Some("task.yaml"),
                "is empty: set serviceName and agentName, e.g. \"serviceName: web\" and \"agentName: claude-code\"",
            )],
        ),
        (
            "task.yaml not a mapping",
            vec![file("task.yaml", "- web\n"), file("p.md", "x")],
            vec![err(
                Some("task.yaml"),
                "must be a mapping with serviceName and agentName, e.g. \"serviceName: web\" and \"agentName: claude-code\"",
            )],
        ),
        (
            "symlink, nested folder, submodule, stray files",
            vec![
                file("task.yaml", YAML),
                file("p.md", "x"),
                kind("link.md", EntryKind::Symlink),
                kind("images", EntryKind::Dir),
                kind("vendor", EntryKind::Submodule),
                file("diagram.png", "\u{1}PNG"),
                file("task.yml", YAML),
                file("Notes.MD", "x"),
            ],
            vec![
                err(
                    Some("Notes.MD"),
                    "markdown files must end in lowercase .md: rename it",
                ),
                err(
                    Some("diagram.png"),
                    "only task.yaml and *.md files may be in a task folder: remove it, or move it out of the tasks path",
                ),
                err(
                    Some("images"),
                    "nested folders are not allowed in a task folder: move its *.md files up into the task folder, or move it out of the tasks path",
                ),
                err(
                    Some("link.md"),
                    "is a symbolic link; symlinks are never followed: replace it with a regular file",
                ),
                err(
                    Some("task.yml"),
                    "the settings file must be named exactly task.yaml: rename it",
                ),
                err(
                    Some("vendor"),
                    "is a git submodule; a task folder holds only task.yaml and *.md files: remove it",
                ),
            ],
        ),
        (
            "unsafe ConfigMap key",
            vec![file("task.yaml", YAML), file("my notes (draft).md", "x")],
            vec![err(
                Some("my notes (draft).md"),
                "file name is not a valid ConfigMap key (letters, digits, '-', '_' and '.' only, at most 253 characters): rename it, e.g. to my-notes--draft.md",
            )],
        ),
        (
            "binary and non-UTF-8 markdown",
            vec![
                file("task.yaml", YAML),
                bytes("a.md", b"ok\0rest"),
                bytes("b.md", b"caf\xe9"),
            ],
            vec![
                err(
                    Some("a.md"),
                    "looks binary (NUL byte at offset 2); markdown files must be UTF-8 text: remove the file or save it as text",
                ),
                err(
                    Some("b.md"),
                    "is not valid UTF-8 (invalid byte at offset 3): save it as UTF-8",
                ),
            ],
        ),
        (
            "a 2 MiB file",
            vec![
                file("task.yaml", YAML),
                file("small.md", "x"),
                file("huge.md", &big),
            ],
            vec![err(
                Some("huge.md"),
                "the task's markdown totals 2.0 MiB (2097168 bytes), over the 450 KiB limit that keeps its ConfigMap (every file plus the generated TASK.md) under Kubernetes' 1 MiB object limit; this is its largest file (2.0 MiB): shrink it or split the task",
            )],
        ),
        (
            "many files together over the limit",
            (0..3)
                .map(|i| file(&format!("part{i}.md"), &"y".repeat(400 * 1024)))
                .chain([file("task.yaml", YAML)])
                .collect(),
            vec![err(
                Some("part0.md"),
                "the task's markdown totals 1.2 MiB (1228824 bytes), over the 450 KiB limit that keeps its ConfigMap (every file plus the generated TASK.md) under Kubernetes' 1 MiB object limit; this is its largest file (400.0 KiB): shrink it or split the task",
            )],
        ),
    ];
    for (what, entries, expected) in cases {
        assert_eq!(errors(entries), expected, "{what}");
    }
}

#[test]
fn readers_skip_what_they_need_not_read() {
    for (name, size, wanted) in [
        ("task.yaml", 100, true),
        ("task.yaml", MAX_TASK_YAML_BYTES + 1, false),
        ("p.md", MAX_TASK_BYTES, true),
        ("p.md", MAX_TASK_BYTES + 1, false),
        ("image.png", 10, false),
        (".hidden.md", 10, false),
    ] {
        assert_eq!(wants_content(name, size), wanted, "{name} {size}");
    }
}

#[test]
fn unread_oversized_file_is_reported_by_size() {
    let entries = vec![
        file("task.yaml", YAML),
        kind(
            "huge.md",
            EntryKind::File {
                size: 5 * 1024 * 1024,
                content: None,
            },
        ),
    ];
    assert_eq!(
        errors(entries),
        vec![err(
            Some("huge.md"),
            "the task's markdown totals 5.0 MiB (5242887 bytes), over the 450 KiB limit that keeps its ConfigMap (every file plus the generated TASK.md) under Kubernetes' 1 MiB object limit; this is its largest file (5.0 MiB): shrink it or split the task"
        )]
    );
}

#[test]
fn config_map_keys() {
    for (name, ok) in [
        ("prompt.md", true),
        ("context-v2.md", true),
        ("A_b.c-d.md", true),
        ("my notes.md", false),
        ("ü.md", false),
        ("..", false),
        ("", false),
    ] {
        assert_eq!(is_config_map_key(name), ok, "{name:?}");
    }
    assert!(!is_config_map_key(&format!("{}.md", "a".repeat(251))));
    assert!(is_config_map_key(&format!("{}.md", "a".repeat(250))));
}

#[test]
fn sizes_read_like_people_write_them() {
    for (bytes, text) in [
        (512, "512 bytes"),
        (921_600, "900 KiB"),
        (1536, "1.5 KiB"),
        (2 * 1024 * 1024, "2.0 MiB"),
    ] {
        assert_eq!(human_size(bytes), text);
    }
}

#[test]
fn suspend_and_priority_are_read_from_task_yaml() {
    // (task.yaml, suspend, priority)
    let cases = [
        (YAML.to_string(), false, 0),
        (format!("{YAML}suspend: true\n"), true, 0),
        (format!("{YAML}suspend: false\npriority: 10\n"), false, 10),
        (format!("priority: -5\n{YAML}"), false, -5),
    ];
    for (yaml, suspend, priority) in cases {
        let content = parse_folder(vec![file("task.yaml", &yaml), file("p.md", "x")])
            .unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        assert_eq!(
            (content.suspend, content.priority),
            (suspend, priority),
            "{yaml}"
        );
    }
}

#[test]
fn bad_suspend_and_priority_name_the_fix() {
    let cases = [
        (
            "suspend: yes please\n",
            "suspend must be true or false, not \"yes please\": write \"suspend: true\" to keep the task from running, or remove the key",
        ),
        (
            "priority: 1.5\n",
            "priority must be a whole number between -2147483648 and 2147483647, not 1.5: write e.g. \"priority: 10\" (higher starts first; the default is 0)",
        ),
        (
            "priority: 99999999999\n",
            "priority must be a whole number between -2147483648 and 2147483647, not 99999999999: write e.g. \"priority: 10\" (higher starts first; the default is 0)",
        ),
        (
            "paused: true\n",
            "unknown key \"paused\" (did you mean suspend?): only serviceName, agentName, suspend and priority are allowed: remove or rename it",
        ),
    ];
    for (extra, want) in cases {
        let yaml = format!("{YAML}{extra}");
        assert_eq!(
            errors(vec![file("task.yaml", &yaml), file("p.md", "x")]),
            vec![err(Some("task.yaml"), want)],
            "{extra}"
        );
    }
}

#[test]
fn suspend_and_priority_do_not_change_the_digest() {
    let digest = |yaml: &str| {
        parse_folder(vec![file("task.yaml", yaml), file("p.md", "x")])
            .unwrap()
            .digest
            .clone()
    };
    let base = digest(YAML);
    for same in [
        format!("{YAML}suspend: true\n"),
        format!("{YAML}priority: 7\n"),
        format!("suspend:   false\n{YAML}priority:\n  3\n"),
    ] {
        assert_eq!(digest(&same), base, "{same}");
    }
    // Anything else in task.yaml still changes it.
    assert_ne!(digest(&format!("{YAML}# a comment\n")), base);
    assert_ne!(digest("serviceName: web\nagentName: codex\n"), base);
}

#[test]
fn without_scheduling_keys_strips_only_those_top_level_lines() {
    let cases = [
        ("a: 1\nsuspend: true\nb: 2\n", "a: 1\nb: 2\n"),
        ("priority:\n  5\nb: 2", "b: 2"),
        ("suspendx: 1\n", "suspendx: 1\n"),
        ("  suspend: true\n", "  suspend: true\n"),
        ("# suspend: true\n", "# suspend: true\n"),
        ("priority : 1\n", ""),
    ];
    for (input, want) in cases {
        assert_eq!(
            String::from_utf8(without_scheduling_keys(input.as_bytes())).unwrap(),
            want,
            "{input:?}"
        );
    }
}

#[test]
fn a_task_md_of_its_own_is_refused() {
    assert_eq!(
        errors(vec![
            file("task.yaml", YAML),
            file("TASK.md", "x"),
            file("p.md", "x")
        ]),
        vec![err(
            Some("TASK.md"),
            "TASK.md is generated from the task's other files (in reading order, each under a heading); a task folder may not hold one: rename it, e.g. to task-notes.md"
        )]
    );
}

/// Found by tests/fuzz_props.rs: a file whose size (from its git object header) is near
/// u64::MAX overflowed the size sum. It is reported as too large, never a panic.
#[test]
fn a_file_size_near_the_largest_integer_is_reported_not_a_panic() {
    let huge = kind(
        "notes.md",
        EntryKind::File {
            size: 11_138_971_377_995_742_680,
            content: None,
        },
    );
    let found = errors(vec![
        file("task.yaml", YAML),
        huge,
        file("prompt.md", "# P\n"),
    ]);
    assert!(
        found.iter().any(|(f, _)| f.as_deref() == Some("notes.md")),
        "{found:?}"
    );
}
