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
    /// Configuration file (default: /etc/kata-containers/configuration.toml, else built-in).
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
    Events(liboci_cli::Events),
    /// Print what this runtime supports (runc's JSON).
    Features,
    /// Print the versions of the runtime and its components.
    Version,
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
