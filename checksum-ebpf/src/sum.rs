//! One's-complement sum over a byte range of the packet, by the cheapest means the range allows:
//!
//! - up to 64 bytes in the linear part (headers, small frames): 32-bit loads straight from packet
//!   memory;
//! - longer ranges: 512-byte chunks from a `bpf_loop` callback, then the power-of-two pieces of
//!   the tail, each summed by `bpf_csum_diff` in place when it is in the linear part, or else
//!   (XDP fragments, non-linear skbs) copied into a per-CPU buffer by the load-bytes helpers and
//!   summed there.
//!
//! Verifier notes (messages as Linux 6.18 prints them, each found by undoing the workaround):
//! - `bpf_csum_diff` on packet memory needs a constant length (aya#1562), hence the chunks and the
//!   power-of-two tail. A variable length is checked at its largest value against the bytes a
//!   comparison with `data_end` proved for the pointer, and one comparison of `p + len` proves
//!   nothing beyond the pointer's constant offset: summing the tail's whole words in one call
//!   fails with "invalid access to packet, off=22 size=252, R3(id=0,off=22,r=82)" ("R3 offset is
//!   outside of the packet").
//! - The chunks come from a `bpf_loop` callback, verified once (and inlined by the kernel into a
//!   plain loop). A plain loop of constant-size calls on packet memory used to exhaust the
//!   verifier's 1M-instruction budget; on 6.18 it no longer does: a plain loop of up to 128 chunks
//!   verifies, but the verifier processes more instructions for every program than with
//!   `bpf_loop` (bench/README.md has the counts). The callback stays for those instructions.
//!   Kernels before 5.17 have no `bpf_loop`: their object (feature `legacy-kernels`) has the
//!   plain loop.
//! - In the staged path, the short tail is loaded in one call whose length is provably in
//!   [1, CHUNK] (aya#1207), with no per-byte loop: a length that may be zero fails with
//!   "R4 invalid zero-sized read: u64=[0,255]".

#[cfg(not(feature = "legacy-kernels"))]
use core::ffi::c_void;

#[cfg(not(feature = "legacy-kernels"))]
use aya_ebpf::EbpfContext;
use aya_ebpf::{helpers::generated::bpf_csum_diff, macros::map, maps::PerCpuArray};

use crate::bytes::{PacketBytes, bounded};

/// `bpf_csum_diff` sums at most 512 bytes per call.
pub const CHUNK: u32 = 512;

/// Per-CPU staging area for the chunks and tails that are not in the linear part: the BPF stack
/// (512 bytes in all) is too small, and `bpf_csum_diff` may not read packet memory of a variable
/// length (aya#1562).
#[map]
static SCRATCH: PerCpuArray<[u8; CHUNK as usize]> = PerCpuArray::with_max_entries(1, 0);

/// A packet whose long ranges can be summed by a global function (`dispatch.rs` implements it,
/// per context type, with `sum_large` as the body). The verifier checks that function once, on its
/// own, instead of again on every path that leads to it (VLAN tags, IPv4 options, IPv6 extension
/// headers, each protocol), which made loading, and so attaching, several times slower.
pub trait SumLarge: PacketBytes {
    /// The sum of `[off, off + len)` (`sum_large`), or `NO_SUM`.
    fn sum_large(&self, off: u32, len: u32) -> u64;
}

#[inline(always)]
fn csum(buf: *mut u8, len: u32) -> Option<u64> {
    // SAFETY: the helper only reads `len` bytes at `buf` (no `from` buffer); callers pass a
    // bounds-checked range of the linear packet, or the SCRATCH value with `len` <= CHUNK.
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.cast(), len, 0) };
    (r >= 0).then_some(r.cast_unsigned())
}

/// Ranges up to this long are summed straight from packet memory when they are in the linear
/// part: cheaper than staging them (a map lookup and two helper calls). Covers IPv4 headers and
/// the segments of small frames, the packets-per-second hot path.
const SMALL: usize = 64;

/// The sum of `[off, off + len)` read directly from the linear part, a 32-bit word at a time;
/// `None` when the range is longer than SMALL or not all linear (the caller then stages it).
/// Adding 32-bit words into a 64-bit accumulator gives the same folded one's-complement sum as
/// adding 16-bit words, since 2^16 = 1 (mod 0xffff): half the loads and adds.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "`len` and `rest` are masked to 7 bits"
)]
fn sum_linear_small<P: PacketBytes>(pkt: &P, off: u32, len: u32) -> Option<u64> {
    if len as usize > SMALL || len < 4 || off >= 0x4000 {
        return None;
    }
    let (start, end) = pkt.linear();
    // Bounded for the verifier, like every packet offset here (see LINEAR_MASK). Not needed on
    // 6.18 with today's callers, whose offsets it already knows to be small: without the masks
    // and the `off` check the programs verify too (the `off` mask alone compiles to nothing).
    let base = start + bounded(off, 0x3fff) as usize;
    let len = (len & 0x7f) as usize;
    let mut sum = 0u64;
    for i in 0..SMALL / 4 {
        if (i + 1) * 4 > len {
            break;
        }
        let p = base + i * 4;
        // Checked per word: the verifier needs each access proven against data_end. One check of
        // the whole range before the loop fails with "invalid access to packet, off=62 size=4,
        // R6(id=0,off=62,r=0)": it bounds the variable end, not the constant offsets of the words.
        if p + 4 > end {
            return None;
        }
        // SAFETY: [p, p + 4) is inside the packet, as just checked.
        sum += u64::from(unsafe { (p as *const u32).read_unaligned() });
    }
    let rest = len % 4;
    if rest != 0 {
        sum += last_bytes(start, end, off + len as u32, rest as u32)?;
    }
    Some(sum)
}

/// The last `rest` (1 to 3) bytes before offset `range_end` as a zero-padded word, as RFC 1071
/// wants for a length that is not a multiple of 4. Reads the whole word that ends there, so it
/// needs no room after the range; the range must be at least 4 bytes long.
#[inline(always)]
fn last_bytes(start: usize, end: usize, range_end: u32, rest: u32) -> Option<u64> {
    // Masked after the subtraction: a pointer with a negative constant offset is rejected
    // ("invalid access to packet, off=-4 size=4, R1(id=64,off=-4,r=0)" for `start + end - 4`).
    let p = start + bounded(range_end - 4, LINEAR_MASK) as usize;
    if p + 4 > end {
        return None;
    }
    // SAFETY: [p, p + 4) is inside the packet, as just checked.
    let w = unsafe { (p as *const u32).read_unaligned() };
    // Memory order on this little-endian target: the wanted bytes are the word's high ones.
    Some(u64::from(w >> (8 * (4 - rest))))
}

/// Offsets into the linear part are masked to this for the verifier: a comparison with `data_end`
/// proves nothing for a pointer whose variable offset may pass 64 KiB (the kernel's
/// `MAX_PACKET_OFF`), and the access after it is refused, "invalid access to packet, off=0
/// size=256, R3(id=18800,off=0,r=0)" (r=0: no bytes proven) with neither the check of `pos` nor the
/// mask in `csum_in_place`, "... size=4, R1(id=766,off=0,r=0)" with a mask of 0x1ffff. (Behind the
/// `pos > LINEAR_MASK` check the mask itself compiles to nothing; it states the bound.)
const LINEAR_MASK: u32 = 0x7fff;

/// `bpf_csum_diff` over the `N` bytes at `pos` of the linear part, in place.
#[inline(always)]
fn csum_in_place<P: PacketBytes, const N: u32>(pkt: &P, pos: u32) -> Option<u64> {
    if pos > LINEAR_MASK {
        return None;
    }
    let (start, end) = pkt.linear();
    let p = start + bounded(pos, LINEAR_MASK) as usize;
    if p + N as usize > end {
        return None;
    }
    csum(p as *mut u8, N)
}

/// What a `bpf_loop` callback works on; it lives on the caller's stack.
#[cfg(not(feature = "legacy-kernels"))]
#[repr(C)]
struct ChunkLoop {
    /// The program's context: the callback gets nothing else to find the packet with.
    ctx: *mut c_void,
    off: u64,
    sum: u64,
    failed: u64,
}

#[cfg(not(feature = "legacy-kernels"))]
impl ChunkLoop {
    /// Adds one chunk's sum; the callback's return value: 0 goes on, 1 stops the loop.
    #[inline(always)]
    fn add(&mut self, sum: Option<u64>) -> i64 {
        if let Some(sum) = sum {
            self.sum += sum;
            0
        } else {
            self.failed = 1;
            1
        }
    }

    /// Offset of chunk `index`, saturated (a saturated offset fails the bounds checks).
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "saturated to u32::MAX first"
    )]
    fn chunk_off(&self, index: u64) -> u32 {
        (self.off + index * u64::from(CHUNK)).min(u64::from(u32::MAX)) as u32
    }
}

/// The sum of the chunk at `pos`: in place when it is in the linear part, else after copying it
/// into the per-CPU buffer (XDP fragments, the paged data of an skb).
#[inline(always)]
fn chunk_sum<P: PacketBytes>(pkt: &P, pos: u32) -> Option<u64> {
    if let Some(sum) = csum_in_place::<P, CHUNK>(pkt, pos) {
        return Some(sum);
    }
    let buf = SCRATCH.get_ptr_mut(0)?.cast::<u8>();
    if pkt.load_raw(pos, buf, CHUNK) {
        csum(buf, CHUNK)
    } else {
        None
    }
}

/// Sums chunk `index` (`bpf_loop`'s callback). Returns 1 (stop) on failure.
#[cfg(not(feature = "legacy-kernels"))]
extern "C" fn sum_chunk<P: PacketBytes>(index: u64, state: *mut c_void) -> i64 {
    // SAFETY: bpf_loop hands back the pointer `run_chunks` gave it.
    let state = unsafe { &mut *state.cast::<ChunkLoop>() };
    // SAFETY: `ctx` is the program's context, saved by `run_chunks`.
    let pkt = unsafe { P::from_raw_ctx(state.ctx) };
    let pos = state.chunk_off(index);
    state.add(chunk_sum(&pkt, pos))
}

/// The sum of the `count` chunks from `off`. One `bpf_loop` call site per program: the verifier
/// walks a callback once per call site, until its states converge, which costs load time.
#[cfg(not(feature = "legacy-kernels"))]
#[inline(always)]
fn run_chunks<P: Chunks>(pkt: &P, off: u32, count: u32) -> Option<u64> {
    if count == 0 {
        return Some(0);
    }
    let mut state = ChunkLoop {
        ctx: pkt.context().as_ptr(),
        off: u64::from(off),
        sum: 0,
        failed: 0,
    };
    let callback = sum_chunk::<P> as *mut c_void;
    let state_ptr = (&raw mut state).cast();
    // SAFETY: the callback and its state match; flags must be 0.
    let done = unsafe { aya_ebpf::helpers::generated::bpf_loop(count, callback, state_ptr, 0) };
    (done == i64::from(count) && state.failed == 0).then_some(state.sum)
}

/// The most chunks a range can have: an IP packet, GSO aggregates included, is at most 64 KiB
/// (BIG TCP, which allows more, came in 5.19, after `bpf_loop`).
#[cfg(feature = "legacy-kernels")]
const MAX_CHUNKS: u32 = 65_536 / CHUNK;

/// `run_chunks` before 5.17, which has no `bpf_loop`: a loop the verifier walks once per
/// iteration, up to `MAX_CHUNKS`, each chunk summed by a global function (`Chunks`), so that an
/// iteration costs the verifier a few instructions, not the chunk's two paths (inlined, the TC
/// programs took 515,000 instead of 432,000). The index goes through `bounded` every time round:
/// LLVM otherwise turns the loop into a countdown from `count`, whose bounds the verifier loses
/// after the first decrement ("The sequence of 8193 jumps is too complex"); behind the barrier the
/// index is a constant the verifier follows exactly.
#[cfg(feature = "legacy-kernels")]
#[inline(always)]
fn run_chunks<P: Chunks>(pkt: &P, off: u32, count: u32) -> Option<u64> {
    let mut sum = 0;
    let mut i = 0;
    while i < MAX_CHUNKS {
        i = bounded(i, 2 * MAX_CHUNKS - 1);
        if i >= count {
            return Some(sum);
        }
        let chunk = pkt.sum_chunk(off + i * CHUNK);
        if chunk == NO_SUM {
            return None;
        }
        sum += chunk;
        i += 1;
    }
    (count <= MAX_CHUNKS).then_some(sum)
}

/// What `sum_large` needs of a packet besides its bytes: nothing with `bpf_loop`, whose callback
/// the verifier checks once anyway.
#[cfg(not(feature = "legacy-kernels"))]
pub trait Chunks: PacketBytes {}

#[cfg(not(feature = "legacy-kernels"))]
impl<P: PacketBytes> Chunks for P {}

/// Before 5.17: a global function per context type (dispatch.rs) around `chunk_sum`.
#[cfg(feature = "legacy-kernels")]
pub trait Chunks: PacketBytes {
    /// The sum of the chunk at `pos` (`chunk_sum_or_none`).
    fn sum_chunk(&self, pos: u32) -> u64;
}

/// The body of the global functions behind `Chunks::sum_chunk`: `chunk_sum`, or `NO_SUM`.
#[cfg(feature = "legacy-kernels")]
#[inline(always)]
pub fn chunk_sum_or_none<P: PacketBytes>(pkt: &P, pos: u32) -> u64 {
    chunk_sum(pkt, pos).unwrap_or(NO_SUM)
}

/// The sum of `[pos, pos + tail)`, shorter than a chunk: in place when it is all in the linear
/// part, staged otherwise.
#[inline(always)]
fn sum_tail<P: PacketBytes>(pkt: &P, pos: u32, tail: u32) -> Option<u64> {
    if tail == 0 {
        return Some(0);
    }
    sum_tail_in_place(pkt, pos, tail).or_else(|| sum_staged_tail(pkt, pos, tail))
}

/// `sum_tail` in place; `None` as soon as a piece is not in the linear part. Each piece checks
/// its own bounds: given one check of the whole tail up front, LLVM drops the per-piece checks
/// as redundant, but the verifier cannot see why and rejects the accesses ("invalid access to
/// packet, off=22 size=32, R3(id=0,off=22,r=50)").
#[inline(always)]
fn sum_tail_in_place<P: PacketBytes>(pkt: &P, pos: u32, tail: u32) -> Option<u64> {
    let (start, end) = pkt.linear();
    // Constant-size pieces, largest first (bpf_csum_diff wants multiples of 4), then 0-3 bytes.
    // Each piece's offset comes from the tail's higher bits alone, not from a running position:
    // the verifier then sees the same state after each piece whether it was summed or not, and
    // prunes instead of exploring every combination. With a running position the XDP program
    // fails, "combined stack size of 3 calls is 528. Too large" (the position needs a stack slot),
    // and a TC one takes the verifier more instructions.
    let mut sum = 0;
    macro_rules! piece {
        ($n:literal) => {
            if tail & $n != 0 {
                let before = tail & !(2 * $n - 1) & (CHUNK - 1);
                sum += csum_in_place::<P, $n>(pkt, pos + before)?;
            }
        };
    }
    piece!(256);
    piece!(128);
    piece!(64);
    piece!(32);
    piece!(16);
    piece!(8);
    piece!(4);
    let rest = tail % 4;
    if rest != 0 {
        // The word ending at the range's end; the bytes before it are the range's too (or, for a
        // range under 4 bytes, headers before it), and shifted out.
        sum += last_bytes(start, end, pos + tail, rest)?;
    }
    Some(sum)
}

/// `[pos, pos + tail)`, shorter than a chunk, copied into the per-CPU buffer and summed there.
#[inline(always)]
#[expect(
    clippy::cast_ptr_alignment,
    reason = "the last word is 4-aligned: map values are 8-aligned and `whole` a multiple of 4"
)]
fn sum_staged_tail<P: PacketBytes>(pkt: &P, pos: u32, tail: u32) -> Option<u64> {
    let buf = SCRATCH.get_ptr_mut(0)?.cast::<u8>();
    // Zero the word the tail ends in, then let the load overwrite its leading bytes.
    let whole = tail & (CHUNK - 4);
    // SAFETY: `whole` <= CHUNK - 4, so the word at `buf + whole` is inside the SCRATCH value.
    let last_word = unsafe { buf.add(whole as usize) };
    // SAFETY: that word is in bounds and 4-aligned (map values are 8-aligned, `whole` a multiple of
    // 4), and the per-CPU value is used by no one else during this run.
    unsafe { last_word.cast::<u32>().write(0) };
    // Behind `bounded`: LLVM otherwise folds the `+ 1` into the mask and hands Linux 6.1 a length
    // it sees as [0, 511] ("invalid access to map value, value_size=512 off=0 size=0", "R3 min
    // value is outside of the allowed memory range" at bpf_skb_load_bytes).
    let n = bounded(tail - 1, CHUNK - 1) + 1;
    if !pkt.load_raw(pos, buf, n) {
        return None;
    }
    // Sum the whole words with the helper and the zero-padded last word by hand: a length rounded
    // up to 4 loses its bounds in the verifier's eyes ("invalid access to map value,
    // value_size=512 off=0 size=514" for `(n + 3) & !3`).
    let mut sum = csum(buf, whole)?;
    // SAFETY: the same in-bounds, aligned word, initialized by the write above (and by the load).
    sum += u64::from(unsafe { last_word.cast::<u32>().read() });
    Some(sum)
}

/// Adds the bytes of a header, `[off, off + len)` with `len` under a chunk, to `seed`; `None`
/// when they are not all in the packet. No loop: one less `bpf_loop` site to verify.
#[inline(always)]
pub fn sum_header<P: PacketBytes>(pkt: &P, off: u32, len: u32, seed: u64) -> Option<u64> {
    if let Some(sum) = sum_linear_small(pkt, off, len) {
        return Some(seed + sum);
    }
    Some(seed + sum_tail(pkt, off, len & (CHUNK - 1))?)
}

/// Adds the bytes `[off, off + len)` to `seed`. `None` when they are not all in the packet.
#[inline(always)]
pub fn sum_range<P: SumLarge>(pkt: &P, off: u32, len: u32, seed: u64) -> Option<u64> {
    if let Some(sum) = sum_linear_small(pkt, off, len) {
        return Some(seed + sum);
    }
    let sum = pkt.sum_large(off, len);
    (sum != NO_SUM).then_some(seed + sum)
}

/// What `sum_large` returns when the range is not all in the packet. A real sum stays far below:
/// at most 64 KiB of data in 32-bit words.
pub const NO_SUM: u64 = u64::MAX;

/// The body of the global functions `SumLarge::sum_large` calls (see dispatch.rs).
#[inline(always)]
pub fn sum_large<P: Chunks>(pkt: &P, off: u32, len: u32) -> u64 {
    let full = len / CHUNK;
    let Some(chunks) = run_chunks(pkt, off, full) else {
        return NO_SUM;
    };
    match sum_tail(pkt, off + full * CHUNK, len % CHUNK) {
        Some(tail) => chunks + tail,
        None => NO_SUM,
    }
}
