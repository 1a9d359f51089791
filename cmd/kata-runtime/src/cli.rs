//! Command line: runc's global flags and verbs (liboci-cli's definitions where they match runc).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "kata-runtime",
    version,
    about = "OCI runtime that runs each container in its own VM"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// Folder of the container state (containerd passes one per namespace).
    #[arg(long, global = true, default_value = "/run/vc")]
    pub root: PathBuf,
    /// Log file (default: errors on stderr only).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json (runc's: one JSON object per line with level, msg, time).
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility: cgroups live in the guest.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Configuration file (default: /etc/kata-containers/configuration.toml, else the installed
    /// default share/defaults/kata-containers/configuration.toml, else built-in values).
    #[arg(long, global = true)]
    pub kata_config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Create(liboci_cli::Create),
    Start(liboci_cli::Start),
    State(liboci_cli::State),
    Kill(Kill),
    Delete(liboci_cli::Delete),
    Run(liboci_cli::Run),
    Exec(liboci_cli::Exec),
    List(liboci_cli::List),
    Spec(liboci_cli::Spec),
    Ps(liboci_cli::Ps),
    Pause(liboci_cli::Pause),
    Resume(liboci_cli::Resume),
    Update(liboci_cli::Update),
    Events(Events),
    /// Print what this runtime supports (runc's JSON).
    Features,
    /// Print the versions of the runtime and its components.
    Version,
    /// Check that this host can run sandboxes (exit 1 on any failed check).
    KataCheck(KataCheck),
    /// Print the components' versions, the resolved configuration and host facts.
    KataEnv(KataEnv),
    /// Manage the VM's network interfaces and routes (Kata 1.x's verbs).
    #[command(subcommand)]
    KataNetwork(KataNetwork),
    /// Print one sandbox's log, time-ordered across runtime, proxy, shims, QEMU and agent.
    Logs(Logs),
    /// The VM factory: a daemon keeping `[factory] vm_cache_number` VMs booted for new sandboxes.
    #[command(subcommand)]
    Factory(Factory),
    /// A sandbox's CRI port-forward helper (started by `create` in the pod's namespace).
    #[command(hide = true)]
    PortForward(PortForward),
}

#[derive(clap::Args, Debug)]
pub struct PortForward {
    #[arg(long)]
    pub sandbox: String,
    #[arg(long)]
    pub vm_dir: std::path::PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Factory {
    /// Start the factory daemon; returns once its cache is full.
    Init,
    /// What the daemon holds (exit 1 when none runs).
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon and the VMs in its cache; remove the template.
    Destroy,
    /// The daemon itself (started by `factory init`).
    #[command(hide = true)]
    Serve,
}

impl Command {
    /// The container the call is about, for the sandbox log.
    pub fn container_id(&self) -> Option<&str> {
        Some(match self {
            Command::Create(c) => &c.container_id,
            Command::Start(c) => &c.container_id,
            Command::State(c) => &c.container_id,
            Command::Kill(c) => &c.container_id,
            Command::Delete(c) => &c.container_id,
            Command::Run(c) => &c.container_id,
            Command::Exec(c) => &c.container_id,
            Command::Ps(c) => &c.container_id,
            Command::Pause(c) => &c.container_id,
            Command::Resume(c) => &c.container_id,
            Command::Update(c) => &c.container_id,
            Command::Events(c) => &c.container_id,
            Command::KataNetwork(n) => n.container_id(),
            _ => return None,
        })
    }
}

#[derive(Args, Debug)]
pub struct Logs {
    /// The sandbox (its first container's id), or any container of it.
    pub container_id: String,
    /// One JSON object per line instead of logfmt.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KataCheck {
    /// One JSON object instead of one line per check.
    #[arg(long)]
    pub json: bool,
    /// Check a running sandbox end to end (QEMU and QMP, proxy, agent, shims) instead of
    /// the host.
    #[arg(long, value_name = "ID")]
    pub sandbox: Option<String>,
}

#[derive(Args, Debug)]
pub struct KataEnv {
    /// JSON instead of TOML-like text.
    #[arg(long)]
    pub json: bool,
}

/// `kata-runtime kata-network VERB CONTAINER [FILE|-]`: JSON in (a file or stdin), JSON out.
#[derive(Subcommand, Debug)]
pub enum KataNetwork {
    /// Hot-plug an interface of the pod's namespace into the VM (JSON interface).
    AddIface(NetworkInput),
    /// Unplug an interface added with add-iface (JSON interface: name or hwAddr).
    DelIface(NetworkInput),
    /// List the VM's interfaces.
    ListIfaces(NetworkTarget),
    /// Replace the VM's routes (JSON array of routes).
    UpdateRoutes(NetworkInput),
    /// List the VM's routes.
    ListRoutes(NetworkTarget),
}

impl KataNetwork {
    pub fn container_id(&self) -> &str {
        match self {
            KataNetwork::AddIface(i) | KataNetwork::DelIface(i) | KataNetwork::UpdateRoutes(i) => {
                &i.container_id
            }
            KataNetwork::ListIfaces(t) | KataNetwork::ListRoutes(t) => &t.container_id,
        }
    }
}

#[derive(Args, Debug)]
pub struct NetworkInput {
    pub container_id: String,
    /// JSON file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct NetworkTarget {
    pub container_id: String,
}

/// runc's kill: the signal is optional and defaults to SIGTERM.
#[derive(Args, Debug)]
pub struct Kill {
    pub container_id: String,
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Signal every process of the container.
    #[arg(short, long)]
    pub all: bool,
}

/// runc's events: `--interval` is a Go-style duration (`5s`, `500ms`, `1m`); a bare number
/// is taken as seconds.
#[derive(Args, Debug)]
pub struct Events {
    /// Stats collection interval (default 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Display the container stats only once.
    #[arg(long)]
    pub stats: bool,
    pub container_id: String,
}

/// Parses `1h2m3s`, `1.5s`, `250ms`, `10us`, `5ns` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    if let Ok(secs) = text.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// clap exits 2 on usage errors; an OCI runtime reports every failure with status 1 and one
/// line. Help and --version still print normally.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("kata-runtime: {line}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_in_go_syntax() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
