//! Where a program ran, and what it needs to know about that place. One loaded object serves
//! every audited interface and hook in every audited namespace: the programs find their
//! interface's counters and settings in one shared map, keyed by [`SourceKey`].

use crate::Counters;

/// One interface at one hook, in one network namespace. No implicit padding: the whole key is
/// hashed by the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// The namespace's cookie (`SO_NETNS_COOKIE`) when several namespaces are audited, read by
    /// the programs from the packet's device; 0 when only one is (ifindexes are then unique).
    pub netns: u64,
    pub ifindex: u32,
    /// `Hook` value.
    pub hook: u8,
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel-shared repr(C) struct, public for struct literals"
    )]
    pub _pad: [u8; 3],
}

impl SourceKey {
    pub const fn new(netns: u64, ifindex: u32, hook: crate::Hook) -> Self {
        Self {
            netns,
            ifindex,
            hook: hook as u8,
            _pad: [0; 3],
        }
    }
}

/// A source's settings and counters: the value of the programs' `STATES` map, one per CPU.
/// User space writes it (settings set, counters zero) before attaching, so that the hot path
/// never inserts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    pub counters: Counters,
    /// `SOURCE_*` bits.
    pub flags: u32,
    /// This value's own slot, for the events (kept here rather than in a register through the
    /// whole program: the BPF stack has no room for more spills).
    pub slot: u32,
    /// Scratch of the packet being audited, for the same reason (written by the programs once
    /// per packet at TC, never read by user space): the skb's checksum state packed as in
    /// checksum-ebpf/src/skb.rs, for the events.
    pub skb: u64,
    /// Scratch too: where a `CHECKSUM_PARTIAL` skb's checksum is to be completed, as the frame
    /// offset of `csum_start` | `csum_offset` << 16, or `u32::MAX` when the skb is not partial.
    pub partial: u32,
    /// Scratch too: `REPORT_TRACKED` when the packet's flow is tracked (`track`) and may be
    /// reported, else `REPORT_VERDICT`.
    pub report: u8,
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel-shared repr(C) struct, public for struct literals"
    )]
    pub _pad0: [u8; 3],
    /// Scratch too: the TCP segment's acknowledgment number (host order), for its event. Here
    /// rather than on the programs' stack, which has no 8 bytes left.
    pub tcp_ack: u32,
    /// Scratch too: where the inner packet of a tunnel starts, for the programs' second pass
    /// (see checksum-ebpf/src/audit.rs), 0 when there is none.
    pub inner_at: u32,
    /// Scratch too: the tunnel around the packet being audited, for its events.
    pub encap: crate::encap::Encap,
    /// Scratch too: a tunnel's outer UDP datagram summed (folded, `OUTER_SUM_VALID` set) over
    /// `[outer_from, outer_end)`, so that the inner pass takes its segment's sum from it instead of
    /// summing the same bytes again.
    pub outer_sum: u32,
    pub outer_from: u32,
    pub outer_end: u32,
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel-shared repr(C) struct, public for struct literals"
    )]
    pub _pad1: u32,
}

/// `SourceState::outer_sum` holds a sum.
pub const OUTER_SUM_VALID: u32 = 1 << 16;

/// Send events for offload-pending mismatches at this source too. Off, they are only counted: on
/// veth and at egress every locally generated TCP/UDP packet carries one. On where they are a
/// problem (ingress at a physical NIC) or when asked to list them (`--show-offload`). Per source,
/// not global, because it depends on the interface's class and the hook.
pub const SOURCE_REPORT_OFFLOAD: u32 = 1;

/// The namespace cookie of sources that no packet names: replay's capture interfaces, whose
/// frames all run on the loopback device and are counted in their slots through
/// `SLOTS_BY_IFINDEX`. No namespace has this cookie (the kernel counts them up from 1).
pub const REPLAY_NETNS: u64 = u64::MAX;

/// The `STATES` slot that counts frames whose source is not in `SOURCES`: a program still running
/// for an interface being detached, or a test run on an unregistered device.
pub const UNATTRIBUTED_SLOT: u32 = 0;

/// Slots of the `STATES` map (one per source, an interface at one hook, and the unattributed
/// slot): the most one run audits at once. 300 pods at two hooks take 600. Each costs
/// `size_of::<SourceState>()` (768 bytes) per CPU, allocated at load time.
pub const MAX_SOURCES: u32 = 2048;

/// ifindexes below this find their slots in a plain array (`SLOTS_BY_IFINDEX`, 12 bytes each, 768
/// KiB) when one namespace is audited; others, and every source when several namespaces are, go
/// through the `SOURCES` hash. A node's ifindexes grow by one per interface ever created there.
pub const DIRECT_IFINDEXES: u32 = 65536;

/// Default size of the one ring buffer all sources share: at 144 bytes per record (a 136-byte
/// event and the kernel's 8-byte header), about 7,000 events of headroom between two drains.
pub const DEFAULT_RING_BYTES: u32 = 1024 * 1024;

/// Flows (per source and kind) the `--events-per-flow` budget table tracks at once; the least
/// recently seen is evicted past it.
pub const EVENT_BUDGET_FLOWS: u32 = 65536;

#[cfg(feature = "user")]
// SAFETY: `repr(C)`, integer fields, explicit padding.
unsafe impl aya::Pod for SourceKey {}
#[cfg(feature = "user")]
// SAFETY: `repr(C)`, integer fields, no padding.
unsafe impl aya::Pod for SourceState {}

const _: () = assert!(core::mem::size_of::<SourceKey>() == 16);
const _: () = assert!(core::mem::size_of::<SourceState>() == 768);

/// Bytes of `struct sk_buff` the TC programs read in one `bpf_probe_read_kernel` for the skb's
/// checksum state (checksum-ebpf/src/skb.rs): `ip_summed`, `csum_level`, `encapsulation`, the
/// `csum_start`/`csum_offset` union and `network_header` all lie within the `headers` group, 56
/// bytes on Linux 6.x. User space resolves where the window starts and where each field lies in
/// it; a kernel on which they do not fit in this many bytes gets no skb state.
pub const SKB_WINDOW: u32 = 64;
