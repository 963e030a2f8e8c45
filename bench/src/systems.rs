//! Systems under test as child processes on loopback: started on a free port with a fresh data
//! directory, waited for, measured (CPU from /proc), and torn down (SIGTERM, then SIGKILL).

use crate::error::{Error, Result};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a system may take to accept connections.
pub const READY_MS_MAX: u64 = 20_000;
/// How long a system may take to exit after SIGTERM before it is killed.
pub const STOP_MS_MAX: u64 = 5_000;
const POLL_MS: u64 = 50;

/// A command that starts one system; `{port}` and `{data_dir}` in `args` are substituted.
#[derive(Debug, Clone)]
pub struct SystemSpec {
    /// Name in the report, e.g. `riptide-shards-2`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Give it a fresh temp data directory (removed at teardown).
    pub needs_data_dir: bool,
}

/// A started system.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    _data_dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
}

/// A free TCP port on 127.0.0.1 (bound and released: a small race is accepted).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind :0", e))?;
    Ok(l.local_addr().map_err(|e| Error::io("local_addr", e))?.port())
}

fn substitute(arg: &str, port: u16, data_dir: &str) -> String {
    arg.replace("{port}", &port.to_string()).replace("{data_dir}", data_dir)
}

/// Starts `spec` and waits until it accepts TCP connections.
pub fn start(spec: &SystemSpec, data_root: &Path, log_dir: &Path) -> Result<Running> {
    let port = free_port()?;
    let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let data_dir = if spec.needs_data_dir {
        Some(
            tempfile::Builder::new()
                .prefix(&format!("riptide-bench-{}-", spec.name))
                .tempdir_in(data_root)
                .map_err(|e| Error::io(format!("temp dir in {}", data_root.display()), e))?,
        )
    } else {
        None
    };
    let data_str = data_dir
        .as_ref()
        .map(|d| d.path().display().to_string())
        .unwrap_or_default();
    std::fs::create_dir_all(log_dir).map_err(|e| Error::io("create log dir", e))?;
    let log_path = log_dir.join(format!("{}.log", spec.name));
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io("create log", e))?;
    let log_err = log.try_clone().map_err(|e| Error::io("clone log", e))?;
    let mut command = Command::new(&spec.program);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // The system dies with the harness, even if the harness is killed.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .args(spec.args.iter().map(|a| substitute(a, port, &data_str)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| Error::io(format!("spawn {}", spec.program.display()), e))?;
    let mut running = Running {
        name: spec.name.clone(),
        addr,
        child,
        _data_dir: data_dir,
        log_path,
    };
    running.wait_ready()?;
    Ok(running)
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::ExitedEarly(
                    self.name.clone(),
                    format!("{status}; log: {}", self.log_tail()),
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_millis(READY_MS_MAX) {
                return Err(Error::NotReady(self.name.clone(), self.addr, READY_MS_MAX));
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, wait, then SIGKILL; the data dir is removed when `self` drops.
    pub fn stop(&mut self) {
        if !self.is_alive() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(STOP_MS_MAX) {
            if !self.is_alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_substitute_placeholders() {
        assert_eq!(
            substitute("--listen=127.0.0.1:{port}", 9, "/d"),
            "--listen=127.0.0.1:9"
        );
        assert_eq!(substitute("{data_dir}/x", 9, "/d"), "/d/x");
    }

    #[test]
    fn systems_report_early_exit() {
        let spec = SystemSpec {
            name: "false".into(),
            program: "false".into(),
            args: vec![],
            needs_data_dir: true,
        };
        let dir = tempfile::tempdir().unwrap();
        let err = start(&spec, dir.path(), dir.path()).unwrap_err();
        assert!(matches!(err, Error::ExitedEarly(..)), "{err}");
    }
}
