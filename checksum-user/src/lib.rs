//! checksum-audit's user side as a library, so the tests drive exactly what the binary runs.
//!
//! `testkit` and `fuzzing` exist only with the `testkit` feature (tests, xtask, fuzz/): the binary
//! does not use them and a release build does not compile them (see Cargo.toml).

// The unit tests use the test kit (diagnosis.rs, testkit/). Cargo.toml's dev-dependency on this
// crate turns the feature on for every test build; should that go, fail here rather than quietly
// compiling fewer tests.
#[cfg(all(test, not(feature = "testkit")))]
compile_error!(
    "checksum-user's tests need its `testkit` feature (the self dev-dependency in Cargo.toml)"
);

pub mod aggregate;
pub mod attach;
pub mod btf;
pub mod capture;
pub mod cli;
pub mod diagnosis;
pub mod event;
pub mod follow;
#[cfg(feature = "testkit")]
pub mod fuzzing;
pub mod lifecycle;
pub mod live;
pub mod loader;
pub mod metrics;
pub mod netlink;
pub mod output;
pub mod pcapng;
pub mod privileges;
pub mod replay;
pub mod severity;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod testrun;
pub mod view;
pub mod xdp_slot;
