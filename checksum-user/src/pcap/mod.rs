//! Capture files: reading pcap and pcapng (replay), and writing pcapng (`--pcap-out`).

pub mod read;
pub mod write;
