//! `kata-runtime kata-check`: can this host run sandboxes? One result per check, each with a
//! verdict and the detail a user needs to fix it.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;

use crate::Runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

fn check(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict,
        detail: detail.into(),
    }
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// The guest image file `path` against the `manifest.json` beside it (written by
/// kata-osbuilder): present, and with the recorded checksum.
fn image_file(name: &'static str, path: &Path, manifest_key: &str) -> Check {
    if !path.is_file() {
        return check(
            name,
            Verdict::Fail,
            format!("{} is missing", path.display()),
        );
    }
    let manifest = path.with_file_name("manifest.json");
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return check(
            name,
            Verdict::Warn,
            format!(
                "{} (no {} to check it against)",
                path.display(),
                manifest.display()
            ),
        );
    };
    let recorded = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let want = recorded[manifest_key].as_str().map(String::from);
    match (want, sha256_of(path)) {
        (Some(want), Ok(got)) if want == got => check(
            name,
            Verdict::Pass,
            format!(
                "{} (matches the manifest{})",
                path.display(),
                if manifest_key == "vmlinux_sha256" {
                    kernel_summary(&recorded)
                } else {
                    String::new()
                }
            ),
        ),
        (Some(_), Ok(_)) => check(
            name,
            Verdict::Fail,
            format!(
                "{} does not match {} (rebuild with `make guest`)",
                path.display(),
                manifest.display()
            ),
        ),
        (None, _) => check(
            name,
            Verdict::Warn,
            format!("{} has no {manifest_key}", manifest.display()),
        ),
        (_, Err(e)) => check(
            name,
            Verdict::Fail,
            format!("reading {}: {e}", path.display()),
        ),
    }
}

/// "; 6.1.192-kata-rs from linux-source-6.1 6.1.192-3, config sha256 0123456789ab": which
/// kernel the manifest describes and which configuration it was built with.
fn kernel_summary(manifest: &serde_json::Value) -> String {
    let field = |k: &str| manifest[k].as_str().unwrap_or("?").to_owned();
    let config = field("kernel_config_sha256");
    format!(
        "; {} from {} {}, config sha256 {}",
        field("kernel_release"),
        field("kernel_package"),
        field("kernel_package_version"),
        config.get(..12).unwrap_or(&config)
    )
}

fn device(name: &'static str, path: &str, missing: Verdict, why: &str) -> Check {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => check(name, Verdict::Pass, path),
        Err(e) => check(name, missing, format!("{path}: {e} ({why})")),
    }
}

/// Every host check, in order.
pub fn host_checks(rt: &Runtime) -> Vec<Check> {
    let q = &rt.config.hypervisor.qemu;
    let mut out = Vec::new();
    out.push(match rt.config.qemu_path() {
        Ok(path) => match std::process::Command::new(&path).arg("--version").output() {
            Ok(o) if o.status.success() => {
                let version = String::from_utf8_lossy(&o.stdout);
                let first = version.lines().next().unwrap_or_default().to_string();
                check(
                    "qemu",
                    Verdict::Pass,
                    format!("{} ({first})", path.display()),
                )
            }
            Ok(o) => check(
                "qemu",
                Verdict::Fail,
                format!("{} --version: {}", path.display(), o.status),
            ),
            Err(e) => check("qemu", Verdict::Fail, format!("{}: {e}", path.display())),
        },
        Err(e) => check("qemu", Verdict::Fail, e.to_string()),
    });
    out.push(match rt.config.kernel_path() {
        Ok(p) => image_file("guest kernel", &p, "vmlinux_sha256"),
        Err(e) => check("guest kernel", Verdict::Fail, e.to_string()),
    });
    out.push(match rt.config.initrd_path() {
        Ok(p) => image_file("guest initrd", &p, "initrd_sha256"),
        Err(e) => check("guest initrd", Verdict::Fail, e.to_string()),
    });
    for (name, path) in [
        ("kata-proxy", rt.config.proxy_path()),
        ("kata-shim", rt.config.shim_path()),
    ] {
        out.push(match path {
            Ok(p) => check(name, Verdict::Pass, p.display().to_string()),
            Err(e) => check(name, Verdict::Fail, e.to_string()),
        });
    }
    let (accel, reason) = accelerator(rt);
    out.push(match accel {
        hypervisor::Accel::Kvm => check("accelerator", Verdict::Pass, format!("kvm: {reason}")),
        _ => check(
            "accelerator",
            Verdict::Warn,
            format!("tcg (software emulation, slower): {reason}"),
        ),
    });
    out.push(device(
        "/dev/net/tun",
        "/dev/net/tun",
        Verdict::Fail,
        "taps for the VM's NICs",
    ));
    out.push(device(
        "vhost-net",
        "/dev/vhost-net",
        Verdict::Warn,
        "NICs use QEMU's userspace virtio-net",
    ));
    out.push(device(
        "vhost-vsock",
        "/dev/vhost-vsock",
        Verdict::Warn,
        "the agent is reached over virtio-serial and kata-proxy",
    ));
    let needs_virtiofsd = q.shared_fs == "virtio-fs";
    out.push(if q.virtio_fs_daemon.is_file() {
        check(
            "virtiofsd",
            Verdict::Pass,
            q.virtio_fs_daemon.display().to_string(),
        )
    } else {
        check(
            "virtiofsd",
            if needs_virtiofsd {
                Verdict::Fail
            } else {
                Verdict::Warn
            },
            format!(
                "{} is missing (needed for shared_fs = \"virtio-fs\")",
                q.virtio_fs_daemon.display()
            ),
        )
    });
    out.push(
        if Path::new("/proc/self/ns/net").exists() && Path::new("/proc/self/ns/mnt").exists() {
            check("namespaces", Verdict::Pass, "network and mount namespaces")
        } else {
            check(
                "namespaces",
                Verdict::Fail,
                "the host kernel lacks network or mount namespaces",
            )
        },
    );
    out
}

/// The accelerator the next VM will use and why: the configuration's choice, else the timed
/// KVM probe (cached per host boot), as `create` decides it.
pub fn accelerator(rt: &Runtime) -> (hypervisor::Accel, String) {
    match rt.config.hypervisor.qemu.accelerator.as_str() {
        "kvm" => (
            hypervisor::Accel::Kvm,
            "set in the configuration".to_string(),
        ),
        "tcg" => (
            hypervisor::Accel::Tcg,
            "set in the configuration".to_string(),
        ),
        _ => hypervisor::choose_accel(&rt.config.runtime.vm_dir),
    }
}
