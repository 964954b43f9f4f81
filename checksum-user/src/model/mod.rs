//! The domain model, low in the tree: a checksum verdict, its flow, tunnel and socket-buffer
//! state, and the bytes a capture brings, as every layer above (analysis, reports, captures, the
//! kernel's decoder) shares them. It knows none of its encodings: decoding is in
//! `kernel/event.rs`, JSON in `report/json.rs`, pcap framing in `pcap/sink.rs`.

pub mod captured;
pub mod verdict;

pub use captured::{Captured, effective_snaplen};
pub use verdict::{Flow, SkbCsum, Tunnel, Verdict, hex};

/// Whether severity at TC follows the skb's own checksum state (see `LoadOptions::partial_ok`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkbStateUse {
    /// Read, and partial checksums the skb is still to complete are `partial-ok`.
    On,
    /// Turned off by the caller.
    Off,
    /// Asked for, but this kernel's layout could not be resolved: why.
    Unavailable(String),
}
