//! Kernel programs of checksum-audit. They never drop or modify a packet: every path returns
//! `XDP_PASS`. Mismatches go to the `EVENTS` ring buffer; everything else is counted in `STATES`.
#![no_std]
#![no_main]
// Inline asm on BPF, for `packet::bounded`'s optimisation barrier (the kernel's `barrier_var`).
#![feature(asm_experimental_arch)]
#![expect(
    clippy::inline_always,
    reason = "BPF code is inlined into the program that uses it: no calls but to helpers and the \
              few global functions, each of which the verifier checks on its own"
)]

mod audit;
mod capture;
mod drops;
mod netns;
mod packet;
mod parse;
mod skb;
mod sum;
mod tc;
mod track;

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    macros::{btf_tracepoint, map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, XdpContext},
};
use checksum_common::{
    Hook, SourceKey, SourceState,
    drop::{DROP_RING_BYTES, MAX_DROP_REASONS, NO_REASON},
    encap::{DEFAULT_TUNNEL_PORTS, MAX_TUNNEL_PORTS},
    event::CaptureRecord,
    source::{DEFAULT_RING_BYTES, DIRECT_IFINDEXES, EVENT_BUDGET_FLOWS, MAX_SOURCES},
};

/// Mismatch events of every source: one ring for the whole run, so that one reader drains it and
/// its size is one setting (`--ring-buffer-size`, set with `set_max_entries` at load time).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// The slot of every audited interface and hook in `STATES`, written by user space before it
/// attaches there. Read only when `SLOTS_BY_IFINDEX` cannot answer (several namespaces, a large
/// ifindex), by `packet::csa_source_slot_*`, a global function: the key lives in
/// its stack frame, not in the programs' (512 bytes with the summing function's, nearly all in
/// use), and the verifier sees one scalar come back instead of a map value that may be null.
#[map]
static SOURCES: HashMap<SourceKey, u32> = HashMap::with_max_entries(MAX_SOURCES, 0);

/// The slots of each interface's hooks by ifindex (`[xdp, tc-ingress, tc-egress]`, 0 where not
/// audited), for runs in one namespace and ifindexes below `DIRECT_IFINDEXES`; `SOURCES` holds
/// every source, this only the ones it can. User space keeps both.
#[map]
static SLOTS_BY_IFINDEX: Array<[u32; 3]> = Array::with_max_entries(DIRECT_IFINDEXES, 0);

/// Settings and counters of each source, by slot; slot 0 (`UNATTRIBUTED_SLOT`) counts frames of
/// sources not in `SOURCES`. A map rather than globals because they differ per interface (its
/// class decides `SOURCE_REPORT_OFFLOAD`) and interfaces come and go while the programs stay
/// loaded. Per CPU, so counting needs no atomics.
#[map]
static STATES: PerCpuArray<SourceState> = PerCpuArray::with_max_entries(MAX_SOURCES, 0);

/// Events sent per flow and kind, for `EVENTS_PER_FLOW`. User space shrinks it to one entry when
/// the budget is off.
#[map]
static EVENT_BUDGET: LruHashMap<audit::BudgetKey, u32> =
    LruHashMap::with_max_entries(EVENT_BUDGET_FLOWS, 0);

/// Per-CPU staging area for `sum::sum_range`: the BPF stack (512 bytes in all) is too small, and
/// `bpf_csum_diff` may not read packet memory of a variable length (aya#1562).
#[map]
static SCRATCH: PerCpuArray<[u8; sum::CHUNK as usize]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU staging area for capture records (`capture::send`): far too big for the stack, and
/// `bpf_ringbuf_reserve` only takes constant sizes, while a record is sent with only the bytes
/// captured.
#[map]
static CAPTURE_BUF: PerCpuArray<CaptureRecord> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU hand-over of a verdict from an audit pass to `emit` (see `audit::Pending`).
#[map]
static PENDING: PerCpuArray<audit::Pending> = PerCpuArray::with_max_entries(1, 0);

/// UDP destination ports whose datagrams are tunnels, as `encap::tunnel_port` entries (the
/// defaults, plus `--vxlan-port` and `--geneve-port`).
#[unsafe(no_mangle)]
static TUNNEL_PORTS: Global<[u32; MAX_TUNNEL_PORTS]> = Global::new(DEFAULT_TUNNEL_PORTS);

// Run-wide settings are frozen globals (.rodata): the verifier sees their values as constants and
// prunes the branches they turn off, so a feature that is off costs nothing on the hot path.

/// Set to 1 by `checksum-audit replay --all` to report every verdict, not only mismatches.
#[unsafe(no_mangle)]
static REPORT_ALL: Global<u8> = Global::new(0);

/// Frame bytes each mismatch event carries (`--snaplen` with `--pcap-out`); 0, the default, sends
/// plain `ChecksumEvent`s. User space clamps it to `MAX_SNAP`, the kernel clamps it again.
#[unsafe(no_mangle)]
static CAPTURE_SNAPLEN: Global<u32> = Global::new(0);

/// Events per flow and kind (`--events-per-flow`); 0 sends an event for every mismatch. The rest
/// are counted in `events_sampled_out`, so a flood of one broken flow cannot crowd the others out
/// of the ring buffer.
#[unsafe(no_mangle)]
static EVENTS_PER_FLOW: Global<u32> = Global::new(0);

/// 1 when several network namespaces are audited: ifindexes then repeat across them, and the
/// programs read the packet's namespace cookie from its device (`netns::cookie`). 0 otherwise,
/// and that code is pruned.
#[unsafe(no_mangle)]
static NETNS_BY_DEVICE: Global<u8> = Global::new(0);

/// Kernel structure offsets for `netns::cookie`, resolved by user space from the running kernel's
/// BTF (Rust has no CO-RE relocations yet): `sk_buff.dev`, `xdp_buff.rxq`, `xdp_rxq_info.dev`,
/// `net_device.nd_net` and `net.net_cookie`.
#[unsafe(no_mangle)]
static OFF_SKB_DEV: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_XDP_RXQ: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_RXQ_DEV: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_DEV_NET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_NET_COOKIE: Global<u32> = Global::new(0);

/// The kernel's checksum drops (`drops.rs`), apart from the audit events: another record type,
/// and a flood of audit events must not crowd them out.
#[map]
static DROPS: RingBuf = RingBuf::with_byte_size(DROP_RING_BYTES, 0);

/// Checksum drops seen and lost to a full `DROPS` (`DROPS_SEEN`, `DROPS_LOST`), per CPU.
#[map]
static DROP_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// The checksum drop reasons (`enum skb_drop_reason` values) `csum_kfree_skb` reports, resolved
/// by name from BTF at load time; unused entries hold `NO_REASON`. A frozen global: the list is
/// the same for the whole run, and a map lookup would cost more than the compares.
#[unsafe(no_mangle)]
static DROP_REASONS: Global<[u32; MAX_DROP_REASONS]> = Global::new([NO_REASON; MAX_DROP_REASONS]);

/// More `struct sk_buff`, `net_device` and `sock` offsets, for `drops.rs`: `sk_buff.head`,
/// `.network_header`, `.transport_header`, `.protocol`, `.skb_iif`, `.sk`,
/// `net_device.ifindex` and `sock.__sk_common.skc_net`.
#[unsafe(no_mangle)]
static OFF_SKB_HEAD: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_NETWORK_HEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_TRANSPORT_HEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_PROTOCOL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_DEV_IFINDEX: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_IIF: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_SK: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SOCK_NET: Global<u32> = Global::new(0);
/// `task_struct.nsproxy` and `nsproxy.net_ns`, for drops in `recvmsg` (see `drops.rs`).
#[unsafe(no_mangle)]
static OFF_TASK_NSPROXY: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_NSPROXY_NET: Global<u32> = Global::new(0);

/// Reports the kernel's checksum drops (see `drops.rs`); loaded and attached once per run,
/// unless `--no-kernel-drops`.
#[btf_tracepoint(function = "kfree_skb")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[btf_tracepoint] hands the context over by value"
)]
pub fn csum_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    drops::on_kfree_skb(&ctx);
    0
}
/// 1 when the TC programs read the skb's checksum state (`skb::state`); 0, and that code is pruned,
/// when user space could not resolve the layout below or turned it off.
#[unsafe(no_mangle)]
static SKB_STATE: Global<u8> = Global::new(0);

/// Where `skb::csa_skb_state` finds its fields, resolved by user space from the running kernel's
/// BTF: the byte of `struct sk_buff` where its `SKB_WINDOW`-byte read starts, then offsets in that
/// window: the `csum` union (`csum_start`, `csum_offset`) and `network_header`, and the bitfields
/// `ip_summed`, `csum_level` and `encapsulation` as byte | shift << 8 | mask << 16.
#[unsafe(no_mangle)]
static OFF_SKB_WINDOW: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_CSUM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_NETWORK_HEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_IP_SUMMED: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_CSUM_LEVEL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_ENCAP: Global<u32> = Global::new(0);

/// 1 to settle a TCP/UDP field in O(1) when the skb is `CHECKSUM_PARTIAL` at exactly that field and
/// the field holds the pseudo-header sum (`Status::PartialOk`, no sum over the segment). Needs
/// `SKB_STATE`. Off by default: such fields are then summed and reported as offload-pending, as
/// before.
#[unsafe(no_mangle)]
static PARTIAL_OK: Global<u8> = Global::new(0);

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

/// Where `sum_floor_xdp` starts summing: past an Ethernet and a 20-byte IPv4 header, where a
/// plain TCP/UDP segment starts.
const SUM_FLOOR_FROM: u32 = 34;

/// Longest range `sum_floor_xdp` sums: a jumbo frame's.
const SUM_FLOOR_MAX: u32 = 16 * 1024;

/// Where `sum_floor_xdp` leaves its sum, so that the sum is not optimised away.
#[unsafe(no_mangle)]
static mut SUM_FLOOR: u64 = 0;

/// The floor for benchmarks: the audit's cost to sum a frame's L4 bytes, and nothing else (no
/// parsing, no pseudo-header, no verdict): the same summing path (`sum::sum_range`) over the
/// bytes after a plain IPv4 header.
#[xdp(frags)]
pub fn sum_floor_xdp(ctx: XdpContext) -> u32 {
    use packet::Packet as _;
    let pkt = packet::XdpPacket(ctx);
    let len = pkt.len();
    if len > SUM_FLOOR_FROM && len - SUM_FLOOR_FROM <= SUM_FLOOR_MAX {
        let sum = sum::sum_range(&pkt, SUM_FLOOR_FROM, len - SUM_FLOOR_FROM, 0).unwrap_or(0);
        // SAFETY: a plain store to this program's own global; concurrent runs may interleave,
        // which only the benchmark's discarded value sees.
        unsafe { core::ptr::write_volatile(&raw mut SUM_FLOOR, sum) };
    }
    xdp_action::XDP_PASS
}

// The panic handler comes with this crate; the licence section is defined here.
use checksum_ebpf_runtime as _;
checksum_ebpf_runtime::license!();
