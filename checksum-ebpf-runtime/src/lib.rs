//! What every eBPF object of this project needs exactly once: a panic handler (the programs are
//! `no_std`) and the licence section the kernel reads to allow GPL-only helpers. The auditor
//! (checksum-ebpf) and the test kit's fault injector (checksum-testkit-ebpf) both depend on it,
//! as aya's test programs depend on its `ebpf-panic` crate.
#![no_std]

/// Only for BPF: the crate is also built for the host (a build-dependency's dependency, for
/// rebuild tracking), where the standard library's handler must be the only one.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects infinite loops, and no panic path is reachable in verified code.
    unsafe { core::hint::unreachable_unchecked() }
}

/// Defines the object's `license` section. A macro, so that the section is defined in the program's
/// own crate, beside its maps and programs; its text is written once, here.
#[macro_export]
macro_rules! license {
    () => {
        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
