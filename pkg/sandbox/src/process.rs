//! One process in the guest (a container's own, or an exec) as its stand-in on the host sees
//! it: its output, its input, its terminal, signals, its exit.
//!
//! A process is reached through its sandbox's agent connection, and the agent ties the
//! process's life to the connection that waits for it or reads its output (pkg/guest
//! lease.rs): the process lives as long as that connection, that is as long as the front end
//! that holds the sandbox (the shim v2: the whole pod's life; a kata-shim has a connection of
//! its own).

use crate::Result;
use agent_client::{messages as msg, AgentClient};

/// How much one read asks for (the agent's pipes hold 64 KiB).
const READ_CHUNK: u32 = 32 * 1024;

#[derive(Clone)]
pub struct Process {
    /// The dial error when the agent could not be reached: every call then fails with it.
    agent: std::result::Result<AgentClient, String>,
    container_id: String,
    exec_id: String,
}

impl Process {
    /// Process `exec_id` of container `container_id`, through `agent` (the sandbox's
    /// connection, or the error dialling it gave).
    pub(crate) fn new(
        agent: std::result::Result<AgentClient, String>,
        container_id: &str,
        exec_id: &str,
    ) -> Self {
        Process {
            agent,
            container_id: container_id.into(),
            exec_id: exec_id.into(),
        }
    }

    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    fn agent(&self) -> Result<&AgentClient> {
        self.agent
            .as_ref()
            .map_err(|e| crate::Error::Unsupported(e.clone()))
    }

    /// Blocks until it exits; its exit status (128 + signal for a killed one).
    pub fn wait(&self) -> Result<i32> {
        let mut req = msg::WaitProcessRequest::new();
        req.container_id = self.container_id.clone();
        req.exec_id = self.exec_id.clone();
        Ok(self.agent()?.wait_process(&req)?.status)
    }

    pub fn signal(&self, signal: i32) -> Result<()> {
        let mut req = msg::SignalProcessRequest::new();
        req.container_id = self.container_id.clone();
        req.exec_id = self.exec_id.clone();
        req.signal = signal as u32;
        self.agent()?.signal_process(&req)?;
        Ok(())
    }

    /// Blocks until output comes; `Ok(None)` at the end of the stream.
    pub fn read_stdout(&self) -> Result<Option<Vec<u8>>> {
        self.read(false)
    }

    /// Blocks until output comes; `Ok(None)` at the end of the stream.
    pub fn read_stderr(&self) -> Result<Option<Vec<u8>>> {
        self.read(true)
    }

    fn read(&self, stderr: bool) -> Result<Option<Vec<u8>>> {
        let mut req = msg::ReadStreamRequest::new();
        req.container_id = self.container_id.clone();
        req.exec_id = self.exec_id.clone();
        req.len = READ_CHUNK;
        let agent = self.agent()?;
        let resp = match stderr {
            true => agent.read_stderr(&req),
            false => agent.read_stdout(&req),
        };
        match resp {
            Ok(r) => Ok(Some(r.data)),
            Err(agent_client::Error::Eof) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes all of `data` to its stdin (blocks while the pipe is full).
    pub fn write_stdin(&self, mut data: &[u8]) -> Result<()> {
        let agent = self.agent()?;
        while !data.is_empty() {
            let mut req = msg::WriteStreamRequest::new();
            req.container_id = self.container_id.clone();
            req.exec_id = self.exec_id.clone();
            req.data = data.to_vec();
            let written = (agent.write_stdin(&req)?.len as usize).min(data.len());
            if written == 0 {
                break;
            }
            data = &data[written..];
        }
        Ok(())
    }

    pub fn close_stdin(&self) -> Result<()> {
        let mut req = msg::CloseStdinRequest::new();
        req.container_id = self.container_id.clone();
        req.exec_id = self.exec_id.clone();
        self.agent()?.close_stdin(&req)?;
        Ok(())
    }

    /// Its terminal's size.
    pub fn resize(&self, rows: u32, columns: u32) -> Result<()> {
        let mut req = msg::TtyWinResizeRequest::new();
        req.container_id = self.container_id.clone();
        req.exec_id = self.exec_id.clone();
        req.row = rows;
        req.column = columns;
        self.agent()?.tty_win_resize(&req)?;
        Ok(())
    }
}
