//! The probe guest for [`crate::kvm_probe`]: its machine code and the raw KVM
//! calls (linux/kvm.h via libc ioctls) that run it inside a forked child.
//!
//! Hand-written rather than a KVM crate because the child may only make raw
//! syscalls (see the kvm_probe module comment) and the probe needs ten ioctls.

/// Real-mode machine code of the probe guest:
///
/// ```text
/// 0x1000: 66 b9 nn nn nn nn   mov ecx, iterations   (66: 32-bit operand in 16-bit mode)
/// 0x1006: 66 49               dec ecx
/// 0x1008: 75 fc               jnz 0x1006            (rel8 -4, from the end of jnz)
/// 0x100a: f4                  hlt
/// ```
pub fn guest_code(iterations: u32) -> [u8; 11] {
    // 0 would wrap to 2^32 iterations.
    let n = iterations.max(1).to_le_bytes();
    [
        0x66, 0xb9, n[0], n[1], n[2], n[3], 0x66, 0x49, 0x75, 0xfc, 0xf4,
    ]
}

/// Guest physical address where the code is placed and execution starts.
pub(crate) const CODE_ADDR: u64 = 0x1000;
/// Guest RAM: one small slot at guest physical 0.
pub(crate) const GUEST_MEM: usize = 0x10000;

// Exit codes of the probe child: which step failed.
const STEP_OPEN: i32 = 10;
const STEP_API: i32 = 11;
pub(crate) const STEP_CREATE_VM: i32 = 12;
const STEP_MMAP_MEM: i32 = 13;
const STEP_SET_MEM: i32 = 14;
const STEP_CREATE_VCPU: i32 = 15;
const STEP_MMAP_SIZE: i32 = 16;
const STEP_MMAP_RUN: i32 = 17;
const STEP_GET_SREGS: i32 = 18;
const STEP_SET_SREGS: i32 = 19;
const STEP_SET_REGS: i32 = 20;
const STEP_RUN: i32 = 21;
const STEP_GET_REGS: i32 = 22;
const STEP_WRONG_RESULT: i32 = 23;
/// Unexpected KVM exit reason `r` is reported as `EXIT_REASON_BASE + r`.
pub(crate) const EXIT_REASON_BASE: i32 = 100;

pub(crate) fn describe_child_code(code: i32) -> String {
    let what = match code {
        STEP_OPEN => "cannot open /dev/kvm",
        STEP_API => "KVM_GET_API_VERSION is not 12",
        STEP_CREATE_VM => "KVM_CREATE_VM failed",
        STEP_MMAP_MEM => "cannot allocate guest memory",
        STEP_SET_MEM => "KVM_SET_USER_MEMORY_REGION failed",
        STEP_CREATE_VCPU => "KVM_CREATE_VCPU failed",
        STEP_MMAP_SIZE => "KVM_GET_VCPU_MMAP_SIZE failed",
        STEP_MMAP_RUN => "cannot map the vCPU run structure",
        STEP_GET_SREGS => "KVM_GET_SREGS failed",
        STEP_SET_SREGS => "KVM_SET_SREGS failed",
        STEP_SET_REGS => "KVM_SET_REGS failed",
        STEP_RUN => "KVM_RUN failed",
        STEP_GET_REGS => "KVM_GET_REGS failed",
        STEP_WRONG_RESULT => "the guest halted with the wrong loop counter",
        c if c >= EXIT_REASON_BASE => {
            return format!("unexpected KVM exit reason {}", c - EXIT_REASON_BASE)
        }
        _ => "probe child exited with an unknown code",
    };
    format!("{what} (child exit code {code})")
}

// --- Raw KVM ABI (linux/kvm.h), just what the probe needs ---

const KVMIO: u64 = 0xAE;
const fn io(nr: u64) -> u64 {
    (KVMIO << 8) | nr
}
const fn iow(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const fn ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}

const KVM_GET_API_VERSION: u64 = io(0x00);
const KVM_CREATE_VM: u64 = io(0x01);
const KVM_GET_VCPU_MMAP_SIZE: u64 = io(0x04);
const KVM_CREATE_VCPU: u64 = io(0x41);
const KVM_SET_USER_MEMORY_REGION: u64 = iow(0x46, std::mem::size_of::<KvmUserspaceMemoryRegion>());
const KVM_RUN: u64 = io(0x80);
const KVM_GET_REGS: u64 = ior(0x81, std::mem::size_of::<KvmRegs>());
const KVM_SET_REGS: u64 = iow(0x82, std::mem::size_of::<KvmRegs>());
const KVM_GET_SREGS: u64 = ior(0x83, std::mem::size_of::<KvmSregs>());
const KVM_SET_SREGS: u64 = iow(0x84, std::mem::size_of::<KvmSregs>());

const KVM_API_VERSION: i32 = 12;
const KVM_EXIT_HLT: u32 = 5;
const KVM_EXIT_INTR: u32 = 10;
/// Offset of `exit_reason` in `struct kvm_run` (after two u8 flags and 6 bytes padding).
const KVM_RUN_EXIT_REASON_OFFSET: usize = 8;

#[repr(C)]
#[derive(Clone, Copy)]
struct KvmUserspaceMemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct KvmRegs {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rsp: u64,
    rbp: u64,
    r8_r15: [u64; 8],
    rip: u64,
    rflags: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct KvmSegment {
    base: u64,
    limit: u32,
    selector: u16,
    type_: u8,
    present: u8,
    dpl: u8,
    db: u8,
    s: u8,
    l: u8,
    g: u8,
    avl: u8,
    unusable: u8,
    padding: u8,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct KvmDtable {
    base: u64,
    limit: u16,
    padding: [u16; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct KvmSregs {
    cs: KvmSegment,
    ds: KvmSegment,
    es: KvmSegment,
    fs: KvmSegment,
    gs: KvmSegment,
    ss: KvmSegment,
    tr: KvmSegment,
    ldt: KvmSegment,
    gdt: KvmDtable,
    idt: KvmDtable,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    cr8: u64,
    efer: u64,
    apic_base: u64,
    interrupt_bitmap: [u64; 4],
}

// The ioctl numbers encode these sizes; a layout mistake must fail the build.
const _: () = assert!(std::mem::size_of::<KvmUserspaceMemoryRegion>() == 32);
const _: () = assert!(std::mem::size_of::<KvmRegs>() == 144);
const _: () = assert!(std::mem::size_of::<KvmSegment>() == 24);
const _: () = assert!(std::mem::size_of::<KvmSregs>() == 312);

/// The forked child: builds the guest, runs it to `hlt`, returns an exit code.
/// Only raw syscalls here (see the module comment). File descriptors and mappings
/// are not cleaned up: `_exit` releases them.
///
/// # Safety
/// Must only run in a freshly forked child; `code` must be valid for `len` bytes
/// and `len <= GUEST_MEM - CODE_ADDR`.
pub(crate) unsafe fn probe_child(code: *const u8, len: usize) -> i32 {
    // SAFETY (whole body): raw syscalls on descriptors and memory created here.
    unsafe {
        // If the parent dies mid-probe, do not keep burning a CPU.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);

        let kvm = libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if kvm < 0 {
            return STEP_OPEN;
        }
        if libc::ioctl(kvm, KVM_GET_API_VERSION as _, 0) != KVM_API_VERSION {
            return STEP_API;
        }
        let vm = libc::ioctl(kvm, KVM_CREATE_VM as _, 0);
        if vm < 0 {
            return STEP_CREATE_VM;
        }
        let mem = libc::mmap(
            std::ptr::null_mut(),
            GUEST_MEM,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if mem == libc::MAP_FAILED {
            return STEP_MMAP_MEM;
        }
        std::ptr::copy_nonoverlapping(code, (mem as *mut u8).add(CODE_ADDR as usize), len);
        let region = KvmUserspaceMemoryRegion {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: GUEST_MEM as u64,
            userspace_addr: mem as u64,
        };
        if libc::ioctl(vm, KVM_SET_USER_MEMORY_REGION as _, &region) < 0 {
            return STEP_SET_MEM;
        }
        let vcpu = libc::ioctl(vm, KVM_CREATE_VCPU as _, 0);
        if vcpu < 0 {
            return STEP_CREATE_VCPU;
        }
        let run_size = libc::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE as _, 0);
        if run_size <= 0 {
            return STEP_MMAP_SIZE;
        }
        let run = libc::mmap(
            std::ptr::null_mut(),
            run_size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            vcpu,
            0,
        );
        if run == libc::MAP_FAILED {
            return STEP_MMAP_RUN;
        }

        // Reset state is real mode at CS=f000 base ffff0000; point CS at 0 instead.
        let mut sregs: KvmSregs = std::mem::zeroed();
        if libc::ioctl(vcpu, KVM_GET_SREGS as _, &mut sregs) < 0 {
            return STEP_GET_SREGS;
        }
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        if libc::ioctl(vcpu, KVM_SET_SREGS as _, &sregs) < 0 {
            return STEP_SET_SREGS;
        }
        let mut regs: KvmRegs = std::mem::zeroed();
        regs.rip = CODE_ADDR;
        regs.rflags = 0x2; // bit 1 is reserved and must be set
        if libc::ioctl(vcpu, KVM_SET_REGS as _, &regs) < 0 {
            return STEP_SET_REGS;
        }

        loop {
            if libc::ioctl(vcpu, KVM_RUN as _, 0) < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                return STEP_RUN;
            }
            let reason = std::ptr::read_volatile(
                (run as *const u8).add(KVM_RUN_EXIT_REASON_OFFSET) as *const u32,
            );
            match reason {
                KVM_EXIT_HLT => break,
                KVM_EXIT_INTR => continue,
                r => return EXIT_REASON_BASE.saturating_add(r.min(155) as i32),
            }
        }

        if libc::ioctl(vcpu, KVM_GET_REGS as _, &mut regs) < 0 {
            return STEP_GET_REGS;
        }
        // ecx == 0 proves the loop really ran to the end rather than halting early.
        if regs.rcx as u32 != 0 {
            return STEP_WRONG_RESULT;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_code_bytes() {
        assert_eq!(
            guest_code(10_000_000),
            [0x66, 0xb9, 0x80, 0x96, 0x98, 0x00, 0x66, 0x49, 0x75, 0xfc, 0xf4]
        );
        // jnz's rel8 is relative to the next instruction (0x100a): 0x100a - 4 = dec at 0x1006.
        let code = guest_code(1);
        assert_eq!(0x0a_i32 + (code[9] as i8 as i32), 0x06);
        assert_eq!(&guest_code(0)[2..6], &1u32.to_le_bytes());
    }

    #[test]
    fn ioctl_numbers_match_linux_headers() {
        assert_eq!(KVM_CREATE_VM, 0xae01);
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_SET_REGS, 0x4090_ae82);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_SET_SREGS, 0x4138_ae84);
    }
}
