//! The kernel's own checksum drops: a `tp_btf/kfree_skb` program that reports every packet freed
//! for one of the checksum drop reasons user space resolved from BTF (`DROP_REASONS`), with its
//! flow, device, namespace and the dropping code's address. Every other drop costs a few compares.
//!
//! Only tracepoints, `tp_btf` and fentry are built into the target kernels (no kprobes), and
//! `tp_btf` hands over the tracepoint's typed arguments: `(skb, location, reason, rx_sk)`.
//! Fields are read with `bpf_probe_read_kernel` at offsets user space resolved from BTF, as
//! `netns.rs` does: Rust has no CO-RE relocations and rustc emits no BTF for the kernel's types.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_task, bpf_ktime_get_ns},
    macros::map,
    maps::{PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use checksum_common::{
    drop::{DROP_RING_BYTES, DROPS_LOST, DROPS_SEEN, DropEvent, MAX_DROP_REASONS, NO_REASON},
    event::{FAMILY_IPV4, FAMILY_IPV6},
};

use crate::netns::{OFF_SKB_DEV, device_net, net_cookie, read};

/// The kernel's checksum drops, apart from the audit events: another record type, and a flood of
/// audit events must not crowd them out.
#[map]
static DROPS: RingBuf = RingBuf::with_byte_size(DROP_RING_BYTES, 0);

/// Checksum drops seen and lost to a full `DROPS` (`DROPS_SEEN`, `DROPS_LOST`), per CPU.
#[map]
static DROP_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// The checksum drop reasons (`enum skb_drop_reason` values) `csum_kfree_skb` reports, resolved
/// by name from BTF at load time; unused entries hold `NO_REASON`. A frozen global: the list is
/// the same for the whole run, and a map lookup would cost more than the compares.
#[unsafe(no_mangle)]
static DROP_REASONS: Global<[u32; MAX_DROP_REASONS]> = Global::new([NO_REASON; MAX_DROP_REASONS]);

/// More `struct sk_buff`, `net_device` and `sock` offsets, beside `netns::OFF_SKB_DEV`:
/// `sk_buff.head`, `.network_header`, `.transport_header`, `.protocol`, `.skb_iif`, `.sk`,
/// `net_device.ifindex` and `sock.__sk_common.skc_net`.
#[unsafe(no_mangle)]
static OFF_SKB_HEAD: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_NETWORK_HEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_TRANSPORT_HEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_PROTOCOL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_DEV_IFINDEX: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_IIF: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKB_SK: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SOCK_NET: Global<u32> = Global::new(0);
/// `task_struct.nsproxy` and `nsproxy.net_ns`, for drops in `recvmsg` (see `read_device`).
#[unsafe(no_mangle)]
static OFF_TASK_NSPROXY: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_NSPROXY_NET: Global<u32> = Global::new(0);

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

#[inline(always)]
pub fn on_kfree_skb(ctx: &BtfTracePointContext) {
    let reason: u32 = ctx.arg(2);
    if !is_checksum_reason(reason) {
        return;
    }
    count(DROPS_SEEN);
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let mut e = DropEvent {
        // SAFETY: no arguments, no memory.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        location,
        reason,
        ..DropEvent::default()
    };
    read_device(skb, &mut e);
    read_headers(skb, &mut e);
    if DROPS.output(&e, 0).is_err() {
        count(DROPS_LOST);
    }
}

#[inline(always)]
fn is_checksum_reason(reason: u32) -> bool {
    let reasons = DROP_REASONS.load();
    let mut i = 0;
    while i < MAX_DROP_REASONS {
        if reasons[i] == reason {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn count(index: u32) {
    if let Some(n) = DROP_COUNTS.get_ptr_mut(index) {
        // SAFETY: a per-CPU array value: this CPU's, and nothing else runs on it meanwhile.
        unsafe { *n += 1 };
    }
}

/// Header bytes on the stack, 8-aligned: LLVM loads them a word at a time, and the verifier
/// refuses word loads at odd stack offsets ("misaligned stack access off 0+0+-77 size 4").
#[repr(C, align(8))]
struct Aligned<const N: usize>([u8; N]);

/// The device the packet arrived on and its namespace's cookie, from `skb->dev` while it is
/// one. A UDP datagram queued to a socket reuses that field (`dev_scratch`) and is dropped in
/// `recvmsg`: then `skb_iif` still names the device, and the namespace is the owning socket's
/// or, without one, that of the task receiving it (`recvmsg` runs in the receiver's context).
#[inline(always)]
fn read_device(skb: *const u8, e: &mut DropEvent) {
    let dev = read::<*const u8>(skb, OFF_SKB_DEV.load()).unwrap_or(core::ptr::null());
    if let (Some(ifindex), Some(net)) = (read::<u32>(dev, OFF_DEV_IFINDEX.load()), device_net(dev))
        && let Some(cookie) = net_cookie(net)
    {
        e.ifindex = ifindex;
        e.netns = cookie;
        return;
    }
    e.ifindex = read(skb, OFF_SKB_IIF.load()).unwrap_or(0);
    let sk = read::<*const u8>(skb, OFF_SKB_SK.load()).unwrap_or(core::ptr::null());
    let net = read::<*const u8>(sk, OFF_SOCK_NET.load()).or_else(|| {
        // SAFETY: no arguments; the current task is always valid to read from.
        let task = unsafe { bpf_get_current_task() } as *const u8;
        let nsproxy = read::<*const u8>(task, OFF_TASK_NSPROXY.load())?;
        read::<*const u8>(nsproxy, OFF_NSPROXY_NET.load())
    });
    e.netns = net.and_then(net_cookie).unwrap_or(0);
}

/// The addresses, protocol and ports from the IP header at `skb->head + skb->network_header`
/// (pulled into the linear area before any checksum is checked) and the L4 header after it.
#[inline(always)]
fn read_headers(skb: *const u8, e: &mut DropEvent) {
    let (Some(head), Some(network), Some(protocol)) = (
        read::<*const u8>(skb, OFF_SKB_HEAD.load()),
        read::<u16>(skb, OFF_SKB_NETWORK_HEADER.load()),
        read::<u16>(skb, OFF_SKB_PROTOCOL.load()),
    ) else {
        return;
    };
    let l3 = head.wrapping_add(network as usize);
    let l4 = match u16::from_be(protocol) {
        ETH_P_IP => {
            let Some(Aligned(ip)) = read::<Aligned<20>>(l3, 0) else {
                return;
            };
            e.family = FAMILY_IPV4;
            e.protocol = ip[9];
            e.src[..4].copy_from_slice(&ip[12..16]);
            e.dst[..4].copy_from_slice(&ip[16..20]);
            // From the IHL: an IPv4 header checksum drop happens before the transport header
            // is set.
            l3.wrapping_add(usize::from(ip[0] & 0x0f) * 4)
        }
        ETH_P_IPV6 => {
            let Some(Aligned(ip)) = read::<Aligned<40>>(l3, 0) else {
                return;
            };
            e.family = FAMILY_IPV6;
            e.protocol = ip[6];
            e.src.copy_from_slice(&ip[8..24]);
            e.dst.copy_from_slice(&ip[24..40]);
            // Past any extension headers: they are walked before TCP or UDP checks its sum.
            match read::<u16>(skb, OFF_SKB_TRANSPORT_HEADER.load()) {
                Some(transport) => head.wrapping_add(transport as usize),
                None => return,
            }
        }
        _ => return,
    };
    if let Some(Aligned(ports)) = read::<Aligned<4>>(l4, 0) {
        e.sport = u16::from_be_bytes([ports[0], ports[1]]);
        e.dport = u16::from_be_bytes([ports[2], ports[3]]);
    }
}
