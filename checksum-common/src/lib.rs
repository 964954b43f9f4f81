//! Shared by the kernel programs (checksum-ebpf), the `checksum-audit` binary and the tests:
//! the event and counter layouts that cross the kernel/user boundary, and the checksum arithmetic.
#![no_std]

pub mod counters;
pub mod csum;
pub mod drop;
pub mod encap;
pub mod event;
pub mod signature;
pub mod source;
pub mod track;

pub use counters::Counters;
pub use event::{ChecksumEvent, Hook, Kind, Layer, Status};
pub use source::{SourceKey, SourceState};

#[cfg(test)]
mod reference {
    //! The tests' independent reference sum: plain big-endian words, sharing no code with `csum`.
    extern crate std;
    use std::vec::Vec;

    /// One's-complement sum of `parts` (concatenated) as big-endian words, folded, not
    /// complemented.
    pub fn ref_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        u16::try_from(sum).expect("folded to 16 bits")
    }
}
