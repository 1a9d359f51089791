//! containerd's task service (ttrpc), each call handed to the pod.

use crate::failure::Failure;
use crate::pod::{CreateRequest, Pod};
use crate::stdio::Stdio;
use containerd_shim::api;
use containerd_shim::protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim::protos::ttrpc;
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};
use std::path::Path;
use std::sync::Arc;
use store::Status;

pub struct Service {
    pub pod: Arc<Pod>,
    pub exit: Arc<ExitSignal>,
}

fn status_of(f: Failure) -> ttrpc::Error {
    let (code, message) = match f {
        Failure::NotFound(m) => (ttrpc::Code::NOT_FOUND, m),
        Failure::AlreadyExists(m) => (ttrpc::Code::ALREADY_EXISTS, m),
        Failure::FailedPrecondition(m) => (ttrpc::Code::FAILED_PRECONDITION, m),
        Failure::InvalidArgument(m) => (ttrpc::Code::INVALID_ARGUMENT, m),
        Failure::Other(m) => (ttrpc::Code::UNKNOWN, m),
    };
    log::warn!("{message}");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

fn done<T>(r: crate::failure::Result<T>) -> TtrpcResult<T> {
    r.map_err(status_of)
}

fn api_status(s: Status) -> api::Status {
    match s {
        Status::Created => api::Status::CREATED,
        Status::Running => api::Status::RUNNING,
        Status::Paused => api::Status::PAUSED,
        Status::Stopped => api::Status::STOPPED,
    }
}

/// An OCI document containerd sends as JSON in an `Any`.
fn json_any<T: serde::de::DeserializeOwned>(
    any: &MessageField<containerd_shim::protos::protobuf::well_known_types::any::Any>,
    what: &str,
) -> TtrpcResult<T> {
    let value = any.as_ref().map(|a| a.value.as_slice()).unwrap_or(b"{}");
    serde_json::from_slice(value)
        .map_err(|e| status_of(Failure::InvalidArgument(format!("{what}: {e}"))))
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        log::info!("create {} in {}", req.id, req.bundle);
        if !req.checkpoint.is_empty() {
            return Err(status_of(Failure::InvalidArgument(
                "checkpoint/restore is not supported by a VM runtime".into(),
            )));
        }
        let pid = done(self.pod.create(CreateRequest {
            id: &req.id,
            bundle: Path::new(&req.bundle),
            rootfs: &req.rootfs,
            stdio: Stdio {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
        }))?;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let pid = done(self.pod.start(&req.id, &req.exec_id))?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let inner = done(self.pod.lock())?;
        let task = inner
            .tasks
            .get(&req.id)
            .ok_or_else(|| status_of(Failure::NotFound(format!("task {} not found", req.id))))?;
        let proc_ = done(task.proc(&req.exec_id))?;
        let mut resp = api::StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            bundle: task.bundle.display().to_string(),
            pid: Pod::vm_pid(&inner),
            status: EnumOrUnknown::new(api_status(proc_.status(task.record.status))),
            stdin: proc_.stdio.stdin.clone(),
            stdout: proc_.stdio.stdout.clone(),
            stderr: proc_.stdio.stderr.clone(),
            terminal: proc_.stdio.terminal,
            ..Default::default()
        };
        if let Some((code, at)) = proc_.exit.get() {
            resp.exit_status = code;
            resp.exited_at = MessageField::some(at);
        }
        Ok(resp)
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let (pid, code, at) = done(self.pod.delete(&req.id, &req.exec_id))?;
        Ok(api::DeleteResponse {
            pid,
            exit_status: code,
            exited_at: MessageField::some(at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        // The guest's processes have guest pids, meaningless on the host: containerd is told
        // the VM's pid, once, as Kata's shim v2 does.
        done(self.pod.with_container(&req.id, |_| Ok(())))?;
        let pid = Pod::vm_pid(&*done(self.pod.lock())?);
        Ok(api::PidsResponse {
            processes: vec![containerd_shim::protos::types::task::ProcessInfo {
                pid,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        done(self.pod.set_paused(&req.id, true))?;
        Ok(api::Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        done(self.pod.set_paused(&req.id, false))?;
        Ok(api::Empty::new())
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::UNIMPLEMENTED,
            "checkpoint is not supported by a VM runtime",
        )))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        done(self.pod.kill(&req.id, &req.exec_id, req.signal, req.all))?;
        Ok(api::Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let spec: oci_spec::runtime::Process = json_any(&req.spec, "exec process spec")?;
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        done(self.pod.add_exec(&req.id, &req.exec_id, stdio, spec))?;
        Ok(api::Empty::new())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        done(self.pod.with_process(&req.id, &req.exec_id, |p, _| {
            p.resize(req.height, req.width)
        }))?;
        Ok(api::Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        if req.stdin {
            done(self.pod.close_stdin(&req.id, &req.exec_id))?;
        }
        Ok(api::Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let resources: oci_spec::runtime::LinuxResources = json_any(&req.resources, "resources")?;
        done(self.pod.with_container(&req.id, |c| c.update(&resources)))?;
        Ok(api::Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let exit = done(self.pod.exit_of(&req.id, &req.exec_id))?;
        let (code, at) = exit.wait();
        Ok(api::WaitResponse {
            exit_status: code,
            exited_at: MessageField::some(at),
            ..Default::default()
        })
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let resp = done(self.pod.with_container(&req.id, |c| c.stats()))?;
        let any = crate::metrics::to_any(&crate::metrics::from_agent(&resp))
            .map_err(|e| status_of(Failure::Other(format!("stats: {e}"))))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let pid = Pod::vm_pid(&*done(self.pod.lock())?);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // One shim serves the whole pod: it goes only when no task is left (or when told to).
        if req.now || self.pod.is_empty() {
            log::info!("shutdown");
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}
