//! `cargo xtask bench`, one module per kind of run, over what they share (`harness`).

pub mod attach;
pub mod harness;
pub mod iperf;
pub mod live;
pub mod pods;
pub mod testrun;
pub mod userspace;
