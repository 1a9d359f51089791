//! Pure functions that turn a [`VmConfig`] into QEMU / virtiofsd argument vectors
//! and the guest kernel command line. No I/O here, so everything is unit tested.

use std::path::{Path, PathBuf};

use crate::config::{
    Accel, NetBackend, NetDevice, SharedFs, VmConfig, FIRST_INHERITED_FD, SHARED_FS_MOUNT_TAG,
};

/// Kernel parameters every guest gets. Each one earns its place (measured under TCG):
/// `cryptomgr.notests` saves ~0.4 s, `tsc=reliable no_timer_check` skip clocksource
/// checks, `panic=-1` + QEMU `-no-reboot` turn a guest panic into a QEMU exit the
/// runtime notices, `reboot=k` makes a guest reboot a plain keyboard-controller reset.
pub const BASE_KERNEL_PARAMS: &[&str] = &[
    "console=ttyS0",
    "quiet",
    "panic=-1",
    "cryptomgr.notests",
    "tsc=reliable",
    "no_timer_check",
    "reboot=k",
];

/// Prefix of kernel parameters that the guest agent (not the kernel) interprets.
pub const AGENT_PARAM_PREFIX: &str = "agent.";

/// QEMU's seccomp filter, as Kata sets it.
pub const SECCOMP_SANDBOX: &str =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// A kernel parameter addressed to the agent: `agent_param("log", "debug")` gives `agent.log=debug`.
pub fn agent_param(key: &str, value: &str) -> String {
    format!("{AGENT_PARAM_PREFIX}{key}={value}")
}

#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("sandbox {sandbox_id}: accelerator must be resolved (kvm or tcg) before building the QEMU command line")]
    UnresolvedAccel { sandbox_id: String },
    #[error("sandbox {sandbox_id}: {what} path {} is not valid UTF-8", .path.display())]
    NonUtf8Path {
        sandbox_id: String,
        what: &'static str,
        path: PathBuf,
    },
    #[error("sandbox {sandbox_id}: virtiofsd arguments requested but shared_fs is not virtio-fs")]
    NotVirtioFs { sandbox_id: String },
    #[error("sandbox {sandbox_id}: network device {id}: bad {problem}")]
    BadNetDevice {
        sandbox_id: String,
        id: String,
        problem: String,
    },
}

/// The guest kernel command line: base parameters, debug tweaks, then the extras.
pub fn kernel_params(cfg: &VmConfig) -> String {
    let mut params: Vec<String> = BASE_KERNEL_PARAMS
        .iter()
        // `quiet` hides exactly the boot messages one wants when debugging.
        .filter(|p| !(cfg.debug && **p == "quiet"))
        .map(|p| p.to_string())
        .collect();
    if cfg.debug {
        params.push(agent_param("log", "debug"));
    }
    params.extend(cfg.kernel_params.iter().cloned());
    params.join(" ")
}

/// QEMU's option parser splits on ',' and reads ",," as a literal comma, so any
/// user-controlled value placed inside a `key=value,...` option must be escaped.
fn opt_escape(s: &str) -> String {
    s.replace(',', ",,")
}

fn utf8<'a>(cfg: &VmConfig, what: &'static str, path: &'a Path) -> Result<&'a str, CmdlineError> {
    path.to_str().ok_or_else(|| CmdlineError::NonUtf8Path {
        sandbox_id: cfg.sandbox_id.clone(),
        what,
        path: path.to_path_buf(),
    })
}

/// The full QEMU argument vector (without argv[0]).
///
/// `accel` must be resolved (`Kvm` or `Tcg`); the caller runs the probe for `Auto`.
pub fn qemu_args(cfg: &VmConfig, accel: Accel) -> Result<Vec<String>, CmdlineError> {
    let accel_name = accel
        .qemu_name()
        .ok_or_else(|| CmdlineError::UnresolvedAccel {
            sandbox_id: cfg.sandbox_id.clone(),
        })?;
    // qemu64 under TCG: `max` costs ~0.15 s of boot; `host` only means something with KVM.
    let cpu = match accel {
        Accel::Kvm => "host",
        _ => "qemu64",
    };

    let qmp = cfg.qmp_socket();
    let console = cfg.console_socket();
    let agent = cfg.agent_socket();
    let pid_file = cfg.pid_file();
    let log = cfg.qemu_log();
    let qmp = opt_escape(utf8(cfg, "QMP socket", &qmp)?);
    let console = opt_escape(utf8(cfg, "console socket", &console)?);
    let agent = opt_escape(utf8(cfg, "agent socket", &agent)?);
    // -pidfile, -D, -kernel, -initrd and -append take their value verbatim (no option
    // parsing), so these are not escaped.
    let pid_file = utf8(cfg, "pid file", &pid_file)?.to_string();
    let log = utf8(cfg, "QEMU log", &log)?.to_string();
    let kernel = utf8(cfg, "kernel", &cfg.kernel)?.to_string();

    let mut a: Vec<String> = Vec::with_capacity(64);
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));

    push(&["-name", &format!("sandbox-{}", cfg.sandbox_id)]);
    if accel == Accel::Tcg && cfg.tcg_tb_size_mib > 0 {
        // tb-size is an option of the accelerator object, which `-machine accel=` cannot take.
        // thread=single: with a small cache, multi-threaded TCG (a region of it per vCPU)
        // aborts QEMU 7.2 when a vCPU is hot-plugged once the regions are used up
        // (tcg/region.c: tcg_region_initial_alloc__locked); one TCG thread shares one cache.
        push(&["-machine", &cfg.machine_type]);
        push(&[
            "-accel",
            &format!("tcg,thread=single,tb-size={}", cfg.tcg_tb_size_mib),
        ]);
    } else {
        push(&[
            "-machine",
            &format!("{},accel={accel_name}", cfg.machine_type),
        ]);
    }
    push(&["-cpu", cpu]);
    if cfg.memory_slots > 0 && cfg.max_memory_mib > cfg.memory_mib {
        push(&[
            "-m",
            &format!(
                "{}M,slots={},maxmem={}M",
                cfg.memory_mib, cfg.memory_slots, cfg.max_memory_mib
            ),
        ]);
    } else {
        push(&["-m", &format!("{}M", cfg.memory_mib)]);
    }
    if cfg.max_vcpus > cfg.vcpus {
        push(&["-smp", &format!("{},maxcpus={}", cfg.vcpus, cfg.max_vcpus)]);
    } else {
        push(&["-smp", &cfg.vcpus.to_string()]);
    }
    if let Some(t) = &cfg.templating {
        // The template's RAM is a file mapped shared (so its pages land in the file); a clone
        // maps the same file private: copy-on-write, the untouched pages shared by all.
        let share = match t.role {
            crate::TemplateRole::Template => "on",
            crate::TemplateRole::Clone => "off",
        };
        let mem = t.memory_file();
        let mem = opt_escape(utf8(cfg, "template memory file", &mem)?);
        push(&[
            "-object",
            &format!(
                "memory-backend-file,id=mem,size={}M,mem-path={mem},share={share}",
                cfg.memory_mib
            ),
        ]);
        push(&["-numa", "node,memdev=mem"]);
        if t.role == crate::TemplateRole::Clone {
            // The device state is handed over QMP once QEMU is up (`template::load`).
            push(&["-incoming", "defer"]);
        }
    } else if cfg.needs_shared_memory() {
        // vhost-user devices need guest RAM their backend can map: a shared memfd
        // backend covering all of RAM, attached through a NUMA node.
        push(&[
            "-object",
            &format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                cfg.memory_mib
            ),
        ]);
        push(&["-numa", "node,memdev=mem"]);
    }
    push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
    // seccomp: no obsolete system calls, no setuid/setgid, no fork/exec, no scheduler or
    // affinity changes. A compromised QEMU (the VM's host-side surface) can do less.
    push(&["-sandbox", SECCOMP_SANDBOX]);
    push(&["-pidfile", &pid_file]);
    push(&["-D", &log]);
    // Timestamps on QEMU's messages and a trace line (to the -D log) for every QMP command
    // and run-state change: `kata-runtime logs` merges them with the other components' lines.
    push(&["-msg", "timestamp=on"]);
    push(&["-trace", "handle_qmp_command", "-trace", "runstate_set"]);
    if cfg.debug {
        // Gives -D something to record: guest accesses to unimplemented/invalid hardware.
        push(&["-d", "guest_errors"]);
    }
    push(&["-qmp", &format!("unix:{qmp},server=on,wait=off")]);

    // Serial console on a socket: the kernel's console=ttyS0 lands here.
    push(&[
        "-chardev",
        &format!("socket,id=console,path={console},server=on,wait=off"),
    ]);
    push(&["-serial", "chardev:console"]);

    // The agent channel: a virtio-serial port the guest agent finds by name.
    push(&["-device", "virtio-serial-pci,id=serial0"]);
    push(&[
        "-chardev",
        &format!("socket,id=charch0,path={agent},server=on,wait=off"),
    ]);
    push(&[
        "-device",
        "virtserialport,bus=serial0.0,chardev=charch0,name=agent.channel.0",
    ]);

    // Without an entropy source the guest's first blocking getrandom waits ~1 s.
    push(&["-object", "rng-random,id=rng0,filename=/dev/urandom"]);
    push(&["-device", "virtio-rng-pci,rng=rng0"]);
    if cfg.free_page_reporting {
        // The guest reports freed 2 MiB blocks; QEMU discards them, so host memory follows
        // what the guest uses rather than the most it ever touched.
        push(&[
            "-device",
            "virtio-balloon-pci,id=balloon0,free-page-reporting=on",
        ]);
    }

    match &cfg.shared_fs {
        SharedFs::Virtio9p { .. } => {
            let shared = opt_escape(utf8(cfg, "shared dir", &cfg.shared_dir)?);
            // multidevs=remap: the share may span several host filesystems (bind-mounted
            // volumes); without it inode numbers from different devices can collide.
            push(&[
                "-fsdev",
                &format!("local,id=fs0,path={shared},security_model=none,multidevs=remap"),
            ]);
            push(&[
                "-device",
                &format!("virtio-9p-pci,fsdev=fs0,mount_tag={SHARED_FS_MOUNT_TAG}"),
            ]);
        }
        SharedFs::VirtioFs { .. } => {
            let sock = cfg.vhost_fs_socket();
            let sock = opt_escape(utf8(cfg, "vhost-user-fs socket", &sock)?);
            push(&["-chardev", &format!("socket,id=char-fs,path={sock}")]);
            push(&[
                "-device",
                &format!(
                    "vhost-user-fs-pci,chardev=char-fs,tag={SHARED_FS_MOUNT_TAG},queue-size=1024"
                ),
            ]);
        }
    }

    let mut next_fd = FIRST_INHERITED_FD;
    for dev in &cfg.net_devices {
        for (opt, value) in net_device_args(cfg, dev, &mut next_fd)? {
            push(&[opt, &value]);
        }
    }

    // Root ports only exist on PCIe machines (q35); on `pc` hot-plug uses the root bus.
    if cfg.machine_type.contains("q35") {
        for i in 1..=cfg.hotplug_root_ports {
            push(&[
                "-device",
                &format!("pcie-root-port,id=rp{i},bus=pcie.0,chassis=2,slot={i}"),
            ]);
        }
    }

    push(&["-kernel", &kernel]);
    if let Some(initrd) = &cfg.initrd {
        push(&["-initrd", utf8(cfg, "initrd", initrd)?]);
    }
    push(&["-append", &kernel_params(cfg)]);
    Ok(a)
}

/// The QEMU options of one NIC at boot. `next_fd` numbers the inherited macvtap descriptors.
fn net_device_args(
    cfg: &VmConfig,
    dev: &NetDevice,
    next_fd: &mut i32,
) -> Result<Vec<(&'static str, String)>, CmdlineError> {
    let bad = |what: &str, value: &str| CmdlineError::BadNetDevice {
        sandbox_id: cfg.sandbox_id.clone(),
        id: dev.id.clone(),
        problem: format!("{what} {value:?}"),
    };
    if dev.id.is_empty()
        || !dev
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(bad("id", &dev.id));
    }
    if !matches!(dev.backend, NetBackend::Vfio { .. }) && !is_mac(&dev.mac) {
        return Err(bad("MAC", &dev.mac));
    }
    let vhost = if cfg.vhost_net { "on" } else { "off" };
    let id = &dev.id;
    let nic = || {
        format!(
            "virtio-net-pci,netdev={id},mac={},id={}",
            dev.mac,
            dev.device_id()
        )
    };
    Ok(match &dev.backend {
        NetBackend::Tap { ifname } => {
            if ifname.is_empty() || ifname.len() > 15 || ifname.contains([',', '/', '=']) {
                return Err(bad("interface name", ifname));
            }
            vec![
                (
                    "-netdev",
                    format!("tap,id={id},ifname={ifname},script=no,downscript=no,vhost={vhost}"),
                ),
                ("-device", nic()),
            ]
        }
        NetBackend::Macvtap { .. } => {
            let fd = *next_fd;
            *next_fd += 1;
            vec![
                ("-netdev", format!("tap,id={id},fd={fd},vhost={vhost}")),
                ("-device", nic()),
            ]
        }
        NetBackend::VhostUser { socket } => {
            let socket = opt_escape(utf8(cfg, "vhost-user socket", socket)?);
            vec![
                ("-chardev", format!("socket,id=char-{id},path={socket}")),
                ("-netdev", format!("vhost-user,id={id},chardev=char-{id}")),
                ("-device", nic()),
            ]
        }
        NetBackend::Vfio { host } => {
            if !is_pci_address(host) {
                return Err(bad("PCI address", host));
            }
            vec![(
                "-device",
                format!("vfio-pci,host={host},id={}", dev.device_id()),
            )]
        }
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `0000:3b:00.1` (domain:bus:slot.function, hexadecimal).
pub fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let mut parts = s.split(':');
    let (Some(domain), Some(bus), Some(slot_fn), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some((slot, function)) = slot_fn.split_once('.') else {
        return false;
    };
    hex(domain, 4) && hex(bus, 2) && hex(slot, 2) && hex(function, 1)
}

/// virtiofsd's argument vector for a virtio-fs configuration.
pub fn virtiofsd_args(cfg: &VmConfig) -> Result<Vec<String>, CmdlineError> {
    let SharedFs::VirtioFs { cache, .. } = &cfg.shared_fs else {
        return Err(CmdlineError::NotVirtioFs {
            sandbox_id: cfg.sandbox_id.clone(),
        });
    };
    let sock = cfg.vhost_fs_socket();
    let sock = utf8(cfg, "vhost-user-fs socket", &sock)?;
    // virtiofsd's -o values are comma-separated lists too.
    let shared = opt_escape(utf8(cfg, "shared dir", &cfg.shared_dir)?);
    let mut a = vec![
        format!("--socket-path={sock}"),
        "-o".to_string(),
        format!("source={shared}"),
        "-o".to_string(),
        format!("cache={}", opt_escape(cache)),
        "-o".to_string(),
        "sandbox=namespace".to_string(),
        // Stay in the foreground: the pid we spawn must be the one we stop later.
        "-f".to_string(),
    ];
    if cfg.debug {
        a.push("-o".to_string());
        a.push("log_level=debug".to_string());
    }
    Ok(a)
}

/// Renders an argument vector as a shell-pasteable line (for logs and error messages).
pub fn shell_line(program: &Path, args: &[String]) -> String {
    fn quote(s: &str) -> String {
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:+@".contains(c));
        if plain {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    }
    std::iter::once(program.to_string_lossy().into_owned())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

// Argument vectors are laid out as option/value pairs; keep them that way.
#[rustfmt::skip]
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg() -> VmConfig {
        let mut c = VmConfig::new("abc", "/run/vc/vm/abc", "/g/vmlinux", "/run/kata/shared/abc");
        c.initrd = Some(PathBuf::from("/g/initrd.img"));
        c
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const HEAD_TCG: &[&str] = &[
        "-name", "sandbox-abc",
        "-machine", "q35,accel=tcg",
        "-cpu", "qemu64",
        "-m", "256M",
        "-smp", "1",
    ];
    const COMMON: &[&str] = &[
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-pidfile", "/run/vc/vm/abc/qemu.pid",
        "-D", "/run/vc/vm/abc/qemu.log",
        "-msg", "timestamp=on",
        "-trace", "handle_qmp_command", "-trace", "runstate_set",
    ];
    const DEVICES: &[&str] = &[
        "-qmp", "unix:/run/vc/vm/abc/qmp.sock,server=on,wait=off",
        "-chardev", "socket,id=console,path=/run/vc/vm/abc/console.sock,server=on,wait=off",
        "-serial", "chardev:console",
        "-device", "virtio-serial-pci,id=serial0",
        "-chardev", "socket,id=charch0,path=/run/vc/vm/abc/kata.sock,server=on,wait=off",
        "-device", "virtserialport,bus=serial0.0,chardev=charch0,name=agent.channel.0",
        "-object", "rng-random,id=rng0,filename=/dev/urandom",
        "-device", "virtio-rng-pci,rng=rng0",
    ];
    const TAIL: &[&str] = &[
        "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=2,slot=1",
        "-device", "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,slot=2",
        "-kernel", "/g/vmlinux",
        "-initrd", "/g/initrd.img",
    ];
    const PARAMS: &str = "console=ttyS0 quiet panic=-1 cryptomgr.notests tsc=reliable no_timer_check reboot=k";

    #[test]
    fn default_9p_tcg_command_line() {
        let got = qemu_args(&cfg(), Accel::Tcg).unwrap();
        eprintln!("{}", shell_line(Path::new("/usr/bin/qemu-system-x86_64"), &got));
        let mut want = s(HEAD_TCG);
        want.extend(s(COMMON));
        want.extend(s(DEVICES));
        want.extend(s(&[
            "-fsdev", "local,id=fs0,path=/run/kata/shared/abc,security_model=none,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=kataShared",
        ]));
        want.extend(s(TAIL));
        want.extend(s(&["-append", PARAMS]));
        assert_eq!(got, want);
    }

    #[test]
    fn template_and_clone_memory_and_incoming() {
        let with_role = |role| {
            let mut c = cfg();
            c.templating = Some(crate::Templating {
                role,
                dir: PathBuf::from("/run/t"),
            });
            qemu_args(&c, Accel::Tcg).unwrap()
        };
        let mem = |share: &str| {
            s(&[
                "-object",
                &format!("memory-backend-file,id=mem,size=256M,mem-path=/run/t/memory,share={share}"),
                "-numa",
                "node,memdev=mem",
            ])
        };
        let template = with_role(crate::TemplateRole::Template);
        let mut want = s(HEAD_TCG);
        want.extend(mem("on"));
        want.extend(s(COMMON));
        assert_eq!(template[..want.len()], want[..]);
        assert!(!template.contains(&"-incoming".to_string()));
        let clone = with_role(crate::TemplateRole::Clone);
        let mut want = s(HEAD_TCG);
        want.extend(mem("off"));
        want.extend(s(&["-incoming", "defer"]));
        want.extend(s(COMMON));
        assert_eq!(clone[..want.len()], want[..]);
        // virtio-fs cannot be migrated: refused before QEMU runs.
        let mut c = cfg();
        c.shared_fs = SharedFs::virtio_fs();
        c.templating = Some(crate::Templating {
            role: crate::TemplateRole::Clone,
            dir: PathBuf::from("/run/t"),
        });
        assert!(matches!(
            c.validate(),
            Err(crate::ConfigError::TemplateWithSharedMemory { .. })
        ));
    }

    #[test]
    fn nics_of_every_backend() {
        let mut c = cfg();
        c.vhost_net = true;
        let mac = "02:42:ac:11:00:02".to_string();
        c.net_devices = vec![
            NetDevice {
                id: "net0".into(),
                mac: mac.clone(),
                backend: NetBackend::Tap {
                    ifname: "tap0_kata".into(),
                },
            },
            NetDevice {
                id: "net1".into(),
                mac: mac.clone(),
                backend: NetBackend::Macvtap {
                    device: "/dev/tap8200".into(),
                },
            },
            NetDevice {
                id: "net2".into(),
                mac: mac.clone(),
                backend: NetBackend::VhostUser {
                    socket: "/tmp/vhostuser_10.0.0.2/vhu.sock".into(),
                },
            },
            NetDevice {
                id: "net3".into(),
                mac: String::new(),
                backend: NetBackend::Vfio {
                    host: "0000:3b:00.1".into(),
                },
            },
        ];
        let got = qemu_args(&c, Accel::Tcg).unwrap();
        let line = got.join(" ");
        // vhost-user needs guest RAM the backend can map.
        assert!(line.contains("-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem"), "{line}");
        for want in [
            "-netdev tap,id=net0,ifname=tap0_kata,script=no,downscript=no,vhost=on",
            "-device virtio-net-pci,netdev=net0,mac=02:42:ac:11:00:02,id=dev-net0",
            "-netdev tap,id=net1,fd=3,vhost=on",
            "-device virtio-net-pci,netdev=net1,mac=02:42:ac:11:00:02,id=dev-net1",
            "-chardev socket,id=char-net2,path=/tmp/vhostuser_10.0.0.2/vhu.sock",
            "-netdev vhost-user,id=net2,chardev=char-net2",
            "-device vfio-pci,host=0000:3b:00.1,id=dev-net3",
        ] {
            assert!(line.contains(want), "missing {want:?} in {line}");
        }
        assert_eq!(c.inherited_devices(), vec![PathBuf::from("/dev/tap8200")]);

        for (mac, backend) in [
            ("02:42", NetBackend::Tap { ifname: "tap0".into() }),
            (mac.as_str(), NetBackend::Tap { ifname: "tap0,script=/x".into() }),
            (mac.as_str(), NetBackend::Vfio { host: "../../x".into() }),
        ] {
            c.net_devices = vec![NetDevice { id: "net0".into(), mac: mac.into(), backend }];
            assert!(matches!(qemu_args(&c, Accel::Tcg), Err(CmdlineError::BadNetDevice { .. })));
        }
    }

    #[test]
    fn virtio_fs_kvm_debug_command_line() {
        let mut c = cfg();
        c.shared_fs = SharedFs::virtio_fs();
        c.debug = true;
        c.memory_mib = 512;
        c.vcpus = 2;
        c.kernel_params = vec!["agent.trace=true".into(), "panic=0".into()];
        let got = qemu_args(&c, Accel::Kvm).unwrap();
        let mut want = s(&[
            "-name", "sandbox-abc",
            "-machine", "q35,accel=kvm",
            "-cpu", "host",
            "-m", "512M",
            "-smp", "2",
            "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
            "-numa", "node,memdev=mem",
        ]);
        want.extend(s(COMMON));
        want.extend(s(&["-d", "guest_errors"]));
        want.extend(s(DEVICES));
        want.extend(s(&[
            "-chardev", "socket,id=char-fs,path=/run/vc/vm/abc/vhost-fs.sock",
            "-device", "vhost-user-fs-pci,chardev=char-fs,tag=kataShared,queue-size=1024",
        ]));
        want.extend(s(TAIL));
        want.extend(s(&[
            "-append",
            "console=ttyS0 panic=-1 cryptomgr.notests tsc=reliable no_timer_check reboot=k \
             agent.log=debug agent.trace=true panic=0",
        ]));
        assert_eq!(got, want);
    }

    #[test]
    fn kernel_params_debug_on_off() {
        let mut c = cfg();
        assert_eq!(kernel_params(&c), PARAMS);
        c.debug = true;
        let p = kernel_params(&c);
        assert!(!p.split(' ').any(|x| x == "quiet"));
        assert!(p.ends_with(" agent.log=debug"));
        assert_eq!(agent_param("log", "debug"), "agent.log=debug");
    }

    #[test]
    fn auto_accel_is_refused() {
        assert!(matches!(
            qemu_args(&cfg(), Accel::Auto),
            Err(CmdlineError::UnresolvedAccel { .. })
        ));
    }

    #[test]
    fn free_page_reporting_adds_a_balloon() {
        let mut c = cfg();
        assert!(!qemu_args(&c, Accel::Tcg)
            .unwrap()
            .iter()
            .any(|a| a.starts_with("virtio-balloon")));
        c.free_page_reporting = true;
        assert!(qemu_args(&c, Accel::Tcg)
            .unwrap()
            .iter()
            .any(|a| a == "virtio-balloon-pci,id=balloon0,free-page-reporting=on"));
    }

    #[test]
    fn tcg_translation_cache_size_only_under_tcg() {
        let mut c = cfg();
        c.tcg_tb_size_mib = 64;
        let got = qemu_args(&c, Accel::Tcg).unwrap();
        let at = got.iter().position(|a| a == "-accel").unwrap();
        assert_eq!(got[at + 1], "tcg,thread=single,tb-size=64");
        assert_eq!(got[got.iter().position(|a| a == "-machine").unwrap() + 1], "q35");
        let got = qemu_args(&c, Accel::Kvm).unwrap();
        assert!(!got.iter().any(|a| a == "-accel"));
        assert!(got.iter().any(|a| a == "q35,accel=kvm"));
    }

    #[test]
    fn no_initrd_no_root_ports_on_pc() {
        let mut c = cfg();
        c.initrd = None;
        c.machine_type = "pc".into();
        let got = qemu_args(&c, Accel::Tcg).unwrap();
        assert!(!got.iter().any(|a| a == "-initrd"));
        assert!(!got.iter().any(|a| a.starts_with("pcie-root-port")));
        assert!(got.iter().any(|a| a == "pc,accel=tcg"));
    }

    #[test]
    fn commas_in_paths_are_escaped_where_qemu_parses_options() {
        let mut c = cfg();
        c.vm_dir = PathBuf::from("/run/a,b");
        c.shared_dir = PathBuf::from("/s,x");
        let got = qemu_args(&c, Accel::Tcg).unwrap();
        assert!(got.contains(&"unix:/run/a,,b/qmp.sock,server=on,wait=off".to_string()));
        assert!(got.contains(&"/run/a,b/qemu.pid".to_string()));
        assert!(got.iter().any(|a| a.starts_with("local,id=fs0,path=/s,,x,")));
    }

    #[test]
    fn virtiofsd_command_line() {
        let mut c = cfg();
        assert!(virtiofsd_args(&c).is_err());
        c.shared_fs = SharedFs::virtio_fs();
        assert_eq!(
            virtiofsd_args(&c).unwrap(),
            s(&[
                "--socket-path=/run/vc/vm/abc/vhost-fs.sock",
                "-o", "source=/run/kata/shared/abc",
                "-o", "cache=auto",
                "-o", "sandbox=namespace",
                "-f",
            ])
        );
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let line = shell_line(Path::new("/usr/bin/qemu"), &s(&["-append", "a b", "x'y", ""]));
        assert_eq!(line, r"/usr/bin/qemu -append 'a b' 'x'\''y' ''");
    }
}
