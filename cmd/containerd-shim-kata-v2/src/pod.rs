//! One pod in memory: its sandbox (the VM, booted by the first task) and the tasks containerd
//! has created in it, each with its own process and its execs. The sandbox library does the
//! work; this keeps what containerd's task API adds: the stdio FIFOs, exit statuses and times,
//! waiters, exec specs between Exec and Start, and the events.

use crate::events::Events;
use crate::exit::{now, Exit};
use crate::link::InProcessLink;
use crate::stdio::{Relays, Stdio};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use sandbox::{Container, Process, Rollback, Runtime, Sandbox};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{ContainerRecord, ProcessRef, Status};

/// The exit status of a process that could not be started (as a shell's "cannot execute").
const FAILED_START: u32 = 126;

/// How long a process's exit report waits for its output to reach the FIFOs.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

use crate::failure::{Failure, Result};

/// One process of a task: the container's own (exec id "") or an exec.
pub struct Proc {
    pub stdio: Stdio,
    /// The exec's spec, kept from Exec to Start.
    spec: Option<oci_spec::runtime::Process>,
    /// Once started in the guest (the init process: once created).
    process: Option<Process>,
    relays: Option<Arc<Relays>>,
    pub exit: Arc<Exit>,
}

impl Proc {
    pub fn status(&self, task: Status) -> Status {
        match (self.exit.get(), &self.process) {
            (Some(_), _) => Status::Stopped,
            (None, None) => Status::Created,
            (None, Some(_)) => task,
        }
    }
}

pub struct Task {
    pub record: ContainerRecord,
    pub bundle: PathBuf,
    /// Rootfs mounts made at Create (containerd's snapshot), undone at Delete.
    rootfs_mounted: bool,
    pub init: Proc,
    pub execs: HashMap<String, Proc>,
}

impl Task {
    pub fn proc(&self, exec_id: &str) -> Result<&Proc> {
        match exec_id {
            "" => Ok(&self.init),
            e => self.execs.get(e).ok_or_else(|| {
                Failure::NotFound(format!("exec {e} of {} not found", self.record.id))
            }),
        }
    }
}

#[derive(Default)]
pub struct Inner {
    pub sandbox: Option<Sandbox>,
    pub tasks: HashMap<String, Task>,
}

pub struct Pod {
    pub rt: Runtime,
    pub events: Events,
    inner: Arc<Mutex<Inner>>,
}

pub struct CreateRequest<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a [containerd_shim::protos::types::mount::Mount],
    pub stdio: Stdio,
}

impl Pod {
    pub fn new(rt: Runtime, events: Events) -> Pod {
        Pod {
            rt,
            events,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    pub fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Failure::Other("the shim's state is poisoned".into()))
    }

    /// The pid containerd is given for every process: QEMU's, as Kata's shim v2 does (the
    /// workload's pids are the guest's, meaningless on the host).
    pub fn vm_pid(inner: &Inner) -> u32 {
        inner.sandbox.as_ref().and_then(|s| s.vm_pid()).unwrap_or(0) as u32
    }

    pub fn create(&self, req: CreateRequest) -> Result<u32> {
        let id = req.id;
        let mut inner = self.lock()?;
        if inner.tasks.contains_key(id) {
            return Err(Failure::AlreadyExists(format!("task {id} already exists")));
        }
        let mut undo = Rollback::new();
        let rootfs_mounted = crate::rootfs::mount(req.bundle, req.rootfs, &mut undo)?;
        let plan = sandbox::plan::plan(&self.rt, id, req.bundle)?;
        self.rt.store.claim(id).map_err(sandbox::Error::from)?;
        {
            let (store, id) = (self.rt.store.clone(), id.to_string());
            undo.push("remove state folder", move || {
                let _ = store.remove(&id);
            });
        }
        let member = match (&plan.joins, &inner.sandbox) {
            (None, None) => false,
            (Some(sid), Some(sb)) if sid == sb.id() => true,
            (None, Some(sb)) => {
                return Err(Failure::InvalidArgument(format!(
                    "task {id} asks for a sandbox of its own, but this shim serves sandbox {}",
                    sb.id()
                )))
            }
            (Some(sid), _) => {
                return Err(Failure::NotFound(format!(
                    "task {id} joins sandbox {sid}, which this shim does not serve"
                )))
            }
        };
        if !member {
            let sb = Sandbox::boot(&plan.rt, id, &plan.bundle, &InProcessLink, &mut undo)?;
            inner.sandbox = Some(sb);
        }
        let Some(sb) = inner.sandbox.as_mut() else {
            return Err(Failure::Other("no sandbox".into()));
        };
        let edit: fn(&mut oci_spec::runtime::Spec) = match member {
            true => sandbox::share_sandbox_namespaces,
            false => |_| {},
        };
        let added = sb.add_container(id, &plan.bundle, &mut undo, edit);
        let mut record = match added {
            Ok(r) => r,
            Err(e) => {
                if !member {
                    // The rollback stops the VM; forget it.
                    inner.sandbox = None;
                }
                return Err(e.into());
            }
        };
        // What stands for the container on the host is this shim.
        record.shim = ProcessRef::of(std::process::id() as i32);
        let saved = sb
            .save()
            .and_then(|()| Container::new(sb, record.clone()).save())
            .and_then(|()| sandbox::run_create_hooks(&plan.bundle, &record));
        if let Err(e) = saved {
            if !member {
                inner.sandbox = None;
            } else {
                sb.forget_member(id);
            }
            return Err(e.into());
        }
        undo.disarm();
        if let Some(resources) = plan
            .bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
        {
            sb.grow_for(resources, member);
        }
        let process = Container::new(sb, record.clone()).init_process();
        let mut task = Task {
            record,
            bundle: req.bundle.to_path_buf(),
            rootfs_mounted,
            init: Proc {
                stdio: req.stdio.clone(),
                spec: None,
                process: None,
                relays: None,
                exit: Arc::default(),
            },
            execs: HashMap::new(),
        };
        self.run_process(&mut task.init, process, id, "");
        inner.tasks.insert(id.to_string(), task);
        let pid = Self::vm_pid(&inner);
        self.events.send(TaskCreate {
            container_id: id.into(),
            bundle: req.bundle.display().to_string(),
            rootfs: req.rootfs.to_vec(),
            io: MessageField::some(TaskIO {
                stdin: req.stdio.stdin.clone(),
                stdout: req.stdio.stdout.clone(),
                stderr: req.stdio.stderr.clone(),
                terminal: req.stdio.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        });
        Ok(pid)
    }

    /// Copies the process's stdio and watches for its exit.
    fn run_process(&self, proc_: &mut Proc, process: Process, id: &str, exec_id: &str) {
        let relays = Arc::new(Relays::start(&process, &proc_.stdio));
        proc_.relays = Some(relays.clone());
        proc_.process = Some(process.clone());
        let (inner, events, exit) = (self.inner.clone(), self.events.clone(), proc_.exit.clone());
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        let watcher = move || {
            let code = match process.wait() {
                Ok(code) => code as u32,
                Err(e) => {
                    // The agent is gone with the VM: the process ended with it.
                    log::warn!("task {id} {exec_id}: {e}");
                    255
                }
            };
            relays.drain(OUTPUT_DRAIN);
            relays.close_stdin();
            let pid = on_exit(&inner, &events, &id, &exec_id);
            let at = exit.set(code);
            events.send(TaskExit {
                container_id: id.clone(),
                id: if exec_id.is_empty() {
                    id.clone()
                } else {
                    exec_id.clone()
                },
                pid,
                exit_status: code,
                exited_at: MessageField::some(at),
                ..Default::default()
            });
        };
        if let Err(e) = std::thread::Builder::new()
            .name("exit-watch".into())
            .stack_size(256 * 1024)
            .spawn(watcher)
        {
            log::error!("cannot watch task {}: {e}", proc_.stdio.stdout);
        }
    }

    pub fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let mut inner = self.lock()?;
        let pid = Self::vm_pid(&inner);
        let Inner { sandbox, tasks } = &mut *inner;
        let sb = sandbox
            .as_ref()
            .ok_or_else(|| Failure::NotFound(format!("task {id} not found")))?;
        let task = tasks
            .get_mut(id)
            .ok_or_else(|| Failure::NotFound(format!("task {id} not found")))?;
        if exec_id.is_empty() {
            let mut container = Container::new(sb, task.record.clone());
            container.start()?;
            task.record = container.into_record();
            self.events.send(TaskStart {
                container_id: id.into(),
                pid,
                ..Default::default()
            });
            return Ok(pid);
        }
        let container = Container::new(sb, task.record.clone());
        let proc_ = task
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| Failure::NotFound(format!("exec {exec_id} of {id} not found")))?;
        if proc_.process.is_some() {
            return Err(Failure::FailedPrecondition(format!(
                "exec {exec_id} of {id} has already started"
            )));
        }
        let spec = proc_
            .spec
            .clone()
            .ok_or_else(|| Failure::Other(format!("exec {exec_id}: no process spec")))?;
        let process = match container.exec(exec_id, &spec) {
            Ok(p) => p,
            Err(e) => {
                // It never ran: whoever waits for it (ctr waits before it starts) is told.
                proc_.exit.set(FAILED_START);
                return Err(e.into());
            }
        };
        self.run_process(proc_, process, id, exec_id);
        self.events.send(TaskExecStarted {
            container_id: id.into(),
            exec_id: exec_id.into(),
            pid,
            ..Default::default()
        });
        Ok(pid)
    }

    pub fn add_exec(
        &self,
        id: &str,
        exec_id: &str,
        stdio: Stdio,
        spec: oci_spec::runtime::Process,
    ) -> Result<()> {
        let mut inner = self.lock()?;
        let Inner { sandbox, tasks } = &mut *inner;
        let (Some(sb), Some(task)) = (sandbox.as_ref(), tasks.get_mut(id)) else {
            return Err(Failure::NotFound(format!("task {id} not found")));
        };
        if task.execs.contains_key(exec_id) {
            return Err(Failure::AlreadyExists(format!(
                "exec {exec_id} of {id} already exists"
            )));
        }
        Container::new(sb, task.record.clone()).check_exec(&spec)?;
        task.execs.insert(
            exec_id.to_string(),
            Proc {
                stdio,
                spec: Some(spec),
                process: None,
                relays: None,
                exit: Arc::default(),
            },
        );
        self.events.send(TaskExecAdded {
            container_id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        });
        Ok(())
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let inner = self.lock()?;
        let (Some(sb), Some(task)) = (inner.sandbox.as_ref(), inner.tasks.get(id)) else {
            return Err(Failure::NotFound(format!("task {id} not found")));
        };
        let proc_ = task.proc(exec_id)?;
        let finished = || Failure::NotFound("process already finished".into());
        if proc_.exit.get().is_some() && !all {
            return Err(finished());
        }
        if exec_id.is_empty() {
            return Container::new(sb, task.record.clone())
                .kill(signal as i32, all)
                .map_err(|e| match e {
                    sandbox::Error::BadState { .. } => finished(),
                    e => e.into(),
                });
        }
        match &proc_.process {
            Some(p) => Ok(p.signal(signal as i32)?),
            None => Err(Failure::FailedPrecondition(format!(
                "exec {exec_id} of {id} has not started"
            ))),
        }
    }

    pub fn set_paused(&self, id: &str, frozen: bool) -> Result<()> {
        let mut inner = self.lock()?;
        let Inner { sandbox, tasks } = &mut *inner;
        let (Some(sb), Some(task)) = (sandbox.as_ref(), tasks.get_mut(id)) else {
            return Err(Failure::NotFound(format!("task {id} not found")));
        };
        let mut container = Container::new(sb, task.record.clone());
        container.set_paused(frozen)?;
        task.record = container.into_record();
        match frozen {
            true => self.events.send(TaskPaused {
                container_id: id.into(),
                ..Default::default()
            }),
            false => self.events.send(TaskResumed {
                container_id: id.into(),
                ..Default::default()
            }),
        }
        Ok(())
    }

    /// Runs `f` on task `id`'s container.
    pub fn with_container<T>(
        &self,
        id: &str,
        f: impl FnOnce(&Container) -> sandbox::Result<T>,
    ) -> Result<T> {
        let inner = self.lock()?;
        let (Some(sb), Some(task)) = (inner.sandbox.as_ref(), inner.tasks.get(id)) else {
            return Err(Failure::NotFound(format!("task {id} not found")));
        };
        Ok(f(&Container::new(sb, task.record.clone()))?)
    }

    /// Runs `f` on process `exec_id` of task `id`, once it has started.
    pub fn with_process<T>(
        &self,
        id: &str,
        exec_id: &str,
        f: impl FnOnce(&Process, &Proc) -> sandbox::Result<T>,
    ) -> Result<T> {
        let inner = self.lock()?;
        let task = inner
            .tasks
            .get(id)
            .ok_or_else(|| Failure::NotFound(format!("task {id} not found")))?;
        let proc_ = task.proc(exec_id)?;
        match &proc_.process {
            Some(p) => Ok(f(p, proc_)?),
            None => Err(Failure::FailedPrecondition(format!(
                "process {exec_id:?} of {id} has not started"
            ))),
        }
    }

    pub fn close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        let inner = self.lock()?;
        let task = inner
            .tasks
            .get(id)
            .ok_or_else(|| Failure::NotFound(format!("task {id} not found")))?;
        if let Some(relays) = &task.proc(exec_id)?.relays {
            relays.close_stdin();
        }
        Ok(())
    }

    /// The exit of process `exec_id` of `id` (blocks until it exits).
    pub fn exit_of(&self, id: &str, exec_id: &str) -> Result<Arc<Exit>> {
        let inner = self.lock()?;
        let task = inner
            .tasks
            .get(id)
            .ok_or_else(|| Failure::NotFound(format!("task {id} not found")))?;
        Ok(task.proc(exec_id)?.exit.clone())
    }

    /// Deletes an exec, or a task with everything it made (the sandbox's own task: the whole
    /// sandbox). Returns the process's exit.
    pub fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, u32, Timestamp)> {
        let mut inner = self.lock()?;
        let pid = Self::vm_pid(&inner);
        let Inner { sandbox, tasks } = &mut *inner;
        let task = tasks
            .get_mut(id)
            .ok_or_else(|| Failure::NotFound(format!("task {id} not found")))?;
        if !exec_id.is_empty() {
            let proc_ = task.proc(exec_id)?;
            if proc_.process.is_some() && proc_.exit.get().is_none() {
                return Err(Failure::FailedPrecondition(format!(
                    "exec {exec_id} of {id} is still running"
                )));
            }
            let (code, at) = proc_.exit.get().unwrap_or((0, now()));
            // A Wait still pending for an exec that never started returns now.
            proc_.exit.set(code);
            task.execs.remove(exec_id);
            return Ok((pid, code, at));
        }
        let status = task.init.status(task.record.status);
        if matches!(status, Status::Running | Status::Paused) {
            return Err(Failure::FailedPrecondition(format!(
                "cannot delete task {id}: it is {status}"
            )));
        }
        let (code, at) = task.init.exit.get().unwrap_or((0, now()));
        let Some(task) = tasks.remove(id) else {
            return Err(Failure::NotFound(format!("task {id} not found")));
        };
        let own = sandbox.as_ref().is_some_and(|sb| sb.id() == id);
        let nothing = |_: &ContainerRecord| {};
        if own {
            if let Some(sb) = sandbox.take() {
                sb.destroy(&nothing);
            }
            tasks.clear();
        } else if let Some(sb) = sandbox.as_mut() {
            sb.remove_member(task.record.clone(), &nothing);
            if let Err(e) = sb.save() {
                log::warn!("sandbox {}: {e}", sb.id());
            }
        }
        if task.rootfs_mounted {
            crate::rootfs::unmount(&task.bundle);
        }
        self.events.send(TaskDelete {
            container_id: id.into(),
            id: id.into(),
            pid,
            exit_status: code,
            exited_at: MessageField::some(at.clone()),
            ..Default::default()
        });
        Ok((pid, code, at))
    }

    /// No task left: the shim may exit.
    pub fn is_empty(&self) -> bool {
        self.lock().map(|i| i.tasks.is_empty()).unwrap_or(true)
    }

    /// The shim is going away: whatever still runs is torn down (nothing in the guest outlives
    /// what stands for it on the host, here this process).
    pub fn teardown(&self) {
        let Ok(mut inner) = self.lock() else { return };
        let tasks: Vec<Task> = inner.tasks.drain().map(|(_, t)| t).collect();
        // Every Wait still pending returns (the server's shutdown waits for its handlers).
        for t in &tasks {
            for p in std::iter::once(&t.init).chain(t.execs.values()) {
                p.exit.set(128 + libc::SIGKILL as u32);
            }
        }
        if let Some(sb) = inner.sandbox.take() {
            log::info!("sandbox {}: torn down with the shim", sb.id());
            sb.destroy(&|_| {});
        }
        for task in tasks.iter().filter(|t| t.rootfs_mounted) {
            crate::rootfs::unmount(&task.bundle);
        }
        remove_empty_state_dirs(&self.rt);
    }
}

/// What happens in the sandbox when a process has exited: for a container's own process, its
/// record says stopped and an OOM kill in its cgroup is reported (before the exit, so that
/// CRI gives the reason OOMKilled). Returns the pid to report.
fn on_exit(inner: &Mutex<Inner>, events: &Events, id: &str, exec_id: &str) -> u32 {
    let Ok(mut inner) = inner.lock() else {
        return 0;
    };
    let pid = Pod::vm_pid(&inner);
    let Inner { sandbox, tasks } = &mut *inner;
    let (Some(sb), Some(task)) = (sandbox.as_ref(), tasks.get_mut(id)) else {
        return pid;
    };
    let mut container = Container::new(sb, task.record.clone());
    if container.oom_kills().unwrap_or(0) > 0 && exec_id.is_empty() {
        events.send(TaskOOM {
            container_id: id.into(),
            ..Default::default()
        });
    }
    if exec_id.is_empty() {
        container.set_stopped();
        if let Err(e) = container.save() {
            log::warn!("task {id}: {e}");
        }
        task.record = container.into_record();
    }
    pid
}

/// The namespace's records folder, and the shim v2's, once no pod has records there.
pub fn remove_empty_state_dirs(rt: &Runtime) {
    let root = rt.store.root();
    for dir in [Some(root), root.parent()].into_iter().flatten() {
        let _ = std::fs::remove_dir(dir);
    }
}
