//! checksum-audit's user side as a library, so the tests drive exactly what the binary runs.
//! Test-only code lives in the checksum-testkit crate, which depends on this one.

// One folder per concern; the tree reads as the architecture, each layer using only those below
// it: sys (rtnetlink, capabilities, clocks) -> model (verdicts, flows, captures) -> net (which
// interfaces, in which namespaces, of what class) -> analysis (aggregate, diagnose, judge) and
// kernel (load, attach, read) -> pcap (read and write capture files) and report (text, JSON,
// terminal, metrics) -> kube (the cluster's pods and Services, Events) -> live and replay, which
// wire them up.
pub mod analysis;
pub mod cli;
pub mod kernel;
pub mod kube;
pub mod lifecycle;
pub mod live;
pub mod model;
pub mod net;
pub mod pcap;
pub mod replay;
pub mod report;
pub mod sys;
