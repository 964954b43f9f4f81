//! checksum-audit's user side as a library, so the tests drive exactly what the binary runs.
//! Test-only code lives in the checksum-testkit crate, which depends on this one.

// One folder per concern; the tree reads as the architecture:
// kernel (load, attach, read) -> net (which interfaces, in which namespaces) -> analysis
// (aggregate, diagnose, judge) -> report (text, JSON, terminal, metrics), with pcap (read and
// write capture files) and kube (the cluster's pods and Services, Events) beside; live and
// replay wire them up.
pub mod analysis;
pub mod cli;
pub mod kernel;
pub mod kube;
pub mod lifecycle;
pub mod live;
pub mod net;
pub mod pcap;
pub mod replay;
pub mod report;
