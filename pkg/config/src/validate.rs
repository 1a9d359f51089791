//! Checks of values that have the right TOML type but that the runtime cannot use. They run when
//! the file is parsed, so a typo fails `kata-runtime` at once with the file and line, rather than
//! later when a sandbox starts (and the error surfaces through containerd).

use std::path::Path;

use crate::error::{key_line, Error};
use crate::Config;

/// A value outside what the runtime supports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    /// Dotted section, e.g. `hypervisor.qemu`.
    pub section: &'static str,
    pub key: &'static str,
    /// The value as written in TOML (strings quoted).
    pub value: String,
    pub allowed: String,
    /// Another key of the same section the rule compares against (a per-pod override of that
    /// key can be what breaks the rule).
    pub related: Option<&'static str>,
}

impl Invalid {
    pub(crate) fn reason(&self) -> String {
        format!("bad value {} (allowed: {})", self.value, self.allowed)
    }
}

fn one_of(
    section: &'static str,
    key: &'static str,
    value: &str,
    allowed: &[&str],
    out: &mut Vec<Invalid>,
) {
    if !allowed.contains(&value) {
        out.push(Invalid {
            section,
            key,
            value: format!("{value:?}"),
            allowed: allowed.join(", "),
            related: None,
        });
    }
}

fn at_least(
    section: &'static str,
    key: &'static str,
    value: u64,
    min: u64,
    out: &mut Vec<Invalid>,
) {
    if value < min {
        out.push(Invalid {
            section,
            key,
            value: value.to_string(),
            allowed: format!("{min} or more"),
            related: None,
        });
    }
}

/// More pre-booted VMs than this is a typo (each holds its guest's memory).
const MAX_VM_CACHE: u32 = 64;

/// `q35` and `pc`, or one of their versioned names (`pc-i440fx-8.2`, `pc-q35-8.2`).
fn machine_type_ok(m: &str) -> bool {
    m == "q35" || m == "pc" || m.strip_prefix("pc-").is_some_and(|v| !v.is_empty())
}

impl Config {
    /// Every unsupported value, in the order of the default file.
    pub(crate) fn invalid_values(&self) -> Vec<Invalid> {
        const QEMU: &str = "hypervisor.qemu";
        let q = &self.hypervisor.qemu;
        let mut out = Vec::new();
        if !machine_type_ok(&q.machine_type) {
            out.push(Invalid {
                section: QEMU,
                key: "machine_type",
                value: format!("{:?}", q.machine_type),
                allowed: "q35, pc, pc-<version>, pc-q35-<version>".into(),
                related: None,
            });
        }
        at_least(QEMU, "default_vcpus", q.default_vcpus.into(), 1, &mut out);
        at_least(
            QEMU,
            "default_memory",
            q.default_memory.into(),
            64,
            &mut out,
        );
        if q.default_maxvcpus != 0 && q.default_maxvcpus < q.default_vcpus {
            out.push(Invalid {
                section: QEMU,
                key: "default_maxvcpus",
                value: q.default_maxvcpus.to_string(),
                allowed: format!(
                    "0 for the host's CPU count, or at least default_vcpus = {}",
                    q.default_vcpus
                ),
                related: Some("default_vcpus"),
            });
        }
        one_of(
            QEMU,
            "shared_fs",
            &q.shared_fs,
            &["virtio-9p", "virtio-fs"],
            &mut out,
        );
        if !(4096..=1_048_576).contains(&q.msize_9p) {
            out.push(Invalid {
                section: QEMU,
                key: "msize_9p",
                value: q.msize_9p.to_string(),
                allowed: "4096 to 1048576".into(),
                related: None,
            });
        }
        one_of(
            QEMU,
            "virtio_fs_cache",
            &q.virtio_fs_cache,
            &["auto", "always", "none"],
            &mut out,
        );
        one_of(
            QEMU,
            "accelerator",
            &q.accelerator,
            &["auto", "kvm", "tcg"],
            &mut out,
        );
        one_of(
            QEMU,
            "block_device_driver",
            &q.block_device_driver,
            &["virtio-blk"],
            &mut out,
        );
        let agent = &self.agent.kata;
        at_least(
            "agent.kata",
            "dial_timeout",
            agent.dial_timeout,
            1,
            &mut out,
        );
        at_least(
            "agent.kata",
            "request_timeout",
            agent.request_timeout,
            1,
            &mut out,
        );
        let rt = &self.runtime;
        at_least(
            "runtime",
            "sandbox_stop_timeout",
            rt.sandbox_stop_timeout,
            1,
            &mut out,
        );
        one_of(
            "runtime",
            "internetworking_model",
            &rt.internetworking_model,
            &["tcfilter", "macvtap", "bridged", "none"],
            &mut out,
        );
        let f = &self.factory;
        if f.vm_cache_number > MAX_VM_CACHE {
            out.push(Invalid {
                section: "factory",
                key: "vm_cache_number",
                value: f.vm_cache_number.to_string(),
                allowed: format!("0 to {MAX_VM_CACHE}"),
                related: None,
            });
        }
        // QEMU cannot migrate vhost-user-fs, so no template can be saved with virtio-fs.
        if f.enable_template && q.shared_fs == "virtio-fs" {
            out.push(Invalid {
                section: "factory",
                key: "enable_template",
                value: "true".into(),
                allowed: "false while [hypervisor.qemu] shared_fs = \"virtio-fs\" (a template VM needs \"virtio-9p\")".into(),
                related: None,
            });
        }
        out
    }

    /// Refuses values the runtime cannot use (run by [`Config::parse`]). `text` is the file
    /// `self` was read from, only used to name the line of the bad key.
    pub fn validate(&self, path: &Path, text: &str) -> Result<(), Error> {
        match self.invalid_values().into_iter().next() {
            None => Ok(()),
            Some(bad) => Err(Error::Key {
                path: path.to_path_buf(),
                line: key_line(text, bad.section, bad.key),
                section: bad.section.to_owned(),
                key: bad.key.to_owned(),
                reason: bad.reason(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Error};
    use std::path::Path;

    fn err(text: &str) -> String {
        match Config::parse(text, Path::new("/etc/x.toml")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().invalid_values(), vec![]);
    }

    #[test]
    fn bad_values_name_file_line_key_value_and_allowed() {
        assert_eq!(
            err("# c\n[hypervisor.qemu]\ndefault_vcpus = 2\nshared_fs = \"nfs\"\n"),
            "configuration file /etc/x.toml line 4: [hypervisor.qemu] shared_fs: bad value \"nfs\" (allowed: virtio-9p, virtio-fs)"
        );
        assert_eq!(
            err("[agent.kata]\n\ndial_timeout = 0\n"),
            "configuration file /etc/x.toml line 3: [agent.kata] dial_timeout: bad value 0 (allowed: 1 or more)"
        );
        // Dotted keys and inline tables are found too.
        assert_eq!(
            err("runtime.sandbox_stop_timeout = 0\n"),
            "configuration file /etc/x.toml line 1: [runtime] sandbox_stop_timeout: bad value 0 (allowed: 1 or more)"
        );
        assert_eq!(
            err("[hypervisor]\n\nqemu = { msize_9p = 10 }\n"),
            "configuration file /etc/x.toml line 3: [hypervisor.qemu] msize_9p: bad value 10 (allowed: 4096 to 1048576)"
        );
    }

    #[test]
    fn every_rule() {
        for (text, key) in [
            ("[hypervisor.qemu]\nmachine_type = \"virt\"", "machine_type"),
            ("[hypervisor.qemu]\nmachine_type = \"pc-\"", "machine_type"),
            ("[hypervisor.qemu]\ndefault_vcpus = 0", "default_vcpus"),
            ("[hypervisor.qemu]\ndefault_memory = 63", "default_memory"),
            ("[hypervisor.qemu]\nmsize_9p = 4095", "msize_9p"),
            ("[hypervisor.qemu]\nmsize_9p = 1048577", "msize_9p"),
            (
                "[hypervisor.qemu]\nvirtio_fs_cache = \"never\"",
                "virtio_fs_cache",
            ),
            ("[hypervisor.qemu]\naccelerator = \"hvf\"", "accelerator"),
            (
                "[hypervisor.qemu]\nblock_device_driver = \"virtio-scsi\"",
                "block_device_driver",
            ),
            ("[agent.kata]\nrequest_timeout = 0", "request_timeout"),
            (
                "[runtime]\ninternetworking_model = \"warp\"",
                "internetworking_model",
            ),
        ] {
            match Config::parse(text, Path::new("x.toml")) {
                Err(Error::Key { key: k, line, .. }) => {
                    assert_eq!((k.as_str(), line), (key, Some(2)), "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for ok in [
            "[hypervisor.qemu]\nmachine_type = \"pc\"",
            "[hypervisor.qemu]\nmachine_type = \"pc-q35-8.2\"",
            "[hypervisor.qemu]\nmachine_type = \"pc-i440fx-6.2\"",
            "[hypervisor.qemu]\nmsize_9p = 4096\ndefault_memory = 64",
            "[hypervisor.qemu]\ndefault_vcpus = 2\ndefault_maxvcpus = 2",
            "[hypervisor.qemu]\nshared_fs = \"virtio-fs\"\nvirtio_fs_cache = \"none\"",
            "[runtime]\ninternetworking_model = \"none\"",
        ] {
            if let Err(e) = Config::parse(ok, Path::new("x.toml")) {
                panic!("{ok}: {e}");
            }
        }
    }

    #[test]
    fn maxvcpus_below_vcpus() {
        assert_eq!(
            err("[hypervisor.qemu]\ndefault_vcpus = 4\ndefault_maxvcpus = 2\n"),
            "configuration file /etc/x.toml line 3: [hypervisor.qemu] default_maxvcpus: bad value 2 (allowed: 0 for the host's CPU count, or at least default_vcpus = 4)"
        );
    }

    #[test]
    fn bad_default_has_no_line() {
        // A value not written in the file (a default) has no line to point at.
        let mut c = Config::default();
        c.runtime.sandbox_stop_timeout = 0;
        assert_eq!(
            c.validate(Path::new("x.toml"), "[runtime]\n")
                .map_err(|e| e.to_string()),
            Err("configuration file x.toml: [runtime] sandbox_stop_timeout: bad value 0 (allowed: 1 or more)".into())
        );
    }
}
