//! Command line of kata-proxy.
//!
//! Hand-written rather than clap: the proxy runs once per sandbox for the VM's whole life, so
//! its size and resident memory matter, and it must also take Kata 1.x's Go-style single-dash
//! options (`-listen-socket unix:///path`), which clap does not parse.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;

use log::LevelFilter;

pub const USAGE: &str = "\
usage: kata-proxy --listen-socket PATH --mux-socket PATH --sandbox ID
                  [--console-socket PATH] [--log FILE] [--debug] [--ready-fd N]

  --listen-socket PATH   socket to serve agent clients on (a unix:// prefix is accepted)
  --mux-socket PATH      QEMU's agent channel socket (kata.sock), already listening
  --sandbox ID           sandbox id, put on every log line
  --console-socket PATH  guest console socket to log lines from (alias: -agent-logs-socket)
  --log FILE             append log records to FILE instead of stderr
  --log-level LEVEL      error|warn|info|debug|trace (default info)
  --debug                same as --log-level debug
  --ready-fd N           write one byte to fd N and close it once serving

Kata 1.x forms are accepted too: -listen-socket, -mux-socket, -sandbox, -agent-logs-socket,
-debug, and -log LEVEL (with a single dash, -log takes a level, not a file).";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub listen_socket: PathBuf,
    pub mux_socket: PathBuf,
    pub sandbox: String,
    pub console_socket: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub level: LevelFilter,
    pub ready_fd: Option<RawFd>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    #[error("help requested")]
    Help,
    #[error("unknown option {0:?}")]
    Unknown(String),
    #[error("unexpected argument {0:?}")]
    Positional(String),
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("option {0} takes no value")]
    UnexpectedValue(String),
    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(OsString),
    #[error("missing required option --{0}")]
    Required(&'static str),
    #[error("invalid log level {0:?}")]
    BadLevel(String),
    #[error("invalid --ready-fd {0:?}: must be a descriptor number of at least 3")]
    BadFd(String),
}

pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Args, CliError> {
    let mut args = args.into_iter();
    let mut listen_socket = None;
    let mut mux_socket = None;
    let mut sandbox = None;
    let mut console_socket = None;
    let mut log_file = None;
    let mut level = LevelFilter::Info;
    let mut ready_fd = None;

    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(CliError::NotUtf8)?;
        let (single_dash, body) = if let Some(body) = arg.strip_prefix("--") {
            (false, body)
        } else if let Some(body) = arg.strip_prefix('-') {
            (true, body)
        } else {
            return Err(CliError::Positional(arg));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        // Flags first: they must not swallow the next argument.
        match name {
            "h" | "help" => return Err(CliError::Help),
            "debug" => {
                if inline.is_some() {
                    return Err(CliError::UnexpectedValue(arg));
                }
                level = LevelFilter::Debug;
                continue;
            }
            _ => {}
        }
        let mut value = || match inline.clone() {
            Some(v) => Ok(v),
            None => args
                .next()
                .ok_or_else(|| CliError::MissingValue(arg.clone()))?
                .into_string()
                .map_err(CliError::NotUtf8),
        };
        match name {
            "listen-socket" => listen_socket = Some(socket_path(value()?)),
            "mux-socket" => mux_socket = Some(socket_path(value()?)),
            "sandbox" => sandbox = Some(value()?),
            "console-socket" | "agent-logs-socket" => console_socket = Some(socket_path(value()?)),
            // Kata 1.x's Go proxy took a level here; ours takes a file with two dashes.
            "log" if single_dash => level = parse_level(&value()?)?,
            "log" => log_file = Some(PathBuf::from(value()?)),
            "log-level" => level = parse_level(&value()?)?,
            "ready-fd" => {
                let v = value()?;
                match v.parse::<RawFd>() {
                    Ok(fd) if fd >= 3 => ready_fd = Some(fd),
                    _ => return Err(CliError::BadFd(v)),
                }
            }
            _ => return Err(CliError::Unknown(arg)),
        }
    }

    Ok(Args {
        listen_socket: listen_socket.ok_or(CliError::Required("listen-socket"))?,
        mux_socket: mux_socket.ok_or(CliError::Required("mux-socket"))?,
        sandbox: sandbox.ok_or(CliError::Required("sandbox"))?,
        console_socket,
        log_file,
        level,
        ready_fd,
    })
}

/// Kata passes socket addresses as URLs (`unix:///run/vc/...`).
fn socket_path(value: String) -> PathBuf {
    match value.strip_prefix("unix://") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(value),
    }
}

fn parse_level(value: &str) -> Result<LevelFilter, CliError> {
    value
        .parse()
        .map_err(|_| CliError::BadLevel(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Args, CliError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn double_dash_form() {
        let a = parse_strs(&[
            "--listen-socket",
            "/run/p.sock",
            "--mux-socket=/run/kata.sock",
            "--sandbox",
            "sb",
            "--console-socket",
            "/run/console.sock",
            "--log",
            "/var/log/p.log",
            "--debug",
            "--ready-fd",
            "5",
        ])
        .expect("valid");
        assert_eq!(a.listen_socket, PathBuf::from("/run/p.sock"));
        assert_eq!(a.mux_socket, PathBuf::from("/run/kata.sock"));
        assert_eq!(a.sandbox, "sb");
        assert_eq!(a.console_socket, Some(PathBuf::from("/run/console.sock")));
        assert_eq!(a.log_file, Some(PathBuf::from("/var/log/p.log")));
        assert_eq!(a.level, LevelFilter::Debug);
        assert_eq!(a.ready_fd, Some(5));
    }

    #[test]
    fn kata_1x_single_dash_form() {
        let a = parse_strs(&[
            "-listen-socket",
            "unix:///run/vc/sbs/x/proxy.sock",
            "-mux-socket",
            "/run/vc/vm/x/kata.sock",
            "-sandbox",
            "x",
            "-log",
            "warn",
            "-agent-logs-socket",
            "unix:///run/vc/vm/x/console.sock",
        ])
        .expect("valid");
        assert_eq!(a.listen_socket, PathBuf::from("/run/vc/sbs/x/proxy.sock"));
        assert_eq!(
            a.console_socket,
            Some(PathBuf::from("/run/vc/vm/x/console.sock"))
        );
        assert_eq!(a.level, LevelFilter::Warn);
        assert_eq!(a.log_file, None);
        assert_eq!(a.ready_fd, None);
    }

    #[test]
    fn rejects_bad_command_lines() {
        let base = [
            "--listen-socket",
            "a",
            "--mux-socket",
            "b",
            "--sandbox",
            "c",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = base.to_vec();
            v.extend_from_slice(extra);
            parse_strs(&v)
        };
        assert!(with(&[]).is_ok());
        assert_eq!(
            parse_strs(&["--mux-socket", "b", "--sandbox", "c"]),
            Err(CliError::Required("listen-socket"))
        );
        assert_eq!(with(&["--bogus"]), Err(CliError::Unknown("--bogus".into())));
        assert_eq!(with(&["stray"]), Err(CliError::Positional("stray".into())));
        assert_eq!(
            with(&["--ready-fd"]),
            Err(CliError::MissingValue("--ready-fd".into()))
        );
        assert_eq!(with(&["--ready-fd", "1"]), Err(CliError::BadFd("1".into())));
        assert_eq!(with(&["--ready-fd", "x"]), Err(CliError::BadFd("x".into())));
        assert_eq!(
            with(&["--log-level", "loud"]),
            Err(CliError::BadLevel("loud".into()))
        );
        assert_eq!(
            with(&["--debug=1"]),
            Err(CliError::UnexpectedValue("--debug=1".into()))
        );
        assert_eq!(with(&["-h"]), Err(CliError::Help));
    }
}
