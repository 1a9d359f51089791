//! Per-pod overrides of the configuration from OCI annotations (Kata 1.x names,
//! `io.katacontainers.config.<section>.<key>`).
//!
//! Annotations come from whoever may create a pod, not from the host's administrator, so only
//! sizing and behaviour switches are accepted: an override of a path or a command line
//! (`hypervisor.path`, `hypervisor.kernel`, `hypervisor.kernel_params`, `proxy.path`, ...) would
//! let a pod make the host run a binary or boot a kernel of its choosing.

use std::collections::HashMap;

use crate::error::{one_line, Error};
use crate::Config;

pub const ANNOTATION_PREFIX: &str = "io.katacontainers.config.";

/// Where an override lands; fn pointers so the name, the field and its type sit on one line of
/// [`OVERRIDES`] and cannot get out of step.
enum Field {
    U32(fn(&mut Config) -> &mut u32),
    Bool(fn(&mut Config) -> &mut bool),
    Str(fn(&mut Config) -> &mut String),
}

struct Override {
    /// Annotation name after [`ANNOTATION_PREFIX`].
    name: &'static str,
    /// Dotted section and key of the file the annotation overrides.
    section: &'static str,
    key: &'static str,
    field: Field,
}

const OVERRIDES: &[Override] = &[
    Override {
        name: "hypervisor.default_vcpus",
        section: "hypervisor.qemu",
        key: "default_vcpus",
        field: Field::U32(|c| &mut c.hypervisor.qemu.default_vcpus),
    },
    Override {
        name: "hypervisor.default_memory",
        section: "hypervisor.qemu",
        key: "default_memory",
        field: Field::U32(|c| &mut c.hypervisor.qemu.default_memory),
    },
    Override {
        name: "hypervisor.default_maxvcpus",
        section: "hypervisor.qemu",
        key: "default_maxvcpus",
        field: Field::U32(|c| &mut c.hypervisor.qemu.default_maxvcpus),
    },
    Override {
        name: "hypervisor.msize_9p",
        section: "hypervisor.qemu",
        key: "msize_9p",
        field: Field::U32(|c| &mut c.hypervisor.qemu.msize_9p),
    },
    Override {
        name: "hypervisor.shared_fs",
        section: "hypervisor.qemu",
        key: "shared_fs",
        field: Field::Str(|c| &mut c.hypervisor.qemu.shared_fs),
    },
    Override {
        name: "hypervisor.virtio_fs_cache",
        section: "hypervisor.qemu",
        key: "virtio_fs_cache",
        field: Field::Str(|c| &mut c.hypervisor.qemu.virtio_fs_cache),
    },
    Override {
        name: "hypervisor.block_device_driver",
        section: "hypervisor.qemu",
        key: "block_device_driver",
        field: Field::Str(|c| &mut c.hypervisor.qemu.block_device_driver),
    },
    Override {
        name: "hypervisor.disable_block_device_use",
        section: "hypervisor.qemu",
        key: "disable_block_device_use",
        field: Field::Bool(|c| &mut c.hypervisor.qemu.disable_block_device_use),
    },
    Override {
        name: "hypervisor.enable_debug",
        section: "hypervisor.qemu",
        key: "enable_debug",
        field: Field::Bool(|c| &mut c.hypervisor.qemu.enable_debug),
    },
    Override {
        name: "runtime.internetworking_model",
        section: "runtime",
        key: "internetworking_model",
        field: Field::Str(|c| &mut c.runtime.internetworking_model),
    },
    Override {
        name: "agent.enable_debug",
        section: "agent.kata",
        key: "enable_debug",
        field: Field::Bool(|c| &mut c.agent.kata.enable_debug),
    },
];

/// The accepted names after [`ANNOTATION_PREFIX`].
pub fn allowed_annotations() -> Vec<&'static str> {
    OVERRIDES.iter().map(|o| o.name).collect()
}

/// Go's `strconv.ParseBool` spellings, which Kata 1.x accepted.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl Override {
    /// Parses `value` for this field's type and stores it; the error is the reason for the
    /// annotation's error line.
    fn set(&self, config: &mut Config, value: &str) -> Result<(), String> {
        // Debug-quoted: the value is the pod's, and may hold a line break.
        let bad = |expected: &str| format!("bad value {value:?} (expected {expected})");
        match self.field {
            Field::U32(field) => {
                *field(config) = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("an integer from 0 to 4294967295"))?;
            }
            Field::Bool(field) => {
                *field(config) = parse_bool(value.trim()).ok_or_else(|| bad("true or false"))?;
            }
            Field::Str(field) => *field(config) = value.to_owned(),
        }
        Ok(())
    }
}

impl Config {
    /// Applies the pod's `io.katacontainers.config.*` annotations (other annotations are
    /// ignored) and returns the names applied, sorted, for logging. Nothing is changed on error:
    /// an annotation outside the safe list, a value that does not parse, or a value the file
    /// could not hold either ([`Config::validate`]'s rules).
    pub fn apply_annotations(
        &mut self,
        annotations: &HashMap<String, String>,
    ) -> Result<Vec<String>, Error> {
        let mut ours: Vec<(&String, &String)> = annotations
            .iter()
            .filter(|(name, _)| name.starts_with(ANNOTATION_PREFIX))
            .collect();
        // Sorted so that, of several bad annotations, the same one is reported every time.
        ours.sort();
        let mut next = self.clone();
        let mut applied: Vec<(&String, &Override)> = Vec::new();
        for (name, value) in ours {
            let short = name.get(ANNOTATION_PREFIX.len()..).unwrap_or_default();
            let Some(o) = OVERRIDES.iter().find(|o| o.name == short) else {
                return Err(Error::AnnotationNotAllowed {
                    name: one_line(name),
                    allowed: allowed_annotations().join(", "),
                });
            };
            o.set(&mut next, value)
                .map_err(|reason| Error::Annotation {
                    name: name.clone(),
                    reason,
                })?;
            applied.push((name, o));
        }
        // Only a rule broken by an applied override is its error: an unrelated bad value came
        // from elsewhere (the file was already validated) and is not this pod's doing.
        for bad in next.invalid_values() {
            let culprit = applied.iter().find(|(_, o)| {
                o.section == bad.section && (o.key == bad.key || Some(o.key) == bad.related)
            });
            if let Some((name, _)) = culprit {
                return Err(Error::Annotation {
                    name: (*name).clone(),
                    reason: format!("[{}] {}: {}", bad.section, bad.key, bad.reason()),
                });
            }
        }
        for (name, o) in &applied {
            log::info!(
                "annotation {name} = {:?} overrides [{}] {}",
                annotations
                    .get(*name)
                    .map(String::as_str)
                    .unwrap_or_default(),
                o.section,
                o.key
            );
        }
        *self = next;
        Ok(applied.into_iter().map(|(name, _)| name.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn applies_safe_overrides() {
        let mut c = Config::default();
        let applied = c
            .apply_annotations(&annotations(&[
                ("io.katacontainers.config.hypervisor.default_vcpus", "2"),
                ("io.katacontainers.config.hypervisor.default_memory", "1024"),
                ("io.katacontainers.config.hypervisor.default_maxvcpus", "4"),
                ("io.katacontainers.config.hypervisor.msize_9p", "8192"),
                ("io.katacontainers.config.hypervisor.shared_fs", "virtio-fs"),
                (
                    "io.katacontainers.config.hypervisor.virtio_fs_cache",
                    "none",
                ),
                (
                    "io.katacontainers.config.hypervisor.block_device_driver",
                    "virtio-blk",
                ),
                (
                    "io.katacontainers.config.hypervisor.disable_block_device_use",
                    "true",
                ),
                ("io.katacontainers.config.hypervisor.enable_debug", "1"),
                (
                    "io.katacontainers.config.runtime.internetworking_model",
                    "macvtap",
                ),
                ("io.katacontainers.config.agent.enable_debug", "True"),
                ("io.kubernetes.cri.sandbox-id", "abc"),
            ]))
            .unwrap();
        assert_eq!(applied.len(), OVERRIDES.len());
        assert!(applied.windows(2).all(|w| w[0] < w[1]));
        let q = &c.hypervisor.qemu;
        assert_eq!(
            (
                q.default_vcpus,
                q.default_memory,
                q.default_maxvcpus,
                q.msize_9p
            ),
            (2, 1024, 4, 8192)
        );
        assert_eq!(
            (q.shared_fs.as_str(), q.virtio_fs_cache.as_str()),
            ("virtio-fs", "none")
        );
        assert!(q.disable_block_device_use && q.enable_debug && c.agent.kata.enable_debug);
        assert_eq!(c.runtime.internetworking_model, "macvtap");
    }

    #[test]
    fn ignores_other_annotations() {
        let mut c = Config::default();
        let applied = c
            .apply_annotations(&annotations(&[
                ("io.kubernetes.cri.container-type", "sandbox"),
                ("io.katacontainers.pkg.oci.bundle_path", "/x"),
                ("hypervisor.kernel", "/tmp/evil"),
            ]))
            .unwrap();
        assert!(applied.is_empty());
        assert_eq!(c, Config::default());
    }

    #[test]
    fn refuses_paths_and_command_lines() {
        for name in [
            "hypervisor.path",
            "hypervisor.kernel",
            "hypervisor.initrd",
            "hypervisor.kernel_params",
            "hypervisor.virtio_fs_daemon",
            "hypervisor.machine_type",
            "proxy.path",
            "shim.path",
            "runtime.vm_dir",
        ] {
            let mut c = Config::default();
            let full = format!("{ANNOTATION_PREFIX}{name}");
            let e = c
                .apply_annotations(&annotations(&[
                    (&full, "/tmp/evil"),
                    ("io.katacontainers.config.hypervisor.default_vcpus", "2"),
                ]))
                .unwrap_err();
            assert!(
                matches!(&e, Error::AnnotationNotAllowed { name: n, .. } if *n == full),
                "{e:?}"
            );
            assert_eq!(c, Config::default(), "nothing applied on error");
        }
        let e = Config::default()
            .apply_annotations(&annotations(&[(
                "io.katacontainers.config.hypervisor.kernel",
                "/tmp/vmlinux",
            )]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "annotation io.katacontainers.config.hypervisor.kernel is not allowed (allowed: \
             hypervisor.default_vcpus, hypervisor.default_memory, hypervisor.default_maxvcpus, \
             hypervisor.msize_9p, hypervisor.shared_fs, hypervisor.virtio_fs_cache, \
             hypervisor.block_device_driver, hypervisor.disable_block_device_use, \
             hypervisor.enable_debug, runtime.internetworking_model, agent.enable_debug)"
        );
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let cases = [
            (
                ("io.katacontainers.config.hypervisor.default_vcpus", "two"),
                "annotation io.katacontainers.config.hypervisor.default_vcpus: bad value \"two\" (expected an integer from 0 to 4294967295)",
            ),
            (
                ("io.katacontainers.config.hypervisor.default_memory", "-1"),
                "annotation io.katacontainers.config.hypervisor.default_memory: bad value \"-1\" (expected an integer from 0 to 4294967295)",
            ),
            (
                ("io.katacontainers.config.agent.enable_debug", "yes\nplease"),
                "annotation io.katacontainers.config.agent.enable_debug: bad value \"yes\\nplease\" (expected true or false)",
            ),
            (
                ("io.katacontainers.config.hypervisor.shared_fs", "nfs"),
                "annotation io.katacontainers.config.hypervisor.shared_fs: [hypervisor.qemu] shared_fs: bad value \"nfs\" (allowed: virtio-9p, virtio-fs)",
            ),
            (
                ("io.katacontainers.config.hypervisor.default_memory", "32"),
                "annotation io.katacontainers.config.hypervisor.default_memory: [hypervisor.qemu] default_memory: bad value 32 (allowed: 64 or more)",
            ),
            (
                ("io.katacontainers.config.runtime.internetworking_model", "warp"),
                "annotation io.katacontainers.config.runtime.internetworking_model: [runtime] internetworking_model: bad value \"warp\" (allowed: tcfilter, macvtap, bridged, none)",
            ),
        ];
        for ((name, value), want) in cases {
            let mut c = Config::default();
            let e = c
                .apply_annotations(&annotations(&[(name, value)]))
                .unwrap_err();
            assert_eq!(e.to_string(), want);
            assert_eq!(c, Config::default(), "nothing applied on error");
        }
    }

    #[test]
    fn cross_key_rules_see_all_overrides() {
        // Applied together, maxvcpus 8 and vcpus 4 are fine whatever the order.
        let mut c = Config::default();
        c.hypervisor.qemu.default_maxvcpus = 2;
        c.apply_annotations(&annotations(&[
            ("io.katacontainers.config.hypervisor.default_maxvcpus", "8"),
            ("io.katacontainers.config.hypervisor.default_vcpus", "4"),
        ]))
        .unwrap();
        assert_eq!(c.hypervisor.qemu.default_vcpus, 4);
        // vcpus above the file's maxvcpus: the vcpus annotation is the one to blame.
        let mut c = Config::default();
        c.hypervisor.qemu.default_maxvcpus = 2;
        let e = c
            .apply_annotations(&annotations(&[(
                "io.katacontainers.config.hypervisor.default_vcpus",
                "4",
            )]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "annotation io.katacontainers.config.hypervisor.default_vcpus: [hypervisor.qemu] default_maxvcpus: bad value 2 (allowed: 0 for the host's CPU count, or at least default_vcpus = 4)"
        );
    }
}
