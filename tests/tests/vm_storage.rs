//! Storage: the rootfs and bind-mount volumes reach the guest over the sandbox's shared
//! filesystem, 9p or virtio-fs, with the host's file semantics. `kata-spec-checker --fs DIR`
//! (copied into the rootfs) exercises them from inside: write + fsync + read, rename, hard
//! link, symlink, chmod, ownership, a shared mmap.

use e2e_tests::{bin_dir, edit_spec, Env};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const CHECKER: &str = "kata-spec-checker";

fn set_shared_fs(env: &Env, fs: &str) {
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text += &format!("\n[hypervisor.qemu]\nshared_fs = \"{fs}\"\n");
    std::fs::write(&env.config, text).unwrap();
}

fn volumes_behave_as_on_the_host(fs: &str) {
    let env = Env::new();
    set_shared_fs(&env, fs);
    let vol = env.path().join("vol");
    let ro = env.path().join("ro");
    for d in [&vol, &ro] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(vol.join("host-file"), "from-host\n").unwrap();
    std::os::unix::fs::chown(vol.join("host-file"), Some(1234), Some(5678)).unwrap();
    std::fs::write(ro.join("kept"), "read-only\n").unwrap();

    let script = "cat /vol/host-file; stat -c owner=%u:%g /vol/host-file; \
                  echo from-container > /vol/container-file; \
                  /kata-spec-checker --fs /vol && /kata-spec-checker --fs-ro /ro && \
                  /kata-spec-checker --fs /tmp; echo checker-exit=$?";
    let b = env.bundle("vols", &["sh", "-c", script]);
    std::fs::copy(bin_dir().join(CHECKER), b.join("rootfs").join(CHECKER)).unwrap();
    edit_spec(&b, |s| {
        let mounts = s["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/vol", "type": "bind", "source": vol,
                           "options": ["rbind", "rw"]}));
        mounts.push(json!({"destination": "/ro", "type": "bind", "source": ro,
                           "options": ["rbind", "ro"]}));
    });
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "vols"], b"", T);
    let stdout = out.stdout_str();
    assert_eq!(out.code(), 0, "{fs}: {stdout} {}", out.stderr);
    assert!(
        stdout.contains("from-host"),
        "{fs}: the host's file: {stdout}"
    );
    assert!(
        stdout.contains("owner=1234:5678"),
        "{fs}: ownership: {stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{fs}: {stdout}");
    assert!(stdout.contains("PASS fs.mmap"), "{fs}: {stdout}");
    assert!(stdout.contains("PASS fs_ro.create"), "{fs}: {stdout}");
    assert!(stdout.contains("checker-exit=0"), "{fs}: {stdout}");
    // What the container wrote is on the host, owned by the container's user (root).
    let written = vol.join("container-file");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "from-container\n"
    );
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), 0);
    assert_eq!(
        std::fs::read_to_string(ro.join("kept")).unwrap(),
        "read-only\n"
    );
    env.assert_clean();
}

#[test]
fn vm_storage_9p_volumes() {
    volumes_behave_as_on_the_host("virtio-9p");
}

#[test]
fn vm_storage_virtio_fs_volumes() {
    volumes_behave_as_on_the_host("virtio-fs");
}

/// A bind-mount volume whose source does not exist: one line, exit 1, nothing left.
#[test]
fn vm_storage_missing_volume_source() {
    let env = Env::new();
    let b = env.bundle("novol", &["true"]);
    let missing = env.path().join("no-such-volume");
    edit_spec(&b, |s| {
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/vol", "type": "bind", "source": missing,
            "options": ["rbind", "rw"]
        }));
    });
    let out = env.run(
        &["create", "--bundle", b.to_str().unwrap(), "novol"],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-volume"), "{}", out.stderr);
    env.assert_clean();
}

/// Kubernetes emptyDir: a bind-mount source under `kubernetes.io~empty-dir` becomes a tmpfs in
/// the guest shared by the pod's containers (the host folder stays untouched), gone with the pod.
#[test]
fn vm_storage_empty_dir_is_shared_by_the_pod_in_the_guest() {
    let env = Env::new();
    let host_dir = env
        .path()
        .join("pods/uid1/volumes/kubernetes.io~empty-dir/cache");
    std::fs::create_dir_all(&host_dir).unwrap();
    // CRI's /dev/shm: a bind of the sandbox's host shm folder into every container.
    let host_shm = env.path().join("sandboxes/edsb/shm");
    std::fs::create_dir_all(&host_shm).unwrap();
    let with_cache = |s: &mut serde_json::Value| {
        let mounts = s["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev/shm");
        mounts.push(json!({
            "destination": "/cache", "type": "bind", "source": host_dir,
            "options": ["rbind", "rw"]
        }));
        mounts.push(json!({
            "destination": "/dev/shm", "type": "bind", "source": host_shm,
            "options": ["rbind", "rw"]
        }));
    };
    let sb = env.bundle(
        "edsb",
        &[
            "sh",
            "-c",
            "echo from-sandbox > /cache/x; echo shm-from-sandbox > /dev/shm/y; exec sleep 1000",
        ],
    );
    edit_spec(&sb, |s| {
        s["annotations"] = json!({"io.kubernetes.cri.container-type": "sandbox"});
        with_cache(s);
    });
    let out = env.run(
        &["run", "-d", "--bundle", sb.to_str().unwrap(), "edsb"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "sandbox: {}", out.stderr);
    let member = env.bundle(
        "edm",
        &[
            "sh",
            "-c",
            "while [ ! -e /cache/x ]; do sleep 0.1; done; cat /cache/x; \
             grep ' /cache ' /proc/mounts; cat /dev/shm/y; grep ' /dev/shm ' /proc/mounts",
        ],
    );
    edit_spec(&member, |s| {
        s["annotations"] = json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "edsb"
        });
        with_cache(s);
    });
    let out = env.run(
        &["run", "--bundle", member.to_str().unwrap(), "edm"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "member: {}", out.stderr);
    let stdout = out.stdout_str();
    assert!(stdout.starts_with("from-sandbox\n"), "{stdout}");
    assert!(
        stdout.contains("tmpfs /cache tmpfs"),
        "the emptyDir is a guest tmpfs: {stdout}"
    );
    assert!(
        stdout.contains("shm-from-sandbox"),
        "one /dev/shm per pod: {stdout}"
    );
    assert!(
        stdout.contains("tmpfs /dev/shm tmpfs"),
        "/dev/shm is a guest tmpfs: {stdout}"
    );
    assert_eq!(std::fs::read_dir(&host_shm).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(&host_dir).unwrap().count(),
        0,
        "the host folder is not used"
    );
    let out = env.run(&["delete", "--force", "edsb"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    env.assert_clean();
}

/// Runs `cmd` with sh and returns its stdout, trimmed; a failure fails the test.
fn sh(cmd: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device attached to an image file; detached on drop.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(image: &std::path::Path) -> LoopDevice {
        let device = sh(&format!("losetup -f --show {}", image.display()));
        assert!(device.starts_with("/dev/loop"), "losetup: {device}");
        LoopDevice(device)
    }

    /// Processes that have the device open (QEMU while the disk is plugged).
    fn holders(&self) -> Vec<String> {
        let mut found = Vec::new();
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if std::fs::read_link(fd.path()).is_ok_and(|t| t.to_str() == Some(&self.0)) {
                    found.push(p.file_name().to_string_lossy().into_owned());
                }
            }
        }
        found
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

/// A bundle whose rootfs is an ext4 image on a loop device mounted at `rootfs` (standing in
/// for Kata 1.x's devicemapper). Unmounted, then detached, on drop.
struct LoopRootfs {
    mount: std::path::PathBuf,
    device: LoopDevice,
}

impl LoopRootfs {
    fn new(bundle: &std::path::Path) -> LoopRootfs {
        let b = bundle.display();
        sh(&format!(
            "mv {b}/rootfs {b}/rootfs.files && truncate -s 64M {b}/rootfs.img && \
             mkfs.ext4 -q -d {b}/rootfs.files {b}/rootfs.img && mkdir {b}/rootfs"
        ));
        Self::remount(bundle)
    }

    /// The image of a bundle made by [`LoopRootfs::new`], attached and mounted (again).
    fn remount(bundle: &std::path::Path) -> LoopRootfs {
        let device = LoopDevice::attach(&bundle.join("rootfs.img"));
        let mount = bundle.join("rootfs");
        sh(&format!("mount {} {}", device.0, mount.display()));
        LoopRootfs { mount, device }
    }

    fn holders(&self) -> Vec<String> {
        self.device.holders()
    }
}

impl Drop for LoopRootfs {
    /// The device field detaches after this, once the image is unmounted.
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
    }
}

/// A rootfs that is a block device's mount is hot-plugged into the VM and mounted by the
/// agent as the container's root (the guest sees a /dev/vd* root, not the share); a pod
/// member's disk is unplugged on its delete, and the device is free afterwards. A second
/// container on the same device is refused.
#[test]
fn vm_storage_block_device_rootfs_is_hot_plugged() {
    let env = Env::new();
    let sb = env.bundle("blksb", &["sleep", "1000"]);
    edit_spec(&sb, |s| {
        s["annotations"] = json!({"io.kubernetes.cri.container-type": "sandbox"});
    });
    let out = env.run(
        &["run", "-d", "--bundle", sb.to_str().unwrap(), "blksb"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "sandbox: {}", out.stderr);

    let member = env.bundle(
        "blkm",
        &[
            "sh",
            "-c",
            "grep ' / ' /proc/mounts; echo written > /on-disk; sleep 1000",
        ],
    );
    edit_spec(&member, |s| {
        s["annotations"] = json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "blksb"
        });
    });
    let disk = LoopRootfs::new(&member);
    let out = env.run(
        &["run", "-d", "--bundle", member.to_str().unwrap(), "blkm"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "member: {}", out.stderr);
    assert!(!disk.holders().is_empty(), "QEMU has the device open");
    let out = env.run(&["exec", "blkm", "grep", " / ", "/proc/mounts"], b"", T);
    assert!(
        out.stdout_str().starts_with("/dev/vd"),
        "the root is the hot-plugged disk: {}",
        out.stdout_str()
    );
    let out = env.run(&["exec", "blkm", "sh", "-c", "sync; cat /on-disk"], b"", T);
    assert_eq!(out.stdout_str(), "written\n", "{}", out.stderr);

    // The same device for another container: refused, nothing left of it.
    let twin = env.path().join("bundles/twin");
    std::fs::create_dir_all(&twin).unwrap();
    std::fs::copy(member.join("config.json"), twin.join("config.json")).unwrap();
    std::os::unix::fs::symlink(member.join("rootfs"), twin.join("rootfs")).unwrap();
    let out = env.run(
        &["create", "--bundle", twin.to_str().unwrap(), "twin"],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("in use"), "{}", out.stderr);

    let out = env.run(&["delete", "--force", "blkm"], b"", T);
    assert_eq!(out.code(), 0, "delete member: {}", out.stderr);
    let start = std::time::Instant::now();
    while !disk.holders().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        disk.holders().is_empty(),
        "the disk was unplugged: {:?}",
        disk.holders()
    );
    let out = env.run(&["delete", "--force", "blksb"], b"", T);
    assert_eq!(out.code(), 0, "delete sandbox: {}", out.stderr);
    // What the container wrote is on the device (the host's mount reads it back after a
    // remount: the guest wrote behind the host's page cache).
    drop(disk);
    let check = LoopRootfs::remount(&member);
    assert_eq!(
        std::fs::read_to_string(member.join("rootfs/on-disk")).unwrap_or_default(),
        "written\n"
    );
    drop(check);
    env.assert_clean();
}

/// A block volume: a mount whose source is a block device (here a loop device holding an ext4
/// image made with a file in it) is hot-plugged and mounted at the requested path; what the
/// container writes is on the device; the device is free after delete.
#[test]
fn vm_storage_block_volume() {
    let env = Env::new();
    let dir = env.path().join("volimg");
    std::fs::create_dir_all(dir.join("content")).unwrap();
    std::fs::write(dir.join("content/from-image"), "image-data\n").unwrap();
    let d = dir.display();
    sh(&format!(
        "truncate -s 32M {d}/vol.img && mkfs.ext4 -q -d {d}/content {d}/vol.img"
    ));
    let loop_device = LoopDevice::attach(&dir.join("vol.img"));
    let device = loop_device.0.clone();
    let b = env.bundle(
        "bvol",
        &["sh", "-c", "cat /data/from-image; echo from-container > /data/written; sync; grep ' /data ' /proc/mounts"],
    );
    edit_spec(&b, |s| {
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "ext4", "source": device, "options": ["rw"]
        }));
    });
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "bvol"], b"", T);
    let stdout = out.stdout_str();
    assert_eq!(out.code(), 0, "{stdout} {}", out.stderr);
    assert!(stdout.starts_with("image-data\n"), "{stdout}");
    assert!(
        stdout.contains("/dev/vd"),
        "the volume is a guest disk: {stdout}"
    );
    env.assert_clean();
    // The device is free again, and holds what the container wrote.
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    sh(&format!("mount {device} {}", mnt.display()));
    let written = std::fs::read_to_string(mnt.join("written")).unwrap_or_default();
    sh(&format!("umount {}", mnt.display()));
    assert_eq!(written, "from-container\n");
}

/// A rootfs path that does not exist: one line, exit 1, nothing left.
#[test]
fn vm_storage_missing_rootfs() {
    let env = Env::new();
    let b = env.bundle("noroot", &["true"]);
    edit_spec(&b, |s| s["root"]["path"] = json!("no-such-rootfs"));
    let out = env.run(
        &["create", "--bundle", b.to_str().unwrap(), "noroot"],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-rootfs"), "{}", out.stderr);
    env.assert_clean();
}

/// A block device in `linux.devices` (docker's `--device`): the host device with those
/// numbers is hot-plugged, and the container's node at the requested path is the guest disk
/// (its numbers are the guest's), reading the device's bytes.
#[test]
fn vm_storage_linux_devices_block_device() {
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new();
    let img = env.path().join("raw.img");
    let mut data = b"KATA-BLOCK-MAGIC".to_vec();
    data.resize(1 << 20, 0);
    std::fs::write(&img, &data).unwrap();
    let loop_device = LoopDevice::attach(&img);
    let device = loop_device.0.clone();
    let meta = std::fs::metadata(&device).unwrap();
    assert!(meta.file_type().is_block_device());
    let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));

    let b = env.bundle(
        "bdev",
        &["sh", "-c", "head -c 16 /dev/xvdb; echo; ls -l /dev/xvdb"],
    );
    edit_spec(&b, |s| {
        s["linux"]["devices"] = json!([{
            "path": "/dev/xvdb", "type": "b", "major": major, "minor": minor,
            "fileMode": 0o660, "uid": 0, "gid": 0
        }]);
    });
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "bdev"], b"", T);
    let stdout = out.stdout_str();
    assert_eq!(out.code(), 0, "{stdout} {}", out.stderr);
    assert!(stdout.starts_with("KATA-BLOCK-MAGIC\n"), "{stdout}");
    assert!(
        !stdout.contains(&format!(" {major}, ")),
        "the node has the guest disk's numbers, not the host loop's ({major}:{minor}): {stdout}"
    );
    env.assert_clean();
}
