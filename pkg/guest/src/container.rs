//! The agent's table of containers and their processes, and the operations on them that the
//! ttrpc service exposes. Locks are held only to look things up, never across a blocking read,
//! write or wait on a process.

use crate::reaper::Reaper;
use crate::spawn::{self, Spawned};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the agent keeps each container's spec (inside the guest).
pub const CONTAINERS_DIR: &str = "/run/kata-agent/containers";

/// The container's seccomp profile alone, next to its spec, for the exec helper.
pub const SECCOMP_FILE: &str = "seccomp.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("process {exec_id} of container {container} not found")]
    ProcessNotFound { container: String, exec_id: String },
    #[error("container {0} is not in the created state")]
    NotCreated(String),
    #[error("container {id}: invalid spec: {reason}")]
    Spec { id: String, reason: String },
    #[error("container {id}: writing {path}: {source}")]
    Io {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] spawn::Error),
    #[error("container {id}: {message}")]
    Setup { id: String, message: String },
    #[error("container {id}: stdio: {source}")]
    Stdio { id: String, source: std::io::Error },
    #[error("EOF")]
    Eof,
    #[error("signal {signal} to pid {pid}: {errno}")]
    Signal {
        pid: i32,
        signal: i32,
        errno: nix::Error,
    },
    #[error("container {0} is still running")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

/// One process of a container (its init, or later an exec).
pub struct Process {
    pub pid: i32,
    stdin: Mutex<Option<File>>,
    stdout: Option<File>,
    stderr: Option<File>,
    /// The pty master when the process has a terminal.
    console: Option<File>,
}

pub struct Container {
    pub id: String,
    pub init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    status: Mutex<Status>,
    start: Mutex<Option<File>>,
    status_pipe: Mutex<Option<File>>,
    dir: PathBuf,
}

impl Process {
    /// A process's stdio: its pipes, or with a terminal the pty master for stdin and stdout
    /// (stderr is then the pipe nobody writes, which reads EOF).
    fn new(pid: i32, pipes: (File, File, File), tty: Option<File>) -> Process {
        let (stdin, stdout, stderr) = pipes;
        let (stdin, stdout) = match tty.as_ref().map(|t| (t.try_clone(), t.try_clone())) {
            Some((Ok(i), Ok(o))) => (i, o),
            _ => (stdin, stdout),
        };
        Process {
            pid,
            stdin: Mutex::new(Some(stdin)),
            stdout: Some(stdout),
            stderr: Some(stderr),
            console: tty,
        }
    }
}

/// Waits (bounded) for a helper to send the pty master it opened in the container.
fn receive_console(channel: &std::os::unix::net::UnixStream) -> Option<File> {
    let _ = channel.set_read_timeout(Some(Duration::from_secs(30)));
    match crate::fdpass::recv_fd(channel.as_raw_fd()) {
        Ok(fd) => fd.map(File::from),
        Err(e) => {
            log::warn!("receiving a pty master: {e}");
            None
        }
    }
}

#[derive(Default)]
pub struct Containers {
    table: Mutex<HashMap<String, Arc<Container>>>,
}

fn read_to_end_string(f: &mut File) -> String {
    let mut out = Vec::new();
    let _ = f.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl Containers {
    fn get(&self, id: &str) -> Result<Arc<Container>, Error> {
        let table = self.table.lock().map_err(|_| Error::NotFound(id.into()))?;
        table
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(id.into()))
    }

    /// The init process for an empty exec id or one equal to the container id, else an exec.
    fn process(&self, id: &str, exec_id: &str) -> Result<Arc<Process>, Error> {
        let c = self.get(id)?;
        if exec_id.is_empty() || exec_id == id {
            return Ok(c.init.clone());
        }
        let execs = c.execs.lock().map_err(|_| Error::NotFound(id.into()))?;
        execs
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::ProcessNotFound {
                container: id.into(),
                exec_id: exec_id.into(),
            })
    }

    /// Runs an extra process in a running container's namespaces.
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process_json: &[u8],
        reaper: &Reaper,
    ) -> Result<(), Error> {
        let c = self.get(id)?;
        if c.status() != Status::Running || reaper.try_status(c.init.pid).is_some() {
            return Err(Error::NotRunning(id.into()));
        }
        if exec_id.is_empty() || exec_id == id || self.process(id, exec_id).is_ok() {
            return Err(Error::Exists(format!("{id}/{exec_id}")));
        }
        let process: oci_spec::runtime::Process =
            serde_json::from_slice(process_json).map_err(|e| Error::Spec {
                id: id.into(),
                reason: format!("exec {exec_id}: {e}"),
            })?;
        let path = c.dir.join(format!("exec-{exec_id}.json"));
        std::fs::write(&path, process_json).map_err(|source| Error::Io {
            id: id.into(),
            path: path.clone(),
            source,
        })?;
        let terminal = process.terminal().unwrap_or(false);
        let began = std::time::Instant::now();
        let spawned = spawn::spawn_container_exec(c.init.pid, &path, terminal);
        let Spawned {
            pid: helper,
            stdin,
            stdout,
            stderr,
            mut status,
            start,
            console,
        } = spawned?;
        if let Err(e) = crate::cgroup::add(id, helper.as_raw()) {
            log::warn!("container {id}: exec {exec_id}: {e}");
        }
        let mut start = start;
        let _ = start.write_all(b"S");
        drop(start);
        let tty = if terminal {
            receive_console(&console)
        } else {
            None
        };
        let spawned_at = began.elapsed();
        let report = read_to_end_string(&mut status);
        let execd_at = began.elapsed();
        reaper.wait(helper.as_raw(), Some(Duration::from_secs(10)));
        reaper.forget(helper.as_raw());
        let _ = std::fs::remove_file(&path);
        let (pid, error) = parse_exec_report(&report);
        if let Some(message) = error {
            if let Some(pid) = pid {
                reaper.wait(pid, Some(Duration::from_secs(5)));
                reaper.forget(pid);
            }
            return Err(Error::Setup {
                id: id.into(),
                message,
            });
        }
        let Some(pid) = pid else {
            return Err(Error::Setup {
                id: id.into(),
                message: format!("exec {exec_id}: the helper reported no process"),
            });
        };
        let process = Arc::new(Process::new(pid, (stdin, stdout, stderr), tty));
        if let Ok(mut execs) = c.execs.lock() {
            execs.insert(exec_id.into(), process);
        }
        log::info!(
            "container {id}: exec {exec_id} started, pid {pid} (clone {spawned_at:?}, exec'd {execd_at:?}, total {:?})",
            began.elapsed()
        );
        Ok(())
    }

    /// Sets the container up to the point of exec; its process waits for `start`.
    /// The sandbox container (`is_sandbox`) publishes its namespaces for the pod's members.
    pub fn create(
        &self,
        id: &str,
        spec_json: &[u8],
        is_sandbox: bool,
        reaper: &Reaper,
    ) -> Result<(), Error> {
        if self.get(id).is_ok() {
            return Err(Error::Exists(id.into()));
        }
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(spec_json).map_err(|e| Error::Spec {
                id: id.into(),
                reason: e.to_string(),
            })?;
        if spec.process().is_none() || spec.root().is_none() {
            return Err(Error::Spec {
                id: id.into(),
                reason: "process and root are required".into(),
            });
        }
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let dir = PathBuf::from(CONTAINERS_DIR).join(id);
        let spec_path = dir.join("config.json");
        let io_err = |path: &PathBuf| {
            let path = path.clone();
            let id = id.to_string();
            move |source| Error::Io { id, path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        std::fs::write(&spec_path, spec_json).map_err(io_err(&spec_path))?;
        if let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            let path = dir.join(SECCOMP_FILE);
            let bytes = serde_json::to_vec(seccomp).map_err(|e| Error::Spec {
                id: id.into(),
                reason: format!("seccomp: {e}"),
            })?;
            std::fs::write(&path, bytes).map_err(io_err(&path))?;
        }

        let began = std::time::Instant::now();
        let plan = crate::namespaces::plan(&spec);
        let Spawned {
            pid,
            stdin,
            stdout,
            stderr,
            mut status,
            mut start,
            console,
        } = spawn::spawn_container_init(
            &spec_path,
            terminal,
            plan.clone_flags,
            plan.joined(nix::sched::CloneFlags::CLONE_NEWPID),
        )?;
        if plan.user() {
            if let Err(e) = crate::namespaces::write_id_maps(pid.as_raw(), &spec) {
                // Dropping `start` unblocks the child, which then exits.
                drop(start);
                let _ = kill(pid, Signal::SIGKILL);
                reaper.wait(pid.as_raw(), Some(Duration::from_secs(5)));
                reaper.forget(pid.as_raw());
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::Setup {
                    id: id.into(),
                    message: e.to_string(),
                });
            }
        }
        if let Err(e) = crate::cgroup::create_with(id, pid.as_raw()) {
            log::warn!("container {id}: {e}");
        }
        if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            if let Err(e) = crate::cgroup::apply_resources(id, r) {
                log::warn!("container {id}: resources: {e}");
            }
        }
        if is_sandbox {
            if let Err(e) = crate::namespaces::publish_sandbox(pid.as_raw()) {
                log::warn!("container {id}: {e}");
            }
        }
        // Let the child exec the setup helper (see spawn_container_init).
        let _ = start.write_all(&[spawn::GO]);
        let released_at = began.elapsed();
        // The helper sends the pty master (if any) before it says it is ready.
        let tty = if terminal {
            receive_console(&console)
        } else {
            None
        };
        let mut first = [0u8; 1];
        let ready = matches!(status.read(&mut first), Ok(1) if first[0] == b'R');
        if !ready {
            let mut message = read_to_end_string(&mut status);
            if message.is_empty() {
                message = "container setup ended without a word".into();
            }
            reaper.wait(pid.as_raw(), Some(Duration::from_secs(5)));
            reaper.forget(pid.as_raw());
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::Setup {
                id: id.into(),
                message: message.trim_start_matches('E').to_string(),
            });
        }
        let container = Arc::new(Container {
            id: id.into(),
            init: Arc::new(Process::new(pid.as_raw(), (stdin, stdout, stderr), tty)),
            execs: Mutex::new(HashMap::new()),
            status: Mutex::new(Status::Created),
            start: Mutex::new(Some(start)),
            status_pipe: Mutex::new(Some(status)),
            dir,
        });
        if let Ok(mut table) = self.table.lock() {
            table.insert(id.into(), container);
        }
        log::info!(
            "container {id}: created, init pid {pid} (helper released {released_at:?}, ready {:?})",
            began.elapsed()
        );
        Ok(())
    }

    pub fn start(&self, id: &str) -> Result<(), Error> {
        let c = self.get(id)?;
        let start = c.start.lock().ok().and_then(|mut s| s.take());
        let Some(mut start) = start else {
            return Err(Error::NotCreated(id.into()));
        };
        start.write_all(b"S").map_err(|source| Error::Stdio {
            id: id.into(),
            source,
        })?;
        drop(start);
        let status = c.status_pipe.lock().ok().and_then(|mut s| s.take());
        let message = status
            .map(|mut s| read_to_end_string(&mut s))
            .unwrap_or_default();
        if !message.is_empty() {
            c.set_status(Status::Stopped);
            return Err(Error::Setup {
                id: id.into(),
                message: message.trim_start_matches('E').to_string(),
            });
        }
        c.set_status(Status::Running);
        log::info!("container {id}: started");
        Ok(())
    }

    pub fn signal(&self, id: &str, exec_id: &str, signal: i32, all: bool) -> Result<(), Error> {
        let p = self.process(id, exec_id)?;
        let sig = Signal::try_from(signal).map_err(|errno| Error::Signal {
            pid: p.pid,
            signal,
            errno,
        })?;
        if all {
            for pid in self.all_pids(id, p.pid) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
        match kill(Pid::from_raw(p.pid), sig) {
            // Already gone: the caller's intent (the process stops) holds.
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(errno) => Err(Error::Signal {
                pid: p.pid,
                signal,
                errno,
            }),
        }
    }

    pub fn wait(&self, id: &str, exec_id: &str, reaper: &Reaper) -> Result<i32, Error> {
        let p = self.process(id, exec_id)?;
        let code = reaper
            .wait(p.pid, None)
            .ok_or_else(|| Error::NotFound(id.into()))?;
        if let Ok(c) = self.get(id) {
            if exec_id.is_empty() || exec_id == id {
                c.set_status(Status::Stopped);
            } else if let Ok(mut execs) = c.execs.lock() {
                // An exec is waited for once, by its shim; then it is gone.
                execs.remove(exec_id);
                reaper.forget(p.pid);
            }
        }
        Ok(code)
    }

    pub fn write_stdin(&self, id: &str, exec_id: &str, data: &[u8]) -> Result<usize, Error> {
        let p = self.process(id, exec_id)?;
        // Clone the handle so a blocking write does not hold the lock against CloseStdin.
        let file = {
            let guard = p.stdin.lock().map_err(|_| Error::Eof)?;
            guard.as_ref().map(|f| f.as_fd().try_clone_to_owned())
        };
        let Some(fd) = file else {
            return Err(Error::Eof);
        };
        let mut f = File::from(fd.map_err(|source| Error::Stdio {
            id: id.into(),
            source,
        })?);
        f.write(data).map_err(|source| Error::Stdio {
            id: id.into(),
            source,
        })
    }

    /// Sets the window size of a process's terminal.
    pub fn resize(&self, id: &str, exec_id: &str, rows: u16, cols: u16) -> Result<(), Error> {
        let p = self.process(id, exec_id)?;
        let Some(console) = &p.console else {
            return Err(Error::Spec {
                id: id.into(),
                reason: format!("process {exec_id} has no terminal"),
            });
        };
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
        if unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(Error::Stdio {
                id: id.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    pub fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), Error> {
        let p = match self.process(id, exec_id) {
            Ok(p) => p,
            // An exec already waited for and gone: its stdin is closed already.
            Err(Error::ProcessNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Ok(mut guard) = p.stdin.lock() {
            guard.take();
        }
        Ok(())
    }

    pub fn read_output(
        &self,
        id: &str,
        exec_id: &str,
        stderr: bool,
        len: usize,
    ) -> Result<Vec<u8>, Error> {
        let p = self.process(id, exec_id)?;
        let file = if stderr { &p.stderr } else { &p.stdout };
        let Some(file) = file else {
            return Err(Error::Eof);
        };
        let mut buf = vec![0u8; len.clamp(1, 1 << 20)];
        let mut reader = file;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Err(Error::Eof),
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Stdio {
                        id: id.into(),
                        source,
                    })
                }
            }
        }
    }

    /// Removes a stopped container (or kills it first when `timeout` > 0 allows waiting).
    pub fn remove(&self, id: &str, timeout: Duration, reaper: &Reaper) -> Result<(), Error> {
        let c = self.get(id)?;
        let pid = c.init.pid;
        if reaper.try_status(pid).is_none() {
            if c.status() == Status::Created {
                // Never started: dropping the start pipe makes the helper exit.
                c.start.lock().ok().and_then(|mut s| s.take());
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            if reaper
                .wait(pid, Some(timeout.max(Duration::from_secs(1))))
                .is_none()
            {
                return Err(Error::Running(id.into()));
            }
        }
        reaper.forget(pid);
        if let Ok(mut table) = self.table.lock() {
            table.remove(id);
        }
        let _ = std::fs::remove_dir_all(&c.dir);
        crate::cgroup::remove(id);
        log::info!("container {id}: removed");
        Ok(())
    }

    /// Freezes (pause) or thaws (resume) every process of a running container.
    pub fn freeze(&self, id: &str, frozen: bool) -> Result<(), Error> {
        let c = self.get(id)?;
        if c.status() != Status::Running {
            return Err(Error::NotRunning(id.into()));
        }
        crate::cgroup::freeze(id, frozen).map_err(|e| Error::Setup {
            id: id.into(),
            message: e.to_string(),
        })
    }

    /// Applies new resource limits (OCI LinuxResources as JSON) to a live container.
    pub fn update(&self, id: &str, resources_json: &[u8]) -> Result<(), Error> {
        let c = self.get(id)?;
        let r: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(resources_json).map_err(|e| Error::Spec {
                id: id.into(),
                reason: format!("resources: {e}"),
            })?;
        crate::cgroup::apply_resources(&c.id, &r).map_err(|e| Error::Setup {
            id: id.into(),
            message: e.to_string(),
        })
    }

    pub fn stats(&self, id: &str) -> Result<protocols::agent::CgroupStats, Error> {
        let c = self.get(id)?;
        Ok(crate::cgroup::stats(&c.id))
    }

    /// The guest pids of every process of the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, Error> {
        let c = self.get(id)?;
        let mut pids = self.all_pids(id, c.init.pid);
        pids.sort_unstable();
        Ok(pids)
    }

    /// Every process of the container: its cgroup's members (as runc does), or when the
    /// cgroup cannot be read, the members of the container's own pid namespace — never the
    /// agent's, which the container may share.
    fn all_pids(&self, id: &str, init_pid: i32) -> Vec<i32> {
        match crate::cgroup::pids(id) {
            Ok(pids) => pids,
            Err(e) => {
                log::warn!("container {id}: {e}");
                let own = std::fs::read_link(format!("/proc/{init_pid}/ns/pid")).ok();
                let agent = std::fs::read_link("/proc/self/ns/pid").ok();
                if own.is_some() && own != agent {
                    pids_in_namespace_of(init_pid)
                } else {
                    vec![init_pid]
                }
            }
        }
    }

    /// The pid of the container's init (empty exec id or the container's id) or of an exec.
    pub fn pid_of(&self, id: &str, exec_id: &str) -> Result<i32, Error> {
        Ok(self.process(id, exec_id)?.pid)
    }

    /// SIGKILL to process `pid` of the container and everything below it; for the container's
    /// init, to every process of the container (what `kill --all` reaches).
    pub fn kill_tree(&self, id: &str, exec_id: &str, pid: i32) {
        let mut pids = crate::lease::descendants(pid);
        if exec_id.is_empty() || exec_id == id {
            pids.extend(self.all_pids(id, pid));
        }
        crate::lease::kill_all(&pids);
    }

    /// Drops an exec's record once it was killed without anyone left to wait for it.
    pub fn forget_exec(&self, id: &str, exec_id: &str, reaper: &Reaper) {
        if exec_id.is_empty() || exec_id == id {
            return;
        }
        let Ok(c) = self.get(id) else { return };
        let Ok(mut execs) = c.execs.lock() else {
            return;
        };
        if let Some(p) = execs.remove(exec_id) {
            reaper.forget(p.pid);
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.table
            .lock()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Container {
    fn set_status(&self, s: Status) {
        if let Ok(mut status) = self.status.lock() {
            *status = s;
        }
    }

    pub fn status(&self) -> Status {
        self.status.lock().map(|s| *s).unwrap_or(Status::Stopped)
    }
}

/// Every pid whose pid namespace is the one `pid` lives in.
fn pids_in_namespace_of(pid: i32) -> Vec<i32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
        })
        .collect()
}

/// Splits the exec helper's report: a `P<pid>` line from the helper, an `E<message>` line from
/// whichever process failed (lines are written whole, in either order).
fn parse_exec_report(report: &str) -> (Option<i32>, Option<String>) {
    let mut pid = None;
    let mut error = None;
    for line in report.lines() {
        if let Some(p) = line.strip_prefix('P').and_then(|p| p.trim().parse().ok()) {
            pid = Some(p);
        } else if let Some(m) = line.strip_prefix('E') {
            error = Some(m.trim().to_string());
        } else if !line.trim().is_empty() {
            error = Some(line.trim().to_string());
        }
    }
    (pid, error)
}

#[cfg(test)]
mod tests {
    use super::parse_exec_report;

    #[test]
    fn exec_reports() {
        assert_eq!(parse_exec_report("P42\n"), (Some(42), None));
        assert_eq!(
            parse_exec_report("Eexec nope: ENOENT\nP42\n"),
            (Some(42), Some("exec nope: ENOENT".into()))
        );
        assert_eq!(
            parse_exec_report("P42\nEexec nope: ENOENT"),
            (Some(42), Some("exec nope: ENOENT".into()))
        );
        assert_eq!(
            parse_exec_report("Esetns pid: EPERM"),
            (None, Some("setns pid: EPERM".into()))
        );
    }
}
