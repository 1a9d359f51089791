//! kata-proxy: one yamux session on the VM's agent channel, one stream per client.
//!
//! Dials QEMU's agent channel socket (`kata.sock`), runs the host end of the multiplexed
//! session on it (`mux::run_host_until`) and listens on the sandbox's `proxy.sock`; every
//! connection accepted there becomes its own stream to the agent. Exits 0 when the VM goes
//! away (the session ends) or on SIGTERM/SIGINT, removing its listen socket.

mod cli;
mod console;
mod listen;
mod logger;
mod ready;

use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    // For kata-env; no other argument goes with it.
    if matches!(
        std::env::args().nth(1).as_deref(),
        Some("--version" | "-version")
    ) {
        println!("kata-proxy {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(cli::CliError::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kata-proxy: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logger::init(args.log_file.as_deref(), &args.sandbox, args.level) {
        eprintln!("kata-proxy: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    // One thread: the proxy only copies bytes, and every extra thread costs stack and RSS.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: cli::Args) -> Result<()> {
    // Before anything that needs cleaning up: a SIGTERM must never hit the default action
    // (death without removing the socket) once the socket exists.
    let mut sigterm = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;

    let (listener, _socket_file) = listen::bind(&args.listen_socket)?;
    let channel = UnixStream::connect(&args.mux_socket)
        .await
        .with_context(|| {
            format!(
                "connecting to the agent channel {}",
                args.mux_socket.display()
            )
        })?;
    log::info!(
        "serving {} over {}",
        args.listen_socket.display(),
        args.mux_socket.display()
    );
    if let Some(fd) = args.ready_fd {
        ready::notify(fd)?;
    }
    if let Some(console) = args.console_socket {
        tokio::spawn(console::follow(console));
    }

    let stop = async {
        tokio::select! {
            _ = sigterm.recv() => log::info!("SIGTERM received, stopping"),
            _ = sigint.recv() => log::info!("SIGINT received, stopping"),
        }
    };
    mux::run_host_until(channel, listener, stop)
        .await
        .context("agent channel session")?;
    log::info!("exiting");
    Ok(())
}
