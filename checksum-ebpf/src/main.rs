//! Kernel programs of checksum-audit. They never drop or modify a packet: every path returns
//! `XDP_PASS`. Mismatches go to the `EVENTS` ring buffer; everything else is counted in `STATES`.
#![no_std]
#![no_main]
// Inline asm on BPF, for `bytes::bounded`'s optimisation barrier (the kernel's `barrier_var`).
#![feature(asm_experimental_arch)]
#![expect(
    clippy::inline_always,
    reason = "BPF code is inlined into the program that uses it: no calls but to helpers and the \
              few global functions, each of which the verifier checks on its own"
)]

// The modules bottom-up, one layer per group: each uses only modules of the groups before its
// own, never one after (so the crate reads from here down, and has no import loops).
// Byte access to a packet, and the kernel state behind it.
mod bytes;
mod netns;
mod skb;

// The packet of each hook.
mod packet;

// Headers, sums and sources.
mod parse;
mod source;
mod sum;

// What a mismatch sends, and which flows are followed.
mod capture;
mod track;

// The per-frame pipeline.
mod audit;

// The per-context global functions, and the dispatch to them, which the modules before ask for
// with a trait of their own (`sum::SumLarge`, `source::SlotLookup`, `audit::Passes`).
mod dispatch;

// What the entry points below run besides the audit.
mod drops;
mod floor;

// The TC entry points (see tc.rs for why they sit apart); the others are below.
mod tc;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{btf_tracepoint, xdp},
    programs::{BtfTracePointContext, XdpContext},
};
use checksum_common::Hook;

#[cfg_attr(not(feature = "legacy-kernels"), xdp(frags))]
#[cfg_attr(feature = "legacy-kernels", xdp)]
pub fn csum_audit_xdp(ctx: XdpContext) -> u32 {
    audit::audit_frame(&packet::XdpPacket(ctx), Hook::Xdp);
    xdp_action::XDP_PASS
}

/// The baseline for benchmarks: the cost of running any XDP program at all.
#[cfg_attr(not(feature = "legacy-kernels"), xdp(frags))]
#[cfg_attr(feature = "legacy-kernels", xdp)]
pub fn noop_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The floor for benchmarks: the audit's cost to sum a frame's L4 bytes, and nothing else (see
/// `floor.rs`).
#[cfg_attr(not(feature = "legacy-kernels"), xdp(frags))]
#[cfg_attr(feature = "legacy-kernels", xdp)]
pub fn sum_floor_xdp(ctx: XdpContext) -> u32 {
    floor::sum_floor(&packet::XdpPacket(ctx));
    xdp_action::XDP_PASS
}

/// Reports the kernel's checksum drops (see `drops.rs`); loaded and attached once per run,
/// unless `--no-kernel-drops`.
#[btf_tracepoint(function = "kfree_skb")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[btf_tracepoint] hands the context over by value"
)]
pub fn csum_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    drops::on_kfree_skb(&ctx);
    0
}

// The panic handler comes with this crate; the licence section is defined here.
use checksum_ebpf_runtime as _;
checksum_ebpf_runtime::license!();
