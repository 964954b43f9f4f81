//! Capture files: reading pcap and pcapng (replay), writing pcapng, and the live capture sink
//! (`--pcap-out`).

pub mod read;
pub mod sink;
pub mod write;
