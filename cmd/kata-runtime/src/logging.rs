//! The runtime's logs. Two sinks:
//! - `--log FILE` in runc's formats (text, or `--log-format json`: one {"level","msg","time"}
//!   object per line, which is what containerd reads from log.json to explain a failure);
//! - the sandbox log: `runtime.log` in the sandbox's VM folder, in the sandbox-log format with
//!   the sandbox and container ids, merged with the other components' by `kata-runtime logs`.
//!
//! The sandbox of a call is only known once its container's record can be read (for `create`:
//! once it is saved), so lines are held until then and written when it is known.

use crate::cli::Global;
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Lines kept while the sandbox is not known yet; a call logs far fewer.
const MAX_PENDING: usize = 1000;

struct Pending {
    time: String,
    level: Level,
    msg: String,
}

struct SandboxSink {
    root: PathBuf,
    container: Option<String>,
    /// Sandbox id and the open runtime.log, once known.
    target: Option<(String, std::fs::File)>,
    pending: Vec<Pending>,
}

impl SandboxSink {
    /// Finds the container's sandbox from the state records (read without the lock: a record
    /// is replaced atomically) and opens its runtime.log; never creates the VM folder (a
    /// deleted sandbox's folder must stay deleted).
    fn resolve(&mut self) {
        if self.target.is_some() {
            return;
        }
        let Some(container) = &self.container else {
            return;
        };
        let store = store::Store::new(&self.root);
        let Ok(rec) = store.load_container(container) else {
            return;
        };
        let Ok(sb) = store.load_sandbox(&rec.sandbox_id) else {
            return;
        };
        if let Ok(f) = append(&sb.vm_dir.join(sandbox_log::files::RUNTIME)) {
            self.target = Some((rec.sandbox_id, f));
        }
    }

    fn write(&mut self, p: Pending) {
        self.resolve();
        match &self.target {
            None => {
                if self.pending.len() < MAX_PENDING {
                    self.pending.push(p);
                }
            }
            Some(_) => {
                let pending = std::mem::take(&mut self.pending);
                for p in pending.into_iter().chain(std::iter::once(p)) {
                    self.emit(&p);
                }
            }
        }
    }

    fn emit(&self, p: &Pending) {
        let (Some((sandbox, file)), Some(container)) = (&self.target, &self.container) else {
            return;
        };
        let line = sandbox_log::Line {
            level: p.level,
            source: "runtime",
            sandbox,
            container,
            extra: &[],
            msg: &p.msg,
        }
        .render_at(&p.time);
        // One write per line on an O_APPEND file: concurrent calls do not interleave.
        let _ = (&*file).write_all(line.as_bytes());
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.resolve();
        if self.target.is_some() {
            for p in std::mem::take(&mut self.pending) {
                self.emit(&p);
            }
        }
    }
}

struct RuntimeLogger {
    /// `--log` and whether it is JSON.
    runc: Option<(Mutex<std::fs::File>, bool)>,
    /// What reaches `--log`: warnings and errors, as runc writes (podman reads the whole file
    /// as one JSON object; containerd takes its last error line); everything with `--debug`.
    runc_max: LevelFilter,
    sandbox: Mutex<SandboxSink>,
}

impl Log for RuntimeLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let time = sandbox_log::now();
        let msg = r.args().to_string();
        if let Some((file, json)) = self.runc.as_ref().filter(|_| r.level() <= self.runc_max) {
            let level = r.level().as_str().to_ascii_lowercase();
            let line = if *json {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            } else {
                format!(
                    "time=\"{time}\" level={level} msg=\"{}\" source=runtime",
                    msg.replace('"', "\\\"")
                )
            };
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
            }
        }
        if let Ok(mut s) = self.sandbox.lock() {
            s.write(Pending {
                time,
                level: r.level(),
                msg,
            });
        }
    }

    fn flush(&self) {
        if let Ok(mut s) = self.sandbox.lock() {
            s.flush();
        }
    }
}

/// Installs the logger; `container`: the container the call is about, if any.
pub fn init(g: &Global, container: Option<&str>) {
    let runc = g.log.as_ref().and_then(|path| match open(path) {
        Ok(f) => Some((Mutex::new(f), g.log_format == "json")),
        Err(e) => {
            eprintln!("kata-runtime: cannot open log file {}: {e}", path.display());
            None
        }
    });
    let logger = Box::new(RuntimeLogger {
        runc,
        runc_max: if g.debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Warn
        },
        sandbox: Mutex::new(SandboxSink {
            root: g.root.clone(),
            container: container.map(str::to_string),
            target: None,
            pending: Vec::new(),
        }),
    });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(if g.debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}

/// Writes lines still held for the sandbox log (a `create` saves its record last).
pub fn finish() {
    log::logger().flush();
}

/// `--log FILE`: its folder is created, as runc does.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    append(path)
}

/// Opens `path` for appending, creating the file but not its folder (a deleted sandbox's
/// folder must stay deleted).
fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
