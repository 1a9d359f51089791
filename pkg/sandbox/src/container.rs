//! A container of a sandbox: its record and what can be done to it in the guest. Status
//! checks refuse with runc's words (callers match on them); the record changes in memory and
//! is kept by `save`.

use crate::process::Process;
use crate::sandbox::Sandbox;
use crate::state::{effective_status, to_state, OciState};
use crate::{Error, Result};
use agent_client::messages as msg;
use store::{ContainerRecord, Status};

pub struct Container<'s> {
    sandbox: &'s Sandbox,
    record: ContainerRecord,
}

impl<'s> Container<'s> {
    /// Container `id` of `sandbox`, from its record.
    pub fn load(sandbox: &'s Sandbox, id: &str) -> Result<Self> {
        let record = sandbox.runtime().store.load_container(id)?;
        Ok(Self::new(sandbox, record))
    }

    /// Container `record` of `sandbox` (a record the caller holds, as the shim v2 does).
    pub fn new(sandbox: &'s Sandbox, record: ContainerRecord) -> Self {
        Container { sandbox, record }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    pub fn into_record(self) -> ContainerRecord {
        self.record
    }

    pub fn sandbox(&self) -> &'s Sandbox {
        self.sandbox
    }

    /// The status, corrected by reality (its stand-in on the host is gone: stopped).
    pub fn status(&self) -> Status {
        effective_status(&self.record)
    }

    pub fn state(&self) -> OciState {
        to_state(self.record.clone())
    }

    /// Records that the container's process has ended (the shim v2 learns it from WaitProcess).
    pub fn set_stopped(&mut self) {
        self.record.status = Status::Stopped;
    }

    pub fn save(&self) -> Result<()> {
        Ok(self.sandbox.runtime().store.save_container(&self.record)?)
    }

    fn refuse(&self, status: Status, action: &'static str) -> Error {
        Error::BadState {
            id: self.record.id.clone(),
            status,
            action,
        }
    }

    /// StartContainer, then the poststart hooks (their failures are warnings: it runs).
    pub fn start(&mut self) -> Result<()> {
        let status = self.status();
        if status != Status::Created {
            return Err(self.refuse(
                status,
                match status {
                    Status::Stopped => "cannot start a container that has stopped",
                    Status::Paused => "cannot start a container in the paused state",
                    _ => "cannot start an already running container",
                },
            ));
        }
        let mut req = msg::StartContainerRequest::new();
        req.container_id = self.record.id.clone();
        self.sandbox.agent()?.start_container(&req)?;
        self.record.status = Status::Running;
        self.save()?;
        if let Some(hooks) = crate::state::bundle_hooks(&self.record) {
            crate::hooks::run(Some(&hooks), crate::hooks::Stage::Poststart, &self.state())?;
        }
        log::info!("container {}: started", self.record.id);
        Ok(())
    }

    /// Signals the container's process (`all`: every process of the container). Stopping a
    /// pod's sandbox container (KILL or TERM) stops the pod, as Kata 1.x's StopSandbox did:
    /// every member first, then the sandbox container, all with SIGKILL; the VM stays up until
    /// the sandbox container is deleted.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        let id = self.record.id.as_str();
        let status = self.status();
        if status == Status::Stopped && !all {
            // containerd ignores a kill error only when it says this.
            return Err(self.refuse(status, "container not running"));
        }
        if status == Status::Stopped {
            return Ok(());
        }
        let agent = self.sandbox.agent()?;
        let stops_pod = self.record.sandbox_id == id
            && oci::is_pod_sandbox(&self.record.annotations)
            && (signal == libc::SIGKILL || signal == libc::SIGTERM);
        if stops_pod {
            for member in self.sandbox.container_ids().iter().filter(|c| *c != id) {
                let mut req = msg::SignalProcessRequest::new();
                req.container_id = member.clone();
                req.signal = libc::SIGKILL as u32;
                req.all = true;
                if let Err(e) = agent.signal_process(&req) {
                    log::warn!("kill {id}: member {member}: {e}");
                }
            }
        }
        let mut req = msg::SignalProcessRequest::new();
        req.container_id = id.into();
        req.signal = if stops_pod { libc::SIGKILL } else { signal } as u32;
        req.all = all || stops_pod;
        agent.signal_process(&req)?;
        Ok(())
    }

    /// `pause` (`frozen`) and `resume`: the container's guest cgroup freezer.
    pub fn set_paused(&mut self, frozen: bool) -> Result<()> {
        let status = self.status();
        let (from, to, action) = if frozen {
            (Status::Running, Status::Paused, "container not running")
        } else {
            (Status::Paused, Status::Running, "container not paused")
        };
        if status != from {
            return Err(self.refuse(status, action));
        }
        let agent = self.sandbox.agent()?;
        if frozen {
            let mut req = msg::PauseContainerRequest::new();
            req.container_id = self.record.id.clone();
            agent.pause_container(&req)?;
        } else {
            let mut req = msg::ResumeContainerRequest::new();
            req.container_id = self.record.id.clone();
            agent.resume_container(&req)?;
        }
        self.record.status = to;
        self.save()
    }

    /// Refused with `what` unless the container is running or paused.
    fn not_stopped(&self, what: &'static str) -> Result<()> {
        match self.status() {
            Status::Stopped => Err(self.refuse(Status::Stopped, what)),
            _ => Ok(()),
        }
    }

    /// New resource limits for its guest cgroup; the VM grows for them.
    pub fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        self.not_stopped("container not running")?;
        let mut req = msg::UpdateContainerRequest::new();
        req.container_id = self.record.id.clone();
        req.resources_json = serde_json::to_vec(resources)
            .map_err(|e| Error::Unsupported(format!("resources: {e}")))?;
        self.sandbox.agent()?.update_container(&req)?;
        self.sandbox.grow_for(resources, false);
        Ok(())
    }

    /// Its guest cgroup's statistics and the VM's interfaces.
    pub fn stats(&self) -> Result<msg::StatsContainerResponse> {
        self.not_stopped("a stopped container has no statistics")?;
        self.raw_stats()
    }

    fn raw_stats(&self) -> Result<msg::StatsContainerResponse> {
        let mut req = msg::StatsContainerRequest::new();
        req.container_id = self.record.id.clone();
        Ok(self.sandbox.agent()?.stats_container(&req)?)
    }

    /// How many processes the guest's OOM killer has killed in its cgroup, asked while the VM
    /// runs, whether the container still runs or not (its cgroup lives until delete).
    pub fn oom_kills(&self) -> Result<u64> {
        Ok(oom_kills_in(&self.raw_stats()?))
    }

    /// Its processes as the guest lists them (`ps` with `format`).
    pub fn processes(&self, format: &str) -> Result<Vec<u8>> {
        self.not_stopped("a stopped container has no processes")?;
        let mut req = msg::ListProcessesRequest::new();
        req.container_id = self.record.id.clone();
        req.format = format.into();
        Ok(self.sandbox.agent()?.list_processes(&req)?.process_list)
    }

    /// Its own process (the one `start` starts).
    pub fn init_process(&self) -> Process {
        self.process(&self.record.id)
    }

    /// Process `exec_id` of it, through the sandbox's agent connection.
    pub fn process(&self, exec_id: &str) -> Process {
        let agent = self.sandbox.agent().cloned().map_err(|e| e.to_string());
        Process::new(agent, &self.record.id, exec_id)
    }

    /// Starts one more process in it (ExecProcess), as `exec_id`.
    pub fn exec(&self, exec_id: &str, process: &oci_spec::runtime::Process) -> Result<Process> {
        self.check_exec(process)?;
        let mut req = msg::ExecProcessRequest::new();
        req.container_id = self.record.id.clone();
        req.exec_id = exec_id.into();
        req.process_json = serde_json::to_vec(process)
            .map_err(|e| Error::Unsupported(format!("serialising the process: {e}")))?;
        self.sandbox.agent()?.exec_process(&req)?;
        Ok(self.process(exec_id))
    }

    /// Why `process` cannot be exec'd in it now, if it cannot.
    pub fn check_exec(&self, process: &oci_spec::runtime::Process) -> Result<()> {
        let status = self.status();
        if status != Status::Running {
            return Err(self.refuse(
                status,
                match status {
                    Status::Paused => "cannot exec in a paused container",
                    _ => "cannot exec in a stopped container",
                },
            ));
        }
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Unsupported(
                "exec: no command given (args is empty)".into(),
            ));
        }
        Ok(())
    }
}

/// Must equal the agent's key (pkg/guest cgroup.rs).
const OOM_KILL_KEY: &str = "oom_kill";

/// The OOM kill count in a stats answer.
pub fn oom_kills_in(stats: &msg::StatsContainerResponse) -> u64 {
    stats
        .cgroup_stats
        .memory_stats
        .stats
        .get(OOM_KILL_KEY)
        .copied()
        .unwrap_or(0)
}
