//! The packet of each hook: `XdpPacket` and `TcPacket`, their bytes (`bytes::PacketBytes`) and
//! what else a packet tells that differs by hook (`Packet`). Calls into the per-context global
//! functions are not here: the modules that need one say so with a trait of their own
//! (`sum::SumLarge`, `source::SlotLookup`, `audit::Passes`), which `dispatch.rs`, above them all,
//! implements for both types.

use aya_ebpf::{
    EbpfContext,
    helpers::generated::bpf_skb_load_bytes,
    programs::{TcContext, XdpContext},
};

use crate::{
    bytes::PacketBytes,
    netns,
    skb::{self, SkbState},
};

/// What a packet tells beyond its bytes, by hook.
pub trait Packet: PacketBytes {
    fn ifindex(&self) -> u32;
    /// The namespace cookie of the packet's device, or 0 (see `netns::cookie`).
    fn netns(&self) -> u64;

    /// A GSO/GRO super-packet: its checksums are completed, or were verified, per segment.
    #[inline(always)]
    fn is_gso_aggregate(&self) -> bool {
        false
    }

    /// The socket buffer's checksum state (`skb::state`); XDP has no socket buffer yet.
    #[inline(always)]
    fn skb_state(&self) -> SkbState {
        SkbState::UNKNOWN
    }

    /// The socket buffer's `protocol` (an ethertype, host order), which `parse::link_layer`
    /// checks the frame's start against; XDP has none.
    #[inline(always)]
    fn skb_protocol(&self) -> Option<u16> {
        None
    }
}

pub struct XdpPacket(pub XdpContext);

impl PacketBytes for XdpPacket {
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
    fn len(&self) -> u32 {
        xdp_len(&self.0)
    }

    #[inline(always)]
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool {
        xdp_load_raw(&self.0, off, dst, len)
    }
}

/// The frame's length, fragments included.
#[cfg(not(feature = "legacy-kernels"))]
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "a frame's length, fragments included, is far below 4 GiB"
)]
fn xdp_len(ctx: &XdpContext) -> u32 {
    // SAFETY: the helper only reads the program's own xdp_md context.
    unsafe { aya_ebpf::helpers::generated::bpf_xdp_get_buff_len(ctx.as_ptr().cast()) as u32 }
}

/// Bytes anywhere in the frame, fragments included, copied to `dst`.
#[cfg(not(feature = "legacy-kernels"))]
#[inline(always)]
fn xdp_load_raw(ctx: &XdpContext, off: u32, dst: *mut u8, len: u32) -> bool {
    // SAFETY: the helper writes at most `len` bytes to `dst`; callers pass a stack buffer or a
    // per-CPU map value with room for `len` (the verifier rejects anything else).
    unsafe {
        aya_ebpf::helpers::generated::bpf_xdp_load_bytes(ctx.as_ptr().cast(), off, dst.cast(), len)
            == 0
    }
}

/// Before 5.18 an XDP frame is all linear (no fragments, and neither helper above): its length
/// is that of its data.
#[cfg(feature = "legacy-kernels")]
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "a linear frame is at most a page"
)]
fn xdp_len(ctx: &XdpContext) -> u32 {
    (ctx.data_end() - ctx.data()) as u32
}

/// Nothing lies outside the linear part to copy: every range was summed in place, or is not in
/// the frame.
#[cfg(feature = "legacy-kernels")]
#[inline(always)]
fn xdp_load_raw(_ctx: &XdpContext, _off: u32, _dst: *mut u8, _len: u32) -> bool {
    false
}

impl Packet for XdpPacket {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: `ctx` is this run's xdp_md context, valid for the whole run; a plain field read.
        unsafe { (*self.0.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn netns(&self) -> u64 {
        netns::cookie(self.0.as_ptr().cast(), netns::Ctx::Xdp)
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

impl PacketBytes for TcPacket {
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
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool {
        // SAFETY: the helper writes at most `len` bytes to `dst`; callers pass a stack buffer or a
        // per-CPU map value with room for `len` (the verifier rejects anything else).
        unsafe { bpf_skb_load_bytes(self.0.as_ptr(), off, dst.cast(), len) == 0 }
    }
}

impl Packet for TcPacket {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.skb().ifindex
    }

    #[inline(always)]
    fn netns(&self) -> u64 {
        netns::cookie(self.0.as_ptr().cast(), netns::Ctx::Skb)
    }

    #[inline(always)]
    fn is_gso_aggregate(&self) -> bool {
        self.skb().gso_size != 0 || self.skb().gso_segs > 1
    }

    #[inline(always)]
    fn skb_state(&self) -> SkbState {
        skb::state(self.0.as_ptr().cast())
    }

    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "`__sk_buff.protocol` is a 32-bit field holding the 16-bit ethertype"
    )]
    fn skb_protocol(&self) -> Option<u16> {
        Some(u16::from_be(self.skb().protocol as u16))
    }
}
