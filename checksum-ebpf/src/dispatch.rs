//! The per-context global functions, and the dispatch to them: the top of the crate below the
//! entry points. Global BPF functions (exported to bpf-linker in build.rs, so they keep global
//! linkage) are verified once each, on their own, taking `ctx` as the program's context and the
//! rest as any scalars; a static function is verified again on every path that calls it. Each
//! takes the context as a raw pointer, so there is one per context type.
//!
//! The modules below ask for these calls with a trait of their own (`sum::SumLarge`,
//! `source::SlotLookup`, `audit::Passes`), implemented here for both packet types, so that none
//! of them reaches up to this module.

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, xdp_md},
    programs::{TcContext, XdpContext},
};
use checksum_common::Hook;

use crate::{
    audit::{self, Passes},
    packet::{TcPacket, XdpPacket},
    source::{self, SlotLookup},
    sum::{self, SumLarge},
};

impl SumLarge for XdpPacket {
    #[inline(always)]
    fn sum_large(&self, off: u32, len: u32) -> u64 {
        csa_sum_large_xdp(self.0.ctx, off, len)
    }
}

impl SumLarge for TcPacket {
    #[inline(always)]
    fn sum_large(&self, off: u32, len: u32) -> u64 {
        csa_sum_large_tc(self.0.as_ptr().cast(), off, len)
    }
}

impl SlotLookup for XdpPacket {
    #[inline(always)]
    fn lookup_slot(&self, hook: u32) -> u32 {
        csa_source_slot_xdp(self.0.ctx, hook)
    }
}

impl SlotLookup for TcPacket {
    #[inline(always)]
    fn lookup_slot(&self, hook: u32) -> u32 {
        csa_source_slot_tc(self.0.as_ptr().cast(), hook)
    }
}

impl Passes for XdpPacket {
    #[inline(always)]
    fn audit_level(&self, hook: Hook, slot: u32, at: u32) -> u32 {
        csa_audit_level_xdp(self.0.ctx, hook as u32, slot, at)
    }

    #[inline(always)]
    fn emit(&self, hook: Hook, slot: u32) {
        csa_emit_xdp(self.0.ctx, hook as u32, slot);
    }
}

impl Passes for TcPacket {
    #[inline(always)]
    fn audit_level(&self, hook: Hook, slot: u32, at: u32) -> u32 {
        csa_audit_level_tc(self.0.as_ptr().cast(), hook as u32, slot, at)
    }

    #[inline(always)]
    fn emit(&self, hook: Hook, slot: u32) {
        csa_emit_tc(self.0.as_ptr().cast(), hook as u32, slot);
    }
}

/// The sum of a long range (`sum::sum_large`), or `sum::NO_SUM`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_sum_large_xdp(ctx: *mut xdp_md, off: u32, len: u32) -> u64 {
    sum::sum_large(&XdpPacket(XdpContext::new(ctx)), off, len)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_sum_large_tc(ctx: *mut __sk_buff, off: u32, len: u32) -> u64 {
    // SAFETY: the kernel passes a valid context.
    let skb = unsafe { core::ptr::NonNull::new_unchecked(ctx) };
    sum::sum_large(&TcPacket(TcContext::new(skb)), off, len)
}

#[cfg(feature = "legacy-kernels")]
impl sum::Chunks for XdpPacket {
    #[inline(always)]
    fn sum_chunk(&self, pos: u32) -> u64 {
        csa_sum_chunk_xdp(self.0.ctx, pos)
    }
}

#[cfg(feature = "legacy-kernels")]
impl sum::Chunks for TcPacket {
    #[inline(always)]
    fn sum_chunk(&self, pos: u32) -> u64 {
        csa_sum_chunk_tc(self.0.as_ptr().cast(), pos)
    }
}

/// One chunk of a long range, before 5.17 (`sum::Chunks`).
#[cfg(feature = "legacy-kernels")]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_sum_chunk_xdp(ctx: *mut xdp_md, pos: u32) -> u64 {
    sum::chunk_sum_or_none(&XdpPacket(XdpContext::new(ctx)), pos)
}

#[cfg(feature = "legacy-kernels")]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_sum_chunk_tc(ctx: *mut __sk_buff, pos: u32) -> u64 {
    // SAFETY: the kernel passes a valid context.
    let skb = unsafe { core::ptr::NonNull::new_unchecked(ctx) };
    sum::chunk_sum_or_none(&TcPacket(TcContext::new(skb)), pos)
}

/// The `STATES` slot of the packet's source by its full key (`source::lookup`): for the reasons
/// given at `source::SOURCES`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_source_slot_xdp(ctx: *mut xdp_md, hook: u32) -> u32 {
    source::lookup(&XdpPacket(XdpContext::new(ctx)), hook)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_source_slot_tc(ctx: *mut __sk_buff, hook: u32) -> u32 {
    // SAFETY: the kernel passes a valid context.
    let skb = unsafe { core::ptr::NonNull::new_unchecked(ctx) };
    source::lookup(&TcPacket(TcContext::new(skb)), hook)
}

/// One audit pass (`audit::audit_level`): inlined twice, once per pass, the XDP program passed
/// the verifier's million instructions (see `audit::audit_frame`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_audit_level_xdp(ctx: *mut xdp_md, hook: u32, slot: u32, at: u32) -> u32 {
    audit::audit_level(&XdpPacket(XdpContext::new(ctx)), hook_from(hook), slot, at)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_audit_level_tc(ctx: *mut __sk_buff, hook: u32, slot: u32, at: u32) -> u32 {
    // SAFETY: the kernel passes a valid context.
    let skb = unsafe { core::ptr::NonNull::new_unchecked(ctx) };
    audit::audit_level(&TcPacket(TcContext::new(skb)), hook_from(hook), slot, at)
}

/// Reports a verdict (`audit::emit`): its event, budget key and tracking keys are off the pass's
/// stack, and it is verified once, not at every verdict of every path.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_emit_xdp(ctx: *mut xdp_md, hook: u32, slot: u32) -> u32 {
    audit::emit(&XdpPacket(XdpContext::new(ctx)), hook_from(hook), slot);
    0
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_emit_tc(ctx: *mut __sk_buff, hook: u32, slot: u32) -> u32 {
    // SAFETY: the kernel passes a valid context.
    let skb = unsafe { core::ptr::NonNull::new_unchecked(ctx) };
    audit::emit(&TcPacket(TcContext::new(skb)), hook_from(hook), slot);
    0
}

/// A hook passed to a global function as a scalar.
#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "a `Hook` value")]
fn hook_from(raw: u32) -> Hook {
    Hook::from_u8(raw as u8).unwrap_or(Hook::Xdp)
}
