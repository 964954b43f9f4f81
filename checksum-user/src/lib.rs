//! checksum-audit's user side as a library, so the tests drive exactly what the binary runs.
//!
//! `testkit` and `fuzzing` exist only with the `testkit` feature (tests, xtask, fuzz/): the binary
//! does not use them and a release build does not compile them (see Cargo.toml).

// The unit tests use the test kit (analysis/diagnosis/tests.rs, testkit/). Cargo.toml's dev-dependency on this
// crate turns the feature on for every test build; should that go, fail here rather than quietly
// compiling fewer tests.
#[cfg(all(test, not(feature = "testkit")))]
compile_error!(
    "checksum-user's tests need its `testkit` feature (the self dev-dependency in Cargo.toml)"
);

// One folder per concern; the tree reads as the architecture, each layer using only those below
// it: sys (rtnetlink, capabilities, clocks) -> model (verdicts, flows, captures) -> net (which
// interfaces, in which namespaces, of what class) -> analysis (aggregate, diagnose, judge) and
// kernel (load, attach, read) -> pcap (read and write capture files) and report (text, JSON,
// terminal, metrics) -> kube (the cluster's pods and Services, Events) -> live and replay, which
// wire them up.
pub mod analysis;
pub mod cli;
#[cfg(feature = "testkit")]
pub mod fuzzing;
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
#[cfg(feature = "testkit")]
pub mod testkit;
