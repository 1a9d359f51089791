//! The ttrpc services: AgentService and Health, mapped onto `Containers`.

use crate::container::{self, Containers};
use crate::lease::{Holder, Leases};
use crate::reaper::Reaper;
use crate::storage;
use protocols::agent::*;
use protocols::agent_ttrpc::AgentService;
use protocols::health::{
    health_check_response::ServingStatus, CheckRequest, HealthCheckResponse, VersionCheckResponse,
};
use protocols::health_ttrpc::Health;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ttrpc::{Code, TtrpcContext};

pub struct Agent {
    pub containers: Arc<Containers>,
    pub reaper: Arc<Reaper>,
    /// Processes tied to the host connections of their shims.
    leases: Leases,
    sandbox_mounts: Mutex<Vec<PathBuf>>,
    /// From CreateSandbox: the container with this id is the pod's sandbox container.
    sandbox_id: Mutex<String>,
}

impl Agent {
    pub fn new(reaper: Arc<Reaper>) -> Self {
        let containers = Arc::new(Containers::default());
        Agent {
            leases: Leases::new(containers.clone(), reaper.clone()),
            containers,
            reaper,
            sandbox_mounts: Mutex::new(Vec::new()),
            sandbox_id: Mutex::new(String::new()),
        }
    }
}

fn status(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.to_string()))
}

fn to_rpc(e: container::Error) -> ttrpc::Error {
    let code = match &e {
        container::Error::NotFound(_) | container::Error::ProcessNotFound { .. } => Code::NOT_FOUND,
        container::Error::Exists(_) => Code::ALREADY_EXISTS,
        container::Error::Spec { .. } => Code::INVALID_ARGUMENT,
        container::Error::NotCreated(_)
        | container::Error::Running(_)
        | container::Error::NotRunning(_) => Code::FAILED_PRECONDITION,
        _ => Code::INTERNAL,
    };
    if !matches!(e, container::Error::Eof) {
        log::warn!("{e}");
    }
    status(code, e)
}

type R<T> = ttrpc::Result<T>;

impl AgentService for Agent {
    fn create_sandbox(&self, _: &TtrpcContext, req: CreateSandboxRequest) -> R<Empty> {
        if !req.hostname.is_empty() {
            if let Err(e) = nix::unistd::sethostname(&req.hostname) {
                log::warn!("sethostname {}: {e}", req.hostname);
            }
        }
        for s in &req.storages {
            let mounted = storage::mount_storage(s).map_err(|e| status(Code::INTERNAL, e))?;
            if let Ok(mut m) = self.sandbox_mounts.lock() {
                m.push(mounted);
            }
        }
        if let Ok(mut id) = self.sandbox_id.lock() {
            id.clone_from(&req.sandbox_id);
        }
        log::info!("sandbox {} created", req.sandbox_id);
        Ok(Empty::new())
    }

    fn destroy_sandbox(&self, _: &TtrpcContext, _: DestroySandboxRequest) -> R<Empty> {
        for id in self.containers.ids() {
            let _ = self
                .containers
                .remove(&id, Duration::from_secs(5), &self.reaper);
        }
        let mounts = self
            .sandbox_mounts
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        for m in mounts.iter().rev() {
            storage::unmount(m);
        }
        log::info!("sandbox destroyed");
        Ok(Empty::new())
    }

    fn create_container(&self, _: &TtrpcContext, req: CreateContainerRequest) -> R<Empty> {
        for s in &req.storages {
            storage::mount_storage(s).map_err(|e| status(Code::INTERNAL, e))?;
        }
        let is_sandbox = self
            .sandbox_id
            .lock()
            .is_ok_and(|id| *id == req.container_id);
        let spec_json = if req.devices.is_empty() {
            req.oci_spec_json.clone()
        } else {
            storage::resolve_devices(&req.oci_spec_json, &req.devices)
                .map_err(|e| status(Code::INTERNAL, e))?
        };
        self.containers
            .create(&req.container_id, &spec_json, is_sandbox, &self.reaper)
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn exec_process(&self, _: &TtrpcContext, req: ExecProcessRequest) -> R<Empty> {
        self.containers
            .exec(
                &req.container_id,
                &req.exec_id,
                &req.process_json,
                &self.reaper,
            )
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn update_container(&self, _: &TtrpcContext, req: UpdateContainerRequest) -> R<Empty> {
        self.containers
            .update(&req.container_id, &req.resources_json)
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn stats_container(
        &self,
        _: &TtrpcContext,
        req: StatsContainerRequest,
    ) -> R<StatsContainerResponse> {
        let stats = self.containers.stats(&req.container_id).map_err(to_rpc)?;
        let mut resp = StatsContainerResponse::new();
        resp.cgroup_stats = Some(stats).into();
        resp.network_stats = crate::net::interface_stats();
        Ok(resp)
    }

    fn pause_container(&self, _: &TtrpcContext, req: PauseContainerRequest) -> R<Empty> {
        self.containers
            .freeze(&req.container_id, true)
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn resume_container(&self, _: &TtrpcContext, req: ResumeContainerRequest) -> R<Empty> {
        self.containers
            .freeze(&req.container_id, false)
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn list_processes(
        &self,
        _: &TtrpcContext,
        req: ListProcessesRequest,
    ) -> R<ListProcessesResponse> {
        let pids = self.containers.pids(&req.container_id).map_err(to_rpc)?;
        let list = if req.format == "json" {
            serde_json::to_vec(&pids).map_err(|e| status(Code::INTERNAL, e))?
        } else {
            let mut table = String::from("PID   CMD\n");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                table.push_str(&format!("{pid:<5} {}\n", cmd.trim_end()));
            }
            table.into_bytes()
        };
        let mut resp = ListProcessesResponse::new();
        resp.process_list = list;
        Ok(resp)
    }

    fn start_container(&self, _: &TtrpcContext, req: StartContainerRequest) -> R<Empty> {
        self.containers.start(&req.container_id).map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn remove_container(&self, _: &TtrpcContext, req: RemoveContainerRequest) -> R<Empty> {
        self.containers
            .remove(
                &req.container_id,
                Duration::from_secs(req.timeout.into()),
                &self.reaper,
            )
            .map_err(to_rpc)?;
        storage::release_container(&req.container_id);
        Ok(Empty::new())
    }

    fn signal_process(&self, _: &TtrpcContext, req: SignalProcessRequest) -> R<Empty> {
        self.containers
            .signal(&req.container_id, &req.exec_id, req.signal as i32, req.all)
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn wait_process(&self, ctx: &TtrpcContext, req: WaitProcessRequest) -> R<WaitProcessResponse> {
        self.leases
            .hold(ctx, &req.container_id, &req.exec_id, Holder::Wait);
        let code = self
            .containers
            .wait(&req.container_id, &req.exec_id, &self.reaper)
            .map_err(to_rpc)?;
        let mut resp = WaitProcessResponse::new();
        resp.status = code;
        Ok(resp)
    }

    fn write_stdin(&self, _: &TtrpcContext, req: WriteStreamRequest) -> R<WriteStreamResponse> {
        let n = self
            .containers
            .write_stdin(&req.container_id, &req.exec_id, &req.data)
            .map_err(to_rpc)?;
        let mut resp = WriteStreamResponse::new();
        resp.len = n as u32;
        Ok(resp)
    }

    fn read_stdout(&self, ctx: &TtrpcContext, req: ReadStreamRequest) -> R<ReadStreamResponse> {
        self.leases
            .hold(ctx, &req.container_id, &req.exec_id, Holder::Stdout);
        self.read(req, false)
    }

    fn read_stderr(&self, ctx: &TtrpcContext, req: ReadStreamRequest) -> R<ReadStreamResponse> {
        self.leases
            .hold(ctx, &req.container_id, &req.exec_id, Holder::Stderr);
        self.read(req, true)
    }

    fn tty_win_resize(&self, _: &TtrpcContext, req: TtyWinResizeRequest) -> R<Empty> {
        let rows = u16::try_from(req.row).unwrap_or(u16::MAX);
        let cols = u16::try_from(req.column).unwrap_or(u16::MAX);
        self.containers
            .resize(&req.container_id, &req.exec_id, rows, cols)
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn online_cpu_mem(&self, _: &TtrpcContext, req: OnlineCPUMemRequest) -> R<Empty> {
        crate::hotplug::online(req.nb_cpus, req.cpu_only, req.wait).map_err(|e| {
            ttrpc::Error::RpcStatus(ttrpc::get_status(Code::DEADLINE_EXCEEDED, e.to_string()))
        })?;
        Ok(Empty::new())
    }

    fn close_stdin(&self, _: &TtrpcContext, req: CloseStdinRequest) -> R<Empty> {
        self.containers
            .close_stdin(&req.container_id, &req.exec_id)
            .map_err(to_rpc)?;
        Ok(Empty::new())
    }

    fn update_interface(
        &self,
        _: &TtrpcContext,
        req: UpdateInterfaceRequest,
    ) -> R<protocols::agent::Interface> {
        crate::net::update_interface(&req)
    }

    fn update_routes(&self, _: &TtrpcContext, req: UpdateRoutesRequest) -> R<Routes> {
        crate::net::update_routes(&req)
    }

    fn list_interfaces(&self, _: &TtrpcContext, _: ListInterfacesRequest) -> R<Interfaces> {
        crate::net::list_interfaces()
    }

    fn list_routes(&self, _: &TtrpcContext, _: ListRoutesRequest) -> R<Routes> {
        crate::net::list_routes()
    }

    fn add_arp_neighbors(&self, _: &TtrpcContext, req: AddARPNeighborsRequest) -> R<Empty> {
        crate::net::add_neighbors(&req)
    }

    fn get_guest_details(
        &self,
        _: &TtrpcContext,
        _: GuestDetailsRequest,
    ) -> R<GuestDetailsResponse> {
        let mut details = AgentDetails::new();
        details.version = crate::AGENT_VERSION.into();
        details.init_daemon = std::process::id() == 1;
        details.storage_handlers = vec!["9p".into(), "virtio-fs".into(), "tmpfs".into()];
        let mut resp = GuestDetailsResponse::new();
        resp.agent_details = Some(details).into();
        Ok(resp)
    }
}

impl Agent {
    fn read(&self, req: ReadStreamRequest, stderr: bool) -> R<ReadStreamResponse> {
        let data = self
            .containers
            .read_output(&req.container_id, &req.exec_id, stderr, req.len as usize)
            .map_err(to_rpc)?;
        let mut resp = ReadStreamResponse::new();
        resp.data = data;
        Ok(resp)
    }
}

pub struct HealthService;

impl Health for HealthService {
    fn check(&self, _: &TtrpcContext, _: CheckRequest) -> R<HealthCheckResponse> {
        let mut resp = HealthCheckResponse::new();
        resp.status = ServingStatus::SERVING.into();
        Ok(resp)
    }

    fn version(&self, _: &TtrpcContext, _: CheckRequest) -> R<VersionCheckResponse> {
        let mut resp = VersionCheckResponse::new();
        resp.agent_version = crate::AGENT_VERSION.into();
        resp.grpc_version = "ttrpc".into();
        Ok(resp)
    }
}
