//! containerd's runc v2 shim (`io.containerd.runc.v2`) with kata-runtime as its binary: how a
//! runc-compatible runtime plugs into containerd 1.7 and 2.x, where the v1 runtime is
//! deprecated or gone. Through `ctr run --runc-binary` and through the CRI plugin (a runtime
//! handler with `BinaryName` and `Root`), with a containerd of the test's own.
//!
//! What differs from the v1 shim: the shim is one process per pod (it groups a pod's
//! containers by the CRI sandbox id), it passes `--log <bundle>/log.json --log-format json`
//! and `--pid-file <bundle>/init.pid`, and it is the subreaper of the kata-shims (the pids in
//! the pid files), whose exits it reports.

use integration_tests::containerd::{Containerd, CRI_HANDLER};
use integration_tests::cri::{self, CriClient};
use integration_tests::{assert_guest_kernel, lines, poll, IMAGE, T};
use std::path::Path;
use std::time::Duration;

/// Processes of this test whose command line contains `what`.
fn processes(dir: &Path, what: &str) -> usize {
    let me = dir.to_string_lossy().into_owned();
    e2e_tests::processes_mentioning(&me)
        .iter()
        .filter(|(_, cmd)| cmd.contains(what))
        .count()
}

/// `ctr run --rm` (output, exit code; a guest OOM kill's 137), `run -d` + `task exec` (exit
/// code), `task ps` (the host's kata-shims, matched to the exec by containerd), `task kill`,
/// `task rm`.
#[test]
fn runc_v2_shim_under_ctr() {
    let c = Containerd::start();
    let out = e2e_tests::run_cmd(
        c.run_v2_command(&["--rm", IMAGE, "v2-rm", "sh", "-c", "uname -r; exit 5"]),
        b"",
        T,
    );
    assert_eq!(
        out.code(),
        5,
        "ctr run: {} {}",
        out.stdout_str(),
        out.stderr
    );
    assert_guest_kernel(&out.stdout_str());
    c.work.assert_called(&[
        "log.json --log-format json create --bundle",
        "--pid-file",
        "init.pid v2-rm",
    ]);

    // A container killed by the guest's OOM killer: exit 137 (the shim's OOM event watches
    // the kata-shim's host cgroup, where no OOM happens: see the README).
    let checker = e2e_tests::bin_dir().join("kata-spec-checker");
    let mount = format!(
        "type=bind,src={},dst=/kata-spec-checker,options=rbind:ro",
        checker.display()
    );
    let out = e2e_tests::run_cmd(
        c.run_v2_command(&[
            "--rm",
            "--memory-limit",
            "16777216",
            "--cap-add",
            "CAP_IPC_LOCK",
            "--mount",
            &mount,
            IMAGE,
            "v2-oom",
            "/kata-spec-checker",
            "--hold-mem-locked",
            "64",
        ]),
        b"",
        T,
    );
    assert_eq!(out.code(), 137, "OOM: {} {}", out.stdout_str(), out.stderr);

    let out = e2e_tests::run_cmd(
        c.run_v2_command(&["-d", IMAGE, "v2d", "sleep", "1000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    c.wait_task_status("v2d", "RUNNING", T);
    let out = e2e_tests::run_cmd(
        c.exec_command(&["--exec-id", "e1", "v2d", "sh", "-c", "echo in-exec; exit 4"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 4, "ctr task exec: {}", out.stderr);
    assert_eq!(lines(&out.stdout_str()), ["in-exec"]);
    let out = e2e_tests::run_cmd(
        c.exec_command(&["--exec-id", "e2", "-d", "v2d", "sleep", "999"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr task exec -d: {}", out.stderr);
    // ps: the pids of the kata-shims; containerd names the exec's by its id (it matches the
    // pid of the exec's pid file).
    let mut shown = String::new();
    let listed = poll(Duration::from_secs(20), || {
        shown = c.ctr(&["task", "ps", "v2d"]).stdout_str();
        shown.lines().skip(1).count() == 2 && shown.contains("e2")
    });
    assert!(listed, "ctr task ps: {shown}");
    let out = c.ctr(&["task", "kill", "-s", "9", "v2d"]);
    assert_eq!(out.code(), 0, "ctr task kill: {}", out.stderr);
    c.wait_task_status("v2d", "STOPPED", T);
    let out = c.ctr(&["task", "rm", "v2d"]);
    assert_eq!(out.code(), 0, "ctr task rm: {}", out.stderr);
    assert_eq!(
        processes(c.work.path(), "qemu-system"),
        0,
        "the VM outlived its container"
    );
    let out = c.ctr(&["containers", "rm", "v2d"]);
    assert_eq!(out.code(), 0, "ctr containers rm: {}", out.stderr);
    c.work.assert_called(&["ps --format json v2d"]);
    c.work
        .assert_called(&["exec --process", "--detach", "--pid-file"]);
    c.finish();
}

/// A pod through the CRI plugin with the runc v2 shim: one shim process and one VM for the
/// pod, exec, a container's own exit status, StopContainer, StopPodSandbox, clean-up.
#[test]
fn runc_v2_shim_under_cri() {
    let dir = std::env::temp_dir().join(format!("kt-cni-v2-{}", std::process::id()));
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let json = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "kata-runc-v2",
        "plugins": [{
            "type": "bridge", "bridge": "ktcni5", "isGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.203.5.0/24",
                     "gateway": "10.203.5.1"}]], "dataDir": dir.join("ipam")}
        }]
    });
    std::fs::write(conf.join("10-kata.conflist"), json.to_string()).unwrap();
    struct Bridge(std::path::PathBuf);
    impl Drop for Bridge {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", "ktcni5"])
                .status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _bridge = Bridge(dir.clone());
    let c = Containerd::start_with_cri_runc_v2(&conf);
    let mut client = CriClient::connect(&c.socket());
    let logs = c.work.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pod_config = cri::pod_config("v2-pod", &logs, false);
    let pod = client
        .run_pod_sandbox(&pod_config, CRI_HANDLER)
        .expect("RunPodSandbox");
    let mut ids = Vec::new();
    for (name, command) in [
        ("long", vec!["sleep", "1000"]),
        ("quick", vec!["sh", "-c", "exit 3"]),
    ] {
        let config = cri::container_config(name, IMAGE, &command);
        let id = client
            .create_container(&pod, &config, &pod_config)
            .expect("CreateContainer");
        client.start_container(&id).expect("StartContainer");
        ids.push(id);
    }
    // The whole pod: one VM, one runc v2 shim.
    assert_eq!(
        processes(c.work.path(), "qemu-system"),
        1,
        "one QEMU per pod"
    );
    let shims = e2e_tests::processes_mentioning(&c.work.path().to_string_lossy())
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("containerd-shim-runc-v2"))
        .count();
    assert_eq!(shims, 1, "one runc v2 shim per pod");
    let (out, err, code) = client
        .exec_sync(&ids[0], &["uname", "-r"])
        .expect("ExecSync");
    assert_eq!(code, 0, "ExecSync: {err}");
    assert_guest_kernel(out.trim());
    let (_, _, code) = client
        .exec_sync(&ids[0], &["sh", "-c", "exit 9"])
        .expect("ExecSync");
    assert_eq!(code, 9, "ExecSync's exit code");
    let mut last = (0, 0, String::new());
    let exited = poll(Duration::from_secs(30), || {
        last = client.container_exit(&ids[1]).unwrap_or_default();
        last.0 == cri::CONTAINER_EXITED
    });
    assert!(exited, "quick did not exit: {last:?}");
    assert_eq!(last.1, 3, "quick's exit code: {last:?}");
    client.stop_container(&ids[0], 2).expect("StopContainer");
    let (state, code, _) = client.container_exit(&ids[0]).expect("ContainerStatus");
    // The pod's pid namespace is shared (CRI's default, POD): sleep is not its PID 1 and
    // dies of the TERM, as under runc.
    assert_eq!((state, code), (cri::CONTAINER_EXITED, 143));
    client.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    client.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    assert_eq!(
        processes(c.work.path(), "qemu-system"),
        0,
        "the pod's VM is gone"
    );
    c.work.assert_called(&[
        &format!("--root {}", c.work.kata_root().join("k8s.io").display()),
        "create --bundle",
    ]);
    drop(client);
    c.finish();
}
