//! The network namespace of the device a packet is on, for the `SourceKey` of a run that audits
//! several namespaces (ifindexes repeat across them).
//!
//! Why this way: `bpf_get_netns_cookie` is refused for XDP ("program of this type cannot use
//! helper `bpf_get_netns_cookie#122`"), and at TC (Linux >= 6.14) it answers with the namespace of
//! `skb->sk`, or `init_net` without a socket, not with the device's: a forwarded packet has no socket.
//! The kfunc `bpf_cast_to_kern_ctx` cannot be declared from Rust yet (rustc emits no BTF for
//! `extern` functions). So the programs follow the kernel's pointers with `bpf_probe_read_kernel`
//! (allowed with `CAP_PERFMON`), at offsets user space resolves from the running kernel's BTF. Only
//! runs with several namespaces pay for it: with one, `NETNS_BY_DEVICE` is a frozen 0 and the
//! verifier prunes every read.

use aya_ebpf::{Global, helpers::bpf_probe_read_kernel};

/// 1 when several network namespaces are audited: ifindexes then repeat across them, and the
/// programs read the packet's namespace cookie from its device (`cookie`). 0 otherwise, and that
/// code is pruned.
#[unsafe(no_mangle)]
pub static NETNS_BY_DEVICE: Global<u8> = Global::new(0);

/// Kernel structure offsets for `cookie`, resolved by user space from the running kernel's BTF
/// (Rust has no CO-RE relocations yet): `sk_buff.dev`, `xdp_buff.rxq`, `xdp_rxq_info.dev`,
/// `net_device.nd_net` and `net.net_cookie`.
#[unsafe(no_mangle)]
pub static OFF_SKB_DEV: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_XDP_RXQ: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_RXQ_DEV: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_DEV_NET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_NET_COOKIE: Global<u32> = Global::new(0);

/// Which context a program has: the pointer chain to its device differs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    /// `struct xdp_buff`: `rxq->dev`.
    Xdp,
    /// `struct sk_buff`: `dev`.
    Skb,
}

/// The namespace cookie of the packet's device (`SO_NETNS_COOKIE` in user space), or 0 when only
/// one namespace is audited or a pointer could not be read.
#[inline(always)]
pub fn cookie(ctx: *const u8, kind: Ctx) -> u64 {
    if NETNS_BY_DEVICE.load() == 0 {
        return 0;
    }
    let dev = match kind {
        Ctx::Skb => read_ptr(ctx, OFF_SKB_DEV.load()),
        // The context pointer of an XDP program is the kernel's `xdp_buff`, whose `rxq` names the
        // receiving device.
        Ctx::Xdp => read_ptr(read_ptr(ctx, OFF_XDP_RXQ.load()), OFF_RXQ_DEV.load()),
    };
    device_net(dev).and_then(net_cookie).unwrap_or(0)
}

/// The `struct net *` of a `struct net_device *` (`possible_net_t nd_net` holds it as its only
/// member).
#[inline(always)]
pub fn device_net(dev: *const u8) -> Option<*const u8> {
    read(dev, OFF_DEV_NET.load()).filter(|net: &*const u8| !net.is_null())
}

/// The cookie of a `struct net *`.
#[inline(always)]
pub fn net_cookie(net: *const u8) -> Option<u64> {
    read(net, OFF_NET_COOKIE.load())
}

/// The `T` at kernel address `base + off`, or `None` (null `base`, or an address the
/// fault-tolerant helper could not read). `base` may be the context pointer: the verifier accepts
/// context plus a constant (the offset is a frozen global) as `bpf_probe_read_kernel`'s source.
#[inline(always)]
pub fn read<T>(base: *const u8, off: u32) -> Option<T> {
    if base.is_null() {
        return None;
    }
    // SAFETY: a kernel address read with the fault-tolerant helper; a bad one yields an error.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize).cast::<T>()) }.ok()
}

/// The pointer at `base + off`, or null.
#[inline(always)]
fn read_ptr(base: *const u8, off: u32) -> *const u8 {
    read(base, off).unwrap_or(core::ptr::null())
}
