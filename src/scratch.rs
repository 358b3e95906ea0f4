//! A directory this process made for its own use in (a mirror, Job logs), removed out when the
//! guard is dropped: on a clean exit, on Ctrl-C and on SIGTERM (each ends by dropping it).

use std::path::{Path, PathBuf};

/// Removes its directory, and everything in it, when dropped. Only for directories this process
/// chose and owns (`$TMPDIR/orchestrator-mirrors-<pid>`), never for one the user named.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// `<temp dir>/<prefix>-<pid>`: a name no other running process picks.
    pub fn for_this_process(prefix: &str) -> ScratchDir {
        ScratchDir {
            path: std::env::temp_dir().join(format!("{prefix}-{}", std::process::id())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %self.path.display(), error = %e, "could not remove a temporary directory");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_removes_the_directory_and_its_content() {
        let scratch = ScratchDir::for_this_process("orchestrator-scratch-test");
        let path = scratch.path().to_path_buf();
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        std::fs::write(path.join("a/b/f"), "x").unwrap();
        drop(scratch);
        assert!(!path.exists());
        // A directory that was never made is no error.
        drop(ScratchDir::for_this_process(
            "orchestrator-scratch-never-made",
        ));
    }
}
