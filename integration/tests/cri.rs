//! Pods through containerd's CRI plugin, as a kubelet drives them: kata-runtime is the runtime
//! handler behind the v1 runtime (containerd-shim), the pod network comes from CNI (Debian's
//! bridge + host-local plugins on a subnet only this test uses). The real CRI plugin routes the
//! pod's containers into the sandbox's VM with its annotations: one QEMU for the whole pod.

use integration_tests::containerd::{Containerd, CRI_HANDLER};
use integration_tests::cri::{self, CriClient};
use integration_tests::{assert_guest_kernel, IMAGE};
use std::path::Path;
use std::process::Command;

/// The bridge the CNI configuration names; made by the bridge plugin on first use, removed
/// by the test.
const BRIDGE: &str = "ktcni0";
const SUBNET: &str = "10.202.0.0/24";
const GATEWAY: &str = "10.202.0.1";

fn write_cni_config(dir: &Path, ipam_dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "kata-cri-test",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir,
            }
        }]
    });
    std::fs::write(dir.join("10-kata-cri-test.conflist"), conf.to_string()).unwrap();
}

/// QEMU processes of this test (their command lines name its folder).
fn qemus(dir: &Path) -> usize {
    let me = dir.to_string_lossy().into_owned();
    e2e_tests::processes_mentioning(&me)
        .iter()
        .filter(|(_, cmd)| cmd.contains("qemu-system"))
        .count()
}

struct BridgeGuard;
impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    }
}

#[test]
fn cri_pod_with_two_containers_shares_one_vm() {
    let _bridge = BridgeGuard;
    let cni_dir = std::env::temp_dir().join(format!("kt-cni-{}", std::process::id()));
    let c = {
        // The CNI configuration must exist before containerd's CRI plugin starts.
        write_cni_config(&cni_dir.join("conf"), &cni_dir.join("ipam"));
        Containerd::start_with_cri(&cni_dir.join("conf"))
    };
    let mut client = CriClient::connect(&c.socket());
    let v = client.version().expect("CRI Version");
    eprintln!("CRI: {} {}", v.runtime_name, v.runtime_version);

    let logs = c.work.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pod_config = cri::pod_config("kata-pod", &logs, false);
    let pod = client
        .run_pod_sandbox(&pod_config, CRI_HANDLER)
        .expect("RunPodSandbox");
    let ip = client.pod_ip(&pod).expect("PodSandboxStatus");
    assert!(ip.starts_with("10.202.0."), "pod IP from CNI: {ip:?}");

    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let config = cri::container_config(name, IMAGE, &["sleep", "1000"]);
        let id = client
            .create_container(&pod, &config, &pod_config)
            .expect("CreateContainer");
        client.start_container(&id).expect("StartContainer");
        assert_eq!(
            client.container_state(&id).expect("ContainerStatus"),
            cri::CONTAINER_RUNNING
        );
        ids.push(id);
    }
    // One VM for the pod: the sandbox and both containers.
    assert_eq!(qemus(c.work.path()), 1, "one QEMU per pod");

    for id in &ids {
        let (out, err, code) = client.exec_sync(id, &["uname", "-r"]).expect("ExecSync");
        assert_eq!(code, 0, "ExecSync: {err}");
        assert_guest_kernel(out.trim());
    }
    // Both containers see the pod's network (CNI's address on the guest NIC) and reach the
    // gateway on the test's bridge.
    let (out, err, code) = client
        .exec_sync(&ids[1], &["ip", "-o", "-4", "addr", "show", "eth0"])
        .expect("ExecSync ip addr");
    assert_eq!(code, 0, "ip addr: {err}");
    assert!(out.contains(&format!("inet {ip}/24")), "{out}");
    let (out, err, code) = client
        .exec_sync(&ids[0], &["ping", "-c", "1", "-W", "5", GATEWAY])
        .expect("ExecSync ping");
    assert_eq!(code, 0, "ping of the CNI gateway: {out} {err}");
    // A file written by one container is not the other's (separate rootfs), but they share
    // the VM's kernel.
    let (k0, _, _) = client
        .exec_sync(&ids[0], &["cat", "/proc/sys/kernel/random/boot_id"])
        .unwrap();
    let (k1, _, _) = client
        .exec_sync(&ids[1], &["cat", "/proc/sys/kernel/random/boot_id"])
        .unwrap();
    assert_eq!(k0, k1, "the pod's containers run on one guest kernel");

    for id in &ids {
        client.stop_container(id, 2).expect("StopContainer");
    }
    client.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    client.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    assert_eq!(qemus(c.work.path()), 0, "the pod's VM is gone");
    c.work
        .assert_called(&["io.containerd.runtime.v1.linux", "create --bundle"]);
    drop(client);
    c.finish();
    let _ = std::fs::remove_dir_all(&cni_dir);
}

/// A host-network pod is refused clearly (a VM cannot share the host's network stack), as
/// Kata 1.x did, and nothing is left.
#[test]
fn cri_host_network_pod_is_refused() {
    let cni_dir = std::env::temp_dir().join(format!("kt-cni-host-{}", std::process::id()));
    write_cni_config(&cni_dir.join("conf"), &cni_dir.join("ipam"));
    let c = Containerd::start_with_cri(&cni_dir.join("conf"));
    let mut client = CriClient::connect(&c.socket());
    let logs = c.work.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let err = client
        .run_pod_sandbox(&cri::pod_config("host-pod", &logs, true), CRI_HANDLER)
        .expect_err("a host-network pod must be refused");
    assert!(err.message().contains("host networking"), "{err}");
    drop(client);
    c.finish();
    let _ = std::fs::remove_dir_all(&cni_dir);
}
