//! checksum-audit's user side as a library, so the tests drive exactly what the binary runs.

pub mod event;
pub mod loader;
pub mod xdp_slot;
pub mod testrun;
