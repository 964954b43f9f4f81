//! Kernel programs of checksum-audit. They never drop or modify a packet: every path returns
//! XDP_PASS. Mismatches go to the `EVENTS` ring buffer; everything else is counted in `COUNTERS`.
#![no_std]
#![no_main]

mod audit;
mod capture;
mod packet;
mod parse;
mod sum;
mod tc;

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use checksum_common::{Counters, Hook, event::CaptureRecord};

/// Mismatch events. User space sizes it at load time (`set_max_entries`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// Events sent per flow and kind, for `EVENTS_PER_FLOW`. User space shrinks it to one entry when
/// the budget is off.
#[map]
static EVENT_BUDGET: LruHashMap<audit::BudgetKey, u32> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU staging area for `sum::sum_range`: the BPF stack (512 bytes in all) is too small, and
/// `bpf_csum_diff` may not read packet memory of a variable length (aya#1562).
#[map]
static SCRATCH: PerCpuArray<[u8; sum::CHUNK as usize]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU staging area for capture records (`capture::send`): far too big for the stack, and
/// `bpf_ringbuf_reserve` only takes constant sizes, while a record is sent with only the bytes
/// captured.
#[map]
static CAPTURE_BUF: PerCpuArray<CaptureRecord> = PerCpuArray::with_max_entries(1, 0);

/// Set to 1 by `checksum-audit replay --all` to report every verdict, not only mismatches.
#[unsafe(no_mangle)]
static REPORT_ALL: Global<u8> = Global::new(0);

/// Set to 1 to send events for offload-pending mismatches too. Off, they are only counted: on veth
/// and at egress every locally generated TCP/UDP packet carries one, and an event each would cost
/// ring-buffer bandwidth for no information. User space turns it on where they are a problem
/// (ingress at a physical NIC) or when asked to list them (`--show-offload`).
#[unsafe(no_mangle)]
static REPORT_OFFLOAD: Global<u8> = Global::new(0);

/// Frame bytes each mismatch event carries (`--snaplen` with `--pcap-out`); 0, the default, sends
/// plain `ChecksumEvent`s. User space clamps it to `MAX_SNAP`, the kernel clamps it again.
#[unsafe(no_mangle)]
static CAPTURE_SNAPLEN: Global<u32> = Global::new(0);

/// Events per flow and kind (`--events-per-flow`); 0 sends an event for every mismatch. The rest
/// are counted in `events_sampled_out`, so a flood of one broken flow cannot crowd the others out
/// of the ring buffer.
#[unsafe(no_mangle)]
static EVENTS_PER_FLOW: Global<u32> = Global::new(0);

#[xdp(frags)]
pub fn csum_audit_xdp(ctx: XdpContext) -> u32 {
    audit::audit_frame(&packet::XdpPacket(ctx), Hook::Xdp);
    xdp_action::XDP_PASS
}

/// The baseline for benchmarks: the cost of running any XDP program at all.
#[xdp(frags)]
pub fn noop_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects infinite loops, and no panic path is reachable in verified code.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
