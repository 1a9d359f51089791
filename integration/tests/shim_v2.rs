//! Our containerd shim v2 (`containerd-shim-kata-v2`, runtime `io.containerd.kata.v2`): one
//! process per pod speaking containerd's task API, the agent reached in-process (no
//! kata-proxy, no kata-shim, no containerd-shim), on the same sandbox library as kata-runtime.
//! Through `ctr` and through containerd's CRI plugin, with a containerd of the test's own.

use integration_tests::containerd::Containerd;
use integration_tests::{assert_guest_kernel, IMAGE, T};
use std::path::Path;

/// Processes of this test whose command line contains `what`.
fn processes(dir: &Path, what: &str) -> usize {
    let me = dir.to_string_lossy().into_owned();
    e2e_tests::processes_mentioning(&me)
        .iter()
        .filter(|(_, cmd)| cmd.contains(what))
        .count()
}

/// `ctr run --rm`: the guest's kernel, stdout and stderr apart, stdin, the exit code.
#[test]
fn kata_v2_run_rm() {
    let c = Containerd::start();
    let out = e2e_tests::run_cmd(
        c.run_kata_v2_command(&[
            "--rm",
            IMAGE,
            "v2-rm",
            "sh",
            "-c",
            "uname -r; read line; echo \"got $line\"; echo oops >&2; exit 5",
        ]),
        b"hello\n",
        T,
    );
    assert_eq!(
        out.code(),
        5,
        "ctr run: {} {}",
        out.stdout_str(),
        out.stderr
    );
    let stdout = out.stdout_str();
    assert_guest_kernel(&stdout);
    assert!(stdout.contains("got hello"), "stdout: {stdout}");
    assert!(out.stderr.contains("oops"), "stderr: {}", out.stderr);
    assert!(!stdout.contains("oops"), "stderr in stdout: {stdout}");
    assert_eq!(processes(c.work.path(), "kata-proxy"), 0);
    c.finish();
}
