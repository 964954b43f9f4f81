//! Byte access to a packet, whatever the hook: the bottom of the crate, importing nothing of it.
//! Everything is read through the load-bytes helpers, which also reach into the fragments of
//! multi-buffer (jumbo) XDP frames, or straight from the linear part when the bytes are there.
//! The hooks' packet types (`packet.rs`) implement `PacketBytes`; what differs by hook beyond
//! bytes is `packet::Packet`.

use aya_ebpf::EbpfContext;

/// Reading a packet's bytes.
pub trait PacketBytes: Sized {
    type Ctx: EbpfContext;
    fn context(&self) -> &Self::Ctx;
    /// The packet again from its raw context pointer, inside a `bpf_loop` callback (which gets
    /// only a pointer to the caller's stack).
    ///
    /// # Safety
    /// `ctx` must be this program's context pointer.
    #[cfg_attr(
        feature = "legacy-kernels",
        expect(dead_code, reason = "that build has no bpf_loop")
    )]
    unsafe fn from_raw_ctx(ctx: *mut core::ffi::c_void) -> Self;
    /// Total length, fragments included.
    fn len(&self) -> u32;
    /// Copies `len` bytes at `off` into `dst`; false when they are not all in the packet.
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool;

    /// Start and end of the linear part of the packet (direct packet access).
    fn linear(&self) -> (usize, usize);

    /// Whether the packet holds at least `end` bytes. The linear part answers without a helper
    /// call for most frames; `len()` (a helper at XDP) only for the rest.
    #[inline(always)]
    fn holds(&self, end: u32) -> bool {
        let (start, stop) = self.linear();
        end as usize <= stop - start || end <= self.len()
    }

    /// Copies a constant number of bytes to the stack: straight from packet memory when they are
    /// in the linear part (no helper call: this is the hot path of every header), through the
    /// load-bytes helper otherwise (XDP fragments, non-linear skbs).
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "N is the size of a header, a few dozen bytes"
    )]
    fn load<const N: usize>(&self, off: u32) -> Option<Bytes<N>> {
        let (start, end) = self.linear();
        // The bound was for the verifier, which rejected adding an unbounded offset to a packet
        // pointer. On 6.18 that no longer reproduces: without the check (and the mask, which
        // behind the check compiles to nothing) the programs still verify, but the verifier
        // processes far more instructions for every program (bench/README.md has the counts),
        // so the bound stays for that.
        if off < 0x4000 {
            let at = start + bounded(off, 0x3fff) as usize;
            if at + N <= end {
                // SAFETY: [at, at + N) is inside the packet, as just checked.
                return Some(Bytes(unsafe { (at as *const [u8; N]).read_unaligned() }));
            }
        }
        let mut buf = Bytes([0u8; N]);
        self.load_raw(off, buf.0.as_mut_ptr(), N as u32)
            .then_some(buf)
    }
}

/// Bytes copied out of the packet, 8-aligned. LLVM may use misaligned loads (see build.rs), but
/// the verifier requires stack accesses to be aligned: an unaligned array (inside an `Option`, the
/// byte after the tag) would be read back with a misaligned wide load and rejected ("misaligned
/// stack access off 0+0+-55 size 8" without the `align(8)`).
#[repr(C, align(8))]
pub struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> core::ops::Deref for Bytes<N> {
    type Target = [u8];
    #[inline(always)]
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A segment's offset or length as read back from map memory (the per-CPU segment, see
/// `audit::Pending`), bounded for the verifier, which knows nothing of such a value: an offset
/// that may pass 64 KiB makes every packet access through it fail ("invalid access to packet,
/// off=0 size=4, R5(id=220,off=0,r=0)": a comparison with `data_end` proves nothing for it). The
/// asm (one register move to itself) hides the value from LLVM, which would otherwise drop the
/// mask wherever it can tell the value is already in range, while the verifier, checking a
/// different copy, cannot. (An empty asm string gave the instruction no line of its own and the
/// kernel refused the object: `Invalid line_info[371].insn_off:900 (prev_offset:900`.) The parser
/// keeps offsets under `OFFSET_MASK` and lengths are 16-bit, so the masks change nothing.
#[inline(always)]
pub fn bounded(value: u32, mask: u32) -> u32 {
    let mut v = value;
    // SAFETY: one move of `v`'s register to itself: it reads and writes nothing else.
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) v, options(pure, nomem, nostack)) };
    v & mask
}

/// The largest segment offset the parser hands on (see `bounded`).
pub const OFFSET_MASK: u32 = 0x7fff;

#[inline(always)]
pub fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

#[inline(always)]
pub fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// A 16-bit field exactly as it lies in memory (see `checksum_common::csum`).
#[inline(always)]
pub fn mem16(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}
