//! The first bytes of a mismatching frame, as a capture record brings them: what `--pcap-out`
//! writes (framing in `pcap/sink.rs`).

use checksum_common::event::MAX_SNAP;

/// The first bytes of the frame a mismatch was found in: what a capture record carries besides
/// its verdict (`LoadOptions::snaplen` > 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Length of the whole frame (a pcapng "original length").
    pub frame_len: u32,
    /// Offset of the IP header in `data`: 14 after Ethernet, +4 per VLAN tag; 0 when the frame
    /// starts at the IP header (TC ingress behind a generic-mode XDP program: no MAC header).
    pub l3_off: u16,
    /// The first min(snap length, `frame_len`) bytes. Empty only if the kernel could not copy
    /// them (not expected); the verdict is still valid.
    pub data: Vec<u8>,
}

/// The snap length the kernel uses for a requested one: clamped to `MAX_SNAP` (16384 bytes, the
/// size of the kernel's staging buffer). Also what a capture file's interface should declare.
#[expect(clippy::cast_possible_truncation, reason = "MAX_SNAP is 16384")]
pub const fn effective_snaplen(requested: u32) -> u32 {
    if requested > MAX_SNAP as u32 {
        MAX_SNAP as u32
    } else {
        requested
    }
}
