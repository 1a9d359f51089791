//! Seccomp: compiles an OCI `linux.seccomp` profile into a classic BPF program and installs it
//! with seccomp(2). Written here rather than taken from libseccomp because the agent is a static
//! glibc binary and we want to know exactly what the kernel gets.
//!
//! Semantics follow runc on top of libseccomp:
//! - actions map to `SECCOMP_RET_*`; `errnoRet` (else EPERM) is the data of ERRNO and TRACE;
//!   `SCMP_ACT_NOTIFY` is not supported (there is no seccomp agent to hand the fd to);
//! - unknown syscall names are skipped with a warning; a rule whose action equals the default
//!   action is skipped (libseccomp refuses those, runc drops them);
//! - argument conditions compare the full 64-bit value, unsigned; those of one rule are ANDed,
//!   except that when a rule names one argument index twice each condition becomes a rule of
//!   its own (ORed), as runc does;
//! - rules are tried in profile order and the first that matches decides; else the default.
//!
//! Only the native ABI (x86_64) is compiled. A call made through any other ABI (i386 `int 0x80`,
//! or any architecture listed in the profile besides x86_64) is killed with
//! SECCOMP_RET_KILL_PROCESS; an x32 call (x86_64 arch, number with bit 30 set) gets the default
//! action, or ENOSYS when the default action would let it run, so that x32 numbers cannot be used
//! to slip past a deny list.
//!
//! Program layout (`A` is the BPF accumulator):
//! ```text
//!         ld  A = seccomp_data.arch
//!         jeq A, AUDIT_ARCH_X86_64 ? native : next
//!         ret KILL_PROCESS
//! native: ld  A = seccomp_data.nr
//!         jge A, X32_SYSCALL_BIT ? next : rules
//!         jeq A, -1 ? rules : next        ; nr -1 is a tracer skipping the call, not x32
//!         ret <x32 action>
//! rules:  one block per rule, each ending in its `ret` and jumping past itself on mismatch
//!         with A = nr again
//!         ret <default action>
//! ```
//! Every jump is a short forward jump inside its block, so the 8-bit offsets of conditional jumps
//! always suffice; the assembler still checks them.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use std::str::FromStr;
use syscalls::x86_64::Sysno;

/// `AUDIT_ARCH_X86_64` from linux/audit.h: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 syscalls are x86_64 ones with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;
/// Syscalls have at most six arguments.
const MAX_ARGS: usize = 6;
/// The kernel refuses longer programs.
const MAX_INSNS: usize = libc::BPF_MAXINSNS as usize;
/// Syscall numbers matched by one run of `jeq`s: the first one's jump to the shared target must
/// fit in 8 bits.
const NRS_PER_CHUNK: usize = 200;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

// `install` hands the instructions to the kernel as `sock_filter`s without copying them.
const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<libc::sock_filter>());
const _: () = assert!(std::mem::align_of::<Insn>() == std::mem::align_of::<libc::sock_filter>());

const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// A compiled profile, ready to install.
#[derive(Debug, Clone)]
pub struct Filter {
    insns: Vec<Insn>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2).
    flags: libc::c_ulong,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("syscall rule {names:?}: argument index {index} out of range (0-5)")]
    ArgIndex { names: Vec<String>, index: usize },
    #[error(
        "the profile compiles to {0} BPF instructions, over the kernel's limit of {MAX_INSNS}"
    )]
    TooLong(usize),
    #[error("internal error of the seccomp compiler: {0}")]
    Internal(String),
    #[error("seccomp(SECCOMP_SET_MODE_FILTER): {0}")]
    Install(#[source] std::io::Error),
    #[error("seccomp(SECCOMP_SET_MODE_FILTER): thread {0} could not be synchronized (TSYNC)")]
    Tsync(libc::c_long),
}

impl Filter {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Never true for a compiled profile (there is always at least the default action).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Installs the filter on the calling thread (all threads with SECCOMP_FILTER_FLAG_TSYNC).
    ///
    /// It does not set no_new_privs: the caller must either hold CAP_SYS_ADMIN or have set
    /// PR_SET_NO_NEW_PRIVS, else the kernel answers EACCES. Every syscall made after this one,
    /// down to the execve of the workload, must be allowed by the profile, so call it last. It
    /// neither allocates nor logs once the filter is in.
    pub fn install(&self) -> Result<(), Error> {
        if !cfg!(target_arch = "x86_64") {
            // The program checks for AUDIT_ARCH_X86_64: anywhere else it would kill everything.
            return Err(Error::Unsupported(
                "architecture: only x86_64 filters are compiled".into(),
            ));
        }
        let len = u16::try_from(self.insns.len()).map_err(|_| Error::TooLong(self.insns.len()))?;
        let prog = libc::sock_fprog {
            len,
            // The kernel only reads the program; Insn has sock_filter's layout (asserted above).
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        };
        log::debug!(
            "installing a seccomp filter of {len} instructions, flags {:#x}",
            self.flags
        );
        // SAFETY: `prog` points at `len` valid instructions that outlive the call; the kernel
        // copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        match rc {
            0 => Ok(()),
            // With TSYNC a positive return is the id of a thread that could not be synchronized.
            tid if tid > 0 => Err(Error::Tsync(tid)),
            _ => Err(Error::Install(std::io::Error::last_os_error())),
        }
    }
}

/// Compiles `profile` for x86_64. Fails on what cannot be honoured (NOTIFY, an unknown flag, an
/// argument index over 5, a program over 4096 instructions), never on unknown syscall names.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, Error> {
    let flags = filter_flags(profile.flags().as_deref().unwrap_or_default())?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    note_architectures(profile.architectures().as_deref().unwrap_or_default());

    let mut rules = Vec::new();
    let mut unknown = Vec::new();
    for syscall in profile.syscalls().as_deref().unwrap_or_default() {
        add_rules(syscall, default, &mut rules, &mut unknown)?;
    }
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        log::warn!(
            "seccomp: syscalls unknown on x86_64 ignored: {}",
            unknown.join(", ")
        );
    }

    let insns = assemble(default, &rules)?;
    if insns.len() > MAX_INSNS {
        return Err(Error::TooLong(insns.len()));
    }
    log::debug!(
        "seccomp: {} rules compiled to {} instructions",
        rules.len(),
        insns.len()
    );
    Ok(Filter { insns, flags })
}

/// One rule as compiled: any of `nrs`, all of `conds` -> `action`.
#[derive(Debug)]
struct Rule {
    nrs: Vec<u32>,
    conds: Vec<LinuxSeccompArg>,
    action: u32,
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> Result<libc::c_ulong, Error> {
    flags.iter().try_fold(0, |bits, flag| {
        let bit = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // Only meaningful with a notify listener, which is not supported.
            other => return Err(Error::Unsupported(format!("flag {other}"))),
        };
        Ok(bits | bit)
    })
}

/// The `SECCOMP_RET_*` value of an action; ERRNO and TRACE carry `errno` (else EPERM), cut to
/// the 16 data bits as libseccomp does.
fn action(act: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, Error> {
    let data = errno.unwrap_or(libc::EPERM as u32) & libc::SECCOMP_RET_DATA;
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            libc::SECCOMP_RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data,
        LinuxSeccompAction::ScmpActTrace => libc::SECCOMP_RET_TRACE | data,
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Unsupported("action SCMP_ACT_NOTIFY".into()))
        }
    })
}

/// What an x32 call gets: the default action, unless that would run it (ALLOW, LOG, or TRACE
/// without a tracer), since no rule can match an x32 number and a deny list would be bypassed.
fn x32_action(default: u32) -> u32 {
    match default & libc::SECCOMP_RET_ACTION_FULL {
        libc::SECCOMP_RET_KILL_PROCESS
        | libc::SECCOMP_RET_KILL_THREAD
        | libc::SECCOMP_RET_TRAP
        | libc::SECCOMP_RET_ERRNO => default,
        _ => libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    }
}

fn note_architectures(archs: &[Arch]) {
    for arch in archs {
        match arch {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => {}
            Arch::ScmpArchX86 => log::debug!("seccomp: i386 calls are not compiled: killed"),
            Arch::ScmpArchX32 => {
                log::debug!("seccomp: x32 calls are not compiled: default action")
            }
            other => log::debug!("seccomp: architecture {other} ignored: only x86_64 is compiled"),
        }
    }
}

/// Appends the rules of one profile entry (none when it is redundant with the default action).
fn add_rules(
    syscall: &LinuxSyscall,
    default: u32,
    rules: &mut Vec<Rule>,
    unknown: &mut Vec<String>,
) -> Result<(), Error> {
    let action = action(syscall.action(), syscall.errno_ret())?;
    if action == default {
        log::debug!(
            "seccomp: rule {:?} has the default action: skipped",
            syscall.names()
        );
        return Ok(());
    }
    let mut nrs = Vec::with_capacity(syscall.names().len());
    for name in syscall.names() {
        match Sysno::from_str(name) {
            Ok(nr) => nrs.push(nr.id() as u32),
            Err(()) => unknown.push(name.clone()),
        }
    }
    if nrs.is_empty() {
        return Ok(());
    }
    let args = syscall.args().as_deref().unwrap_or_default();
    let mut seen = [false; MAX_ARGS];
    let mut repeated = false;
    for arg in args {
        let Some(slot) = seen.get_mut(arg.index()) else {
            return Err(Error::ArgIndex {
                names: syscall.names().clone(),
                index: arg.index(),
            });
        };
        repeated |= *slot;
        *slot = true;
    }
    if repeated {
        // runc's fallback: a rule naming one argument twice becomes one rule per condition.
        rules.extend(args.iter().map(|arg| Rule {
            nrs: nrs.clone(),
            conds: vec![*arg],
            action,
        }));
    } else {
        rules.push(Rule {
            nrs,
            conds: args.to_vec(),
            action,
        });
    }
    Ok(())
}

/// Lays out the whole program (see the module doc).
fn assemble(default: u32, rules: &[Rule]) -> Result<Vec<Insn>, Error> {
    let mut asm = Asm::default();
    let native = asm.label();
    let body = asm.label();
    asm.stmt(LD_ABS, ARCH_OFFSET);
    asm.jump(JEQ_K, AUDIT_ARCH_X86_64, native, Target::Next);
    asm.stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS);
    asm.bind(native);
    asm.stmt(LD_ABS, NR_OFFSET);
    asm.jump(JGE_K, X32_SYSCALL_BIT, Target::Next, body);
    asm.jump(JEQ_K, u32::MAX, body, Target::Next);
    asm.stmt(RET_K, x32_action(default));
    asm.bind(body);
    for rule in rules {
        for chunk in rule.nrs.chunks(NRS_PER_CHUNK) {
            emit_rule(&mut asm, chunk, &rule.conds, rule.action);
        }
    }
    asm.stmt(RET_K, default);
    asm.finish()
}

/// One rule block, entered and left with A = nr:
/// `jeq nr...` (any) -> conditions (all) -> `ret action`, every mismatch jumping past the `ret`.
fn emit_rule(asm: &mut Asm, nrs: &[u32], conds: &[LinuxSeccompArg], action: u32) {
    let hit = asm.label();
    let end = asm.label();
    // The conditions load arguments into A: their mismatches go through a reload of nr.
    let reload = if conds.is_empty() { end } else { asm.label() };
    for (i, &nr) in nrs.iter().enumerate() {
        if i + 1 == nrs.len() {
            asm.jump(JEQ_K, nr, Target::Next, end);
        } else {
            asm.jump(JEQ_K, nr, hit, Target::Next);
        }
    }
    asm.bind(hit);
    for cond in conds {
        emit_cond(asm, cond, reload);
    }
    asm.stmt(RET_K, action);
    if !conds.is_empty() {
        asm.bind(reload);
        asm.stmt(LD_ABS, NR_OFFSET);
    }
    asm.bind(end);
}

/// One 64-bit unsigned comparison of argument `cond.index()`: falls through when it holds,
/// jumps to `miss` when not. The high words decide unless they are equal, then the low words.
fn emit_cond(asm: &mut Asm, cond: &LinuxSeccompArg, miss: Target) {
    let lo_off = ARGS_OFFSET + 8 * cond.index() as u32;
    let hi_off = lo_off + 4;
    let (hi, lo) = split(cond.value());
    let pass = asm.label();
    let next = Target::Next;
    match cond.op() {
        LinuxSeccompOperator::ScmpCmpEq => {
            asm.stmt(LD_ABS, hi_off);
            asm.jump(JEQ_K, hi, next, miss);
            asm.stmt(LD_ABS, lo_off);
            asm.jump(JEQ_K, lo, next, miss);
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            asm.stmt(LD_ABS, hi_off);
            asm.jump(JEQ_K, hi, next, pass);
            asm.stmt(LD_ABS, lo_off);
            asm.jump(JEQ_K, lo, miss, next);
        }
        LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
            let lo_test = if cond.op() == LinuxSeccompOperator::ScmpCmpGt {
                JGT_K
            } else {
                JGE_K
            };
            asm.stmt(LD_ABS, hi_off);
            asm.jump(JGT_K, hi, pass, next);
            asm.jump(JEQ_K, hi, next, miss);
            asm.stmt(LD_ABS, lo_off);
            asm.jump(lo_test, lo, next, miss);
        }
        LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
            // arg < v is !(arg >= v), arg <= v is !(arg > v).
            let lo_test = if cond.op() == LinuxSeccompOperator::ScmpCmpLt {
                JGE_K
            } else {
                JGT_K
            };
            asm.stmt(LD_ABS, hi_off);
            asm.jump(JGT_K, hi, miss, next);
            asm.jump(JEQ_K, hi, next, pass);
            asm.stmt(LD_ABS, lo_off);
            asm.jump(lo_test, lo, miss, next);
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            // (arg & value) == valueTwo, as libseccomp's SCMP_CMP_MASKED_EQ(mask, datum).
            let (mask_hi, mask_lo) = (hi, lo);
            let (want_hi, want_lo) = split(cond.value_two().unwrap_or(0));
            asm.stmt(LD_ABS, hi_off);
            asm.stmt(AND_K, mask_hi);
            asm.jump(JEQ_K, want_hi, next, miss);
            asm.stmt(LD_ABS, lo_off);
            asm.stmt(AND_K, mask_lo);
            asm.jump(JEQ_K, want_lo, next, miss);
        }
    }
    asm.bind(pass);
}

/// (high, low) 32-bit halves.
fn split(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// Where a conditional jump goes: the next instruction, or a label.
#[derive(Debug, Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

/// A tiny forward-only assembler: jumps name labels, resolved to offsets by `finish`.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    /// Per instruction, the (jt, jf) targets of a conditional jump.
    targets: Vec<Option<(Target, Target)>>,
    /// Per label, the instruction index it was bound to.
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> Target {
        self.labels.push(None);
        Target::Label(self.labels.len() - 1)
    }

    fn bind(&mut self, label: Target) {
        if let Target::Label(id) = label {
            self.labels[id] = Some(self.insns.len());
        }
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        });
        self.targets.push(None);
    }

    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.stmt(code, k);
        if let Some(last) = self.targets.last_mut() {
            *last = Some((jt, jf));
        }
    }

    fn finish(mut self) -> Result<Vec<Insn>, Error> {
        for (pc, targets) in self.targets.iter().enumerate() {
            if let Some((jt, jf)) = targets {
                self.insns[pc].jt = offset(&self.labels, pc, *jt)?;
                self.insns[pc].jf = offset(&self.labels, pc, *jf)?;
            }
        }
        Ok(self.insns)
    }
}

/// The 8-bit forward offset from the jump at `pc` to `target`.
fn offset(labels: &[Option<usize>], pc: usize, target: Target) -> Result<u8, Error> {
    let Target::Label(id) = target else {
        return Ok(0);
    };
    // Any of these would be a bug of this module, not of the profile.
    let bug = |what: String| Error::Internal(format!("jump at {pc}: {what}"));
    let to = labels[id].ok_or_else(|| bug(format!("label {id} never bound")))?;
    let distance = to
        .checked_sub(pc + 1)
        .ok_or_else(|| bug(format!("backward to {to}")))?;
    u8::try_from(distance).map_err(|_| bug(format!("{distance} instructions is too far")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    fn nr(name: &str) -> u32 {
        Sysno::from_str(name).unwrap().id() as u32
    }

    /// A `struct seccomp_data` as the kernel lays it out (little endian).
    fn data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_le_bytes());
        d[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            let off = 16 + 8 * i;
            d[off..off + 8].copy_from_slice(&a.to_le_bytes());
        }
        d
    }

    /// Runs `prog` as the kernel would, for the instructions this module emits. Also checks what
    /// the kernel's checker would: every jump lands inside the program.
    fn run(prog: &[Insn], d: &[u8; 64]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let k = i.k;
            let jump = |taken: bool| {
                let to = pc + 1 + usize::from(if taken { i.jt } else { i.jf });
                assert!(to < prog.len(), "jump past the end at {pc}");
                to
            };
            pc = match i.code {
                LD_ABS => {
                    let off = k as usize;
                    assert!(off & 3 == 0 && off + 4 <= 64, "bad load offset {off}");
                    a = u32::from_le_bytes(d[off..off + 4].try_into().unwrap());
                    pc + 1
                }
                AND_K => {
                    a &= k;
                    pc + 1
                }
                JEQ_K => jump(a == k),
                JGT_K => jump(a > k),
                JGE_K => jump(a >= k),
                RET_K => return k,
                other => panic!("unexpected opcode {other:#x} at {pc}"),
            };
        }
    }

    /// Runs a native x86_64 call.
    fn call(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
        run(&f.insns, &data(AUDIT_ARCH_X86_64, nr(name), args))
    }

    fn arg(index: usize, op: &str, value: u64) -> serde_json::Value {
        serde_json::json!({"index": index, "value": value, "op": op})
    }

    /// Default ALLOW; `personality` denied with EPERM when `args` hold.
    fn deny_personality_when(args: Vec<serde_json::Value>) -> Filter {
        compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": args}]
        })))
        .unwrap()
    }

    fn p(f: &Filter, a0: u64) -> u32 {
        call(f, "personality", [a0, 0, 0, 0, 0, 0])
    }

    #[test]
    fn seccomp_actions_and_errno() {
        let cases = [
            (LinuxSeccompAction::ScmpActKill, None, 0),
            (LinuxSeccompAction::ScmpActKillThread, None, 0),
            (LinuxSeccompAction::ScmpActKillProcess, None, 0x8000_0000),
            (LinuxSeccompAction::ScmpActTrap, None, 0x0003_0000),
            (LinuxSeccompAction::ScmpActErrno, None, 0x0005_0001),
            (LinuxSeccompAction::ScmpActErrno, Some(38), 0x0005_0026),
            (
                LinuxSeccompAction::ScmpActErrno,
                Some(0x1_0005),
                0x0005_0005,
            ),
            (LinuxSeccompAction::ScmpActTrace, None, 0x7ff0_0001),
            (LinuxSeccompAction::ScmpActTrace, Some(9), 0x7ff0_0009),
            (LinuxSeccompAction::ScmpActLog, None, 0x7ffc_0000),
            (LinuxSeccompAction::ScmpActAllow, Some(3), 0x7fff_0000),
        ];
        for (act, errno, want) in cases {
            assert_eq!(action(act, errno).unwrap(), want, "{act} {errno:?}");
        }
        assert!(matches!(
            action(LinuxSeccompAction::ScmpActNotify, None),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn seccomp_default_action_with_errno() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(call(&f, "read", [0; 6]), ALLOW);
        assert_eq!(call(&f, "write", [0; 6]), ALLOW);
        assert_eq!(call(&f, "openat", [0; 6]), libc::SECCOMP_RET_ERRNO | 38);
    }

    #[test]
    fn seccomp_notify_unsupported() {
        let notify_default = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(matches!(
            compile(&notify_default),
            Err(Error::Unsupported(_))
        ));
        let notify_rule = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        let err = compile(&notify_rule).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_NOTIFY"), "{err}");
    }

    #[test]
    fn seccomp_flags() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
        })))
        .unwrap();
        assert_eq!(f.flags, 0b111);
        let err = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        })))
        .unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
    }

    #[test]
    fn seccomp_wrong_arch_is_killed() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"]
        })))
        .unwrap();
        for arch in [0x4000_0003, 0xc000_00b7, 0] {
            assert_eq!(
                run(&f.insns, &data(arch, 39, [0; 6])),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
        assert_eq!(call(&f, "getpid", [0; 6]), ALLOW);
    }

    #[test]
    fn seccomp_x32_calls() {
        let x32_getpid = data(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 39, [0; 6]);
        let skip = data(AUDIT_ARCH_X86_64, u32::MAX, [0; 6]);
        // A deny-by-default profile: x32 calls get the default action even for allowed names.
        let deny = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(run(&deny.insns, &x32_getpid), EPERM);
        assert_eq!(run(&deny.insns, &skip), EPERM);
        // An allow-by-default profile must not let x32 numbers around its deny rules.
        let allow = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_KILL"}]
        })))
        .unwrap();
        assert_eq!(
            run(&allow.insns, &x32_getpid),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        // nr -1 (a tracer skipping the call) is not x32: it just matches no rule.
        assert_eq!(run(&allow.insns, &skip), ALLOW);
        assert_eq!(
            call(&allow, "getpid", [0; 6]),
            libc::SECCOMP_RET_KILL_THREAD
        );
    }

    #[test]
    fn seccomp_unknown_names_skipped() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["no_such_call", "socketcall", "getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW"}
            ]
        })))
        .unwrap();
        assert_eq!(call(&f, "getpid", [0; 6]), ALLOW);
        assert_eq!(call(&f, "getppid", [0; 6]), EPERM);
    }

    #[test]
    fn seccomp_rule_with_default_action_skipped() {
        let with = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
            ]
        })))
        .unwrap();
        let without = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(with.insns, without.insns);
        // A different errno is a different action: kept, and first match wins.
        let kept = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
            ]
        })))
        .unwrap();
        assert_eq!(call(&kept, "getpid", [0; 6]), libc::SECCOMP_RET_ERRNO | 2);
    }

    #[test]
    fn seccomp_first_match_wins() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                 "args": [arg(1, "SCMP_CMP_EQ", 9)]},
                {"names": ["kill", "tkill"], "action": "SCMP_ACT_TRAP"},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]
        })))
        .unwrap();
        assert_eq!(
            call(&f, "kill", [1, 9, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ERRNO | 3
        );
        assert_eq!(
            call(&f, "kill", [1, 15, 0, 0, 0, 0]),
            libc::SECCOMP_RET_TRAP
        );
        assert_eq!(
            call(&f, "tkill", [1, 9, 0, 0, 0, 0]),
            libc::SECCOMP_RET_TRAP
        );
        assert_eq!(call(&f, "tgkill", [1, 9, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn seccomp_eq_ne_64bit() {
        let eq = deny_personality_when(vec![arg(0, "SCMP_CMP_EQ", 0x1_0000_0000)]);
        assert_eq!(p(&eq, 0x1_0000_0000), EPERM);
        assert_eq!(p(&eq, 0), ALLOW);
        assert_eq!(p(&eq, 0x2_0000_0000), ALLOW);
        assert_eq!(p(&eq, 0x1_0000_0001), ALLOW);
        let ne = deny_personality_when(vec![arg(0, "SCMP_CMP_NE", 0xffff_ffff)]);
        assert_eq!(p(&ne, 0xffff_ffff), ALLOW);
        assert_eq!(p(&ne, 0x1_ffff_ffff), EPERM);
        assert_eq!(p(&ne, 0xffff_fffe), EPERM);
        assert_eq!(p(&ne, 0), EPERM);
    }

    #[test]
    fn seccomp_ordering_ops_64bit() {
        let v = 0x1_0000_0000u64;
        let probes = [
            0,
            1,
            0xffff_ffff,
            v - 1,
            v,
            v + 1,
            0x2_0000_0000,
            0x2_0000_0000 - 1,
            u64::MAX,
        ];
        type Cmp = fn(u64, u64) -> bool;
        let ops: [(&str, Cmp); 4] = [
            ("SCMP_CMP_LT", |a, b| a < b),
            ("SCMP_CMP_LE", |a, b| a <= b),
            ("SCMP_CMP_GE", |a, b| a >= b),
            ("SCMP_CMP_GT", |a, b| a > b),
        ];
        for value in [v, 0xffff_ffff, 0x1_8000_0000, u64::MAX, 0] {
            for (op, holds) in ops {
                let f = deny_personality_when(vec![arg(0, op, value)]);
                for probe in probes {
                    let want = if holds(probe, value) { EPERM } else { ALLOW };
                    assert_eq!(p(&f, probe), want, "{probe:#x} {op} {value:#x}");
                }
            }
        }
    }

    #[test]
    fn seccomp_masked_eq() {
        // Docker's clone rule: allowed unless a namespace flag is set.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0,
                                    "op": "SCMP_CMP_MASKED_EQ"}]}]
        })))
        .unwrap();
        let clone = |flags: u64| call(&f, "clone", [flags, 0, 0, 0, 0, 0]);
        assert_eq!(clone(libc::SIGCHLD as u64), ALLOW);
        assert_eq!(clone(0x1_0000_0000 | libc::CLONE_VM as u64), ALLOW);
        assert_eq!(clone(libc::CLONE_NEWNS as u64), EPERM);
        assert_eq!(clone(libc::CLONE_NEWUSER as u64 | 0x11), EPERM);

        // A mask across both halves with a non-zero datum.
        let f = deny_personality_when(vec![serde_json::json!({
            "index": 0, "value": 0xff00_0000_00ffu64, "valueTwo": 0x1200_0000_0034u64,
            "op": "SCMP_CMP_MASKED_EQ"
        })]);
        assert_eq!(p(&f, 0x1200_0000_0034), EPERM);
        assert_eq!(p(&f, 0x12ab_cdef_ff34), EPERM);
        assert_eq!(p(&f, 0x1300_0000_0034), ALLOW);
        assert_eq!(p(&f, 0x1200_0000_0035), ALLOW);
        // valueTwo left out means 0.
        let f = deny_personality_when(vec![serde_json::json!({
            "index": 0, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_MASKED_EQ"
        })]);
        assert_eq!(p(&f, 0xffff_ffff), EPERM);
        assert_eq!(p(&f, 0x1_0000_0000), ALLOW);
    }

    #[test]
    fn seccomp_conditions_on_distinct_args_are_anded() {
        let f = deny_personality_when(vec![
            arg(0, "SCMP_CMP_EQ", 1),
            arg(2, "SCMP_CMP_GT", 0x1_0000_0000),
            arg(5, "SCMP_CMP_NE", 7),
        ]);
        let c = |a0, a2, a5| call(&f, "personality", [a0, 0, a2, 0, 0, a5]);
        assert_eq!(c(1, 0x1_0000_0001, 0), EPERM);
        assert_eq!(c(2, 0x1_0000_0001, 0), ALLOW);
        assert_eq!(c(1, 0x1_0000_0000, 0), ALLOW);
        assert_eq!(c(1, 0x1_0000_0001, 7), ALLOW);
    }

    #[test]
    fn seccomp_repeated_arg_index_is_ored() {
        let f = deny_personality_when(vec![
            arg(0, "SCMP_CMP_EQ", 8),
            arg(0, "SCMP_CMP_EQ", 0x2_0000_0000),
            arg(1, "SCMP_CMP_EQ", 5),
        ]);
        let c = |a0, a1| call(&f, "personality", [a0, a1, 0, 0, 0, 0]);
        assert_eq!(c(8, 0), EPERM);
        assert_eq!(c(0x2_0000_0000, 0), EPERM);
        assert_eq!(c(0, 5), EPERM);
        assert_eq!(c(0, 0), ALLOW);
        assert_eq!(c(9, 6), ALLOW);
    }

    #[test]
    fn seccomp_arg_index_out_of_range() {
        let err = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [arg(6, "SCMP_CMP_EQ", 0)]}]
        })))
        .unwrap_err();
        assert!(matches!(err, Error::ArgIndex { index: 6, .. }), "{err}");
    }

    #[test]
    fn seccomp_too_long() {
        // Each of these rules is over 30 instructions: 200 of them exceed 4096.
        let args: Vec<_> = (0..6).map(|i| arg(i, "SCMP_CMP_LT", 1)).collect();
        let rule = serde_json::json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                      "args": args});
        let err = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": vec![rule; 200]
        })))
        .unwrap_err();
        assert!(matches!(err, Error::TooLong(n) if n > MAX_INSNS), "{err}");
    }

    #[test]
    fn seccomp_every_known_name_in_one_rule() {
        // Far more names than fit one 8-bit jump: all must still match.
        let names: Vec<String> = (0..=470)
            .filter_map(|n| Sysno::new(n).map(|s| s.name().to_string()))
            .collect();
        assert!(names.len() > 300);
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        for name in &names {
            assert_eq!(call(&f, name, [0; 6]), ALLOW, "{name}");
        }
        assert_eq!(
            run(&f.insns, &data(AUDIT_ARCH_X86_64, 1000, [0; 6])),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    /// Docker's default profile for x86_64 as it reaches the runtime (without CAP_SYS_ADMIN).
    fn docker_default() -> LinuxSeccomp {
        let allowed = DOCKER_ALLOWED.split_whitespace().collect::<Vec<_>>();
        assert!(allowed.len() > 340, "{}", allowed.len());
        let mut syscalls = vec![serde_json::json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
        for persona in [0u64, 8, 131072, 131080, 4294967295] {
            syscalls.push(serde_json::json!({
                "names": ["personality"], "action": "SCMP_ACT_ALLOW",
                "args": [arg(0, "SCMP_CMP_EQ", persona)]
            }));
        }
        syscalls.extend([
            serde_json::json!({"names": ["arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ALLOW"}),
            serde_json::json!({"names": ["arm_fadvise64_64", "arm_sync_file_range",
                "sync_file_range2", "breakpoint", "cacheflush", "set_tls"],
                "action": "SCMP_ACT_ALLOW"}),
            serde_json::json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0,
                          "op": "SCMP_CMP_MASKED_EQ"}]}),
            serde_json::json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}),
            serde_json::json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                "args": [arg(0, "SCMP_CMP_NE", 40)]}),
            serde_json::json!({"names": ["process_vm_readv", "process_vm_writev", "ptrace"],
                "action": "SCMP_ACT_ALLOW"}),
        ]);
        profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": syscalls
        }))
    }

    #[test]
    fn seccomp_docker_default_profile() {
        let f = compile(&docker_default()).unwrap();
        assert!(f.len() < 1000, "{} instructions", f.len());
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "exit_group",
            "futex",
            "rseq",
        ] {
            assert_eq!(call(&f, name, [0; 6]), ALLOW, "{name}");
        }
        for name in [
            "mount",
            "kexec_load",
            "init_module",
            "bpf",
            "unshare",
            "setns",
        ] {
            assert_eq!(call(&f, name, [0; 6]), EPERM, "{name}");
        }
        assert_eq!(p(&f, 0xffff_ffff), ALLOW);
        assert_eq!(p(&f, 131080), ALLOW);
        assert_eq!(p(&f, 0x1_ffff_ffff), EPERM);
        assert_eq!(p(&f, 1), EPERM);
        let clone = |flags: u64| call(&f, "clone", [flags, 0, 0, 0, 0, 0]);
        assert_eq!(clone(libc::SIGCHLD as u64), ALLOW);
        assert_eq!(clone(libc::CLONE_NEWNET as u64), EPERM);
        assert_eq!(
            call(&f, "clone3", [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        let socket = |family: u64| call(&f, "socket", [family, 1, 0, 0, 0, 0]);
        assert_eq!(socket(libc::AF_INET as u64), ALLOW);
        assert_eq!(socket(libc::AF_VSOCK as u64), EPERM);
        assert_eq!(socket(0x1_0000_0000 | libc::AF_VSOCK as u64), ALLOW);
        assert_eq!(
            run(&f.insns, &data(0x4000_0003, 20, [0; 6])),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    /// moby's profiles/seccomp/default.json, the unconditional allow list.
    const DOCKER_ALLOWED: &str = "
        accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
        chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
        clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
        copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
        epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
        exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
        fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
        flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
        fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv
        futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
        geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
        getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
        getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
        gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
        inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
        io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
        landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
        listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
        map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
        mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
        mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
        msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
        newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
        pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
        prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
        readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
        remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
        rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
        rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
        sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
        sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
        sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget
        semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto
        setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer
        setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32
        setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
        set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack
        signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs
        statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
        timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
        timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
        timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
        utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
    ";

    /// Forks; the child sets no_new_privs, installs `f`, runs `body` and exits with its result.
    /// The filter is compiled before the fork and the child neither allocates nor locks (the
    /// test harness is multi-threaded). Returns the child's wait status.
    fn in_child(f: &Filter, body: fn() -> i32) -> i32 {
        // SAFETY: the child only makes async-signal-safe calls before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: plain prctl/_exit calls.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(100);
                }
                if f.install().is_err() {
                    libc::_exit(101);
                }
                libc::_exit(body());
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid);
        status
    }

    fn exit_code(status: i32) -> i32 {
        assert!(libc::WIFEXITED(status), "child did not exit: {status:#x}");
        libc::WEXITSTATUS(status)
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// 0 when `rc` is a failure with `want` as errno, else a code telling what happened.
    fn failed_with(rc: libc::c_long, want: i32) -> i32 {
        match (rc, errno()) {
            (-1, e) if e == want => 0,
            (-1, _) => 2,
            _ => 3,
        }
    }

    #[test]
    fn seccomp_kernel_errno_rule() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["uname", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": libc::ENOTBLK}]
        })))
        .unwrap();
        let status = in_child(&f, || {
            // SAFETY: uname into a local buffer; getpid takes nothing.
            unsafe {
                let mut u: libc::utsname = std::mem::zeroed();
                let rc = failed_with(libc::uname(&mut u).into(), libc::ENOTBLK);
                if rc != 0 {
                    return rc;
                }
                if libc::getpid() <= 0 {
                    return 4;
                }
            }
            0
        });
        assert_eq!(exit_code(status), 0);
    }

    #[test]
    fn seccomp_kernel_default_deny() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": libc::ENOTBLK,
            "syscalls": [{"names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        let status = in_child(&f, || {
            // SAFETY: argument-less syscalls.
            unsafe {
                if libc::getpid() <= 0 {
                    return 4;
                }
                let rc = failed_with(libc::syscall(libc::SYS_getppid), libc::ENOTBLK);
                if rc != 0 {
                    return 10 + rc;
                }
                // x32 getpid: the filter answers before the kernel looks at the number.
                let x32_getpid = libc::c_long::from(X32_SYSCALL_BIT as i32) | libc::SYS_getpid;
                let rc = failed_with(libc::syscall(x32_getpid), libc::ENOTBLK);
                if rc != 0 {
                    return 20 + rc;
                }
            }
            0
        });
        assert_eq!(exit_code(status), 0);
    }

    #[test]
    fn seccomp_kernel_arg_conditions() {
        // personality(0xffffffff) only queries; with any high bit set it is denied, as is 8
        // (and the repeated index makes both conditions separate rules).
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": libc::ENOTBLK,
                          "args": [arg(0, "SCMP_CMP_GT", 0xffff_ffff), arg(0, "SCMP_CMP_EQ", 8)]}]
        })))
        .unwrap();
        let status = in_child(&f, || {
            let personality = |a: u64| {
                // SAFETY: personality with a query or an ignored high word; 8 is denied.
                unsafe { libc::syscall(libc::SYS_personality, a) }
            };
            if personality(0xffff_ffff) < 0 {
                return 4;
            }
            let rc = failed_with(personality(0x1_ffff_ffff), libc::ENOTBLK);
            if rc != 0 {
                return 10 + rc;
            }
            let rc = failed_with(personality(8), libc::ENOTBLK);
            if rc != 0 {
                return 20 + rc;
            }
            0
        });
        assert_eq!(exit_code(status), 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn seccomp_kernel_i386_call_killed() {
        let f = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}),
        ))
        .unwrap();
        let status = in_child(&f, || {
            let ret: i32;
            // SAFETY: i386 getpid (20) through int 0x80; it touches no memory.
            unsafe {
                std::arch::asm!("int 0x80", inlateout("eax") 20 => ret,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
            }
            if ret > 0 {
                1
            } else {
                2
            }
        });
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV {
            eprintln!("no i386 emulation in this kernel: int 0x80 faults before seccomp");
            return;
        }
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "child not killed by SIGSYS: {status:#x}"
        );
    }
}
