use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Result, TestkitError, io_err, wait_until};

/// Spawns `cmd` with no stdin and its stdout and stderr going to the file `log` (created): a
/// test reads what the program logged there, however much it was (more than a pipe holds).
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = std::fs::File::create(log).map_err(io_err(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(io_err("duplicating the log handle"))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => TestkitError::Missing { program },
            _ => TestkitError::Io {
                what: format!("starting {program}"),
                source,
            },
        })
}

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Option<Child>,
    pub(crate) log: PathBuf,
    /// Signal asking for a clean shutdown (so the server reaps its own children); SIGKILL is
    /// the fallback after [`GRACE`].
    stop_signal: &'static str,
}

const GRACE: Duration = Duration::from_secs(10);

impl Guarded {
    /// Spawns `cmd` with stdout and stderr going to `log`.
    pub(crate) fn spawn(cmd: Command, log: &Path) -> Result<Self> {
        Self::spawn_with_stop(cmd, log, "KILL")
    }

    /// Like [`Guarded::spawn`], stopping the process with `stop_signal` (e.g. `INT`, or `TERM`
    /// for a supervisor that must stop its own worker processes) first.
    pub fn spawn_with_stop(
        mut cmd: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> Result<Self> {
        let child = spawn_logged(&mut cmd, log)?;
        Ok(Self {
            child: Some(child),
            log: log.to_owned(),
            stop_signal,
        })
    }

    /// Everything the process wrote to its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (a name `kill -s` knows: `TERM`, `STOP`, `CONT`, ...); false when the
    /// process is gone or the signal could not be sent.
    pub fn signal(&self, signal: &str) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `timeout` for the process to exit and reaps it; `None` if it is still
    /// running then (it stays guarded: dropping it kills it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// The process id, while it runs (e.g. to read its /proc entries).
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited already (it crashed or refused to start).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Stops the process (its stop signal, then SIGKILL after a grace period) and reaps it.
    pub(crate) fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Exited by itself already (and reaped by `exited` or `wait_exit`): nothing to signal.
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if self.stop_signal != "KILL" {
            let asked = Command::new("kill")
                .args(["-s", self.stop_signal, &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if asked && wait_until(GRACE, || matches!(child.try_wait(), Ok(Some(_)))) {
                return;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds a program on PATH or in the given extra directories.
pub(crate) fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| TestkitError::Missing {
            program: name.to_owned(),
        })
}
