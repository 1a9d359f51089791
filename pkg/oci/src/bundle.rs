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
        let spec: Spec = serde_json::from_slice(&text).map_err(|e| Error::Config {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
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
