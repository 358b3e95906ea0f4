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

#[cfg(test)]
mod tests {
    use super::*;

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
