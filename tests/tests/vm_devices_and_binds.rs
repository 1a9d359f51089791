//! Devices and bind mounts as the OCI runtime spec (and runc) reads them (issue 17, items 1, 10
//! and 11): a device the host does not have is made in the container with the spec's type,
//! numbers, mode and owner; a spec listing many host disks gets a VM with room for them; a
//! privileged spec's host disks stay with the host; a member that needs more disks than its
//! sandbox's VM can take is refused before anything is made; a mount without a type whose
//! options say `bind`/`rbind` is a bind mount, with its propagation.

use e2e_tests::{edit_spec, sh, Env};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// Loop devices attached to small image files; detached on drop.
struct Loops(Vec<String>);

impl Loops {
    fn attach(env: &Env, n: usize) -> Loops {
        let mut devices = Vec::new();
        for i in 0..n {
            let img = env.path().join(format!("disk{i}.img"));
            let mut data = format!("DISK-{i}-MAGIC").into_bytes();
            data.resize(1 << 20, 0);
            std::fs::write(&img, &data).unwrap();
            devices.push(
                sh(&format!("losetup -f --show {}", img.display()))
                    .trim()
                    .to_string(),
            );
        }
        Loops(devices)
    }

    /// The spec's `linux.devices` entries for them, at /dev/xvd<letter>.
    fn spec_devices(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let rdev = std::fs::metadata(d).unwrap().rdev();
                json!({"path": format!("/dev/xvd{}", (b'b' + i as u8) as char), "type": "b",
                       "major": libc::major(rdev), "minor": libc::minor(rdev),
                       "fileMode": 0o660, "uid": 0, "gid": 0})
            })
            .collect();
        json!(list)
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::process::Command::new("losetup")
                .args(["-d", d])
                .status();
        }
    }
}

/// Item 11: devices the host does not have are made as the spec says, as runc does.
#[test]
fn vm_devices_the_host_does_not_have() {
    let env = Env::new();
    let b = env.bundle(
        "nodes",
        &[
            "sh",
            "-c",
            "stat -c '%n %F %t:%T %a %u:%g' /dev/fake-blk /dev/fake-chr /dev/fake-fifo",
        ],
    );
    edit_spec(&b, |s| {
        s["linux"]["devices"] = json!([
            {"path": "/dev/fake-blk", "type": "b", "major": 8, "minor": 666,
             "fileMode": 0o640, "uid": 12, "gid": 34},
            {"path": "/dev/fake-chr", "type": "c", "major": 240, "minor": 7,
             "fileMode": 0o600, "uid": 5, "gid": 6},
            {"path": "/dev/fake-fifo", "type": "p", "fileMode": 0o644}
        ]);
    });
    assert!(
        !std::path::Path::new("/sys/dev/block/8:666").exists(),
        "the host has 8:666"
    );
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "nodes"], b"", T);
    let text = out.stdout_str();
    assert_eq!(out.code(), 0, "{text} {}", out.stderr);
    assert!(
        text.contains("/dev/fake-blk block special file 8:29a 640 12:34"),
        "{text}"
    );
    assert!(
        text.contains("/dev/fake-chr character special file f0:7 600 5:6"),
        "{text}"
    );
    assert!(text.contains("/dev/fake-fifo fifo"), "{text}");
    env.assert_clean();
}

/// Item 1: many host disks in one spec: the VM is booted with root ports for all of them; a
/// privileged spec's host disks stay out; a member asking for more than its sandbox's VM has
/// free is refused with one line, and nothing of it is left.
#[test]
fn vm_many_host_disks_and_privileged_specs() {
    let env = Env::new();
    let loops = Loops::attach(&env, 5);
    let b = env.bundle("disks", &["sleep", "1000"]);
    let devices = loops.spec_devices();
    // And a loop device with nothing attached (size 0): a node, nothing to hot-plug. (Here,
    // where no other test of this file attaches loop devices meanwhile.)
    let free_loop: u32 = sh("losetup -f")
        .trim()
        .trim_start_matches("/dev/loop")
        .parse()
        .unwrap();
    let mut with_empty = devices.as_array().unwrap().clone();
    with_empty.push(json!({"path": "/dev/empty-loop", "type": "b", "major": 7,
                           "minor": free_loop, "fileMode": 0o600}));
    edit_spec(&b, |s| {
        s["linux"]["devices"] = json!(with_empty);
        s["annotations"] = json!({
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": "disks"
        });
    });
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "disks"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "five host disks: {}", out.stderr);
    let out = env.run(
        &[
            "exec",
            "disks",
            "sh",
            "-c",
            "for d in b c d e f; do head -c 12 /dev/xvd$d; echo; done",
        ],
        b"",
        T,
    );
    let text = out.stdout_str();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    for i in 0..5 {
        assert!(text.contains(&format!("DISK-{i}-MAGI")), "{text}");
    }
    let out = env.run(
        &[
            "exec",
            "disks",
            "stat",
            "-c",
            "%F %t:%T %a",
            "/dev/empty-loop",
        ],
        b"",
        T,
    );
    assert_eq!(
        out.stdout_str().trim(),
        format!("block special file 7:{free_loop:x} 600"),
        "{}",
        out.stderr
    );

    // A member wanting five more disks: the VM kept two ports free.
    let more = Loops::attach(&env, 5);
    let m = env.bundle("member", &["true"]);
    let member_devices = more.spec_devices();
    edit_spec(&m, |s| {
        s["linux"]["devices"] = member_devices.clone();
        s["annotations"] = json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "disks"
        });
    });
    let out = env.run(
        &["create", "--bundle", m.to_str().unwrap(), "member"],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("needs 5 hot-plugged block devices"),
        "{}",
        out.stderr
    );
    let out = env.run(&["state", "member"], b"", T);
    assert_eq!(out.code(), 1, "nothing of the member is left");
    assert_eq!(env.status("disks"), "running");
    let out = env.run(&["delete", "--force", "disks"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);

    // A privileged spec listing the same disks (every capability, nothing masked): they stay
    // with the host and the container runs.
    let p = env.bundle("priv", &["sh", "-c", "ls /sys/block; ls /dev"]);
    edit_spec(&p, |s| {
        s["linux"]["devices"] = devices.clone();
        let all: Vec<&str> = oci::CAPABILITY_NAMES.to_vec();
        s["process"]["capabilities"] = json!({"bounding": all, "effective": all,
            "permitted": all});
        s["linux"]["maskedPaths"] = json!([]);
        s["linux"]["readonlyPaths"] = json!([]);
    });
    let out = env.run(&["run", "--bundle", p.to_str().unwrap(), "priv"], b"", T);
    let text = out.stdout_str();
    assert_eq!(out.code(), 0, "privileged: {text} {}", out.stderr);
    assert!(!text.contains("vda") && !text.contains("xvdb"), "{text}");
    drop(more);
    drop(loops);
    env.assert_clean();
}

/// Item 10: a mount with no type is a bind mount when its options say so, read-only or not,
/// with the propagation its options ask for.
#[test]
fn vm_bind_mounts_named_by_options() {
    let env = Env::new();
    let src = env.path().join("vol");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "from the host\n").unwrap();
    let ro_src = env.path().join("rovol");
    std::fs::create_dir_all(&ro_src).unwrap();
    std::fs::write(ro_src.join("file"), "ro\n").unwrap();
    let b = env.bundle(
        "binds",
        &[
            "sh",
            "-c",
            "cat /data/hello; echo written > /data/out; \
                       touch /rodata/x 2>/dev/null && echo ro-writable || echo ro-refused; \
                       cat /etc/injected /rel/note; \
                       grep -E ' /(data|rodata|shared|slave|unbindable) ' /proc/self/mountinfo",
        ],
    );
    edit_spec(&b, |s| {
        let mounts = s["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/data", "source": src, "options": ["rbind", "rw"]}));
        // Relative: the bundle's folder, wherever the runtime runs.
        mounts.push(json!({"destination": "/rel", "source": "relvol", "options": ["rbind"]}));
        mounts.push(json!({"destination": "/rodata", "source": ro_src, "options": ["bind", "ro", "private"]}));
        mounts
            .push(json!({"destination": "/shared", "source": src, "options": ["rbind", "shared"]}));
        mounts
            .push(json!({"destination": "/slave", "source": src, "options": ["rbind", "rslave"]}));
        mounts.push(
            json!({"destination": "/unbindable", "source": src, "options": ["bind", "unbindable"]}),
        );
        mounts.push(json!({"destination": "/etc/injected", "source": src.join("hello"), "options": ["bind", "ro"]}));
    });
    std::fs::create_dir_all(b.join("relvol")).unwrap();
    std::fs::write(b.join("relvol/note"), "relative to the bundle\n").unwrap();
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "binds"], b"", T);
    let text = out.stdout_str();
    assert_eq!(out.code(), 0, "{text} {}", out.stderr);
    assert!(text.contains("from the host"), "{text}");
    assert!(text.contains("relative to the bundle"), "{text}");
    assert!(text.contains("ro-refused"), "{text}");
    assert_eq!(
        std::fs::read_to_string(src.join("out")).unwrap(),
        "written\n"
    );
    let line = |dest: &str| {
        text.lines()
            .find(|l| l.split(' ').nth(4) == Some(dest))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        text.contains("from the host\nwritten") || text.matches("from the host").count() == 2,
        "{text}"
    );
    assert!(line("/shared").contains("shared:"), "{text}");
    // A slave of the guest's private share is private (as runc with a private source).
    assert!(
        !line("/slave").is_empty() && !line("/slave").contains("shared:"),
        "{text}"
    );
    assert!(line("/unbindable").contains("unbindable"), "{text}");
    assert!(!line("/rodata").contains("shared:"), "{text}");
    assert!(line("/rodata").contains(" ro"), "{text}");
    env.assert_clean();
}

/// Items 4 and 8: `ro` on a bind mount is not recursive (a mount below the source stays
/// writable, as with runc); `rro` makes the whole tree read-only (mount_setattr in the guest,
/// and on the host's side of the share).
#[test]
fn vm_read_only_binds_recursive_or_not() {
    let env = Env::new();
    let vol = env.path().join("vol");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=1m kt-sub {}",
        vol.join("sub").display()
    ));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _sub = Unmount(vol.join("sub"));
    let b = env.bundle(
        "ro",
        &[
            "sh",
            "-c",
            "for d in /ro /ro/sub /rro /rro/sub; do \
                         touch $d/probe 2>/dev/null && echo $d writable || echo $d read-only; \
                       done",
        ],
    );
    edit_spec(&b, |s| {
        let mounts = s["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/ro", "type": "bind", "source": vol,
                           "options": ["rbind", "ro"]}));
        mounts.push(json!({"destination": "/rro", "type": "bind", "source": vol,
                           "options": ["rbind", "rro"]}));
    });
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "ro"], b"", T);
    let text = out.stdout_str();
    assert_eq!(out.code(), 0, "{text} {}", out.stderr);
    for want in [
        "/ro read-only",
        "/ro/sub writable",
        "/rro read-only",
        "/rro/sub read-only",
    ] {
        assert!(text.lines().any(|l| l == want), "{want}: {text}");
    }
    assert!(
        vol.join("sub/probe").exists(),
        "the write reached the host's tmpfs"
    );
    assert!(!vol.join("probe").exists());
    drop(_sub);
    env.assert_clean();

    // features lists the recursive options (CRI-O uses rro only when it sees it).
    let out = env.run(&["features"], b"", T);
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let opts = f["mountOptions"].as_array().unwrap();
    for o in ["rro", "rrw", "rnosuid", "rnodev", "rnoexec", "rnosymfollow"] {
        assert!(opts.iter().any(|x| x == o), "{o} missing from features");
    }
}

/// Item 7: rootfsPropagation "rshared" (a privileged pod with Bidirectional propagation) used
/// to fail in pivot_root (EINVAL: the rootfs's parent mount was shared).
#[test]
fn vm_rootfs_propagation_rshared_and_rslave() {
    let env = Env::new();
    for (id, prop, want) in [
        ("rshared", "rshared", "shared:"),
        ("rslave", "rslave", ""),
        ("rprivate", "rprivate", ""),
    ] {
        let b = env.bundle(id, &["sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"]);
        edit_spec(&b, |s| {
            s["linux"]["rootfsPropagation"] = json!(prop);
        });
        let out = env.run(&["run", "--bundle", b.to_str().unwrap(), id], b"", T);
        let text = out.stdout_str();
        assert_eq!(out.code(), 0, "{prop}: {text} {}", out.stderr);
        assert!(text.contains(want), "{prop}: {text}");
    }
    env.assert_clean();
}
