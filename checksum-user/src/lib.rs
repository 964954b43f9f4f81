//! checksum-audit's user side as a library, so the tests drive exactly what the binary runs.

pub mod aggregate;
pub mod attach;
pub mod btf;
pub mod capture;
pub mod cli;
pub mod diagnosis;
pub mod event;
pub mod follow;
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
pub mod testkit;
pub mod testrun;
pub mod view;
pub mod xdp_slot;
