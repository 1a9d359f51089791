//! kata-runtime: a runc-compatible CLI. Each call is a short process: parse, act through the
//! `sandbox` library, print, exit. Errors are one line on stderr (and in `--log`), exit 1.

mod cli;
mod commands;
mod logging;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // As a C program (runc): a closed stdout pipe (`kata-runtime list | head`) ends the
    // process quietly instead of a panic in println!.
    // SAFETY: resetting a signal disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return cli::usage_error(e),
    };
    logging::init(&cli.global, cli.command.container_id());
    let code = match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            log::error!("{line}");
            eprintln!("kata-runtime: {line}");
            ExitCode::from(1)
        }
    };
    logging::finish();
    code
}
