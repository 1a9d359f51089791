//! What a host kernel gives containers, the guest kernel gives too (issue 18): inside a
//! container with CAP_NET_ADMIN and CAP_SYS_ADMIN, a bridge, a veth pair and an iptables-nft NAT
//! rule (Debian's own iptables, with its libraries, copied into the rootfs); a FUSE filesystem
//! mounted through /dev/fuse and served; an overlay mount. And the container sees the guest's
//! kernel, not the host's.

use e2e_tests::{edit_spec, Env};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(180);

/// Copies a host program into `rootfs` at `as_path`, with every shared library `ldd` names at
/// the same paths (so the dynamic loader finds them inside the container).
fn install_host_program(rootfs: &Path, program: &str, as_path: &str) {
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    };
    copy(
        Path::new(program),
        &rootfs.join(as_path.trim_start_matches('/')),
    );
    let ldd = Command::new("ldd").arg(program).output().unwrap();
    assert!(ldd.status.success(), "ldd {program}");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            copy(Path::new(path), &rootfs.join(path.trim_start_matches('/')));
        }
    }
}

/// Debian's iptables (the nft flavour) and its extensions, as /sbin/iptables.
fn install_iptables(rootfs: &Path) {
    let multi = "/usr/sbin/xtables-nft-multi";
    install_host_program(rootfs, multi, "/sbin/iptables");
    let ext = Path::new("/usr/lib/x86_64-linux-gnu/xtables");
    let dest = rootfs.join(ext.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&dest).unwrap();
    for entry in std::fs::read_dir(ext).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
}

const SCRIPT: &str = r#"
set -e
echo "kernel $(uname -r)"
ip link add br0 type bridge
# (busybox's ip cannot name the peer: it gets the kernel's name, veth0)
ip link add kv0 type veth
ip addr add 10.99.0.1/24 dev br0
ip link set br0 up
ip link set kv0 master br0
[ -d /sys/class/net/br0/bridge ] && [ -e /sys/class/net/br0/brif/kv0 ] && echo "bridge ok"
peer=$(cat /sys/class/net/kv0/iflink)
for dev in /sys/class/net/*; do
    [ "$(cat $dev/ifindex)" = "$peer" ] && [ "$(cat $dev/iflink)" = "$(cat /sys/class/net/kv0/ifindex)" ] && echo "veth ok"
done
/sbin/iptables -t nat -A POSTROUTING -s 10.99.0.0/24 ! -o br0 -j MASQUERADE
/sbin/iptables -t nat -S POSTROUTING | grep -q MASQUERADE && echo "nat ok"
mount -t tmpfs tmpfs /work
mkdir /work/lower /work/upper /work/ovlwork /work/merged
echo below > /work/lower/f
mount -t overlay overlay -o lowerdir=/work/lower,upperdir=/work/upper,workdir=/work/ovlwork /work/merged
echo above > /work/merged/g
[ "$(cat /work/merged/f)" = below ] && [ "$(cat /work/upper/g)" = above ] && echo "overlay ok"
/kata-spec-checker --fuse-mount /work/fuse && echo "fuse ok"
"#;

#[test]
fn vm_container_gets_a_host_kernels_features() {
    if !Path::new("/usr/sbin/xtables-nft-multi").exists() {
        panic!("iptables (nft) is missing on the host: make deps installs it");
    }
    let env = Env::new();
    let b = env.bundle("feat", &["sh", "-c", SCRIPT]);
    let rootfs = b.join("rootfs");
    install_iptables(&rootfs);
    std::fs::create_dir_all(rootfs.join("work")).unwrap();
    std::fs::copy(
        e2e_tests::bin_dir().join("kata-spec-checker"),
        rootfs.join("kata-spec-checker"),
    )
    .unwrap();
    edit_spec(&b, |s| {
        let caps = json!([
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_SYS_ADMIN",
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_MKNOD"
        ]);
        s["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
        // /dev/fuse (10:229), as `docker run --device /dev/fuse` gives it.
        s["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10,
            "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0}]);
        s["linux"]["resources"] = json!({"devices": [{"allow": true, "type": "c",
            "major": 10, "minor": 229, "access": "rwm"}]});
    });
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "feat"], b"", T);
    println!("{}\n{}", out.stdout_str(), out.stderr);
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout_str(), out.stderr);
    let stdout = out.stdout_str();
    for line in ["bridge ok", "veth ok", "nat ok", "overlay ok", "fuse ok"] {
        assert!(
            stdout.contains(line),
            "{line} missing:\n{stdout}\n{}",
            out.stderr
        );
    }
    let kernel = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kernel "))
        .unwrap_or_default()
        .to_string();
    assert_ne!(kernel, e2e_tests::host_kernel_release(), "{stdout}");
    env.assert_clean();
}

/// The image's manifest names the kernel it was built from; `kata-env` and `kata-check` say
/// which one (release, where from, configuration hash).
#[test]
fn kata_env_and_check_name_the_guest_kernel() {
    let env = Env::new();
    let manifest_path = e2e_tests::bin_dir()
        .join("../../../build/guest/manifest.json")
        .canonicalize();
    let out = env.run(&["kata-env", "--json"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let guest = &doc["guest"];
    assert!(
        guest["kernel_release"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{guest}"
    );
    let config_hash = guest["kernel_config_sha256"].as_str().unwrap_or_default();
    assert_eq!(config_hash.len(), 64, "{guest}");
    if let Ok(path) = manifest_path {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(guest["kernel_release"], manifest["kernel_release"]);
        assert_eq!(
            guest["kernel_config_sha256"],
            manifest["kernel_config_sha256"]
        );
        assert_eq!(guest["kernel_build"], manifest["kernel_build"]);
    }
    let out = env.run(&["kata-check"], b"", T);
    let text = out.stdout_str();
    let release = guest["kernel_release"].as_str().unwrap_or_default();
    assert!(
        text.contains(release) && text.contains(&config_hash[..12]),
        "kata-check does not name the kernel {release} / {config_hash}:\n{text}{}",
        out.stderr
    );
}
