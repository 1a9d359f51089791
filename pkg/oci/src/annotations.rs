use crate::Error;
use std::collections::HashMap;

/// What a container is, according to its engine's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerType {
    /// Gets a VM of its own (no annotation: docker, podman, plain CLI; or a pod's sandbox).
    Sandbox,
    /// Joins the running sandbox with this id.
    PodContainer { sandbox_id: String },
}

/// (type key, sandbox value, container value, sandbox-id key) for each engine Kata 1.x knew.
const ENGINES: [(&str, &str, &str, &str); 3] = [
    (
        "io.kubernetes.cri.container-type",
        "sandbox",
        "container",
        "io.kubernetes.cri.sandbox-id",
    ),
    (
        "io.kubernetes.cri-o.ContainerType",
        "sandbox",
        "container",
        "io.kubernetes.cri-o.SandboxID",
    ),
    (
        "io.kubernetes.docker.type",
        "podsandbox",
        "container",
        "io.kubernetes.sandbox.id",
    ),
];

pub fn container_type(
    annotations: Option<&HashMap<String, String>>,
) -> Result<ContainerType, Error> {
    let Some(annotations) = annotations else {
        return Ok(ContainerType::Sandbox);
    };
    for (type_key, sandbox, container, id_key) in ENGINES {
        let Some(value) = annotations.get(type_key) else {
            continue;
        };
        if value == sandbox {
            return Ok(ContainerType::Sandbox);
        }
        if value == container {
            let sandbox_id = annotations.get(id_key).filter(|s| !s.is_empty());
            let Some(sandbox_id) = sandbox_id else {
                return Err(Error::Annotation {
                    key: id_key.into(),
                    value: String::new(),
                    reason: "a container needs the id of its sandbox",
                });
            };
            crate::validate_id(sandbox_id)?;
            return Ok(ContainerType::PodContainer {
                sandbox_id: sandbox_id.clone(),
            });
        }
        return Err(Error::Annotation {
            key: type_key.into(),
            value: value.clone(),
            reason: "unknown container type",
        });
    }
    Ok(ContainerType::Sandbox)
}

/// Whether the annotations mark a pod's sandbox container (an engine's type key says so), as
/// opposed to a container that merely has a VM of its own.
pub fn is_pod_sandbox(annotations: &HashMap<String, String>) -> bool {
    ENGINES.iter().any(|(type_key, sandbox, _, _)| {
        annotations.get(*type_key).map(String::as_str) == Some(sandbox)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn types_from_each_engine() {
        assert_eq!(container_type(None).unwrap(), ContainerType::Sandbox);
        let cri = ann(&[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.sandbox-id", "pod1"),
        ]);
        assert_eq!(
            container_type(Some(&cri)).unwrap(),
            ContainerType::PodContainer {
                sandbox_id: "pod1".into()
            }
        );
        let docker = ann(&[("io.kubernetes.docker.type", "podsandbox")]);
        assert_eq!(
            container_type(Some(&docker)).unwrap(),
            ContainerType::Sandbox
        );
        let bad = ann(&[("io.kubernetes.cri-o.ContainerType", "weird")]);
        assert!(container_type(Some(&bad)).is_err());
        let no_id = ann(&[("io.kubernetes.cri.container-type", "container")]);
        assert!(container_type(Some(&no_id)).is_err());
    }
}
