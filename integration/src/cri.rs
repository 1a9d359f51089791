//! A small CRI client, the kubelet's part in a pod's life: the CRI `RuntimeService` (v1) over
//! gRPC on containerd's socket, each call synchronous with a deadline.

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

pub struct CriClient {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

/// A call's deadline: a VM boot under TCG takes seconds and the machine is shared.
const CALL: Duration = Duration::from_secs(120);

impl CriClient {
    pub fn connect(socket: &Path) -> CriClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let socket: PathBuf = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                // The URI is a placeholder: the connector dials the unix socket.
                Endpoint::try_from("http://[::]:50051")
                    .expect("endpoint")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let socket = socket.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(socket).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }))
                    .await
            })
            .expect("connecting to containerd's CRI socket");
        CriClient {
            rt,
            client: RuntimeServiceClient::new(channel),
        }
    }

    fn call<T, F, Fut>(&mut self, what: &str, f: F) -> Result<T, tonic::Status>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        let fut = f(client);
        self.rt.block_on(async {
            match tokio::time::timeout(CALL, fut).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "{what}: no answer within {CALL:?}"
                ))),
            }
        })
    }

    pub fn version(&mut self) -> Result<cri::VersionResponse, tonic::Status> {
        self.call("Version", |mut c| async move {
            c.version(cri::VersionRequest::default()).await
        })
    }

    pub fn run_pod_sandbox(
        &mut self,
        config: &cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        self.call("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(req).await
        })
        .map(|r| r.pod_sandbox_id)
    }

    pub fn create_container(
        &mut self,
        pod_id: &str,
        config: &cri::ContainerConfig,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        self.call("CreateContainer", |mut c| async move {
            c.create_container(req).await
        })
        .map(|r| r.container_id)
    }

    pub fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::StartContainerRequest {
            container_id: id.to_string(),
        };
        self.call("StartContainer", |mut c| async move {
            c.start_container(req).await
        })
        .map(|_| ())
    }

    /// stdout, stderr and exit code of `cmd` run in the container.
    pub fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
    ) -> Result<(String, String, i32), tonic::Status> {
        self.exec_sync_within(id, cmd, 60)
    }

    /// ExecSync with the kubelet's timeout in seconds (a probe's `timeoutSeconds`).
    pub fn exec_sync_within(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout_s: i64,
    ) -> Result<(String, String, i32), tonic::Status> {
        let req = cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_s,
        };
        self.call("ExecSync", |mut c| async move { c.exec_sync(req).await })
            .map(|r| {
                (
                    String::from_utf8_lossy(&r.stdout).into_owned(),
                    String::from_utf8_lossy(&r.stderr).into_owned(),
                    r.exit_code,
                )
            })
    }

    pub fn container_state(&mut self, id: &str) -> Result<i32, tonic::Status> {
        let req = cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        self.call("ContainerStatus", |mut c| async move {
            c.container_status(req).await
        })
        .map(|r| r.status.map(|s| s.state).unwrap_or(-1))
    }

    /// (state, exit code, reason) of a container, as a kubelet reads them.
    pub fn container_exit(&mut self, id: &str) -> Result<(i32, i32, String), tonic::Status> {
        let req = cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        self.call("ContainerStatus", |mut c| async move {
            c.container_status(req).await
        })
        .map(|r| {
            r.status
                .map(|s| (s.state, s.exit_code, s.reason))
                .unwrap_or((-1, -1, String::new()))
        })
    }

    /// CRI PortForward: the streaming URL containerd hands the kubelet for `port`.
    pub fn port_forward(&mut self, pod_id: &str, port: i32) -> Result<String, tonic::Status> {
        let req = cri::PortForwardRequest {
            pod_sandbox_id: pod_id.to_string(),
            port: vec![port],
        };
        self.call(
            "PortForward",
            |mut c| async move { c.port_forward(req).await },
        )
        .map(|r| r.url)
    }

    /// The pod's IP address as the CRI plugin got it from CNI.
    pub fn pod_ip(&mut self, pod_id: &str) -> Result<String, tonic::Status> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.to_string(),
            verbose: false,
        };
        self.call("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(req).await
        })
        .map(|r| {
            r.status
                .and_then(|s| s.network)
                .map(|n| n.ip)
                .unwrap_or_default()
        })
    }

    pub fn stop_container(&mut self, id: &str, timeout_s: i64) -> Result<(), tonic::Status> {
        let req = cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout: timeout_s,
        };
        self.call("StopContainer", |mut c| async move {
            c.stop_container(req).await
        })
        .map(|_| ())
    }

    pub fn remove_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.call("RemoveContainer", |mut c| async move {
            c.remove_container(req).await
        })
        .map(|_| ())
    }

    /// UpdateContainerResources with a new memory limit, as `kubectl` resizing a pod does.
    pub fn update_memory_limit(&mut self, id: &str, bytes: i64) -> Result<(), tonic::Status> {
        let req = cri::UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: bytes,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.call("UpdateContainerResources", |mut c| async move {
            c.update_container_resources(req).await
        })
        .map(|_| ())
    }

    pub fn stop_pod_sandbox(&mut self, pod_id: &str) -> Result<(), tonic::Status> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        };
        self.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(req).await
        })
        .map(|_| ())
    }

    pub fn remove_pod_sandbox(&mut self, pod_id: &str) -> Result<(), tonic::Status> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        };
        self.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(req).await
        })
        .map(|_| ())
    }
}

/// The kubelet-like configuration of a pod named `name` (its logs under `log_dir`).
pub fn pod_config(name: &str, log_dir: &Path, host_network: bool) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: "default".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_dir.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: if host_network {
                        cri::NamespaceMode::Node as i32
                    } else {
                        cri::NamespaceMode::Pod as i32
                    },
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container of the pod running `command` from `image`, logging to `<name>.log`.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// A privileged pod's configuration: `pod_config` with `privileged: true`.
pub fn privileged_pod_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    let mut c = pod_config(name, log_dir, false);
    if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        sc.privileged = true;
    }
    c
}

/// A privileged container (CRI's `privileged: true`: every capability, no masked paths, and
/// unless the handler says `privileged_without_host_devices`, every host device).
pub fn privileged_container_config(
    name: &str,
    image: &str,
    command: &[&str],
) -> cri::ContainerConfig {
    let mut c = container_config(name, image, command);
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

/// CRI's `ContainerState::CONTAINER_RUNNING`.
pub const CONTAINER_RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
/// CRI's `ContainerState::CONTAINER_EXITED`.
pub const CONTAINER_EXITED: i32 = cri::ContainerState::ContainerExited as i32;
