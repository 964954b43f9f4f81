//! Shared by the kernel programs (checksum-ebpf), the `checksum-audit` binary and the tests:
//! the event and counter layouts that cross the kernel/user boundary, and the checksum arithmetic.
#![no_std]

pub mod counters;
pub mod csum;
pub mod drop;
pub mod encap;
pub mod event;
pub mod reference;
pub mod signature;
pub mod source;
pub mod track;

pub use counters::Counters;
pub use event::{ChecksumEvent, Hook, Kind, Layer, Status};
pub use source::{SourceKey, SourceState};
