//! A deliberately faulty DNAT for the demo and the tests, in an object of its own (the auditor's
//! programs never modify a packet). It rewrites the IPv4 destination `FROM_ADDR` to `TO_ADDR` and
//! fixes the IP header checksum, but leaves the TCP/UDP checksum alone: the bug of a NAT that
//! forgets the pseudo-header. With a partial (offloaded) checksum, the stale pseudo-header sum is
//! later completed in software by a device without TX offload, producing a complete but stale
//! checksum, as in the field reports.
#![no_std]
#![no_main]
#![expect(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "aya's #[classifier] wrapper takes the raw skb pointer in a safe fn (see tc.rs)"
)]
#![expect(
    clippy::inline_always,
    reason = "BPF code is inlined into the program that uses it: no calls but to helpers and the \
              few global functions, each of which the verifier checks on its own"
)]

use aya_ebpf::{
    EbpfContext, Global,
    bindings::TC_ACT_UNSPEC,
    helpers::generated::{bpf_l3_csum_replace, bpf_skb_load_bytes, bpf_skb_store_bytes},
    macros::classifier,
    programs::TcContext,
};

/// Addresses as they lie in memory (the wire bytes read as a native u32).
#[unsafe(no_mangle)]
static FROM_ADDR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static TO_ADDR: Global<u32> = Global::new(0);

const ETH_HLEN: u32 = 14;
const IP_CSUM_OFF: u32 = ETH_HLEN + 10;
const IP_DST_OFF: u32 = ETH_HLEN + 16;

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "#[classifier] hands the context over by value"
)]
pub fn stale_dnat(ctx: TcContext) -> i32 {
    rewrite(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn rewrite(ctx: &TcContext) {
    let skb = ctx.as_ptr();
    let mut ethertype = [0u8; 2];
    let mut dst = 0u32;
    // SAFETY: `skb` is this program's context; the loads write 2 bytes into `ethertype` and 4 into
    // `dst`, the store reads the 4 bytes of `to`, and the checksum replace touches only the skb.
    unsafe {
        if bpf_skb_load_bytes(skb, 12, ethertype.as_mut_ptr().cast(), 2) != 0
            || ethertype != [0x08, 0x00]
        {
            return;
        }
        if bpf_skb_load_bytes(skb, IP_DST_OFF, (&raw mut dst).cast(), 4) != 0
            || dst != FROM_ADDR.load()
        {
            return;
        }
        let to = TO_ADDR.load();
        if bpf_skb_store_bytes(skb.cast(), IP_DST_OFF, (&raw const to).cast(), 4, 0) != 0 {
            return;
        }
        // The IP header checksum is fixed, so the packet is routed and delivered...
        bpf_l3_csum_replace(skb.cast(), IP_CSUM_OFF, u64::from(dst), u64::from(to), 4);
        // ...and the L4 checksum is not (no bpf_l4_csum_replace with BPF_F_PSEUDO_HDR): the fault.
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: no panic path is reachable in verified code (the verifier rejects infinite loops).
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
