//! `spec`: writes a default config.json, as `runc spec` does (refusing to overwrite one).

use anyhow::{bail, Context};
use std::path::PathBuf;

pub fn spec(s: &liboci_cli::Spec) -> anyhow::Result<u8> {
    let dir = s.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let spec = if s.rootless {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        oci_spec::runtime::Spec::rootless(uid, gid)
    } else {
        oci_spec::runtime::Spec::default()
    };
    let text = serde_json::to_string_pretty(&spec).context("serialising the spec")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}
