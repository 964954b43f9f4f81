//! The domain model, low in the tree: a checksum verdict, its flow, tunnel and socket-buffer
//! state, the bytes a capture brings, and a Service as the NAT candidates need it, as every layer
//! above (analysis, reports, captures, the kernel's decoder, the cluster watcher) shares them. It
//! knows none of its encodings: decoding is in `kernel/event.rs`, JSON in `report/json.rs`, pcap
//! framing in `pcap/sink.rs`, a Service's JSON in `analysis/candidates.rs` and its API object in
//! `kube/convert.rs`.

pub mod captured;
pub mod service;
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
