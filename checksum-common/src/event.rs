//! The records a kernel program writes to the ring buffer for every checksum mismatch (and, when
//! the `REPORT_ALL` global is set, for every verdict; `replay --all` uses that): a
//! [`ChecksumEvent`], or, for mismatches while capture is on (`CAPTURE_SNAPLEN` > 0), a
//! [`CaptureRecord`] that also carries the first bytes of the frame. User space tells them apart
//! by length: exactly 136 bytes is an event, [`CAPTURE_HEADER_LEN`] + `cap_len` a capture record.

wire_enum! {
    /// Which checksum a verdict is about.
    pub enum Layer {
        Ipv4 = 0 => "ipv4",
        Tcp = 1 => "tcp",
        Udp = 2 => "udp",
        Icmp = 3 => "icmp",
        Icmpv6 = 4 => "icmpv6",
    }
}

wire_enum! {
    /// The verdict on one checksum. `malformed` frames are only counted, never reported.
    pub enum Status {
        Ok = 0 => "ok",
        Bad = 1 => "bad",
        /// UDP over IPv4 with a zero field: the sender chose not to checksum (legal).
        None = 2 => "none",
        /// Fragments and truncated segments: the bytes needed are not all here.
        Unverifiable = 3 => "unverifiable",
        /// TCP/UDP at TC whose skb is `CHECKSUM_PARTIAL` with `csum_start`/`csum_offset` at this very
        /// field, and the field holds the pseudo-header sum: the device (or the stack, in software)
        /// will complete it. Decided in O(1), without summing the segment; only with the programs'
        /// `PARTIAL_OK` fast path on (otherwise such a field is `Bad`/`OffloadPending`).
        PartialOk = 4 => "partial-ok",
    }
}

wire_enum! {
    /// The per-packet signature of a mismatch, tested in declaration order (see `csum::classify`).
    pub enum Kind {
        /// Not a mismatch.
        Match = 0 => "match",
        /// The field holds only the folded pseudo-header sum: TX checksum offload never completed.
        OffloadPending = 1 => "offload-pending",
        /// The field is zero where a checksum is mandatory.
        Zero = 2 => "zero",
        /// The field is the correct value with its bytes swapped.
        ByteSwapped = 3 => "byte-swapped",
        Corrupt = 4 => "corrupt",
    }
}

impl Kind {
    pub const MISMATCHES: [Kind; 4] = [
        Self::OffloadPending,
        Self::Zero,
        Self::ByteSwapped,
        Self::Corrupt,
    ];
}

wire_enum! {
    /// Where a program runs.
    pub enum Hook {
        Xdp = 0 => "xdp",
        TcIngress = 1 => "tc-ingress",
        TcEgress = 2 => "tc-egress",
    }
}

impl Hook {
    pub const fn direction(self) -> Direction {
        match self {
            Self::Xdp | Self::TcIngress => Direction::Ingress,
            Self::TcEgress => Direction::Egress,
        }
    }
}

wire_enum! {
    pub enum Direction {
        Ingress = 0 => "ingress",
        Egress = 1 => "egress",
    }
}

pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

wire_enum! {
    /// `skb->ip_summed` (include/linux/skbuff.h): what the socket buffer itself says about its
    /// checksum, read by the TC programs (checksum-ebpf/src/skb.rs).
    pub enum IpSummed {
        /// Nothing is known: the checksum is in the packet, unverified (every test-run skb).
        None = 0 => "none",
        /// Verified by the device or the stack (`csum_level` counts the extra verified levels of an
        /// encapsulation).
        Unnecessary = 1 => "unnecessary",
        /// The device summed the packet: `csum` holds that sum.
        Complete = 2 => "complete",
        /// To be completed by the device or in software: the field at `csum_start + csum_offset`
        /// (offsets from `skb->head`) holds the pseudo-header sum.
        Partial = 3 => "partial",
    }
}

/// `ChecksumEvent::ip_summed` when there is no skb state: XDP (no socket buffer yet), replay (the
/// XDP program), or a kernel whose `sk_buff` layout could not be resolved.
pub const IP_SUMMED_UNKNOWN: u8 = 0xff;

/// `ChecksumEvent::skb_flags`: `skb->encapsulation`.
pub const SKB_ENCAPSULATION: u8 = 1;

/// One checksum verdict. Fields are plain integers (no enums, no bools) so that any bytes the
/// kernel writes are a valid value; decode them with the `from_u8` constructors.
/// Checksum values are wire (big-endian) values converted to host order, as tcpdump prints them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChecksumEvent {
    /// `bpf_ktime_get_ns()`: `CLOCK_MONOTONIC`.
    pub timestamp_ns: u64,
    pub ifindex: u32,
    /// TCP sequence number (host order), 0 for other protocols.
    pub tcp_seq: u32,
    /// IPv4 addresses use the first 4 bytes.
    pub src_addr: [u8; 16],
    /// For IPv6 with a Routing header, the final destination used in the pseudo-header.
    pub dst_addr: [u8; 16],
    /// Checksummed length: the L4 segment, or the IPv4 header for `Layer::Ipv4`.
    pub l4_len: u32,
    /// IPv4 identification, or the IPv6 fragment identification (0 without a Fragment header).
    pub ip_id: u32,
    /// The source it was seen at: its slot in the programs' `STATES` map, which user space
    /// assigned to one interface, namespace and hook (`source::SourceKey`).
    pub slot: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// The checksum field as received.
    pub got: u16,
    /// The value it should hold.
    pub want: u16,
    /// The folded pseudo-header sum (0 for checksums without a pseudo-header).
    pub pseudo: u16,
    /// `Hook` value.
    pub hook: u8,
    /// `Direction` value.
    pub direction: u8,
    /// `FAMILY_IPV4` or `FAMILY_IPV6`.
    pub family: u8,
    /// IP protocol / IPv6 next header of the segment.
    pub protocol: u8,
    /// `Layer` value.
    pub layer: u8,
    /// `Status` value.
    pub status: u8,
    /// `Kind` value.
    pub kind: u8,
    /// The skb's checksum state at TC, as it was when the program ran (before any later program
    /// or the device acts on it): `IpSummed` value, or `IP_SUMMED_UNKNOWN` (XDP, replay, or a
    /// kernel whose layout could not be resolved; the fields below are then 0).
    pub ip_summed: u8,
    /// `skb->csum_start` and `skb->csum_offset`, meaningful for `IpSummed::Partial`:
    /// `csum_start` counts from `skb->head`, so compare it with `network_header`, also from
    /// `skb->head`: `csum_start - network_header` is where the checksummed bytes start counted
    /// from the IP header (its length for a plain TCP/UDP packet), and `csum_offset` is the
    /// field's offset from there (16 for TCP, 6 for UDP). The two share their bytes with
    /// `skb->csum` (a union): for `IpSummed::Complete` that sum is
    /// `csum_start | csum_offset << 16`.
    pub csum_start: u16,
    pub csum_offset: u16,
    /// `skb->network_header`: the IP header's offset from `skb->head`.
    pub network_header: u16,
    /// `skb->csum_level` (0..=3).
    pub csum_level: u8,
    /// `SKB_*` bits.
    pub skb_flags: u8,
    /// `REPORT_*`: why the verdict was sent.
    pub report: u8,
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel-shared repr(C) struct, public for struct literals"
    )]
    pub _pad: u8,
    /// TCP acknowledgment number (host order), 0 for other protocols: part of a packet's
    /// identity across hops (`tcp_seq`, `ip_id`, `flow_label`, the sum of the bytes a NAT keeps).
    pub tcp_ack: u32,
    /// IPv6 flow label, 0 for IPv4.
    pub flow_label: u32,
    /// The tunnel the packet came in, and whether this verdict is for its inner packet; all zero
    /// when it is not encapsulated. For an inner verdict the flow fields above are the inner
    /// packet's.
    pub encap: crate::encap::Encap,
}

/// `ChecksumEvent::report`: sent as a mismatch, or because every verdict is (`replay --all`).
pub const REPORT_VERDICT: u8 = 0;
/// `ChecksumEvent::report`: sent because its flow is tracked (`track`): a hook saw one of its
/// packets broken, so every hook reports its next packets, good ones included.
pub const REPORT_TRACKED: u8 = 1;

#[cfg(feature = "user")]
// SAFETY: `ChecksumEvent` is `repr(C)`, `Copy`, has explicit padding and every bit pattern is valid.
unsafe impl aya::Pod for ChecksumEvent {}

const _: () = assert!(core::mem::size_of::<ChecksumEvent>() == 136);
const _: () = assert!(core::mem::offset_of!(ChecksumEvent, ip_summed) == 77);
const _: () = assert!(core::mem::offset_of!(ChecksumEvent, csum_start) == 78);
const _: () = assert!(core::mem::offset_of!(ChecksumEvent, report) == 86);
const _: () = assert!(core::mem::offset_of!(ChecksumEvent, tcp_ack) == 88);

/// Most frame bytes one capture record carries; `CAPTURE_SNAPLEN` is clamped to it. Enough for any
/// jumbo frame (9216-byte MTU plus Ethernet and two VLAN tags), so a capture can hold whole frames
/// and Wireshark can recompute their checksums. A power of two, so the kernel can bound a copy
/// length with a mask. Records are sent with only the bytes captured (`bpf_ringbuf_output` takes a
/// variable length), so a large maximum costs ring-buffer space only when a large snap length is
/// asked for; the per-CPU staging buffer (`CAPTURE_HEADER_LEN + MAX_SNAP` bytes) stays well under
/// the kernel's 32 KiB limit for per-CPU map values.
pub const MAX_SNAP: usize = 16384;

/// A mismatch with the first `cap_len` bytes of its frame. The kernel builds it in a per-CPU
/// buffer and sends only its first `CAPTURE_HEADER_LEN + cap_len` bytes, so a ring-buffer record
/// is shorter than this type: decode it from bytes, never by casting a record to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureRecord {
    pub event: ChecksumEvent,
    /// Length of the whole frame, fragments of a multi-buffer XDP frame included.
    pub frame_len: u32,
    /// Bytes in `data`: min(snap length, `frame_len`, `MAX_SNAP`). 0 only when the kernel could not
    /// copy the bytes (not expected: the copy stays within the frame).
    pub cap_len: u16,
    /// Offset of the IP header in `data`: 14 after Ethernet, +4 per VLAN tag, and 0 when the frame
    /// starts at the IP header (TC ingress behind a generic-mode XDP program).
    pub l3_off: u16,
    pub data: [u8; MAX_SNAP],
}

/// Bytes before `CaptureRecord::data`: the shortest capture record.
pub const CAPTURE_HEADER_LEN: usize = core::mem::offset_of!(CaptureRecord, data);

#[cfg(feature = "user")]
// SAFETY: `CaptureRecord` is `repr(C)`, `Copy`, has no implicit padding and every bit pattern is
// valid.
unsafe impl aya::Pod for CaptureRecord {}

const _: () = assert!(CAPTURE_HEADER_LEN == 144);
const _: () = assert!(core::mem::size_of::<CaptureRecord>() == CAPTURE_HEADER_LEN + MAX_SNAP);
const _: () = assert!(MAX_SNAP.is_power_of_two() && MAX_SNAP <= u16::MAX as usize);
