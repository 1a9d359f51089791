//! One function per verb, each a thin call into the `sandbox` library.

mod events;
mod exec;
mod factory;
mod features;
mod kata_check;
mod kata_network;
mod list;
mod run;
mod spec;
mod update;

use crate::cli::{Cli, Command};
use anyhow::Context;
use sandbox::{CreateOptions, Runtime};

fn runtime(cli: &Cli) -> anyhow::Result<Runtime> {
    if cli.global.log_format != "text" && cli.global.log_format != "json" {
        anyhow::bail!(
            "unknown --log-format {:?} (text or json)",
            cli.global.log_format
        );
    }
    let config = config::Config::load(cli.global.kata_config.as_deref())?;
    if config.runtime.enable_debug {
        log::set_max_level(log::LevelFilter::Debug);
    }
    Ok(Runtime::new(cli.global.root.clone(), config))
}

/// Runs the verb; the value is the exit status.
pub fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let rt = runtime(&cli)?;
    match &cli.command {
        Command::Create(c) => {
            sandbox::create(
                &rt,
                &CreateOptions {
                    id: &c.container_id,
                    bundle: &c.bundle,
                    pid_file: c.pid_file.as_deref(),
                    console_socket: c.console_socket.as_deref(),
                    foreground: false,
                },
            )?;
            Ok(0)
        }
        Command::Start(c) => sandbox::start(&rt, &c.container_id)
            .map(|_| 0)
            .map_err(Into::into),
        Command::State(c) => {
            let state = sandbox::state(&rt, &c.container_id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&state).context("printing the state")?
            );
            Ok(0)
        }
        Command::Kill(k) => {
            let signal = sandbox::parse_signal(&k.signal)?;
            sandbox::kill(&rt, &k.container_id, signal, k.all)?;
            Ok(0)
        }
        Command::Delete(d) => sandbox::delete(&rt, &d.container_id, d.force)
            .map(|_| 0)
            .map_err(Into::into),
        Command::Run(r) => run::run(&rt, r),
        Command::Exec(e) => exec::exec(&rt, e),
        Command::List(l) => list::list(&rt, l),
        Command::Spec(s) => spec::spec(s),
        Command::Update(u) => update::update(&rt, u),
        Command::Events(e) => events::events(&rt, e),
        Command::Features => features::features(),
        Command::Ps(p) => {
            if !matches!(p.format.as_str(), "table" | "json") {
                anyhow::bail!("invalid --format {:?} (table or json)", p.format);
            }
            if !p.ps_options.is_empty() {
                log::warn!(
                    "ps options {:?} ignored: the guest lists pid and command",
                    p.ps_options
                );
            }
            let out = sandbox::ps(&rt, &p.container_id, &p.format)?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .context("printing the process list")?;
            if p.format == "json" {
                println!();
            }
            Ok(0)
        }
        Command::Pause(p) => sandbox::set_paused(&rt, &p.container_id, true)
            .map(|_| 0)
            .map_err(Into::into),
        Command::Resume(r) => sandbox::set_paused(&rt, &r.container_id, false)
            .map(|_| 0)
            .map_err(Into::into),
        Command::KataNetwork(n) => kata_network::run(&rt, n),
        Command::KataCheck(c) => match &c.sandbox {
            Some(id) => kata_check::check_sandbox(&rt, id, c.json),
            None => kata_check::check(&rt, c.json),
        },
        Command::Logs(l) => logs(&rt, l),
        Command::Factory(f) => factory::run(&rt, &cli, f),
        Command::PortForward(p) => sandbox::portforward::serve(&rt, &p.sandbox, &p.vm_dir)
            .map(|_| 0)
            .map_err(Into::into),
        Command::KataEnv(e) => kata_check::env(&rt, &cli, e.json),
        Command::Version => {
            println!("kata-runtime  : {}", env!("CARGO_PKG_VERSION"));
            println!("   OCI specs  : 1.0.2");
            Ok(0)
        }
    }
}

/// `logs`: the sandbox's merged log, logfmt (or JSON) lines on stdout.
fn logs(rt: &Runtime, l: &crate::cli::Logs) -> anyhow::Result<u8> {
    use std::io::Write;
    let entries = sandbox::logs(rt, &l.container_id)?;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let line = if l.json {
            let map: serde_json::Map<String, serde_json::Value> = e
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::Value::Object(map).to_string()
        } else {
            e.render()
        };
        // A closed pipe (`logs | head`) ends the listing quietly.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(0)
}
