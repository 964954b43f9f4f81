//! Everything that talks to the kernel's BPF side: loading the one object of a run, attaching it,
//! the XDP slot check, privileges, BTF offsets, test runs, and decoding the events it sends.

pub mod attach;
pub mod btf;
pub mod drops;
pub mod event;
pub mod loader;
pub mod privileges;
pub mod ring;
pub mod testrun;
pub mod xdp_slot;

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `bpf_ktime_get_ns`, which stamps events
/// and tracked flows' expiry.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
