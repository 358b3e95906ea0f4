//! One attempt's local process: a program, args, env, working directory and log file in; a
//! running process in its own process group out, whose whole group is killed on request, when
//! the main process exits (as kubelet tears down a container), and when the handle is dropped.

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcessSpec<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// Set on top of the runner's own environment (PATH and HOME stay usable).
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
}

/// A started process and its process group. Dropping it kills the group.
pub struct RunningProcess {
    child: Child,
    pgid: Option<i32>,
}

/// Starts the process as the leader of a new process group, with stdout and stderr appended to
/// `log`. On Linux the process also gets SIGKILL if the runner itself dies, so a crashed runner
/// leaves no agent behind (children the agent forks keep running in that case only).
pub fn spawn(spec: &ProcessSpec<'_>, log: &File) -> io::Result<RunningProcess> {
    let mut command = Command::new(spec.program);
    command
        .args(spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log.try_clone()?))
        .process_group(0)
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    Ok(RunningProcess { child, pgid })
}

impl RunningProcess {
    /// The process group id (the leader's pid).
    pub fn pgid(&self) -> Option<i32> {
        self.pgid
    }

    /// Waits for the main process to exit, then kills what is left of its group.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await;
        self.kill_group(libc::SIGKILL);
        status
    }

    /// SIGTERM to the group, then SIGKILL after `grace` if the main process has not exited.
    pub async fn terminate(&mut self, grace: Duration) {
        self.kill_group(libc::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill_group(libc::SIGKILL);
            let _ = self.child.wait().await;
        }
        self.kill_group(libc::SIGKILL);
    }

    fn kill_group(&self, signal: i32) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
            // ESRCH (the group is gone) is the expected result once everything has exited.
            unsafe {
                libc::kill(-pgid, signal);
            }
        }
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        self.kill_group(libc::SIGKILL);
    }
}

/// Whether any live (not zombie) process belongs to the process group. Reads /proc on Linux,
/// because kill(-pgid, 0) also answers for zombies that no init has reaped yet.
pub fn group_alive(pgid: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return false;
        };
        entries.flatten().any(|entry| {
            std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?;
                    let pgrp: i32 = fields.nth(1)?.parse().ok()?;
                    Some(pgrp == pgid && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
    }
    #[cfg(not(target_os = "linux"))]
    // SAFETY: kill(2) with signal 0 only checks for existence.
    unsafe {
        libc::kill(-pgid, 0) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> (tempfile::TempDir, File, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let file = File::create(&path).expect("log file");
        (dir, file, path)
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_the_exit_status_comes_back() {
        let (dir, file, path) = log();
        let args = vec![
            "-c".to_string(),
            "echo out; echo err >&2; exit 3".to_string(),
        ];
        let env = vec![("GREETING".to_string(), "hi".to_string())];
        let spec = ProcessSpec {
            program: "sh",
            args: &args,
            env: &env,
            cwd: dir.path(),
        };
        let mut process = spawn(&spec, &file).expect("spawn sh");
        let status = process.wait().await.expect("wait");
        assert_eq!(status.code(), Some(3));
        let text = std::fs::read_to_string(path).expect("read log");
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    }

    #[tokio::test]
    async fn terminate_kills_the_whole_group_including_children() {
        let (dir, file, _) = log();
        // The shell ignores SIGTERM and its background child too, so only SIGKILL ends them.
        let args = vec![
            "-c".to_string(),
            "trap '' TERM; sleep 30 & sleep 30; wait".to_string(),
        ];
        let spec = ProcessSpec {
            program: "sh",
            args: &args,
            env: &[],
            cwd: dir.path(),
        };
        let mut process = spawn(&spec, &file).expect("spawn sh");
        let pgid = process.pgid().expect("pgid");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(group_alive(pgid));
        let started = std::time::Instant::now();
        process.terminate(Duration::from_millis(300)).await;
        // A killed background child lingers as a zombie until init reaps it.
        while group_alive(pgid) && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!group_alive(pgid), "every process of the group is gone");
    }

    #[tokio::test]
    async fn leftover_background_processes_die_with_the_main_process() {
        let (dir, file, _) = log();
        let args = vec!["-c".to_string(), "sleep 30 & exit 0".to_string()];
        let spec = ProcessSpec {
            program: "sh",
            args: &args,
            env: &[],
            cwd: dir.path(),
        };
        let mut process = spawn(&spec, &file).expect("spawn sh");
        let pgid = process.pgid().expect("pgid");
        assert!(process.wait().await.expect("wait").success());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!group_alive(pgid));
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let (dir, file, _) = log();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let spec = ProcessSpec {
            program: "/nonexistent/agent",
            args: &[],
            env: &[],
            cwd: dir.path(),
        };
        let result = rt.block_on(async { spawn(&spec, &file).map(|_| ()) });
        assert_eq!(result.map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
    }
}
