//! The fuzz targets: one parser (and what consumes its result) each. `run` returns whether the
//! input was accepted, i.e. is a valid document worth mutating further.

use std::collections::HashMap;
use std::path::PathBuf;

pub const NAMES: &[&str] = &[
    "spec",
    "process",
    "annotations",
    "config",
    "state",
    "guest-log",
    "agent-net",
];

pub struct Target {
    name: String,
    /// Scratch folder of the targets that read files.
    dir: tempfile::TempDir,
}

impl Target {
    pub fn new(name: &str) -> Target {
        let dir = tempfile::tempdir().unwrap_or_else(|e| {
            eprintln!("kata-fuzz: cannot make a scratch folder: {e}");
            std::process::exit(2)
        });
        // A bundle with a rootfs for `spec`, a state root for `state`, a VM folder for logs.
        for sub in ["bundle/rootfs", "root/fz", "vm"] {
            if let Err(e) = std::fs::create_dir_all(dir.path().join(sub)) {
                eprintln!("kata-fuzz: {e}");
                std::process::exit(2);
            }
        }
        Target {
            name: name.to_string(),
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, input: &[u8]) {
        // A scratch write failing is the machine's problem, not the parser's: stop.
        if let Err(e) = std::fs::write(self.path(rel), input) {
            eprintln!("kata-fuzz: writing scratch file {rel}: {e}");
            std::process::exit(2);
        }
    }

    pub fn run(&mut self, input: &[u8]) -> bool {
        match self.name.as_str() {
            "spec" => self.spec(input),
            "process" => process(input),
            "annotations" => annotations(input),
            "config" => config_file(input),
            "state" => self.state(input),
            "guest-log" => self.guest_log(input),
            "agent-net" => agent_net(input),
            _ => false,
        }
    }

    /// A bundle's config.json as `create` reads it, then what the host and the guest derive
    /// from it: the container's kind, its capability sets, its compiled seccomp filter.
    fn spec(&self, input: &[u8]) -> bool {
        self.write("bundle/config.json", input);
        let Ok(bundle) = oci::Bundle::load(&self.path("bundle")) else {
            return false;
        };
        let _ = oci::container_type(bundle.spec.annotations().as_ref());
        if let Some(p) = bundle.spec.process() {
            let _ = guest::caps::from_process(p);
        }
        if let Some(seccomp) = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone())
        {
            let _ = guest::seccomp::compile(&seccomp);
        }
        true
    }

    /// State records as every verb loads them (a truncated or edited file must be an error).
    fn state(&self, input: &[u8]) -> bool {
        self.write("root/fz/container.json", input);
        self.write("root/fz/sandbox.json", input);
        let store = store::Store::new(self.path("root"));
        let c = store.load_container("fz").is_ok();
        let s = store.load_sandbox("fz").is_ok();
        c || s
    }

    /// What the guest prints (console lines through the proxy) and QEMU's log, as merged by
    /// `kata-runtime logs`.
    fn guest_log(&self, input: &[u8]) -> bool {
        let text = String::from_utf8_lossy(input);
        let parsed = text
            .lines()
            .filter(|l| sandbox_log::parse(l).is_some())
            .count();
        self.write("vm/proxy.log", input);
        self.write("vm/qemu.log", input);
        let _ = sandbox_log::merge::collect(&self.path("vm"), "fz");
        parsed > 0
    }
}

/// An exec's process.json.
fn process(input: &[u8]) -> bool {
    match serde_json::from_slice::<oci_spec::runtime::Process>(input) {
        Ok(p) => {
            let _ = guest::caps::from_process(&p);
            true
        }
        Err(_) => false,
    }
}

/// Annotations: routing into a pod and per-pod configuration overrides.
fn annotations(input: &[u8]) -> bool {
    let Ok(map) = serde_json::from_slice::<HashMap<String, String>>(input) else {
        return false;
    };
    let kind = oci::container_type(Some(&map)).is_ok();
    let applied = config::Config::default().apply_annotations(&map).is_ok();
    kind && applied
}

/// The configuration file.
fn config_file(input: &[u8]) -> bool {
    let text = String::from_utf8_lossy(input);
    config::Config::parse(&text, std::path::Path::new("fuzz.toml")).is_ok()
}

/// The agent's answers about the guest's network (ListInterfaces, ListRoutes), decoded and
/// validated as the runtime does before using them.
fn agent_net(input: &[u8]) -> bool {
    use protobuf::Message;
    use protocols::agent as pb;
    let mut ok = false;
    if let Ok(i) = pb::Interface::parse_from_bytes(input) {
        ok |= network::agent::interface_from_proto(&i).is_ok();
    }
    if let Ok(r) = pb::Route::parse_from_bytes(input) {
        ok |= network::agent::route_from_proto(&r).is_ok();
    }
    if let Ok(n) = pb::ARPNeighbor::parse_from_bytes(input) {
        ok |= network::agent::neighbor_from_proto(&n).is_ok();
    }
    ok
}
