//! floor-init: the bare-VM floor of `make bench`. As PID 1 of an initramfs on the guest kernel
//! it prints one line on the console and powers the VM off, so "QEMU start → this line" is the
//! least any container start can cost on this machine.

use std::io::Write;

fn main() {
    let _ = std::io::stdout().write_all(b"KATA-FLOOR-READY\n");
    let _ = std::io::stdout().flush();
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}
