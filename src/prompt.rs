//! The order an agent reads a task's files in: markdown file names in, their reading order and
//! the generated `TASK.md` (every file, in that order, under a heading) out. Pure.
//!
//! The order: `prompt.md` first when the task has one, then every other file in natural order,
//! where runs of digits compare as numbers (`context-v2.md` before `context-v10.md`) and the
//! rest compares byte by byte. The ConfigMap, the TaskRun's `markdownFiles` and `TASK.md` all
//! follow it, so `cat "$TASK_DIR/TASK.md"` is the whole task as the agent should read it.

use crate::crd::MarkdownFile;
use std::cmp::Ordering;

/// The file an agent reads first, when a task has it.
pub const PROMPT_FILE: &str = "prompt.md";
/// The generated concatenation of every markdown file; a task folder may not hold one itself.
pub const TASK_FILE: &str = "TASK.md";

/// Reading order of two file names: `prompt.md` first, then natural order.
pub fn reading_order(a: &str, b: &str) -> Ordering {
    match (a == PROMPT_FILE, b == PROMPT_FILE) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => natural_order(a, b),
    }
}

/// Sorts markdown files into reading order.
pub fn sort_files(files: &mut [MarkdownFile]) {
    files.sort_by(|a, b| reading_order(&a.filename, &b.filename));
}

/// Natural order: digit runs compare by value (then by length, so `01` after `1`), everything
/// else byte by byte; equal keys fall back to plain byte order so the order is total.
pub fn natural_order(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(cx), Some(cy)) if cx.is_ascii_digit() && cy.is_ascii_digit() => {
                let (dx, rx) = split_digits(x);
                let (dy, ry) = split_digits(y);
                let (vx, vy) = (trim_zeros(dx), trim_zeros(dy));
                let by_value = vx.len().cmp(&vy.len()).then_with(|| vx.cmp(vy));
                match by_value.then_with(|| dx.len().cmp(&dy.len())) {
                    Ordering::Equal => (x, y) = (rx, ry),
                    other => return other,
                }
            }
            (Some(cx), Some(cy)) => match cx.cmp(cy) {
                Ordering::Equal => (x, y) = (&x[1..], &y[1..]),
                other => return other,
            },
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

/// `TASK.md`: each file under a `# <file name>` heading, in reading order, separated by a blank
/// line; each file's content ends with a newline.
pub fn task_markdown(files: &[MarkdownFile]) -> String {
    let mut ordered: Vec<&MarkdownFile> = files.iter().collect();
    ordered.sort_by(|a, b| reading_order(&a.filename, &b.filename));
    let mut out = String::with_capacity(files.iter().map(|f| f.content.len() + 64).sum());
    for (i, file) in ordered.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("# ");
        out.push_str(&file.filename);
        out.push_str("\n\n");
        out.push_str(&file.content);
        if !file.content.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> MarkdownFile {
        MarkdownFile {
            filename: name.into(),
            content: content.into(),
        }
    }

    #[test]
    fn reading_order_puts_prompt_first_then_natural_order() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["context-v10.md", "prompt.md", "context-v2.md"],
                &["prompt.md", "context-v2.md", "context-v10.md"],
            ),
            (
                &["acceptance.md", "prompt.md", "context.md"],
                &["prompt.md", "acceptance.md", "context.md"],
            ),
            // No prompt.md: natural order only.
            (&["b.md", "a10.md", "a9.md"], &["a9.md", "a10.md", "b.md"]),
            // Leading zeros: equal value, shorter first; order stays total.
            (
                &["step-01.md", "step-1.md", "step-2.md"],
                &["step-1.md", "step-01.md", "step-2.md"],
            ),
            // Case is compared byte by byte: uppercase before lowercase.
            (&["b.md", "B.md", "a.md"], &["B.md", "a.md", "b.md"]),
            // A prompt that is not exactly prompt.md is an ordinary file.
            (
                &["prompt-2.md", "prompt.md", "01-prompt.md"],
                &["prompt.md", "01-prompt.md", "prompt-2.md"],
            ),
            // Very long digit runs do not overflow.
            (
                &[
                    "x-99999999999999999999999.md",
                    "x-100000000000000000000000.md",
                ],
                &[
                    "x-99999999999999999999999.md",
                    "x-100000000000000000000000.md",
                ],
            ),
        ];
        for (input, want) in cases {
            let mut files: Vec<MarkdownFile> = input.iter().map(|n| file(n, "")).collect();
            sort_files(&mut files);
            let got: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
            assert_eq!(&got, want, "{input:?}");
        }
    }

    #[test]
    fn natural_order_is_a_total_order() {
        let names = [
            "a.md", "a1.md", "a01.md", "a2.md", "a10.md", "A.md", "a-.md", "1.md",
        ];
        for x in names {
            assert_eq!(natural_order(x, x), Ordering::Equal, "{x}");
            for y in names {
                if x != y {
                    assert_ne!(natural_order(x, y), Ordering::Equal, "{x} {y}");
                    assert_eq!(
                        natural_order(x, y),
                        natural_order(y, x).reverse(),
                        "{x} {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn task_markdown_concatenates_in_reading_order_with_headings() {
        let files = [
            file("context-v10.md", "ten"),
            file("context-v2.md", "two\n"),
            file("prompt.md", "# Build it\n"),
        ];
        assert_eq!(
            task_markdown(&files),
            "# prompt.md\n\n# Build it\n\n# context-v2.md\n\ntwo\n\n# context-v10.md\n\nten\n"
        );
        assert_eq!(task_markdown(&[]), "");
    }
}
