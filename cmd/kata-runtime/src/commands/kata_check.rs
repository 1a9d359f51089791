//! `kata-check` (can this host run sandboxes? with `--sandbox`: is this sandbox healthy?) and
//! `kata-env` (what would be used).

use crate::cli::Cli;
use anyhow::Context;
use sandbox::hostcheck::{host_checks, Verdict};
use sandbox::Runtime;
use std::path::Path;

/// `kata-check --sandbox ID`: one row per component, exit 1 when any probe failed.
pub fn check_sandbox(rt: &Runtime, id: &str, json: bool) -> anyhow::Result<u8> {
    let (sandbox_id, probes) = sandbox::health::check_sandbox(rt, id)?;
    let failed = probes.iter().any(|p| !p.ok);
    if json {
        let doc = serde_json::json!({ "sandbox": sandbox_id, "ok": !failed, "probes": probes });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("printing JSON")?
        );
    } else {
        let width = probes
            .iter()
            .map(|p| p.component.len())
            .max()
            .unwrap_or(9)
            .max(9);
        println!(
            "{:<width$}  {:<6}  {:>9}  DETAIL",
            "COMPONENT", "STATUS", "RTT"
        );
        for p in &probes {
            let rtt = p
                .rtt_ms
                .map(|ms| format!("{ms:.2}ms"))
                .unwrap_or_else(|| "-".into());
            let status = if p.ok { "OK" } else { "FAIL" };
            println!(
                "{:<width$}  {status:<6}  {rtt:>9}  {}",
                p.component, p.detail
            );
        }
        println!(
            "{}",
            if failed {
                format!("Sandbox {sandbox_id} is unhealthy: see the FAIL rows above.")
            } else {
                format!("Sandbox {sandbox_id} is healthy.")
            }
        );
    }
    Ok(u8::from(failed))
}

pub fn check(rt: &Runtime, json: bool) -> anyhow::Result<u8> {
    let checks = host_checks(rt);
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    if json {
        let doc = serde_json::json!({ "ok": !failed, "checks": checks });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("printing JSON")?
        );
    } else {
        for c in &checks {
            let word = match c.verdict {
                Verdict::Pass => "PASS",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            println!("{word} {}: {}", c.name, c.detail);
        }
        println!(
            "{}",
            if failed {
                "This host cannot run sandboxes: fix the FAIL lines above."
            } else {
                "This host can run sandboxes."
            }
        );
    }
    Ok(u8::from(failed))
}

/// `--version`'s first line of a component, or why there is none.
fn version_of(path: &Path) -> String {
    match std::process::Command::new(path).arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        Ok(o) => format!("({} --version: {})", path.display(), o.status),
        Err(e) => format!("({}: {e})", path.display()),
    }
}

fn path_or_error(p: Result<std::path::PathBuf, config::Error>) -> String {
    match p {
        Ok(p) => p.display().to_string(),
        Err(e) => format!("({e})"),
    }
}

pub fn env(rt: &Runtime, cli: &Cli, json: bool) -> anyhow::Result<u8> {
    let c = &rt.config;
    let q = &c.hypervisor.qemu;
    let kernel = c.kernel_path();
    let manifest = kernel
        .as_ref()
        .ok()
        .map(|k| k.with_file_name("manifest.json"))
        .and_then(|m| std::fs::read_to_string(m).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .unwrap_or_default();
    let (accel, accel_reason) = sandbox::hostcheck::accelerator(rt);
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let doc = serde_json::json!({
        "runtime": {
            "version": env!("CARGO_PKG_VERSION"),
            "path": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            "config": c.source.as_ref().map(|p| p.display().to_string())
                .unwrap_or_else(|| "(built-in defaults: no configuration file found)".into()),
            "config_search": config::default_file_candidates().iter()
                .map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "root": cli.global.root.display().to_string(),
            "vm_dir": c.runtime.vm_dir.display().to_string(),
            "shared_dir": c.runtime.shared_dir.display().to_string(),
            "internetworking_model": c.runtime.internetworking_model,
        },
        "hypervisor": {
            "path": path_or_error(c.qemu_path()),
            "version": c.qemu_path().map(|p| version_of(&p)).unwrap_or_default(),
            "machine_type": q.machine_type,
            "accelerator": q.accelerator,
            "accelerator_used": accel.to_string(),
            "accelerator_reason": accel_reason,
            "default_vcpus": q.default_vcpus,
            "default_memory_mib": q.default_memory,
            "shared_fs": q.shared_fs,
            "msize_9p": q.msize_9p,
            "virtio_fs_daemon": q.virtio_fs_daemon.display().to_string(),
            "virtio_fs_cache": q.virtio_fs_cache,
            "block_device_driver": q.block_device_driver,
            "disable_block_device_use": q.disable_block_device_use,
        },
        "guest": {
            "kernel": path_or_error(kernel),
            "initrd": path_or_error(c.initrd_path()),
            "kernel_release": manifest["kernel_release"],
            // `linux-source` (ours, from kernel/fragments/) or `debian-package`.
            "kernel_build": manifest["kernel_build"],
            "kernel_package": manifest["kernel_package"],
            "kernel_package_version": manifest["kernel_package_version"],
            "kernel_config_sha256": manifest["kernel_config_sha256"],
            "kernel_build_key": manifest["kernel_build_key"],
            "modules": manifest["modules"],
        },
        "proxy": {
            "path": path_or_error(c.proxy_path()),
            "version": c.proxy_path().map(|p| version_of(&p)).unwrap_or_default(),
        },
        "shim": {
            "path": path_or_error(c.shim_path()),
            "version": c.shim_path().map(|p| version_of(&p)).unwrap_or_default(),
        },
        "agent": {
            "dial_timeout_s": c.agent.kata.dial_timeout,
            "request_timeout_s": c.agent.kata.request_timeout,
        },
        "host": {
            "kernel_release": host_release,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            // What VMs run on: `kvm` only when the probe finds KVM usable (a /dev/kvm that
            // exists but crawls, as paravirtualised KVM here, means tcg).
            "kvm": accel.to_string() == "kvm",
            "dev_kvm": Path::new("/dev/kvm").exists(),
            "vhost_net": Path::new("/dev/vhost-net").exists(),
            "vhost_vsock": Path::new("/dev/vhost-vsock").exists(),
        },
    });
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("printing JSON")?
        );
    } else {
        print_sections(&doc);
    }
    Ok(0)
}

/// `[section]` then `key = value` lines, as Kata 1.x's kata-env printed.
fn print_sections(doc: &serde_json::Value) {
    let Some(sections) = doc.as_object() else {
        return;
    };
    for (name, section) in sections {
        println!("[{name}]");
        if let Some(fields) = section.as_object() {
            for (k, v) in fields {
                println!("  {k} = {v}");
            }
        }
        println!();
    }
}
