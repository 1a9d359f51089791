//! Typed calls to the kata agent. Every host-side caller (runtime, shim) talks plain ttrpc to the
//! sandbox's proxy socket, which gives each connection its own yamux stream to the agent.
//!
//! Every call carries a deadline: `call_timeout` for ordinary calls, none for the calls that by
//! design wait on the workload (ReadStdout/ReadStderr/WaitProcess/WriteStdin).

use protocols::agent;
use protocols::agent_ttrpc::AgentServiceClient;
use protocols::health;
use protocols::health_ttrpc::HealthClient;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub use protocols::agent as messages;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to the agent through the proxy socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up a ttrpc connection on {path}: {source}")]
    Ttrpc { path: PathBuf, source: ttrpc::Error },
    #[error("agent call {method} failed: {message}")]
    Call {
        method: &'static str,
        message: String,
    },
    #[error("agent call {method} got no answer within {after:?} ([agent.kata] request_timeout); check the sandbox with `kata-runtime kata-check --sandbox ID` and read `kata-runtime logs ID` (agent and guest console lines)")]
    Timeout {
        method: &'static str,
        after: Duration,
    },
    #[error(
        "agent did not answer Health.Check within {after:?} through {path} ([agent.kata] dial_timeout; last error: {last}); the guest console is in proxy.log beside it"
    )]
    NotReady {
        path: PathBuf,
        after: Duration,
        last: String,
    },
    #[error("end of stream")]
    Eof,
}

pub type Result<T> = std::result::Result<T, Error>;

/// One connection to the agent (one yamux stream behind the proxy).
#[derive(Clone)]
pub struct AgentClient {
    agent: AgentServiceClient,
    health: HealthClient,
    call_timeout: Duration,
}

/// The error message the agent uses to say a stream has ended.
pub const EOF_MESSAGE: &str = "EOF";

fn map_err(method: &'static str, timeout: Duration, err: ttrpc::Error) -> Error {
    match err {
        ttrpc::Error::RpcStatus(status) if status.message() == EOF_MESSAGE => Error::Eof,
        ttrpc::Error::RpcStatus(status) => Error::Call {
            method,
            message: status.message().to_string(),
        },
        ttrpc::Error::Others(msg) if msg.contains("timeout") => Error::Timeout {
            method,
            after: timeout,
        },
        other => Error::Call {
            method,
            message: other.to_string(),
        },
    }
}

macro_rules! calls {
    ($( $(#[$doc:meta])* $name:ident($req:ty) -> $resp:ty, $method:literal, $bounded:expr; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self, req: &$req) -> Result<$resp> {
                let timeout = if $bounded { self.call_timeout } else { Duration::ZERO };
                let ctx = ttrpc::context::with_duration(timeout);
                log::debug!("agent call {}", $method);
                self.agent.$name(ctx, req).map_err(|e| map_err($method, timeout, e))
            }
        )*
    };
}

impl AgentClient {
    /// Connects to the proxy socket. Does not check that the agent answers: see `wait_ready`.
    pub fn connect(socket: &Path, call_timeout: Duration) -> Result<Self> {
        let stream = UnixStream::connect(socket).map_err(|source| Error::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
        let client = ttrpc::Client::new(stream.into_raw_fd()).map_err(|source| Error::Ttrpc {
            path: socket.to_path_buf(),
            source,
        })?;
        Ok(AgentClient {
            agent: AgentServiceClient::new(client.clone()),
            health: HealthClient::new(client),
            call_timeout,
        })
    }

    /// Connects and retries Health.Check until the agent answers or `budget` runs out.
    pub fn wait_ready(socket: &Path, budget: Duration, call_timeout: Duration) -> Result<Self> {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        while start.elapsed() < budget {
            let left = budget.saturating_sub(start.elapsed());
            match Self::connect(socket, call_timeout.min(left)) {
                Ok(client) => match client.check() {
                    Ok(()) => {
                        return Ok(AgentClient {
                            call_timeout,
                            ..client
                        })
                    }
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(Error::NotReady {
            path: socket.to_path_buf(),
            after: budget,
            last,
        })
    }

    /// Health.Check: succeeds when the agent says it is serving.
    pub fn check(&self) -> Result<()> {
        let ctx = ttrpc::context::with_duration(self.call_timeout);
        let resp = self
            .health
            .check(ctx, &health::CheckRequest::new())
            .map_err(|e| map_err("Health.Check", self.call_timeout, e))?;
        if resp.status.value() == health::health_check_response::ServingStatus::SERVING as i32 {
            Ok(())
        } else {
            Err(Error::Call {
                method: "Health.Check",
                message: format!("agent is not serving ({:?})", resp.status),
            })
        }
    }

    /// Health.Version: the agent's version string.
    pub fn version(&self) -> Result<String> {
        let ctx = ttrpc::context::with_duration(self.call_timeout);
        let resp = self
            .health
            .version(ctx, &health::CheckRequest::new())
            .map_err(|e| map_err("Health.Version", self.call_timeout, e))?;
        Ok(resp.agent_version)
    }

    calls! {
        create_sandbox(agent::CreateSandboxRequest) -> agent::Empty, "CreateSandbox", true;
        destroy_sandbox(agent::DestroySandboxRequest) -> agent::Empty, "DestroySandbox", true;
        create_container(agent::CreateContainerRequest) -> agent::Empty, "CreateContainer", true;
        start_container(agent::StartContainerRequest) -> agent::Empty, "StartContainer", true;
        remove_container(agent::RemoveContainerRequest) -> agent::Empty, "RemoveContainer", true;
        exec_process(agent::ExecProcessRequest) -> agent::Empty, "ExecProcess", true;
        signal_process(agent::SignalProcessRequest) -> agent::Empty, "SignalProcess", true;
        list_processes(agent::ListProcessesRequest) -> agent::ListProcessesResponse, "ListProcesses", true;
        update_container(agent::UpdateContainerRequest) -> agent::Empty, "UpdateContainer", true;
        stats_container(agent::StatsContainerRequest) -> agent::StatsContainerResponse, "StatsContainer", true;
        pause_container(agent::PauseContainerRequest) -> agent::Empty, "PauseContainer", true;
        resume_container(agent::ResumeContainerRequest) -> agent::Empty, "ResumeContainer", true;
        close_stdin(agent::CloseStdinRequest) -> agent::Empty, "CloseStdin", true;
        tty_win_resize(agent::TtyWinResizeRequest) -> agent::Empty, "TtyWinResize", true;
        online_cpu_mem(agent::OnlineCPUMemRequest) -> agent::Empty, "OnlineCPUMem", true;
        /// Waits (in the guest, bounded) for the NIC with the interface's MAC to appear.
        update_interface(agent::UpdateInterfaceRequest) -> agent::Interface, "UpdateInterface", true;
        update_routes(agent::UpdateRoutesRequest) -> agent::Routes, "UpdateRoutes", true;
        list_interfaces(agent::ListInterfacesRequest) -> agent::Interfaces, "ListInterfaces", true;
        list_routes(agent::ListRoutesRequest) -> agent::Routes, "ListRoutes", true;
        add_arp_neighbors(agent::AddARPNeighborsRequest) -> agent::Empty, "AddARPNeighbors", true;
        /// Blocks until the process exits.
        wait_process(agent::WaitProcessRequest) -> agent::WaitProcessResponse, "WaitProcess", false;
        /// Blocks while the process's stdin pipe is full.
        write_stdin(agent::WriteStreamRequest) -> agent::WriteStreamResponse, "WriteStdin", false;
        /// Blocks until output arrives; `Error::Eof` at the end of the stream.
        read_stdout(agent::ReadStreamRequest) -> agent::ReadStreamResponse, "ReadStdout", false;
        /// Blocks until output arrives; `Error::Eof` at the end of the stream.
        read_stderr(agent::ReadStreamRequest) -> agent::ReadStreamResponse, "ReadStderr", false;
    }
}
