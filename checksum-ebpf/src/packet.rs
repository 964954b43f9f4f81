//! Byte access to a packet, independent of the hook. Everything is read through the load-bytes
//! helpers, which also reach into the fragments of multi-buffer (jumbo) XDP frames.

use checksum_common::{
    Hook, SourceKey,
    source::{DIRECT_IFINDEXES, UNATTRIBUTED_SLOT},
};

use crate::{NETNS_BY_DEVICE, SLOTS_BY_IFINDEX};

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, xdp_md},
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};

pub trait Packet: Sized {
    type Ctx: EbpfContext;
    fn context(&self) -> &Self::Ctx;
    /// The packet again from its raw context pointer, inside a `bpf_loop` callback (which gets
    /// only a pointer to the caller's stack).
    ///
    /// # Safety
    /// `ctx` must be this program's context pointer.
    unsafe fn from_raw_ctx(ctx: *mut core::ffi::c_void) -> Self;
    /// Total length, fragments included.
    fn len(&self) -> u32;
    fn ifindex(&self) -> u32;
    /// The namespace cookie of the packet's device, or 0 (see `netns::cookie`).
    fn netns(&self) -> u64;
    /// The `STATES` slot of this packet's source: `direct_slot`, else `csa_source_slot_*`.
    fn source_slot(&self, hook: Hook) -> u32;
    /// Copies `len` bytes at `off` into `dst`; false when they are not all in the packet.
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool;

    /// The sum of a long range (`sum::sum_large`), or `sum::NO_SUM`. Calls a global BPF function:
    /// the verifier checks it once, on its own, instead of again on every path that leads to it
    /// (VLAN tags, IPv4 options, IPv6 extension headers, each protocol), which made loading, and
    /// so attaching, several times slower.
    fn sum_large(&self, off: u32, len: u32) -> u64;

    /// One audit pass over the packet at `at` (`audit::audit_level`), a global function.
    fn audit_level(&self, hook: Hook, slot: u32, at: u32) -> u32;

    /// Reports the verdict `record` left in `PENDING` (`audit::emit`), a global function.
    fn emit(&self, hook: Hook, slot: u32);

    /// A GSO/GRO super-packet: its checksums are completed, or were verified, per segment.
    #[inline(always)]
    fn is_gso_aggregate(&self) -> bool {
        false
    }

    /// The socket buffer's checksum state (`skb::state`); XDP has no socket buffer yet.
    #[inline(always)]
    fn skb_state(&self) -> crate::skb::SkbState {
        crate::skb::SkbState::UNKNOWN
    }

    /// The ethertype after any VLAN tags and the offset of the L3 header.
    #[inline(always)]
    fn link_layer(&self) -> Option<(u16, u32)> {
        crate::parse::ethernet(self)
    }

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
        // behind the check compiles to nothing) the programs verify, at 355,190 processed
        // instructions for XDP instead of 233,373 and 432,969 for each TC hook instead of 280,338,
        // so the bound stays for that.
        if off < 0x4000 {
            let at = start + (off & 0x3fff) as usize;
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

pub struct XdpPacket(pub XdpContext);

impl Packet for XdpPacket {
    type Ctx = XdpContext;

    #[inline(always)]
    fn linear(&self) -> (usize, usize) {
        (self.0.data(), self.0.data_end())
    }

    #[inline(always)]
    fn context(&self) -> &XdpContext {
        &self.0
    }
    #[inline(always)]
    unsafe fn from_raw_ctx(ctx: *mut core::ffi::c_void) -> Self {
        Self(XdpContext::new(ctx.cast()))
    }
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a frame's length, fragments included, is far below 4 GiB"
    )]
    fn len(&self) -> u32 {
        // SAFETY: the helper only reads the program's own xdp_md context.
        unsafe { bpf_xdp_get_buff_len(self.0.as_ptr().cast()) as u32 }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: `ctx` is this run's xdp_md context, valid for the whole run; a plain field read.
        unsafe { (*self.0.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn netns(&self) -> u64 {
        crate::netns::cookie(self.0.as_ptr().cast(), crate::netns::Ctx::Xdp)
    }

    #[inline(always)]
    fn source_slot(&self, hook: Hook) -> u32 {
        direct_slot(self, hook).unwrap_or_else(|| csa_source_slot_xdp(self.0.ctx, hook as u32))
    }

    #[inline(always)]
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool {
        // SAFETY: the helper writes at most `len` bytes to `dst`; callers pass a stack buffer or a
        // per-CPU map value with room for `len` (the verifier rejects anything else).
        unsafe { bpf_xdp_load_bytes(self.0.as_ptr().cast(), off, dst.cast(), len) == 0 }
    }

    #[inline(always)]
    fn sum_large(&self, off: u32, len: u32) -> u64 {
        csa_sum_large_xdp(self.0.ctx, off, len)
    }

    #[inline(always)]
    fn audit_level(&self, hook: Hook, slot: u32, at: u32) -> u32 {
        crate::audit::csa_audit_level_xdp(self.0.ctx, hook as u32, slot, at)
    }

    #[inline(always)]
    fn emit(&self, hook: Hook, slot: u32) {
        crate::audit::csa_emit_xdp(self.0.ctx, hook as u32, slot);
    }
}

/// A socket buffer at a TC hook. `bpf_skb_load_bytes` reads non-linear skbs too, and a VLAN tag
/// the driver took out of the data (`vlan_present`) is simply not in the bytes we parse.
pub struct TcPacket(pub TcContext);

impl TcPacket {
    #[inline(always)]
    fn skb(&self) -> &aya_ebpf::bindings::__sk_buff {
        // SAFETY: a TC program's context is a valid __sk_buff for the whole run, only read here.
        unsafe { &*self.0.as_ptr().cast::<aya_ebpf::bindings::__sk_buff>() }
    }
}

impl Packet for TcPacket {
    type Ctx = TcContext;

    #[inline(always)]
    fn linear(&self) -> (usize, usize) {
        (self.0.data(), self.0.data_end())
    }

    #[inline(always)]
    fn context(&self) -> &TcContext {
        &self.0
    }
    #[inline(always)]
    unsafe fn from_raw_ctx(ctx: *mut core::ffi::c_void) -> Self {
        // SAFETY: the caller guarantees `ctx` is this program's context, which is never null.
        Self(TcContext::new(unsafe {
            core::ptr::NonNull::new_unchecked(ctx.cast())
        }))
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        self.skb().len
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.skb().ifindex
    }

    #[inline(always)]
    fn netns(&self) -> u64 {
        crate::netns::cookie(self.0.as_ptr().cast(), crate::netns::Ctx::Skb)
    }

    #[inline(always)]
    fn source_slot(&self, hook: Hook) -> u32 {
        direct_slot(self, hook)
            .unwrap_or_else(|| csa_source_slot_tc(self.0.as_ptr().cast(), hook as u32))
    }

    #[inline(always)]
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool {
        // SAFETY: the helper writes at most `len` bytes to `dst`; callers pass a stack buffer or a
        // per-CPU map value with room for `len` (the verifier rejects anything else).
        unsafe { bpf_skb_load_bytes(self.0.as_ptr(), off, dst.cast(), len) == 0 }
    }

    #[inline(always)]
    fn sum_large(&self, off: u32, len: u32) -> u64 {
        csa_sum_large_tc(self.0.as_ptr().cast(), off, len)
    }

    #[inline(always)]
    fn audit_level(&self, hook: Hook, slot: u32, at: u32) -> u32 {
        crate::audit::csa_audit_level_tc(self.0.as_ptr().cast(), hook as u32, slot, at)
    }

    #[inline(always)]
    fn emit(&self, hook: Hook, slot: u32) {
        crate::audit::csa_emit_tc(self.0.as_ptr().cast(), hook as u32, slot);
    }

    #[inline(always)]
    fn is_gso_aggregate(&self) -> bool {
        self.skb().gso_size != 0 || self.skb().gso_segs > 1
    }

    #[inline(always)]
    fn skb_state(&self) -> crate::skb::SkbState {
        crate::skb::state(self.0.as_ptr().cast())
    }

    /// At TC the data normally starts at the MAC header, but not always: after a generic-mode XDP
    /// program on the same device, TC ingress sees the skb starting at the network header
    /// (`mac_len` 0). `skb->protocol` tells which: when it is IP but the Ethernet ethertype
    /// disagrees and the first byte carries the matching IP version, L3 starts at offset 0.
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "`__sk_buff.protocol` is a 32-bit field holding the 16-bit ethertype"
    )]
    fn link_layer(&self) -> Option<(u16, u32)> {
        let eth = crate::parse::ethernet(self);
        let protocol = u16::from_be(self.skb().protocol as u16);
        let version = match protocol {
            crate::parse::ETH_P_IPV4 => 4,
            crate::parse::ETH_P_IPV6 => 6,
            _ => return eth,
        };
        if let Some((ethertype, _)) = eth
            && ethertype == protocol
        {
            return eth;
        }
        // Two bytes, not one: LLVM turns a one-byte bound check into `data < data_end`, which the
        // verifier does not accept as a range ("invalid access to packet").
        let first = self.load::<2>(0)?;
        if first[0] >> 4 == version {
            Some((protocol, 0))
        } else {
            eth
        }
    }
}

/// Global BPF functions (exported to bpf-linker in build.rs, so they keep global linkage): the
/// kernel verifies each once, taking `ctx` as the program's context and the rest as any scalars.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_sum_large_xdp(ctx: *mut xdp_md, off: u32, len: u32) -> u64 {
    crate::sum::sum_large(&XdpPacket(XdpContext::new(ctx)), off, len)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_sum_large_tc(ctx: *mut __sk_buff, off: u32, len: u32) -> u64 {
    // SAFETY: the kernel passes a valid context.
    let skb = unsafe { core::ptr::NonNull::new_unchecked(ctx) };
    crate::sum::sum_large(&TcPacket(TcContext::new(skb)), off, len)
}

/// The `STATES` slot of the packet's source: its entry in `SOURCES`, or `UNATTRIBUTED_SLOT`.
/// Global functions for the reasons given at `SOURCES`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_source_slot_xdp(ctx: *mut xdp_md, hook: u32) -> u32 {
    source_slot(&XdpPacket(XdpContext::new(ctx)), hook)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_source_slot_tc(ctx: *mut __sk_buff, hook: u32) -> u32 {
    // SAFETY: the kernel passes a valid context.
    let skb = unsafe { core::ptr::NonNull::new_unchecked(ctx) };
    source_slot(&TcPacket(TcContext::new(skb)), hook)
}

/// The fast path, inlined into the program: with one namespace ifindexes are unique, and the slot
/// of a small one is an array read (which the verifier inlines too). `None` sends the rest to the
/// global function's hash lookup: calling it for every frame cost about 10 ns a frame (measured
/// with `./x bench`, 1.1 to 1.2 times a 64-byte frame's time).
#[inline(always)]
fn direct_slot<P: Packet>(pkt: &P, hook: Hook) -> Option<u32> {
    let ifindex = pkt.ifindex();
    if NETNS_BY_DEVICE.load() != 0 || ifindex >= DIRECT_IFINDEXES {
        return None;
    }
    let slots = SLOTS_BY_IFINDEX.get(ifindex)?;
    // `hook` is a constant here, so this is a constant offset (an index computed at run time is
    // bounds-checked by LLVM on a copy of the register it then uses, which the verifier rejects:
    // "R0 unbounded memory access").
    Some(match hook {
        Hook::Xdp => slots[0],
        Hook::TcIngress => slots[1],
        Hook::TcEgress => slots[2],
    })
}

/// The slot of a source by its full key (several namespaces, or a large ifindex).
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "`hook` is a `Hook` value passed as u32 to a global function"
)]
fn source_slot<P: Packet>(pkt: &P, hook: u32) -> u32 {
    let key = SourceKey {
        netns: pkt.netns(),
        ifindex: pkt.ifindex(),
        hook: hook as u8,
        _pad: [0; 3],
    };
    // SAFETY: a map value, read once.
    unsafe { crate::SOURCES.get(&key) }.map_or(UNATTRIBUTED_SLOT, |&slot| slot)
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
