use crate::Error;
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// A loaded bundle: its absolute folder, the parsed spec and the absolute rootfs path.
#[derive(Debug)]
pub struct Bundle {
    pub path: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

impl Bundle {
    pub fn load(path: &Path) -> Result<Bundle, Error> {
        let bad = |reason: String| Error::Bundle {
            path: path.display().to_string(),
            reason,
        };
        let dir = path
            .canonicalize()
            .map_err(|e| bad(format!("cannot open: {e}")))?;
        if !dir.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let config = dir.join("config.json");
        let text =
            std::fs::read(&config).map_err(|e| bad(format!("cannot read config.json: {e}")))?;
        let mut spec: Spec = serde_json::from_slice(&text).map_err(|e| Error::Config {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        resolve_bind_sources(&mut spec, &dir);
        let process = spec.process().as_ref().ok_or_else(|| Error::Config {
            path: dir.display().to_string(),
            reason: "no process".into(),
        })?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Config {
                path: dir.display().to_string(),
                reason: "process.args is empty".into(),
            });
        }
        let root = spec.root().as_ref().ok_or_else(|| Error::Config {
            path: dir.display().to_string(),
            reason: "no root".into(),
        })?;
        let rootfs = dir.join(root.path());
        let rootfs = rootfs
            .canonicalize()
            .map_err(|e| bad(format!("root {}: {e}", rootfs.display())))?;
        if !rootfs.is_dir() {
            return Err(bad(format!("root {} is not a directory", rootfs.display())));
        }
        Ok(Bundle {
            path: dir,
            spec,
            rootfs,
        })
    }
}

/// A bind mount's relative source is relative to the bundle (the runtime spec; runc runs in
/// the bundle folder), whatever folder the runtime was started in.
fn resolve_bind_sources(spec: &mut Spec, bundle: &Path) {
    let Some(mut mounts) = spec.mounts().clone() else {
        return;
    };
    let mut changed = false;
    for m in mounts.iter_mut() {
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        match m.source().clone() {
            Some(src) if is_bind && src.is_relative() && !src.as_os_str().is_empty() => {
                m.set_source(Some(bundle.join(src)));
                changed = true;
            }
            _ => {}
        }
    }
    if changed {
        spec.set_mounts(Some(mounts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    const GOOD: &str = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#;

    #[test]
    fn relative_bind_sources_are_the_bundles() {
        let dir = bundle_with(
            r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
               "root":{"path":"rootfs"},
               "mounts":[{"destination":"/d","source":"data","options":["rbind"]},
                         {"destination":"/p","source":"proc","type":"proc"}]}"#,
        );
        let b = Bundle::load(dir.path()).unwrap();
        let mounts = b.spec.mounts().clone().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        assert_eq!(
            mounts[0].source().as_deref(),
            Some(dir.join("data").as_path())
        );
        assert_eq!(mounts[1].source().as_deref(), Some(Path::new("proc")));
    }

    #[test]
    fn loads_a_minimal_bundle() {
        let dir = bundle_with(GOOD);
        let b = Bundle::load(dir.path()).unwrap();
        assert!(b.rootfs.ends_with("rootfs"));
        assert!(b.rootfs.is_absolute());
    }

    #[test]
    fn refuses_broken_bundles() {
        let missing = Bundle::load(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(missing.to_string().contains("cannot open"), "{missing}");
        let dir = bundle_with("{not json");
        let e = Bundle::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("malformed config.json"), "{e}");
        let dir = bundle_with(&GOOD.replace("rootfs", "nope"));
        assert!(Bundle::load(dir.path()).is_err());
        let dir = bundle_with(&GOOD.replace(r#""args":["sh"]"#, r#""args":[]"#));
        assert!(Bundle::load(dir.path()).is_err());
    }
}
