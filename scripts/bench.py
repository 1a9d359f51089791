#!/usr/bin/env python3
"""make bench: measures and prints; asserts nothing.

Figures (median/min/max of N runs, taken in the same run so they compare):
  floor        QEMU start -> first console line of a trivial static /init (same kernel, same
               machine and kernel command line as the runtime's VMs)
  run true     `kata-runtime run` of `true`, end to end
  agent ready  QEMU start -> the agent's first Health.Check answer (from the runtime's log)
  RSS          kata-proxy and kata-shim (and QEMU) while a container runs
  TCP          one stream container -> peer netns per interworking model, and netns -> netns
  storage      fsync'd sequential write/read and small files over 9p, virtio-fs, a block rootfs
  pod memory   host PSS/RSS of QEMU, virtiofsd, proxy and shims of a pod with 1 and 4
               containers (from `events --stats`' sandbox_host_overhead)
  boot phases  from one sandbox's merged log (`kata-runtime logs --json`): QEMU start -> the
               agent's first instruction as PID 1 (firmware + kernel), agent early init, agent
               serving, and until the runtime sees Health.Check answered
  scale        BENCH_SCALE (30) sandboxes started one after another: time of each and host
               memory per sandbox as the count grows; `state`/`list` with 20 of them running
  VM cache     `kata-runtime run` of `true` taking a VM from the factory's cache (warm), against
               runc's `run` of `true` and a cold run
  templating   BENCH_TEMPLATE_VMS (10) cached VMs started from a template VM against the same
               number booted normally: time to agent-ready and QEMU PSS per VM
  kernel args  the floor with the stock console-only command line, with `quiet`, and with the
               runtime's full list (quiet, cryptomgr.notests, tsc=reliable, no_timer_check...)
  kernels      our kernel (build/guest, built from kernel/fragments/) and Debian's generic one
               (build/guest-debian, `make guest-debian`) side by side in the same run: floor,
               agent ready, cold and warm-cache `run true`, TCP container -> peer against the
               netns ceiling, host PSS of a one-container pod, QEMU PSS of VMs from a template,
               and the TCG translation cache size (-accel tb-size) for ours
  callers      (integration's caller-bench) `ctr run --rm true` through the v1 runtime, our
               shim v2 and runc; `podman`/`docker run --rm true` with kata-runtime and runc;
               host PSS without QEMU of a sleeping pod of 1 and 4 containers under ctr, v1
               (containerd-shims, kata-shims, kata-proxy) against the shim v2
Writes build/bench/results.json too.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

N = int(os.environ.get("BENCH_RUNS", "5"))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/x86_64-unknown-linux-gnu/release")
TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GUEST = os.path.join(TOP, "build/guest")
GUEST_DEBIAN = os.path.join(TOP, "build/guest-debian")
# Appended to every configuration the bench writes: the kernel comparison points the runtime
# at another guest image through it.
HV_SECTION = ""
OUT = os.path.join(TOP, "build/bench")
KERNEL_PARAMS = "console=ttyS0 quiet panic=-1 cryptomgr.notests tsc=reliable no_timer_check reboot=k"


def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def newc(entries):
    """A newc cpio archive of (name, mode, data, rdev_major, rdev_minor) entries."""
    out = bytearray()
    def pad(n):
        out.extend(b"\0" * ((4 - n % 4) % 4))
    for ino, (name, mode, data, major, minor) in enumerate(entries + [("TRAILER!!!", 0, b"", 0, 0)], 1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(nb), 0))
        out.extend(hdr.encode() + nb)
        pad(110 + len(nb))
        out.extend(data)
        pad(len(data))
    return bytes(out)


def floor_initrd(path):
    with open(os.path.join(BIN, "floor-init"), "rb") as f:
        init = f.read()
    with open(path, "wb") as f:
        f.write(newc([("dev", 0o40755, b"", 0, 0), ("dev/console", 0o20600, b"", 5, 1),
                      ("init", 0o100755, init, 0, 0)]))


def floor_once(initrd, params=KERNEL_PARAMS, guest=None):
    cmd = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "qemu64", "-m", "256M",
           "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
           "-serial", "stdio", "-object", "rng-random,id=rng0,filename=/dev/urandom",
           "-device", "virtio-rng-pci,rng=rng0", "-kernel", os.path.join(guest or GUEST, "vmlinux"),
           "-initrd", initrd, "-append", params]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    took = None
    for line in p.stdout:
        if b"KATA-FLOOR-READY" in line:
            took = time.monotonic() - t0
            break
    p.wait(timeout=30)
    return took


def runtime(env, *args, **kw):
    cmd = [os.path.join(BIN, "kata-runtime"), "--root", env["root"], "--kata-config", env["config"],
           "--log", env["log"], "--log-format", "json", "--debug"] + list(args)
    return subprocess.run(cmd, timeout=120, **kw)


MANY = 20


def bench_runc_exec(work, bundle):
    """runc's own exec of `true` on this machine, the reference for kata's exec."""
    runc = shutil.which("runc")
    if not runc:
        return []
    root = os.path.join(work, "runc-root")
    cmd = [runc, "--root", root]
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if subprocess.run(cmd + ["run", "-d", "--bundle", bundle, "runc-bench"], timeout=60, **quiet).returncode:
        return []
    times = []
    try:
        for _ in range(N):
            t0 = time.monotonic()
            if subprocess.run(cmd + ["exec", "runc-bench", "true"], timeout=60, **quiet).returncode == 0:
                times.append(time.monotonic() - t0)
    finally:
        subprocess.run(cmd + ["delete", "--force", "runc-bench"], timeout=60, **quiet)
    return times


def annotate(bundle, annotations):
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        spec = json.load(f)
    spec["annotations"] = annotations
    with open(path, "w") as f:
        json.dump(spec, f)


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def bench_pod(env, work):
    """Adding a member (create+start of `true`) to a running pod sandbox, and what one
    member costs on the host: its kata-shim's RSS."""
    mk = os.path.join(TOP, "scripts/make-busybox-bundle.sh")
    sandbox, member, sleeper = (os.path.join(work, n) for n in ("pod-sb", "pod-true", "pod-sleep"))
    subprocess.run([mk, sandbox, "sleep", "1000"], check=True)
    subprocess.run([mk, member, "true"], check=True)
    subprocess.run([mk, sleeper, "sleep", "1000"], check=True)
    key, sid = "io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"
    annotate(sandbox, {key: "sandbox", sid: "podb"})
    for b in (member, sleeper):
        annotate(b, {key: "container", sid: "podb"})
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times, rss = [], None
    try:
        if runtime(env, "create", "--bundle", sandbox, "podb", **quiet).returncode:
            return [], None
        runtime(env, "start", "podb", **quiet)
        for i in range(N * 2):
            cid = "podm%d" % i
            t0 = time.monotonic()
            ok = runtime(env, "create", "--bundle", member, cid, **quiet).returncode == 0
            ok = ok and runtime(env, "start", cid, **quiet).returncode == 0
            if ok:
                times.append(time.monotonic() - t0)
            runtime(env, "delete", "--force", cid, **quiet)
        pid_file = os.path.join(work, "member.pid")
        if runtime(env, "create", "--bundle", sleeper, "--pid-file", pid_file, "podrss", **quiet).returncode == 0:
            runtime(env, "start", "podrss", **quiet)
            time.sleep(1)
            rss = rss_mib(int(open(pid_file).read()))
    finally:
        runtime(env, "delete", "--force", "podb", **quiet)
    return times, rss


def host_overhead(env, cid):
    """The sandbox_host_overhead block of `events --stats`."""
    r = runtime(env, "events", "--stats", cid, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if r.returncode:
        return None
    return json.loads(r.stdout)["data"]["sandbox_host_overhead"]


def bench_pod_memory(env, work):
    """Host cost of a pod with 1 and with 4 containers: PSS and RSS per component (MiB)."""
    mk = os.path.join(TOP, "scripts/make-busybox-bundle.sh")
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    key, sid = "io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"
    sb, member = os.path.join(work, "mem-sb"), os.path.join(work, "mem-member")
    subprocess.run([mk, sb, "sleep", "1000"], check=True)
    subprocess.run([mk, member, "sleep", "1000"], check=True)
    annotate(sb, {key: "sandbox", sid: "memp"})
    annotate(member, {key: "container", sid: "memp"})
    out = {}
    try:
        if runtime(env, "run", "-d", "--bundle", sb, "memp", **quiet).returncode:
            return out
        for size in (1, 4):
            for i in range(1, size):
                cid = "memm%d" % i
                if runtime(env, "state", cid, **quiet).returncode == 0:
                    continue
                runtime(env, "create", "--bundle", member, cid, **quiet)
                runtime(env, "start", cid, **quiet)
            time.sleep(2)
            o = host_overhead(env, "memp")
            if not o:
                continue
            out["%d" % size] = overhead_by_component(o)
    finally:
        for i in range(1, 4):
            runtime(env, "delete", "--force", "memm%d" % i, **quiet)
        runtime(env, "delete", "--force", "memp", **quiet)
    # The same pod of 1 with virtio-fs (a per-pod annotation): virtiofsd is part of the cost.
    fs = os.path.join(work, "mem-fs")
    subprocess.run([mk, fs, "sleep", "1000"], check=True)
    annotate(fs, {"io.katacontainers.config.hypervisor.shared_fs": "virtio-fs"})
    try:
        if runtime(env, "run", "-d", "--bundle", fs, "memfs", **quiet).returncode == 0:
            time.sleep(2)
            o = host_overhead(env, "memfs")
            if o:
                out["1-virtio-fs"] = overhead_by_component(o)
    finally:
        runtime(env, "delete", "--force", "memfs", **quiet)
    return out


def overhead_by_component(o):
    """PSS/RSS (MiB) per component of a sandbox_host_overhead block, and totals."""
    per = {}
    for p in o["processes"]:
        c = per.setdefault(p["component"], {"pss_mib": 0.0, "rss_mib": 0.0, "count": 0})
        c["pss_mib"] += p.get("pss_bytes", 0) / 2**20
        c["rss_mib"] += p["rss_bytes"] / 2**20
        c["count"] += 1
    non_qemu = sum(v["pss_mib"] for k, v in per.items() if k != "qemu")
    return {"components": per, "total_pss_mib": o.get("total_pss_bytes", 0) / 2**20,
            "non_qemu_pss_mib": non_qemu}


def rust_duration_s(text):
    """A Rust Duration's Debug text (`289.98ms`, `1.2s`, `950µs`, `12ns`) in seconds."""
    for unit, scale in (("ms", 1e-3), ("µs", 1e-6), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(text)


def epoch_s(rfc3339):
    """`2026-11-26T21:31:02.012267292Z` in seconds since the epoch (nanoseconds kept)."""
    import calendar
    date, frac = rfc3339.rstrip("Z").split(".") if "." in rfc3339 else (rfc3339.rstrip("Z"), "0")
    secs = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S"))
    return secs + float("0." + frac)


def boot_phases_of(entries):
    """Boot phases (seconds) from one sandbox's merged log entries, or None."""
    qemu_start = early = serving = ready_total = None
    late = 0.0
    for e in entries:
        msg, t = e.get("msg", ""), epoch_s(e["time"])
        if e.get("source") == "agent" and " late modules loaded in " in msg:
            # Loaded after the agent serves, off the path to ready: reported, not summed.
            late = rust_duration_s(msg.split(" late modules loaded in ")[1].split(" ")[0])
        if e.get("source") == "runtime" and " QEMU pid " in msg and " up with " in msg:
            took = msg.split(" in ")[1].split(" ")[0]
            qemu_start = t - rust_duration_s(took)
        elif e.get("source") == "agent" and msg.startswith("early init done in ") and early is None:
            early = (t, rust_duration_s(msg.split("early init done in ")[1].split(":")[0]))
        elif e.get("source") == "agent" and msg.startswith("server listen started") and serving is None:
            serving = t
        elif e.get("source") == "runtime" and " agent ready " in msg:
            ready_total = float(msg.split(" agent ready ")[1].split("s ")[0])
    if None in (qemu_start, early, serving, ready_total):
        return None
    agent_start = early[0] - early[1]
    return {"firmware_kernel_s": agent_start - qemu_start, "agent_early_init_s": early[1],
            "agent_to_serving_s": serving - agent_start,
            "host_sees_ready_s": ready_total - (serving - qemu_start), "total_s": ready_total,
            "late_modules_after_ready_s": late}


def bench_boot_phases(env, bundle):
    """Where a sandbox's boot time goes, from the log `kata-runtime logs` merges (N runs)."""
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = []
    for i in range(N):
        cid = "boot%d" % i
        if runtime(env, "run", "-d", "--bundle", bundle, cid, **quiet).returncode:
            continue
        # The late modules finish ~0.5 s after the agent serves: let their line arrive.
        time.sleep(1.5)
        r = runtime(env, "logs", "--json", cid, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        entries = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        phases = boot_phases_of(entries)
        if phases:
            runs.append(phases)
        runtime(env, "delete", "--force", cid, **quiet)
    if not runs:
        return None
    return {k: stats([r[k] for r in runs]) for k in runs[0]}


SCALE = int(os.environ.get("BENCH_SCALE", "30"))


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bench_scale(env, bundle):
    """SCALE sandboxes started one after another (all kept running): the time of each
    `run -d` and the host memory they take, per sandbox, as the count grows. With MANY of
    them running, `state` and `list` are timed too (they read records only)."""
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = mem_available_mib()
    rows = []
    ids = []
    state_t, list_t = [], []
    try:
        for i in range(SCALE):
            cid = "scale%02d" % i
            t0 = time.monotonic()
            if runtime(env, "run", "-d", "--bundle", bundle, cid, **quiet).returncode:
                break
            took = time.monotonic() - t0
            ids.append(cid)
            used = base - mem_available_mib()
            rows.append({"count": i + 1, "start_s": took, "host_mib_per_sandbox": used / (i + 1)})
            if len(ids) == MANY:
                for _ in range(N):
                    t0 = time.monotonic()
                    runtime(env, "state", ids[-1], stdout=subprocess.DEVNULL)
                    state_t.append(time.monotonic() - t0)
                    t0 = time.monotonic()
                    runtime(env, "list", stdout=subprocess.DEVNULL)
                    list_t.append(time.monotonic() - t0)
    finally:
        for cid in ids:
            runtime(env, "delete", "--force", cid, **quiet)
    return rows, state_t, list_t


RECEIVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); s.settimeout(120)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(120)
n, t0 = 0, None
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    if t0 is None:
        t0 = time.monotonic()
    n += len(b)
print(n, time.monotonic() - t0, flush=True)
"""
NET_MIB = int(os.environ.get("BENCH_NET_MIB", "16"))


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, stdout=subprocess.DEVNULL)


def receive_in(ns, addr, sender):
    """Mbit/s of one TCP stream to a receiver in netns `ns` at `addr`, sent by `sender()`."""
    rx = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", RECEIVER, addr],
                          stdout=subprocess.PIPE, text=True)
    rx.stdout.readline()
    sender()
    out = rx.communicate(timeout=180)[0].split()
    n, secs = int(out[0]), float(out[1])
    return n * 8 / secs / 1e6 if n and secs > 0 else None


def bench_network(env, work, models=("tcfilter", "macvtap", "bridged")):
    """TCP throughput container -> peer netns for each interworking model, and between two
    plain namespaces (the host's own ceiling)."""
    tag = str(os.getpid())
    pod, peer = "kb-pod-" + tag, "kb-peer-" + tag
    results = {}
    try:
        ip("netns", "add", pod)
        ip("netns", "add", peer)
        ip("link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name", "peer0", "netns", peer)
        ip("-n", pod, "addr", "add", "10.203.0.2/24", "dev", "eth0")
        ip("-n", peer, "addr", "add", "10.203.0.1/24", "dev", "peer0")
        for ns, dev in ((pod, "eth0"), (peer, "peer0")):
            ip("-n", ns, "link", "set", dev, "up")
        time.sleep(2)
        send = "dd if=/dev/zero bs=65536 count=%d 2>/dev/null | nc 10.203.0.1 5001" % (NET_MIB * 16)
        results["netns"] = [receive_in(peer, "10.203.0.1", lambda: subprocess.run(
            ["ip", "netns", "exec", pod, "busybox", "sh", "-c", send], timeout=180))
            for _ in range(3)]
        # The same with a sender writing 256 KiB at a time (busybox nc writes 1 KiB per
        # syscall, so under TCG it measures the guest's cost per syscall and per packet).
        checker = os.path.join(BIN, "kata-spec-checker")
        big = [checker, "--tcp-send", "10.203.0.1:5001", str(NET_MIB)]
        results["netns_big_writes"] = [receive_in(peer, "10.203.0.1", lambda: subprocess.run(
            ["ip", "netns", "exec", pod] + big, timeout=180)) for _ in range(3)]
        bundle = os.path.join(work, "netbench")
        subprocess.run([os.path.join(TOP, "scripts/make-busybox-bundle.sh"), bundle, "sleep", "1000"],
                       check=True, stdout=subprocess.DEVNULL)
        shutil.copy(checker, os.path.join(bundle, "rootfs", "kata-spec-checker"))
        cfg_path = os.path.join(bundle, "config.json")
        spec = json.load(open(cfg_path))
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = "/var/run/netns/" + pod
        json.dump(spec, open(cfg_path, "w"))
        base_config = open(env["config"]).read()
        for model in models:
            menv = dict(env, config=os.path.join(work, "config-%s.toml" % model))
            with open(menv["config"], "w") as f:
                f.write(base_config.replace("[runtime]\n", '[runtime]\ninternetworking_model = "%s"\n' % model, 1))
            cid = "net-" + model
            r = runtime(menv, "run", "-d", "--bundle", bundle, cid, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode:
                results[model] = []
                continue
            try:
                results[model] = [receive_in(peer, "10.203.0.1", lambda: runtime(
                    menv, "exec", cid, "sh", "-c", send, stdin=subprocess.DEVNULL))
                    for _ in range(3)]
                results[model + "_big_writes"] = [receive_in(peer, "10.203.0.1", lambda: runtime(
                    menv, "exec", cid, "/kata-spec-checker", *big[1:], stdin=subprocess.DEVNULL))
                    for _ in range(3)]
            finally:
                runtime(menv, "delete", "--force", cid, stdout=subprocess.DEVNULL)
    finally:
        for ns in (pod, peer):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    return {k: stats([x for x in v if x]) if any(v) else None for k, v in results.items()}


FS_MIB = int(os.environ.get("BENCH_FS_MIB", "64"))
FS_FILES = int(os.environ.get("BENCH_FS_FILES", "10000"))


def bench_storage(env, work):
    """Sequential write (fsync'd) and read, small-file create/stat/delete, inside a container
    over 9p, virtio-fs and a hot-plugged block-device rootfs, and on the host (the ceiling):
    `kata-spec-checker --fs-bench` in each place."""
    checker = os.path.join(BIN, "kata-spec-checker")
    args = ["--fs-bench", None, str(FS_MIB), str(FS_FILES)]
    vol = os.path.join(work, "fsvol")
    os.makedirs(vol, exist_ok=True)
    results = {}

    def parse(out):
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    r = subprocess.run([checker, "--fs-bench", vol, str(FS_MIB), str(FS_FILES)],
                       stdout=subprocess.PIPE, text=True)
    results["host"] = parse(r.stdout)

    def bundle_with(name, target, extra_mount):
        b = os.path.join(work, name)
        subprocess.run([os.path.join(TOP, "scripts/make-busybox-bundle.sh"), b, "/kata-spec-checker",
                        "--fs-bench", target, str(FS_MIB), str(FS_FILES)], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.copy(checker, os.path.join(b, "rootfs", "kata-spec-checker"))
        if extra_mount:
            path = os.path.join(b, "config.json")
            spec = json.load(open(path))
            spec["mounts"].append({"destination": "/data", "type": "bind", "source": vol,
                                   "options": ["rbind", "rw"]})
            json.dump(spec, open(path, "w"))
        return b

    base_config = open(env["config"]).read()
    for fs in ("virtio-9p", "virtio-fs"):
        fenv = dict(env, config=os.path.join(work, "config-%s.toml" % fs))
        with open(fenv["config"], "w") as f:
            f.write(base_config + '\n[hypervisor.qemu]\nshared_fs = "%s"\n' % fs)
        b = bundle_with("fs-" + fs, "/data", True)
        r = runtime(fenv, "run", "--bundle", b, "fsb-" + fs, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        results[fs] = parse(r.stdout) if r.returncode == 0 else None

    # A rootfs on a loop-device ext4 image: hot-plugged as a virtio-blk disk.
    b = bundle_with("fs-blk", "/bench", False)
    os.makedirs(os.path.join(b, "rootfs", "bench"), exist_ok=True)
    img = os.path.join(b, "rootfs.img")
    loop = None
    try:
        os.rename(os.path.join(b, "rootfs"), os.path.join(b, "rootfs.files"))
        os.makedirs(os.path.join(b, "rootfs"))
        subprocess.run(["truncate", "-s", "%dM" % (FS_MIB + 192), img], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-d", os.path.join(b, "rootfs.files"), img], check=True)
        loop = subprocess.run(["losetup", "-f", "--show", img], check=True, stdout=subprocess.PIPE,
                              text=True).stdout.strip()
        subprocess.run(["mount", loop, os.path.join(b, "rootfs")], check=True)
        r = runtime(env, "run", "--bundle", b, "fsb-blk", stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        results["block"] = parse(r.stdout) if r.returncode == 0 else None
    except (OSError, subprocess.CalledProcessError):
        results["block"] = None
    finally:
        subprocess.run(["umount", os.path.join(b, "rootfs")], stderr=subprocess.DEVNULL)
        if loop:
            subprocess.run(["losetup", "-d", loop], stderr=subprocess.DEVNULL)
    return results


TEMPLATE_VMS = int(os.environ.get("BENCH_TEMPLATE_VMS", "10"))


def factory_env(work, name, section):
    """A runtime environment of its own with a [factory] section."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    env = {"root": os.path.join(d, "root"), "config": os.path.join(d, "config.toml"),
           "log": os.path.join(d, "runtime.log")}
    with open(env["config"], "w") as f:
        f.write('[runtime]\nvm_dir = "%s/vm"\nshared_dir = "%s/shared"\n[factory]\n%s%s' % (d, d, section, HV_SECTION))
    return env


def factory_status(env):
    r = runtime(env, "factory", "status", "--json", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait_cache_full(env, n, budget=600):
    t0 = time.monotonic()
    while time.monotonic() - t0 < budget:
        st = factory_status(env)
        if st and len(st["ready"]) >= n and not st["booting"]:
            return st
        time.sleep(0.2)
    return None


def pss_mib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def bench_runc_run(work, bundle):
    """runc's `run` of `true` (create, start, wait, delete), the reference for kata's run."""
    runc = shutil.which("runc")
    if not runc:
        return []
    root = os.path.join(work, "runc-root")
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for i in range(N):
        t0 = time.monotonic()
        if subprocess.run([runc, "--root", root, "run", "--bundle", bundle, "runc-run%d" % i],
                          timeout=60, **quiet).returncode == 0:
            times.append(time.monotonic() - t0)
    return times


def bench_vm_cache(work, bundle, name="cache"):
    """`run true` with a warm VM cache: each run takes a booted VM (the cache is full again
    before each run, as on a host whose sandboxes do not all arrive at once)."""
    env = factory_env(work, name, "vm_cache_number = 1\n")
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    if runtime(env, "factory", "init", **quiet).returncode:
        return times
    try:
        for i in range(N):
            if not wait_cache_full(env, 1):
                break
            # A VM fresh in the cache is still loading its late modules (~0.6 s of guest CPU
            # under TCG after its agent answers); a warm cache has idle VMs.
            time.sleep(1.5)
            t0 = time.monotonic()
            if runtime(env, "run", "--bundle", bundle, "warm%d" % i, **quiet).returncode == 0:
                times.append(time.monotonic() - t0)
    finally:
        runtime(env, "factory", "destroy", **quiet)
    return times


def cached_vms(work, name, section, n):
    """Fills a cache of n VMs; returns (seconds to fill, status) with QEMU PSS per VM."""
    env = factory_env(work, name, section)
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        if runtime(env, "factory", "init", **quiet).returncode:
            return None, None
        st = wait_cache_full(env, n)
        took = time.monotonic() - t0
        if st:
            time.sleep(2)
            for vm in st["ready"]:
                vm["pss_mib"] = pss_mib(vm["qemu_pid"])
        return took, st
    finally:
        runtime(env, "factory", "destroy", **quiet)


def bench_templating(work):
    """TEMPLATE_VMS VMs booted normally vs started from a template: time to agent ready and
    host memory (PSS, which splits the template's shared pages among the clones) per VM."""
    out = {}
    for key, section in (("boot", "vm_cache_number = %d\n" % TEMPLATE_VMS),
                         ("template", "vm_cache_number = %d\nenable_template = true\n" % TEMPLATE_VMS)):
        took, st = cached_vms(work, "tmpl-" + key, section, TEMPLATE_VMS)
        if not st:
            continue
        vms = st["ready"]
        out[key] = {"fill_s": took, "vms": len(vms),
                    "start_s": stats([v["boot_ms"] / 1000 for v in vms]),
                    "qemu_pss_mib": stats([v["pss_mib"] for v in vms if v["pss_mib"] is not None]),
                    "template_s": (st.get("template_ms") or 0) / 1000 if key == "template" else None}
    return out


def bench_kernel_params(initrd):
    """The floor with the stock console-only command line, with `quiet` added, and with the
    runtime's full list: what the parameters buy."""
    variants = [("console only", "console=ttyS0 panic=-1 reboot=k"),
                ("+ quiet", "console=ttyS0 quiet panic=-1 reboot=k"),
                ("runtime's list", KERNEL_PARAMS)]
    out = {}
    for label, params in variants:
        xs = [t for t in (floor_once(initrd, params) for _ in range(N)) if t is not None]
        if xs:
            out[label] = stats(xs)
    return out


def bench_callers():
    """ctr, podman and docker run --rm true, kata-runtime vs runc (integration's caller-bench:
    its own containerd, podman roots and dockerd)."""
    exe = os.path.join(BIN, "caller-bench")
    if not os.path.exists(exe):
        return {}
    r = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                       timeout=1800, env=dict(os.environ, BENCH_RUNS=str(N)))
    try:
        raw = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}
    memory = raw.pop("pod_memory_without_qemu", {})
    out = {k: {rt: stats(v) if v else None for rt, v in per.items()} for k, per in raw.items()}
    out["pod_memory_without_qemu"] = memory
    return out


def pod_of_one_pss(env, work, name):
    """Host PSS (MiB) of a sleeping one-container pod: QEMU, proxy, shim (events --stats)."""
    bundle = os.path.join(work, name + "-bundle")
    subprocess.run([os.path.join(TOP, "scripts/make-busybox-bundle.sh"), bundle, "sleep", "1000"],
                   check=True, stdout=subprocess.DEVNULL)
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if runtime(env, "run", "-d", "--bundle", bundle, name, **quiet).returncode:
            return None
        time.sleep(3)
        o = host_overhead(env, name)
        return overhead_by_component(o)["total_pss_mib"] if o else None
    finally:
        runtime(env, "delete", "--force", name, **quiet)


def env_with_bundle(d):
    """A runtime environment of its own in folder d (its configuration ends with HV_SECTION)
    and a busybox bundle running `true`: (d, env, bundle)."""
    os.makedirs(d, exist_ok=True)
    env = {"root": os.path.join(d, "root"), "config": os.path.join(d, "config.toml"),
           "log": os.path.join(d, "runtime.log")}
    with open(env["config"], "w") as f:
        f.write('[runtime]\nvm_dir = "%s/vm"\nshared_dir = "%s/shared"\n%s' % (d, d, HV_SECTION))
    bundle = os.path.join(d, "bundle")
    subprocess.run([os.path.join(TOP, "scripts/make-busybox-bundle.sh"), bundle, "true"], check=True)
    return d, env, bundle


def kernel_rows(work, label, guest):
    """The issue-18 rows for one guest image (build/guest or build/guest-debian)."""
    global HV_SECTION
    HV_SECTION = '[hypervisor.qemu]\nkernel = "%s/vmlinux"\ninitrd = "%s/initrd.img"\n' % (guest, guest)
    d, env, bundle = env_with_bundle(os.path.join(work, "k-" + label))
    initrd = os.path.join(d, "floor.img")
    floor_initrd(initrd)
    floor, run_true, ready = [], [], []
    try:
        for i in range(N):
            t = floor_once(initrd, guest=guest)
            if t is not None:
                floor.append(t)
            t0 = time.monotonic()
            if runtime(env, "run", "--bundle", bundle, "k%d" % i, stdout=subprocess.DEVNULL).returncode == 0:
                run_true.append(time.monotonic() - t0)
        with open(env["log"]) as f:
            for line in f:
                msg = json.loads(line).get("msg", "")
                if "agent ready" in msg and "cached" not in msg:
                    ready.append(float(msg.split("agent ready ")[1].split("s ")[0]))
        row = {"floor_s": stats(floor) if floor else None,
               "agent_ready_s": stats(ready) if ready else None,
               "run_true_s": stats(run_true) if run_true else None}
        warm = bench_vm_cache(d, bundle, "cache-" + label)
        row["warm_cache_run_true_s"] = stats(warm) if warm else None
        net = bench_network(env, d, models=("tcfilter",))
        row["tcp_mbit_s"] = net.get("tcfilter")
        row["tcp_ceiling_mbit_s"] = net.get("netns")
        row["tcp_big_writes_mbit_s"] = net.get("tcfilter_big_writes")
        row["tcp_big_writes_ceiling_mbit_s"] = net.get("netns_big_writes")
        row["pod_of_1_pss_mib"] = pod_of_one_pss(env, d, "pss-" + label)
        took, st = cached_vms(d, "tmpl-" + label, "vm_cache_number = %d\nenable_template = true\n" % TEMPLATE_VMS,
                              TEMPLATE_VMS)
        pss = [v["pss_mib"] for v in (st or {}).get("ready", []) if v.get("pss_mib") is not None]
        row["template_qemu_pss_mib"] = stats(pss) if pss else None
        return row
    finally:
        HV_SECTION = ""


def bench_kernels(work):
    """Our kernel and Debian's side by side."""
    out = {}
    images = [("ours", GUEST)]
    if os.path.exists(os.path.join(GUEST_DEBIAN, "vmlinux")):
        images.append(("debian", GUEST_DEBIAN))
    for label, guest in images:
        out[label] = kernel_rows(work, label, guest)
    return out


TB_SIZES = [int(x) for x in os.environ.get("BENCH_TB_SIZES", "0,16,32,64").split(",")]
MEMORY_SIZES = [int(x) for x in os.environ.get("BENCH_MEMORY_SIZES", "128,256").split(",")]


def tuning_rows(work):
    """Our kernel with each TCG translation cache size, default guest memory, and without free
    page reporting: cold `run true` and the host PSS of a one-container pod, so each choice's
    cost is measured."""
    global HV_SECTION
    rows = []
    choices = [("tcg_tb_size = %d" % tb, "tcg_tb_size = %d\n" % tb) for tb in TB_SIZES]
    choices += [("default_memory = %d" % m, "default_memory = %d\n" % m) for m in MEMORY_SIZES]
    choices += [("reclaim_guest_freed_memory = false", "reclaim_guest_freed_memory = false\n")]
    for label, extra in choices:
        HV_SECTION = "[hypervisor.qemu]\n" + extra
        d, env, bundle = env_with_bundle(
            os.path.join(work, "tune-" + label.replace(" ", "").replace("=", "-")))
        times = []
        try:
            for i in range(N):
                t0 = time.monotonic()
                if runtime(env, "run", "--bundle", bundle, "t%d" % i, stdout=subprocess.DEVNULL).returncode == 0:
                    times.append(time.monotonic() - t0)
            rows.append({"choice": label, "run_true_s": stats(times) if times else None,
                         "pod_of_1_pss_mib": pod_of_one_pss(env, d, "tpss")})
        finally:
            HV_SECTION = ""
    return rows


def print_kernels(kernels):
    labels = list(kernels)
    def cell(row, key):
        v = row.get(key)
        if v is None:
            return "(failed)"
        return "%.3f" % v["median"] if isinstance(v, dict) else "%.1f" % v
    print("%-38s %s" % ("kernel comparison (medians)", " ".join("%14s" % l for l in labels)))
    for key, label, target in [
            ("floor_s", "floor: QEMU start -> /init line (s)", "<= 1.2"),
            ("agent_ready_s", "QEMU start -> agent ready (s)", "<= 1.5"),
            ("run_true_s", "cold run true (s)", "<= 2.0"),
            ("warm_cache_run_true_s", "warm-cache run true (s)", "<= 0.82"),
            ("tcp_mbit_s", "TCP container -> peer (Mbit/s)", ">= 25% of ceiling"),
            ("tcp_ceiling_mbit_s", "TCP netns -> netns ceiling (Mbit/s)", ""),
            ("tcp_big_writes_mbit_s", "TCP container -> peer, 256K writes", ">= 25% of ceiling"),
            ("tcp_big_writes_ceiling_mbit_s", "TCP netns -> netns, 256K writes", ""),
            ("pod_of_1_pss_mib", "pod of 1: host PSS (MiB)", "<= 128"),
            ("template_qemu_pss_mib", "VM from a template: QEMU PSS (MiB)", "<= 30")]:
        print("%-38s %s   %s" % (label, " ".join("%14s" % cell(kernels[l], key) for l in labels),
                                  "(target %s)" % target if target else ""))
    for l in labels:
        for what, k, c in (("1K writes", "tcp_mbit_s", "tcp_ceiling_mbit_s"),
                           ("256K writes", "tcp_big_writes_mbit_s", "tcp_big_writes_ceiling_mbit_s")):
            tcp, ceil = kernels[l].get(k), kernels[l].get(c)
            if tcp and ceil:
                print("%-38s %.1f%% of the ceiling" % ("TCP share, %s, %s" % (what, l), 100 * tcp["median"] / ceil["median"]))


def main():
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="kbench", dir="/tmp")
    env = {"root": os.path.join(work, "root"), "config": os.path.join(work, "config.toml"),
           "log": os.path.join(work, "runtime.log")}
    with open(env["config"], "w") as f:
        f.write('[runtime]\nvm_dir = "%s/vm"\nshared_dir = "%s/shared"\n' % (work, work))
    bundle = os.path.join(work, "bundle")
    subprocess.run([os.path.join(TOP, "scripts/make-busybox-bundle.sh"), bundle, "true"], check=True)
    sleeper = os.path.join(work, "sleeper")
    subprocess.run([os.path.join(TOP, "scripts/make-busybox-bundle.sh"), sleeper, "sleep", "1000"], check=True)
    initrd = os.path.join(work, "floor.img")
    floor_initrd(initrd)

    floor, run_true, ready = [], [], []
    for i in range(N):
        t = floor_once(initrd)
        if t is not None:
            floor.append(t)
        t0 = time.monotonic()
        r = runtime(env, "run", "--bundle", bundle, "b%d" % i, stdout=subprocess.DEVNULL)
        if r.returncode == 0:
            run_true.append(time.monotonic() - t0)
    with open(env["log"]) as f:
        for line in f:
            msg = json.loads(line).get("msg", "")
            if "agent ready" in msg:
                ready.append(float(msg.split("agent ready ")[1].split("s ")[0]))

    rss = {}
    exec_true, state_t, list_t = [], [], []
    r = runtime(env, "run", "-d", "--bundle", sleeper, "rss", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode == 0:
        time.sleep(1)
        for _ in range(N):
            t0 = time.monotonic()
            if runtime(env, "exec", "rss", "true", stdin=subprocess.DEVNULL).returncode == 0:
                exec_true.append(time.monotonic() - t0)
            t0 = time.monotonic()
            runtime(env, "state", "rss", stdout=subprocess.DEVNULL)
            state_t.append(time.monotonic() - t0)
            t0 = time.monotonic()
            runtime(env, "list", stdout=subprocess.DEVNULL)
            list_t.append(time.monotonic() - t0)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
                status = open("/proc/%s/status" % pid).read()
            except OSError:
                continue
            if work.encode() not in b" ".join(cmdline):
                continue
            name = os.path.basename(cmdline[0].decode())
            kb = int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS")))
            rss[name] = kb / 1024
        runtime(env, "delete", "--force", "rss")

    runc_exec = bench_runc_exec(work, sleeper)
    member_add, member_rss = bench_pod(env, work)
    net = bench_network(env, work)
    callers = bench_callers()
    storage = bench_storage(env, work)
    pod_memory = bench_pod_memory(env, work)
    boot_phases = bench_boot_phases(env, sleeper)
    scale, state20, list20 = bench_scale(env, sleeper)
    runc_run = bench_runc_run(work, bundle)
    warm = bench_vm_cache(work, bundle)
    templating = bench_templating(work)
    kernel_params = bench_kernel_params(initrd)
    kernels = bench_kernels(work)
    tuning = tuning_rows(work)

    results = {"floor_s": stats(floor) if floor else None,
               "run_true_s": stats(run_true) if run_true else None,
               "agent_ready_s": stats(ready) if ready else None,
               "exec_true_s": stats(exec_true) if exec_true else None,
               "state_s": stats(state_t) if state_t else None,
               "list_s": stats(list_t) if list_t else None,
               "runc_exec_true_s": stats(runc_exec) if runc_exec else None,
               "pod_member_add_s": stats(member_add) if member_add else None,
               "pod_member_shim_rss_mib": member_rss,
               "state_20_s": stats(state20) if state20 else None,
               "list_20_s": stats(list20) if list20 else None,
               "rss_mib": rss,
               "tcp_mbit_s": net,
               "callers_s": callers,
               "storage": storage,
               "pod_memory": pod_memory,
               "boot_phases": boot_phases,
               "scale": scale,
               "runc_run_true_s": stats(runc_run) if runc_run else None,
               "warm_cache_run_true_s": stats(warm) if warm else None,
               "templating": templating,
               "kernel_params_floor_s": kernel_params,
               "kernels": kernels,
               "tuning": tuning}
    fl = results["floor_s"]["median"] if floor else None
    print("%-34s %9s %9s %9s %9s" % ("benchmark", "median", "min", "max", "x floor"))
    for key, label, vs_floor in [("floor_s", "floor: QEMU start -> /init line", True),
                                 ("agent_ready_s", "QEMU start -> agent ready", True),
                                 ("run_true_s", "kata-runtime run true", True),
                                 ("warm_cache_run_true_s", "run true, warm VM cache", True),
                                 ("runc_run_true_s", "runc run true (reference)", False),
                                 ("exec_true_s", "kata-runtime exec true", False),
                                 ("state_s", "kata-runtime state (1 container)", False),
                                 ("list_s", "kata-runtime list (1 container)", False),
                                 ("runc_exec_true_s", "runc exec true (reference)", False),
                                 ("pod_member_add_s", "pod member create+start true", False),
                                 ("state_20_s", "kata-runtime state (%d containers)" % MANY, False),
                                 ("list_20_s", "kata-runtime list (%d containers)" % MANY, False)]:
        s = results[key]
        if s:
            ratio = "%.2f" % (s["median"] / fl) if fl and vs_floor else "-"
            print("%-34s %8.3fs %8.3fs %8.3fs %9s" % (label, s["median"], s["min"], s["max"], ratio))
        else:
            print("%-34s   (failed)" % label)
    if results["runc_run_true_s"]:
        rr = results["runc_run_true_s"]["median"]
        for key, label in (("run_true_s", "run true: kata cold / runc"),
                           ("warm_cache_run_true_s", "run true: kata warm cache / runc")):
            if results[key]:
                print("%-34s %8.1fx%s" % (label, results[key]["median"] / rr,
                      "   (target: warm <= 0.3 s)" if "warm" in key else ""))
    if results["exec_true_s"] and runc_exec:
        print("%-34s %8.2fx   (target <= 5x)" % ("exec true: kata / runc",
              results["exec_true_s"]["median"] / results["runc_exec_true_s"]["median"]))
    elif not runc_exec:
        print("%-34s   (runc not installed)" % "runc exec true (reference)")
    if member_rss is not None:
        print("%-34s %8.1f MiB   (target <= 2 MiB)" % ("RSS added per pod member (shim)", member_rss))
    for name, mib in sorted(rss.items()):
        print("%-34s %8.1f MiB" % ("RSS " + name, mib))
    ceiling = (net.get("netns") or {}).get("median")
    big_ceiling = (net.get("netns_big_writes") or {}).get("median")
    for key, label in [("netns", "TCP netns -> netns (ceiling)"), ("tcfilter", "TCP container -> peer, tcfilter"),
                       ("macvtap", "TCP container -> peer, macvtap"), ("bridged", "TCP container -> peer, bridged"),
                       ("netns_big_writes", "TCP netns -> netns, 256K writes"),
                       ("tcfilter_big_writes", "TCP container -> peer, 256K wr, tcf"),
                       ("macvtap_big_writes", "TCP container -> peer, 256K wr, mvt"),
                       ("bridged_big_writes", "TCP container -> peer, 256K wr, brg")]:
        s = net.get(key)
        if s:
            base = big_ceiling if key.endswith("_big_writes") else ceiling
            ratio = " %5.1f%% of ceiling" % (100 * s["median"] / base) if base and not key.startswith("netns") else ""
            print("%-34s %6.0f Mbit/s (min %.0f, max %.0f)%s" % (label, s["median"], s["min"], s["max"], ratio))
        else:
            print("%-34s   (failed)" % label)
    for key, label in [("ctr_run_rm_true", "ctr run --rm true"), ("podman_run_rm_true", "podman run --rm true"),
                       ("docker_run_rm_true", "docker run --rm true")]:
        per = callers.get(key) or {}
        kata, runc = per.get("kata"), per.get("runc")
        if kata and runc:
            print("%-34s %8.3fs kata, %8.3fs runc: %.1fx" % (label, kata["median"], runc["median"],
                                                           kata["median"] / runc["median"]))
        else:
            print("%-34s   (failed)" % label)
        if per.get("kata_v2") and runc:
            print("%-34s %8.3fs kata shim v2: %.1fx runc" % (
                label + " (shim v2)", per["kata_v2"]["median"], per["kata_v2"]["median"] / runc["median"]))
    shim_memory = callers.get("pod_memory_without_qemu") or {}
    for size in ("1", "4"):
        for path, label in (("v1", "v1 runtime"), ("v2", "shim v2")):
            pod = (shim_memory.get(path) or {}).get(size)
            title = "pod of %s, %s: host PSS w/o QEMU" % (size, label)
            if not pod:
                print("%-34s   (failed)" % title)
                continue
            parts = ", ".join("%s %.1f" % (k if v["count"] == 1 else "%d %ss" % (v["count"], k), v["pss_mib"])
                              for k, v in sorted(pod["components"].items()))
            print("%-34s %8.1f MiB (%s)%s" % (title, pod["total_pss_mib"], parts,
                  "   (target <= 6 MiB)" if (size, path) == ("4", "v2") else ""))
    host = storage.get("host") or {}
    print("%-34s %9s %9s %10s %10s %10s" % ("storage (%d MiB, %d files)" % (FS_MIB, FS_FILES),
                                          "write MB/s", "read MB/s", "create/s", "stat/s", "delete/s"))
    for key in ("host", "virtio-9p", "virtio-fs", "block"):
        r = storage.get(key)
        if not r:
            print("%-34s   (failed)" % key)
            continue
        cells = []
        for k in ("write_mb_s", "read_mb_s", "create_ops_s", "stat_ops_s", "delete_ops_s"):
            pct = " (%3.0f%%)" % (100 * r[k] / host[k]) if key != "host" and host.get(k) else ""
            cells.append("%.0f%s" % (r[k], pct))
        print("%-34s %s" % (key, "  ".join(cells)))
    for size in ("1", "4", "1-virtio-fs"):
        pod = pod_memory.get(size)
        label = "pod of %s: host memory" % {"1-virtio-fs": "1 (virtio-fs)"}.get(size, size)
        if not pod:
            print("%-34s   (failed)" % label)
            continue
        parts = ", ".join("%s %.1f/%.1f" % (k if v["count"] == 1 else "%d %ss" % (v["count"], k),
                                            v["pss_mib"], v["rss_mib"])
                          for k, v in sorted(pod["components"].items()))
        print("%-34s %8.1f MiB PSS (PSS/RSS MiB: %s); without QEMU %.1f MiB%s" % (
            label, pod["total_pss_mib"], parts, pod["non_qemu_pss_mib"],
            "   (target <= 12 MiB)" if size == "4" else ""))
    if boot_phases:
        print("%-34s %s" % ("boot phases (median s)", ", ".join(
            "%s %.3f" % (k[:-2].replace("_", " "), v["median"]) for k, v in boot_phases.items())))
    else:
        print("%-34s   (failed)" % "boot phases")
    if scale:
        marks = [r for r in scale if r["count"] in (1, 5, 10, 15, 20, 25, 30) or r is scale[-1]]
        print("%-34s %s" % ("scale: start time, MiB/sandbox",
                            "  ".join("%d: %.2fs %.0fMiB" % (r["count"], r["start_s"], r["host_mib_per_sandbox"])
                                      for r in marks)))
    for key, label in (("boot", "%d VMs booted" % TEMPLATE_VMS), ("template", "%d VMs from a template" % TEMPLATE_VMS)):
        t = templating.get(key)
        if not t:
            print("%-34s   (failed)" % label)
            continue
        extra = ", template made in %.2fs" % t["template_s"] if t.get("template_s") else ""
        print("%-34s start %.2fs (min %.2f, max %.2f), QEMU PSS %.0f MiB/VM (min %.0f, max %.0f), all %d in %.1fs%s" % (
            label, t["start_s"]["median"], t["start_s"]["min"], t["start_s"]["max"],
            t["qemu_pss_mib"]["median"], t["qemu_pss_mib"]["min"], t["qemu_pss_mib"]["max"],
            t["vms"], t["fill_s"], extra))
    for label, st in kernel_params.items():
        print("%-34s %8.3fs %8.3fs %8.3fs" % ("floor, kernel args: " + label, st["median"], st["min"], st["max"]))
    print_kernels(kernels)
    for row in tuning:
        rt = row["run_true_s"]
        print("%-38s run true %s, pod of 1 PSS %s" % (
            "ours, " + row["choice"], "%.3fs" % rt["median"] if rt else "(failed)",
            "%.1f MiB" % row["pod_of_1_pss_mib"] if row["pod_of_1_pss_mib"] else "(failed)"))
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
