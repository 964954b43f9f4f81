//! A deliberately faulty DNAT for the demo and the tests, in an object of its own (the auditor's
//! programs never modify a packet). It rewrites the IPv4 destination `FROM_ADDR` to `TO_ADDR`
//! (and, when `FROM_PORT` is set, the destination port `FROM_PORT` to `TO_PORT`) and fixes the IP
//! header checksum. What it does to the TCP/UDP checksum is the fault (`L4_UPDATE`):
//! - `LEFT_ALONE`: nothing, the bug of a NAT that forgets the pseudo-header. With a partial
//!   (offloaded) checksum, the stale pseudo-header sum is later completed in software by a device
//!   without TX offload, producing a complete but stale checksum, as in the field reports.
//! - `AS_IF_COMPLETE`: the incremental update of RFC 1624 for a complete checksum, applied to
//!   whatever the field holds. Correct for a complete checksum; for a partial one (a pseudo-header
//!   sum, which must move the other way) it is the virtual-switch bug behind openvswitch/ovs-issues
//!   #231: once completed downstream, the checksum is off by 2·Δaddr + Δport.
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
use checksum_common::csum::fold;

/// Addresses and ports as they lie in memory (the wire bytes read as native integers).
#[unsafe(no_mangle)]
static FROM_ADDR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static TO_ADDR: Global<u32> = Global::new(0);
/// 0: ports are left as they are.
#[unsafe(no_mangle)]
static FROM_PORT: Global<u16> = Global::new(0);
#[unsafe(no_mangle)]
static TO_PORT: Global<u16> = Global::new(0);
#[unsafe(no_mangle)]
static L4_UPDATE: Global<u8> = Global::new(LEFT_ALONE);

const LEFT_ALONE: u8 = 0;
const AS_IF_COMPLETE: u8 = 1;

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

#[expect(clippy::cast_possible_truncation, reason = "N is a header's size")]
fn load<const N: usize>(ctx: &TcContext, off: u32) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: the helper writes at most N bytes into `buf`; it checks `off` against the packet.
    let rc = unsafe { bpf_skb_load_bytes(ctx.as_ptr(), off, buf.as_mut_ptr().cast(), N as u32) };
    (rc == 0).then_some(buf)
}

#[expect(clippy::cast_possible_truncation, reason = "N is a field's size")]
fn store<const N: usize>(ctx: &TcContext, off: u32, bytes: [u8; N]) -> bool {
    // SAFETY: the helper reads N bytes of `bytes` and writes them into this program's skb.
    unsafe {
        bpf_skb_store_bytes(ctx.as_ptr().cast(), off, bytes.as_ptr().cast(), N as u32, 0) == 0
    }
}

#[inline(always)]
fn rewrite(ctx: &TcContext) {
    let (Some(ethertype), Some(ip)) = (load::<2>(ctx, 12), load::<20>(ctx, ETH_HLEN)) else {
        return;
    };
    let dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    if ethertype != [0x08, 0x00] || dst != FROM_ADDR.load() {
        return;
    }
    let l4 = ETH_HLEN + u32::from(ip[0] & 0x0f) * 4;
    let field_off = match ip[9] {
        6 => l4 + 16,
        17 => l4 + 6,
        _ => return,
    };
    let to = TO_ADDR.load();
    if !store(ctx, IP_DST_OFF, to.to_ne_bytes()) {
        return;
    }
    // The IP header checksum is fixed, so the packet is routed and delivered.
    // SAFETY: the helper updates the checksum at a fixed offset inside this program's skb.
    unsafe { bpf_l3_csum_replace(ctx.as_ptr().cast(), IP_CSUM_OFF, dst.into(), to.into(), 4) };
    // The removed and the added 16-bit words, as one's-complement sums (memory order throughout:
    // the sum does not depend on byte order, RFC 1071).
    let mut removed = u64::from(dst >> 16) + u64::from(dst & 0xffff);
    let mut added = u64::from(to >> 16) + u64::from(to & 0xffff);
    let (from_port, to_port) = (FROM_PORT.load(), TO_PORT.load());
    if from_port != 0
        && load::<2>(ctx, l4 + 2).map(u16::from_ne_bytes) == Some(from_port)
        && store(ctx, l4 + 2, to_port.to_ne_bytes())
    {
        removed += u64::from(from_port);
        added += u64::from(to_port);
    }
    if L4_UPDATE.load() != AS_IF_COMPLETE {
        return; // LEFT_ALONE: the fault is the missing update.
    }
    let Some(field) = load::<2>(ctx, field_off).map(u16::from_ne_bytes) else {
        return;
    };
    // RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), whatever the field holds: right for a complete
    // checksum, twice wrong for a partial one.
    let removed = u64::from(!fold(removed));
    let updated = !fold(u64::from(!field) + removed + added);
    store(ctx, field_off, updated.to_ne_bytes());
}

// The panic handler comes with this crate; the licence section is defined here.
use checksum_ebpf_runtime as _;
checksum_ebpf_runtime::license!();
