//! The kernel's own checksum drops, as the `kfree_skb` tracepoint program reports them: one
//! [`DropEvent`] per packet the kernel freed for a checksum drop reason, whichever namespace or
//! device it was on. They confirm (or contradict) what the audit programs found.

/// Most checksum drop reasons the program filters on (`SKB_DROP_REASON_*CSUM*`; Linux 6.18 has
/// five). User space resolves them by name from BTF, since their numbers change between kernels,
/// and fills the rest with [`NO_REASON`].
pub const MAX_DROP_REASONS: usize = 8;

/// An unused entry of the reason list: no drop reason has this value.
pub const NO_REASON: u32 = u32::MAX;

/// Size of the `DROPS` ring buffer: about 2,900 drops between two drains.
pub const DROP_RING_BYTES: u32 = 256 * 1024;

/// Indexes of the per-CPU `DROP_COUNTS` array.
pub const DROPS_SEEN: u32 = 0;
/// Checksum drops that found the ring buffer full: counted, not lost without a trace.
pub const DROPS_LOST: u32 = 1;

/// One checksum drop. `#[repr(C)]`, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// `CLOCK_MONOTONIC`, as the audit events.
    pub timestamp_ns: u64,
    /// The kernel address that dropped it (the tracepoint's `location`), symbolized by user space.
    pub location: u64,
    /// The cookie of the device's network namespace (`SO_NETNS_COOKIE`); 0 when unreadable.
    pub netns: u64,
    /// `enum skb_drop_reason` value.
    pub reason: u32,
    /// The device the packet was on; 0 when unreadable.
    pub ifindex: u32,
    /// Host byte order; 0 when not read.
    pub sport: u16,
    pub dport: u16,
    /// `FAMILY_IPV4`, `FAMILY_IPV6`, or 0 when the packet's network header could not be read.
    pub family: u8,
    /// The IP header's protocol (IPv4) or next header (IPv6, may name an extension header).
    pub protocol: u8,
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel-shared repr(C) struct, public for struct literals"
    )]
    pub _pad: [u8; 2],
    /// IPv4 addresses in the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<DropEvent>() == 72);

#[cfg(feature = "user")]
// SAFETY: `repr(C)`, integer fields, explicit padding.
unsafe impl aya::Pod for DropEvent {}
