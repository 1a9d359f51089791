//! Command line of kata-shim.
//!
//! Hand-written instead of clap: one shim runs per container process, so binary size and start-up
//! cost matter more than generated help, and it must also take Kata 1.x's Go-flag spelling
//! (`-agent X`, `-exec-id=X`, `-terminal`, `-terminal=false`) that runtimes of that era pass.

use anyhow::{anyhow, bail, Result};
use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: kata-shim --agent [unix://]PATH --container CID --exec-id EID [--sandbox SID] [--terminal] [--log FILE] [--debug]

Host-side stand-in for one process running in a kata VM: relays this process's stdin/stdout/stderr
to the process through the agent, forwards signals to it and exits with its exit status.

  --agent PATH      the sandbox's proxy socket (a unix:// prefix is accepted)
  --container CID   the container id
  --exec-id EID     the process id inside the container (the container id for its init process)
  --sandbox SID     the sandbox id, for the log lines
  --terminal        the process has a terminal: stdout carries stderr too, our stdin goes raw and
                    SIGWINCH resizes the process's terminal
  --log FILE        append log lines to FILE (default: warnings and errors to stderr)
  --debug           log debug messages too

Flags may also be spelled with one dash, and take their value as `-flag=value`.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Filesystem path of the proxy socket, `unix://` removed.
    pub agent: PathBuf,
    pub container: String,
    pub exec_id: String,
    /// Only named in log lines; empty when not given.
    pub sandbox: String,
    pub terminal: bool,
    pub log: Option<PathBuf>,
    pub debug: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Args),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = OsString>,
{
    let mut agent = None;
    let mut container = None;
    let mut exec_id = None;
    let mut sandbox = String::new();
    let mut terminal = false;
    let mut log = None;
    let mut debug = false;

    let mut it = args.into_iter();
    while let Some(raw) = it.next() {
        let arg = raw
            .into_string()
            .map_err(|a| anyhow!("argument {a:?} is not valid UTF-8"))?;
        // Both `--flag` and Go's `-flag`; a bare `-`/`--` or a positional argument is a mistake
        // (the shim takes no operands), so refuse it rather than silently ignore it.
        let body = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty() && !b.starts_with('-'))
            .ok_or_else(|| anyhow!("unexpected argument {arg:?}"))?;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .ok_or_else(|| anyhow!("flag {arg} needs a value"))?
                    .into_string()
                    .map_err(|v| anyhow!("value {v:?} of --{name} is not valid UTF-8")),
            }
        };
        match name {
            "agent" => agent = Some(agent_path(&value(name)?)?),
            "container" => container = Some(value(name)?),
            "exec-id" => exec_id = Some(value(name)?),
            "sandbox" => sandbox = value(name)?,
            "log" => log = Some(PathBuf::from(value(name)?)),
            "terminal" => terminal = flag_bool(name, inline.as_deref())?,
            "debug" => debug = flag_bool(name, inline.as_deref())?,
            "help" | "h" => return Ok(Command::Help),
            _ => bail!("unknown flag {arg:?}"),
        }
    }

    let container = non_empty("container", container)?;
    let exec_id = non_empty("exec-id", exec_id)?;
    let agent = agent.ok_or_else(|| anyhow!("missing --agent"))?;
    Ok(Command::Run(Args {
        agent,
        container,
        exec_id,
        sandbox,
        terminal,
        log: log.filter(|p| !p.as_os_str().is_empty()),
        debug,
    }))
}

fn non_empty(name: &str, v: Option<String>) -> Result<String> {
    match v {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => bail!("--{name} must not be empty"),
        None => bail!("missing --{name}"),
    }
}

/// The proxy is reached through a unix socket only; other schemes (vsock://) would need a
/// different dialer in agent-client, so say so instead of failing later with a confusing path.
fn agent_path(addr: &str) -> Result<PathBuf> {
    let path = match addr.strip_prefix("unix://") {
        Some(p) => p,
        None if addr.contains("://") => {
            bail!("unsupported agent address {addr:?}: only unix:// sockets are supported")
        }
        None => addr,
    };
    if path.is_empty() {
        bail!("--agent needs a socket path");
    }
    Ok(PathBuf::from(path))
}

/// Booleans as Go's flag package reads them, since Kata 1.x runtimes may pass `-terminal=true`.
fn flag_bool(name: &str, inline: Option<&str>) -> Result<bool> {
    match inline {
        None => Ok(true),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => bail!("invalid boolean {v:?} for --{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args> {
        match parse(args.iter().map(OsString::from))? {
            Command::Run(a) => Ok(a),
            Command::Help => bail!("help"),
        }
    }

    #[test]
    fn double_dash_with_unix_prefix() -> Result<()> {
        let a = run(&[
            "--agent",
            "unix:///run/vc/sbs/s/proxy.sock",
            "--container",
            "c1",
            "--exec-id",
            "e1",
            "--terminal",
            "--log",
            "/tmp/l",
            "--debug",
        ])?;
        assert_eq!(a.agent, PathBuf::from("/run/vc/sbs/s/proxy.sock"));
        assert_eq!(a.container, "c1");
        assert_eq!(a.exec_id, "e1");
        assert!(a.terminal && a.debug);
        assert_eq!(a.log, Some(PathBuf::from("/tmp/l")));
        Ok(())
    }

    #[test]
    fn go_spelling() -> Result<()> {
        let a = run(&[
            "-agent=unix:///p.sock",
            "-container",
            "c",
            "-exec-id=e",
            "-terminal=false",
        ])?;
        assert_eq!(a.agent, PathBuf::from("/p.sock"));
        assert_eq!((a.container.as_str(), a.exec_id.as_str()), ("c", "e"));
        assert!(!a.terminal && !a.debug && a.log.is_none());
        Ok(())
    }

    #[test]
    fn plain_path_is_accepted() -> Result<()> {
        let a = run(&["--agent", "/x.sock", "--container", "c", "--exec-id", "c"])?;
        assert_eq!(a.agent, PathBuf::from("/x.sock"));
        Ok(())
    }

    #[test]
    fn mistakes_are_refused() {
        for bad in [
            "--container c --exec-id e",
            "--agent /a --exec-id e",
            "--agent /a --container c",
            "--agent /a --container= --exec-id e",
            "--agent vsock://3:1024 --container c --exec-id e",
            "--agent unix:// --container c --exec-id e",
            "--agent /a --container c --exec-id e extra",
            "--agent /a --container c --exec-id e --bogus",
            "--agent /a --container c --exec-id e --terminal=maybe",
            "--agent /a --container c --exec-id",
            "--agent /a --container c --exec-id e ---terminal",
        ] {
            let args: Vec<&str> = bad.split_whitespace().collect();
            assert!(run(&args).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn help() -> Result<()> {
        assert_eq!(parse([OsString::from("-h")])?, Command::Help);
        assert_eq!(parse([OsString::from("--help")])?, Command::Help);
        Ok(())
    }
}
