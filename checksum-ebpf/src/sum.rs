//! One's-complement sum over a byte range of the packet.
//!
//! Verifier notes: `bpf_csum_diff` straight on packet pointers with a variable length is rejected
//! (aya#1562), so bytes are staged in a per-CPU buffer in constant `CHUNK`s. The short tail is
//! loaded in one call whose length is provably in [1, CHUNK] (a possibly-zero length fails
//! verification, aya#1207) on top of a zeroed word, which pads an odd length with zero as RFC 1071
//! requires, with no per-byte loop.

use aya_ebpf::helpers::generated::bpf_csum_diff;

use crate::{SCRATCH, packet::Packet};

/// `bpf_csum_diff` sums at most 512 bytes per call.
pub const CHUNK: u32 = 512;
/// Enough chunks for the largest non-jumbo IP payload (65535 bytes).
const MAX_CHUNKS: u32 = 128;

#[inline(always)]
fn csum(buf: *mut u8, len: u32) -> Option<u64> {
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.cast(), len, 0) };
    (r >= 0).then_some(r as u64)
}

/// Ranges up to this long are summed straight from packet memory when they are in the linear
/// part: cheaper than staging them (a map lookup and two helper calls). Covers IPv4 headers and
/// the segments of small frames, the packets-per-second hot path.
const SMALL: usize = 64;

/// The sum of `[off, off + len)` read directly from the linear part, 4 bytes at a time; `None`
/// when the range is longer than SMALL or not all linear (the caller then stages it).
#[inline(always)]
fn sum_linear_small<P: Packet>(pkt: &P, off: u32, len: u32) -> Option<u64> {
    if len as usize > SMALL || off >= 0x4000 {
        return None;
    }
    let (start, end) = pkt.linear();
    // Bounded for the verifier, which rejects packet-pointer arithmetic with unbounded registers.
    let base = start + (off & 0x3fff) as usize;
    let len = (len & 0x7f) as usize;
    let mut sum = 0u64;
    for i in 0..SMALL / 4 {
        if (i + 1) * 4 > len {
            break;
        }
        let p = base + i * 4;
        // Checked per word: the verifier needs each access proven against data_end.
        if p + 4 > end {
            return None;
        }
        // SAFETY: [p, p + 4) is inside the packet, as just checked.
        let w = unsafe { (p as *const [u8; 4]).read_unaligned() };
        sum += u16::from_ne_bytes([w[0], w[1]]) as u64 + u16::from_ne_bytes([w[2], w[3]]) as u64;
    }
    let rest = len % 4;
    if rest != 0 {
        // Read a whole word when the packet has room (padding or the rest of the frame), and
        // keep only `rest` bytes, zero-padded as RFC 1071 wants for an odd length.
        let p = base + (len - rest);
        if p + 4 > end {
            return None;
        }
        // SAFETY: [p, p + 4) is inside the packet, as just checked.
        let w = unsafe { (p as *const [u8; 4]).read_unaligned() };
        let b = [
            w[0],
            if rest > 1 { w[1] } else { 0 },
            if rest > 2 { w[2] } else { 0 },
        ];
        sum += u16::from_ne_bytes([b[0], b[1]]) as u64 + u16::from_ne_bytes([b[2], 0]) as u64;
    }
    Some(sum)
}

/// Adds the bytes `[off, off + len)` to `seed`. `None` when they are not all in the packet.
#[inline(always)]
pub fn sum_range<P: Packet>(pkt: &P, off: u32, len: u32, seed: u64) -> Option<u64> {
    if let Some(sum) = sum_linear_small(pkt, off, len) {
        return Some(seed + sum);
    }
    let buf = SCRATCH.get_ptr_mut(0)? as *mut u8;
    let full = len / CHUNK;
    let mut sum = seed;
    let mut pos = off;
    for i in 0..MAX_CHUNKS {
        if i >= full {
            break;
        }
        if !pkt.load_raw(pos, buf, CHUNK) {
            return None;
        }
        sum += csum(buf, CHUNK)?;
        pos += CHUNK;
    }
    let tail = len % CHUNK;
    if tail != 0 {
        // Zero the word the tail ends in, then let the load overwrite its leading bytes.
        let whole = tail & (CHUNK - 4);
        let last_word = unsafe { buf.add(whole as usize) };
        unsafe { last_word.cast::<u32>().write(0) };
        let n = ((tail - 1) & (CHUNK - 1)) + 1;
        if !pkt.load_raw(pos, buf, n) {
            return None;
        }
        // Sum the whole words with the helper and the zero-padded last word by hand: a length
        // rounded up to 4 loses its bounds in the verifier's eyes ("invalid access to map value").
        sum += csum(buf, whole)?;
        let w = unsafe { last_word.cast::<[u8; 4]>().read() };
        sum += u16::from_ne_bytes([w[0], w[1]]) as u64 + u16::from_ne_bytes([w[2], w[3]]) as u64;
    }
    Some(sum)
}
