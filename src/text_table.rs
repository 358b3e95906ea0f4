//! Plain-text tables for the terminal: columns padded to their widest cell, two spaces apart,
//! no trailing spaces. Used by `plan`, the live diff and the `--until-done` status table.

/// Every row as one line (each ending in a newline), the first row usually the header.
pub fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A cell for a long text (an agent's result): its last non-empty line, cut to `max` characters
/// with `…`; `-` when there is none.
pub fn short_cell(text: Option<&str>, max: usize) -> String {
    let Some(line) = text.and_then(|t| t.lines().rev().map(str::trim).find(|l| !l.is_empty()))
    else {
        return "-".to_string();
    };
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cells_keep_the_last_line_within_the_width() {
        let cases = [
            (None, "-"),
            (Some(""), "-"),
            (Some("opened PR #12"), "opened PR #12"),
            (
                Some("log line 1\nfinal: 3 tests failed\n\n"),
                "final: 3 tests failed",
            ),
            (
                Some("a very long result line that goes on"),
                "a very long result l…",
            ),
            (Some("ééééééééééééééééééééééé"), "éééééééééééééééééééé…"),
        ];
        for (text, want) in cases {
            assert_eq!(short_cell(text, 21), want, "{text:?}");
        }
    }

    #[test]
    fn columns_are_padded_to_the_widest_cell_without_trailing_spaces() {
        let rows = [
            ["ID", "NAME", "NOTE"].map(String::from),
            ["1", "task-1", ""].map(String::from),
            ["12", "t", "ok"].map(String::from),
        ];
        assert_eq!(
            aligned(&rows),
            "ID  NAME    NOTE\n1   task-1\n12  t       ok\n"
        );
        assert_eq!(aligned::<2>(&[]), "");
    }
}
