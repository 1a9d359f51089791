//! `factory init|status|destroy` (and the hidden `serve`, the daemon itself).

use std::ffi::OsString;

use anyhow::Context;
use sandbox::{factory, Runtime};

use crate::cli::{Cli, Factory};

pub fn run(rt: &Runtime, cli: &Cli, f: &Factory) -> anyhow::Result<u8> {
    match f {
        Factory::Init => {
            let exe = std::env::current_exe().context("finding kata-runtime's own path")?;
            // The daemon reads the same configuration file as this call.
            let mut args: Vec<OsString> = Vec::new();
            if let Some(source) = &rt.config.source {
                args.extend(["--kata-config".into(), source.clone().into_os_string()]);
            }
            if cli.global.debug {
                args.push("--debug".into());
            }
            let status = factory::init(rt, &exe, &args)?;
            println!(
                "factory: {} VMs ready (pid {}, {}; log {})",
                status.ready.len(),
                status.pid,
                status.endpoint.display(),
                factory::log_file(rt).display()
            );
            Ok(0)
        }
        Factory::Status { json } => {
            let Some(s) = factory::status(rt)? else {
                anyhow::bail!(
                    "no factory daemon answers on {}",
                    rt.config.factory_endpoint().display()
                );
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(0);
            }
            println!("pid            : {}", s.pid);
            println!("endpoint       : {}", s.endpoint.display());
            println!("vm_cache_number: {}", s.vm_cache_number);
            println!("ready          : {}", s.ready.len());
            println!("booting        : {}", if s.booting { "yes" } else { "no" });
            println!("handed out     : {}", s.handed_out);
            match (&s.template, s.template_ms) {
                (Some(t), Some(ms)) => {
                    println!("template       : {} (made in {ms} ms)", t.display())
                }
                (Some(t), None) => println!("template       : {}", t.display()),
                _ => println!("template       : none"),
            }
            if let Some(e) = &s.last_error {
                println!("last error     : {e}");
            }
            for vm in &s.ready {
                println!(
                    "  {:<24} qemu pid {:<8} booted in {} ms{}",
                    vm.name,
                    vm.qemu_pid,
                    vm.boot_ms,
                    if vm.from_template {
                        " (template clone)"
                    } else {
                        ""
                    }
                );
            }
            Ok(0)
        }
        Factory::Destroy => {
            if factory::destroy(rt)? {
                println!("factory: destroyed");
            } else {
                println!("factory: no daemon was running; leftovers removed");
            }
            Ok(0)
        }
        Factory::Serve => {
            factory::serve(rt)?;
            Ok(0)
        }
    }
}
