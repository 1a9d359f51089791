//! Our side of a container terminal: raw mode on our stdin and its window size.
//!
//! With `--terminal` the process in the VM has its own pty doing echo and line editing; if our
//! stdin (the caller's pty) also cooked the input, every key would be echoed twice and ^C would
//! hit the shim's caller instead of reaching the process as a byte. Hence raw mode.

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// Terminal settings to put back before exiting. Global because the shim leaves through
/// `process::exit` (no destructors run), from whichever path ends it.
static SAVED: Mutex<Option<(RawFd, libc::termios)>> = Mutex::new(None);

pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Puts `fd` in raw mode, remembering the old settings for `restore`.
pub fn make_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut raw = old;
    // SAFETY: cfmakeraw edits the struct we own.
    unsafe { libc::cfmakeraw(&mut raw) };
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Ok(mut saved) = SAVED.lock() {
        *saved = Some((fd, old));
    }
    Ok(())
}

/// Restores what `make_raw` changed; harmless if it never ran or already ran.
pub fn restore() {
    let Ok(mut saved) = SAVED.lock() else { return };
    if let Some((fd, old)) = saved.take() {
        // SAFETY: `old` came from tcgetattr on the same descriptor.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) } != 0 {
            log::warn!(
                "cannot restore terminal settings: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// The window size (rows, columns) of the terminal on `fd`, if it is one and the size is known.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return None;
    }
    // 0x0 means nobody set a size (a fresh pty); resizing the guest pty to it would be worse than
    // leaving its default.
    (ws.ws_row != 0 || ws.ws_col != 0).then_some((ws.ws_row, ws.ws_col))
}

/// The size of our terminal: stdin's, or else stdout's (a caller may give us a pty as stdout only).
pub fn our_window_size() -> Option<(u16, u16)> {
    [0, 1, 2].into_iter().find_map(window_size)
}
