//! What a command prints in, written to stdout out; a reader that went away (`| head`) ends the
//! printing quietly instead of a panic.

use std::io::Write;

/// Writes `text` to stdout and flushes it. A closed pipe is not an error: the reader took what it
/// wanted (`status -o json | head -c 10`), so the rest is dropped, nothing is said, and the
/// command goes on to its own exit code. Any other write error is returned.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    ignore_closed_pipe(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// [`print`] with a line end.
pub fn println(text: &str) -> std::io::Result<()> {
    print(&format!("{text}\n"))
}

/// Pure: a write's result with a closed pipe counted as done.
fn ignore_closed_pipe(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn only_a_closed_pipe_is_ignored() {
        assert!(ignore_closed_pipe(Ok(())).is_ok());
        assert!(ignore_closed_pipe(Err(Error::from(ErrorKind::BrokenPipe))).is_ok());
        let full = ignore_closed_pipe(Err(Error::from(ErrorKind::StorageFull)));
        assert_eq!(full.map_err(|e| e.kind()), Err(ErrorKind::StorageFull));
    }
}
