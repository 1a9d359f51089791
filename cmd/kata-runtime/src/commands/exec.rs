//! `exec`: run a process in a running container, from `--process FILE` or from the command
//! line on top of the container's own process (env, cwd, user), as runc does.

use anyhow::{bail, Context};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process};
use sandbox::{ExecOptions, Runtime};
use std::os::unix::process::ExitStatusExt;

pub fn exec(rt: &Runtime, e: &liboci_cli::Exec) -> anyhow::Result<u8> {
    let process = build_process(rt, e)?;
    let mut shim = sandbox::exec(
        rt,
        &ExecOptions {
            id: &e.container_id,
            process,
            pid_file: e.pid_file.as_deref(),
            console_socket: e.console_socket.as_deref(),
            foreground: !e.detach,
        },
    )?;
    if e.detach {
        return Ok(0);
    }
    let status = shim.wait().context("waiting for the exec's shim")?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(u8::try_from(code).unwrap_or(1))
}

fn build_process(rt: &Runtime, e: &liboci_cli::Exec) -> anyhow::Result<Process> {
    if let Some(path) = &e.process {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let p: Process = serde_json::from_slice(&bytes)
            .with_context(|| format!("invalid process file {}", path.display()))?;
        return Ok(p);
    }
    if e.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let mut p = sandbox::base_process(rt, &e.container_id)?;
    p.set_args(Some(e.command.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for (k, v) in &e.env {
        env.retain(|entry| entry.split('=').next() != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }
    p.set_env(Some(env));
    if let Some(cwd) = &e.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut user = p.user().clone();
    if let Some((uid, gid)) = e.user {
        user.set_uid(uid);
        user.set_gid(gid.unwrap_or(0));
    }
    if !e.additional_gids.is_empty() {
        user.set_additional_gids(Some(e.additional_gids.clone()));
    }
    p.set_user(user);
    p.set_terminal(Some(e.tty));
    if e.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !e.cap.is_empty() {
        add_capabilities(&mut p, &e.cap)?;
    }
    Ok(p)
}

/// `--cap` adds to the bounding, effective and permitted sets, and to the ambient set only
/// when the process has inheritable capabilities (ambient ones need them), as runc does.
fn add_capabilities(p: &mut Process, names: &[String]) -> anyhow::Result<()> {
    let mut caps = p.capabilities().clone().unwrap_or_else(|| {
        let mut none = LinuxCapabilities::default();
        none.set_bounding(None);
        none.set_effective(None);
        none.set_inheritable(None);
        none.set_permitted(None);
        none.set_ambient(None);
        none
    });
    let has_inheritable = caps.inheritable().as_ref().is_some_and(|i| !i.is_empty());
    for name in names {
        let cap: Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
            .map_err(|_| anyhow::anyhow!("unknown capability {name:?}"))?;
        let add = |set: &Option<Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        if has_inheritable {
            caps.set_ambient(add(caps.ambient()));
        }
    }
    p.set_capabilities(Some(caps));
    Ok(())
}
