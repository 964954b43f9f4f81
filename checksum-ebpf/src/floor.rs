//! The floor for benchmarks (`sum_floor_xdp`): the audit's cost to sum a frame's L4 bytes, and
//! nothing else (no parsing, no pseudo-header, no verdict): the same summing path
//! (`sum::sum_range`) over the bytes after a plain IPv4 header.

use crate::sum::{self, SumLarge};

/// Where the floor starts summing: past an Ethernet and a 20-byte IPv4 header, where a plain
/// TCP/UDP segment starts.
const SUM_FLOOR_FROM: u32 = 34;

/// Longest range the floor sums: a jumbo frame's.
const SUM_FLOOR_MAX: u32 = 16 * 1024;

/// Where the floor leaves its sum, so that the sum is not optimised away.
#[unsafe(no_mangle)]
static mut SUM_FLOOR: u64 = 0;

/// Sums the frame's bytes after `SUM_FLOOR_FROM` into `SUM_FLOOR`.
#[inline(always)]
pub fn sum_floor<P: SumLarge>(pkt: &P) {
    let len = pkt.len();
    if len > SUM_FLOOR_FROM && len - SUM_FLOOR_FROM <= SUM_FLOOR_MAX {
        let sum = sum::sum_range(pkt, SUM_FLOOR_FROM, len - SUM_FLOOR_FROM, 0).unwrap_or(0);
        // SAFETY: a plain store to this program's own global; concurrent runs may interleave,
        // which only the benchmark's discarded value sees.
        unsafe { core::ptr::write_volatile(&raw mut SUM_FLOOR, sum) };
    }
}
