//! OCI hooks, run on the host as Kata 1.x did (the host is where the caller's hook binaries
//! live): prestart, createRuntime and then createContainer once the container is created,
//! poststart after start, poststop after delete. Each gets the container's state JSON on
//! stdin, as with runc. createContainer hooks run on the host too: the container's namespaces
//! are inside the VM, where a host binary cannot run. startContainer hooks are resolved in the
//! container, so the agent runs them there, right before the workload (pkg/guest hooks.rs).

use crate::state::OciState;
use crate::{Error, Result};
use oci_spec::runtime::{Hook, Hooks};

#[derive(Clone, Copy, Debug)]
pub enum Stage {
    CreateRuntime,
    Poststart,
    Poststop,
}

fn select(hooks: &Hooks, stage: Stage) -> Vec<Hook> {
    #[allow(deprecated)]
    let prestart = hooks.prestart().clone().unwrap_or_default();
    match stage {
        Stage::CreateRuntime => prestart
            .into_iter()
            .chain(hooks.create_runtime().clone().unwrap_or_default())
            .chain(hooks.create_container().clone().unwrap_or_default())
            .collect(),
        Stage::Poststart => hooks.poststart().clone().unwrap_or_default(),
        Stage::Poststop => hooks.poststop().clone().unwrap_or_default(),
    }
}

/// Runs the stage's hooks in order. Before the container runs (createRuntime and the rest),
/// the first failure stops them and is returned: create fails. Poststart and poststop hooks
/// cannot undo anything (the spec: "log a warning; the remaining hooks and lifecycle
/// continue"): each failure is logged as a warning and the next hook runs.
pub fn run(hooks: Option<&Hooks>, stage: Stage, state: &OciState) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    let state_json =
        serde_json::to_vec(state).map_err(|e| Error::Unsupported(format!("hook state: {e}")))?;
    for hook in select(hooks, stage) {
        match (run_one(&hook, stage, &state_json), stage) {
            (Ok(()), _) => {}
            (Err(e), Stage::CreateRuntime) => return Err(e),
            (Err(e), Stage::Poststart | Stage::Poststop) => {
                log::warn!(
                    "container {}: {e} (ignored: the container goes on)",
                    state.id
                )
            }
        }
    }
    Ok(())
}

/// createRuntime hooks of a container just created (its record saved): on the host, with the
/// container's state on their stdin.
pub fn run_create_hooks(bundle: &oci::Bundle, record: &store::ContainerRecord) -> Result<()> {
    run(
        bundle.spec.hooks().as_ref(),
        Stage::CreateRuntime,
        &crate::state::to_state(record.clone()),
    )
}

fn run_one(hook: &Hook, stage: Stage, state: &[u8]) -> Result<()> {
    oci::run_hook(hook, state).map_err(|e| Error::Spawn {
        component: "hook",
        path: hook.path().clone(),
        reason: format!("{stage:?}: {e}"),
    })
}
