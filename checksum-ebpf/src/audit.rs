//! The per-frame pipeline: parse, check every checksum the frame carries, count, report.

use aya_ebpf::{
    Global,
    helpers::generated::bpf_ktime_get_ns,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use aya_log_ebpf::debug;
use checksum_common::{
    ChecksumEvent, Hook, Kind, Layer, SourceState, Status,
    csum::{
        classify, expected_field, field_for, fold, ones_sub, pseudo_header_v4, pseudo_header_v6,
        verifies,
    },
    encap::{
        DEFAULT_TUNNEL_PORTS, Encap, EncapKind, MAX_TUNNEL_PORTS, Payload, parse_tunnel,
        tunnel_kind,
    },
    event::{FAMILY_IPV4, IP_SUMMED_UNKNOWN, REPORT_TRACKED, REPORT_VERDICT},
    source::{EVENT_BUDGET_FLOWS, OUTER_SUM_VALID, SOURCE_REPORT_OFFLOAD},
};

use crate::{
    bytes::{OFFSET_MASK, be16, be32, bounded},
    capture::{self, CAPTURE_BUF, CAPTURE_SNAPLEN, EVENTS},
    parse::{self, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, ParseError, Segment},
    skb::{SkbState, partial_key},
    source::{self, STATES, SlotLookup},
    sum::{SumLarge, sum_header, sum_range},
    track,
};

/// Per-CPU hand-over of a verdict from an audit pass to `emit` (see `Pending`).
#[map]
static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// Events sent per flow and kind, for `EVENTS_PER_FLOW`. User space shrinks it to one entry when
/// the budget is off.
#[map]
static EVENT_BUDGET: LruHashMap<BudgetKey, u32> =
    LruHashMap::with_max_entries(EVENT_BUDGET_FLOWS, 0);

/// UDP destination ports whose datagrams are tunnels, as `encap::tunnel_port` entries (the
/// defaults, plus `--vxlan-port` and `--geneve-port`).
#[unsafe(no_mangle)]
static TUNNEL_PORTS: Global<[u32; MAX_TUNNEL_PORTS]> = Global::new(DEFAULT_TUNNEL_PORTS);

// Run-wide settings are frozen globals (.rodata): the verifier sees their values as constants and
// prunes the branches they turn off, so a feature that is off costs nothing on the hot path.

/// Set to 1 by `checksum-audit replay --all` to report every verdict, not only mismatches.
#[unsafe(no_mangle)]
static REPORT_ALL: Global<u8> = Global::new(0);

/// Events per flow and kind (`--events-per-flow`); 0 sends an event for every mismatch. The rest
/// are counted in `events_sampled_out`, so a flood of one broken flow cannot crowd the others out
/// of the ring buffer.
#[unsafe(no_mangle)]
static EVENTS_PER_FLOW: Global<u32> = Global::new(0);

/// 1 to settle a TCP/UDP field in O(1) when the skb is `CHECKSUM_PARTIAL` at exactly that field and
/// the field holds the pseudo-header sum (`Status::PartialOk`, no sum over the segment). Needs
/// `skb::SKB_STATE`. Off by default: such fields are then summed and reported as offload-pending,
/// as before.
#[unsafe(no_mangle)]
static PARTIAL_OK: Global<u8> = Global::new(0);

/// A packet whose passes and `emit` run as global functions (`dispatch.rs` implements it, per
/// context type, with `audit_level` and `emit` as the bodies): each is verified once, on its own
/// (see `audit_frame` and `emit`).
pub trait Passes: SumLarge + SlotLookup {
    /// One audit pass over the packet at `at` (`audit_level`).
    fn audit_level(&self, hook: Hook, slot: u32, at: u32) -> u32;

    /// Reports the verdict `record` left in `PENDING` (`emit`).
    fn emit(&self, hook: Hook, slot: u32);
}

/// One checksum's verdict and what a report about it needs.
#[derive(Clone, Copy)]
struct Verdict {
    layer: Layer,
    status: Status,
    kind: Kind,
    /// Memory-order values (see `checksum_common::csum`).
    got: u16,
    want: u16,
    pseudo: u16,
    len: u32,
    src_port: u16,
    dst_port: u16,
    tcp_seq: u32,
}

impl Verdict {
    #[inline(always)]
    fn unverifiable(layer: Layer, len: u32) -> Self {
        Self {
            layer,
            status: Status::Unverifiable,
            kind: Kind::Match,
            got: 0,
            want: 0,
            pseudo: 0,
            len,
            src_port: 0,
            dst_port: 0,
            tcp_seq: 0,
        }
    }
}

impl Verdict {
    /// Settles a checked field (`got` already set): ok, or bad with the value the field should
    /// hold (computed only then, off the good-packet path) and the mismatch's kind.
    #[inline(always)]
    fn settle(&mut self, ok: bool, want: impl FnOnce() -> u16, pseudo: Option<u16>) {
        if ok {
            self.status = Status::Ok;
            self.want = self.got;
        } else {
            self.status = Status::Bad;
            self.want = want();
            self.kind = classify(self.got, self.want, pseudo);
        }
    }
}

/// `at` of the first pass: the frame from its start, through `parse::link_layer`.
const OUTER: u32 = 0;
/// What lies at a second pass's `at` (offset | what << 16): an Ethernet frame, or an IP packet.
const AT_ETHERNET: u32 = 0;
const AT_IPV4: u32 = 1 << 16;
const AT_IPV6: u32 = 2 << 16;

/// The program: one pass over the frame's own headers and, when they turn out to be a tunnel,
/// a second over the packet inside. Each pass is a global function (`csa_audit_level_*`), verified
/// once on its own: inlined twice, the XDP program passed the verifier's million instructions
/// ("BPF program is too large"). This frame stays small, since the pass's frame, the summing
/// function's and its loop callback's must fit in the 512 bytes of stack with it.
#[inline(always)]
pub fn audit_frame<P: Passes>(pkt: &P, hook: Hook) {
    // The source's slot (an inlined array read in the common case, `source::direct_slot`), then
    // one array lookup: the source's settings and this CPU's counters live in one value.
    let slot = source::slot(pkt, hook);
    let Some(state) = STATES.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: a per-CPU map value, only ever touched by this CPU.
    let state: &mut SourceState = unsafe { &mut *state };
    state.counters.packets += 1;
    if pkt.is_gso_aggregate() {
        // Checksums of a super-packet are completed (egress) or were verified (GRO) per segment;
        // its fields hold partial or stale values by design (tcpdump reports them as incorrect).
        state.counters.gso_aggregate += 1;
        return;
    }
    let inner = pkt.audit_level(hook, slot, OUTER);
    if inner != OUTER {
        pkt.audit_level(hook, slot, inner);
    }
}

/// One pass (see `audit_frame`); returns where the inner packet is, or `OUTER` for none.
#[inline(always)]
pub fn audit_level<P: Passes>(pkt: &P, hook: Hook, slot: u32, at: u32) -> u32 {
    let Some(state) = STATES.get_ptr_mut(slot) else {
        return OUTER;
    };
    // SAFETY: a per-CPU map value, only ever touched by this CPU.
    let state: &mut SourceState = unsafe { &mut *state };
    // The value is carried down whole, settings and slot included: one live register instead of
    // three. Carrying the slot and flag apart made LLVM spill more, past the verifier's limit for
    // this frame and the summing function's ("combined stack size of 3 calls is 528. Too large").
    // Which pass this is comes from the source's value from here on, not from `at`: a register
    // kept alive to the end with 0 on one path and not on the other kept the verifier from
    // pruning the outer pass's states against the inner pass's.
    if audit_ip(pkt, hook, at, state).is_err() {
        if state.encap.inner == 0 {
            state.counters.malformed += 1;
            // Off unless `checksum-audit -v` (AYA_LOG_LEVEL), and only on this rare path.
            debug!(pkt.context(), "malformed frame: {} bytes", pkt.len());
        } else {
            state.counters.inner_malformed += 1;
        }
        return OUTER;
    }
    if state.encap.inner == 0 {
        state.inner_at
    } else {
        OUTER
    }
}

#[inline(always)]
fn audit_ip<P: Passes>(
    pkt: &P,
    hook: Hook,
    at: u32,
    s: &mut SourceState,
) -> Result<(), ParseError> {
    let outer = at == OUTER;
    let link = if outer {
        // Reset before anything can return: a frame must not inherit the last one's tunnel.
        s.inner_at = OUTER;
        s.encap.kind = EncapKind::None as u8;
        s.encap.inner = 0;
        s.outer_sum = 0;
        parse::link_layer(pkt)
    } else {
        // Set first: `audit_level` counts a cut-short inner frame by it.
        s.encap.inner = 1;
        inner_link_layer(pkt, at)
    };
    let Some((ethertype, l3_off)) = link else {
        if !outer {
            return Err(ParseError::Truncated);
        }
        s.counters.not_ip += 1;
        return Ok(());
    };
    // One bounded offset for every link layer (no tag, one or two VLAN tags, none at all behind
    // generic XDP, a tunnel's): as constants, each made the verifier walk all that follows again.
    let l3_off = bounded(l3_off, OFFSET_MASK);
    if outer {
        // The skb's checksum state is read at most once per packet, and only when needed: for a
        // field that holds the pseudo-header sum (is the skb still to complete it?) and for a
        // verdict that becomes an event. The read is one helper call: on every packet it made
        // small frames much slower at TC (bench/README.md). Until then `partial` holds the IP
        // header's offset, which the read needs (see `skb_state`): the outer one, which the skb's
        // `network_header` points at, for both passes. Kept in the source's value, not in
        // registers (see `SourceState::slot`).
        s.skb = SKB_NOT_READ;
        s.partial = l3_off;
    } else if l3_off > bounded(s.inner_end, 0xffff) {
        // The inner link layer runs past the outer datagram.
        return Err(ParseError::Truncated);
    }
    s.report = REPORT_VERDICT;
    s.tcp_ack = 0;
    let Some(pending) = PENDING.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's PENDING value, used by no one else during this run. The segment is parsed
    // into it in place: on the stack (and copied there for `emit`) it took more than the 512 bytes
    // the programs, the passes and the summing function share.
    let segment = unsafe { &mut (*pending).seg };
    if parse::is_ipv4(ethertype) {
        let ip = parse::ipv4(pkt, l3_off, segment)?;
        let header_whole = if s.encap.inner == 0 {
            tunnel(pkt, segment, s);
            true
        } else {
            within_datagram(segment, s, l3_off, 20)?
        };
        let header = if header_whole {
            check_ipv4_header(pkt, l3_off, &ip)
        } else {
            Verdict::unverifiable(Layer::Ipv4, ip.header_len)
        };
        record(pkt, hook, &header, s);
    } else if parse::is_ipv6(ethertype) {
        parse::ipv6(pkt, l3_off, segment)?;
        if s.encap.inner == 0 {
            tunnel(pkt, segment, s);
        } else {
            within_datagram(segment, s, l3_off, 40)?;
        }
    } else {
        if s.encap.inner == 0 {
            s.counters.not_ip += 1;
        }
        return Ok(());
    }
    let layer = match (segment.protocol, segment.family) {
        (IPPROTO_TCP, _) => Layer::Tcp,
        (IPPROTO_UDP, _) => Layer::Udp,
        (IPPROTO_ICMP, FAMILY_IPV4) => Layer::Icmp,
        (IPPROTO_ICMPV6, fam) if fam != FAMILY_IPV4 => Layer::Icmpv6,
        _ => return Ok(()),
    };
    let verdict = check_segment(pkt, segment, layer, s)?;
    record(pkt, hook, &verdict, s);
    Ok(())
}

/// The link layer of the inner packet at `at` (see `AT_ETHERNET`); `None` when it is cut short.
#[inline(always)]
fn inner_link_layer<P: Passes>(pkt: &P, at: u32) -> Option<(u16, u32)> {
    let off = bounded(at, OFFSET_MASK);
    match at & !0xffff {
        AT_ETHERNET => parse::ethernet_at(pkt, off),
        AT_IPV4 => Some((parse::ETH_P_IPV4, off)),
        _ => Some((parse::ETH_P_IPV6, off)),
    }
}

/// Whether an outer UDP datagram is a tunnel (its destination port in `TUNNEL_PORTS` and a header
/// of that tunnel after it): if so, notes the tunnel in `s.encap` for the events and where its
/// payload starts in `s.inner_at` for the second pass. Fragments are not followed (the payload
/// is not all here).
#[inline(always)]
fn tunnel<P: Passes>(pkt: &P, seg: &Segment, s: &mut SourceState) {
    if seg.protocol != IPPROTO_UDP || seg.partial {
        return;
    }
    // The UDP header and the tunnel header's first 8 bytes.
    let off = bounded(seg.off, OFFSET_MASK);
    let Some(h) = pkt.load::<16>(off) else {
        return;
    };
    // The UDP length bounds the datagram, and so the tunnel: at least its 8-byte header after the
    // UDP header, and within the IP payload (else the datagram is malformed and carries nothing).
    let udp_len = u32::from(be16(&h, 4));
    if udp_len < 16 || udp_len > bounded(seg.len, 0xffff) {
        return;
    }
    let kind = tunnel_kind(tunnel_port, be16(&h, 2));
    let header = [h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]];
    let Some(t) = parse_tunnel(kind, &header) else {
        return;
    };
    let what = match t.payload {
        Payload::Ethernet => AT_ETHERNET,
        Payload::Ip(parse::ETH_P_IPV4) => AT_IPV4,
        Payload::Ip(_) => AT_IPV6,
    };
    let payload = off + 8 + t.header_len;
    if payload > OFFSET_MASK {
        return;
    }
    s.inner_at = payload | what;
    s.inner_end = off + udp_len;
    s.encap.kind = kind as u8;
    s.encap.vni = t.vni;
    s.encap.outer_family = seg.family;
    s.encap.outer_src = seg.src;
    s.encap.outer_dst = seg.dst;
    s.counters.encapsulated += 1;
}

/// An inner packet lies within its outer UDP datagram (RFC 768: the datagram is its UDP length,
/// whatever follows in the frame), and is read as if the frame ended there, as the outer packet is
/// at the frame's end: a fixed IP header (`base` bytes) past it is cut short, a segment past it is
/// not all here. Returns whether the IP headers (options, extension headers) all lie within it.
#[inline(always)]
fn within_datagram(
    seg: &mut Segment,
    s: &SourceState,
    l3_off: u32,
    base: u32,
) -> Result<bool, ParseError> {
    let end = bounded(s.inner_end, 0xffff);
    if l3_off + base > end {
        return Err(ParseError::Truncated);
    }
    let off = bounded(seg.off, OFFSET_MASK);
    if off + bounded(seg.len, 0xffff) > end {
        seg.truncated = true;
    }
    Ok(off <= end)
}

/// Entry `i` of `TUNNEL_PORTS`, read on its own: the verifier sees the frozen constant.
#[inline(always)]
fn tunnel_port(i: usize) -> u32 {
    // SAFETY: `Global` is a transparent wrapper of the array, and `i` < MAX_TUNNEL_PORTS.
    unsafe {
        core::ptr::read_volatile(
            (&raw const TUNNEL_PORTS)
                .cast::<u32>()
                .add(i % MAX_TUNNEL_PORTS),
        )
    }
}

/// IPv4 header checksum (RFC 791): no pseudo-header, so never `offload-pending`.
#[inline(always)]
fn check_ipv4_header<P: Passes>(pkt: &P, off: u32, ip: &parse::Ipv4Header) -> Verdict {
    let mut v = Verdict::unverifiable(Layer::Ipv4, ip.header_len);
    // sum_range, not a load sized by the header length: LLVM folds the length's masks in a way the
    // verifier cannot bound ("invalid write to stack R3 size=252").
    let Some(sum) = sum_header(pkt, off, ip.header_len, 0) else {
        return v;
    };
    let got = ip.checksum;
    v.got = got;
    v.settle(verifies(sum), || expected_field(sum, got), None);
    v
}

/// Offset of the checksum field and the smallest header that holds it.
#[inline(always)]
const fn field_layout(layer: Layer) -> (u32, u32) {
    match layer {
        Layer::Tcp => (16, 20),
        Layer::Udp => (6, 8),
        _ => (2, 4),
    }
}

#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "an IPv4 segment's length comes from the 16-bit total length"
)]
fn check_segment<P: Passes>(
    pkt: &P,
    seg: &Segment,
    layer: Layer,
    s: &mut SourceState,
) -> Result<Verdict, ParseError> {
    let (off, seg_len) = (bounded(seg.off, OFFSET_MASK), bounded(seg.len, 0xffff));
    if seg.partial || seg.truncated {
        return Ok(Verdict::unverifiable(layer, seg_len));
    }
    let (field_off, min_len) = field_layout(layer);
    if seg_len < min_len {
        return Err(ParseError::Malformed);
    }
    let mut len = seg_len;
    let mut v = Verdict::unverifiable(layer, len);
    if layer == Layer::Tcp || layer == Layer::Udp {
        // The first 8 bytes hold the ports, the TCP sequence number, and the UDP length and
        // checksum. (Not for ICMP: a message may be only 4 bytes long.)
        let head = pkt.load::<8>(off).ok_or(ParseError::Truncated)?;
        if layer == Layer::Udp {
            // The UDP length may be shorter than the IP payload (trailing bytes are not summed),
            // never longer.
            let udp_len = u32::from(be16(&head, 4));
            if udp_len < 8 || udp_len > seg_len {
                return Err(ParseError::Malformed);
            }
            len = udp_len;
            v.len = len;
        }
        v.src_port = be16(&head, 0);
        v.dst_port = be16(&head, 2);
        if layer == Layer::Tcp {
            v.tcp_seq = be32(&head, 4);
            // Here, once per packet: loaded while writing an event it made the verifier walk
            // every path to an event twice.
            s.tcp_ack = pkt.load::<4>(off + 8).map_or(0, |a| be32(&a, 0));
        }
        // Whether a tracked flow's packet is to be reported, decided (and a report taken) here,
        // once, for `record`.
        if track::reports(seg, v.src_port, v.dst_port) {
            s.report = REPORT_TRACKED;
        }
    }
    let field = pkt
        .load::<2>(off + field_off)
        .ok_or(ParseError::Truncated)?;
    let got = u16::from_ne_bytes(field.0);
    v.got = got;
    if layer == Layer::Udp
        && got == 0
        && (seg.family == FAMILY_IPV4 || (s.encap.kind != 0 && s.encap.inner == 0))
    {
        // RFC 768: a zero field over IPv4 means the sender did not compute a checksum. Over IPv6
        // a tunnel may have opted into zero checksums for its outer UDP (RFC 6935, 6936; Linux's
        // `udp6zerocsumtx`), so there too it is `none`, and user space says so.
        v.status = Status::None;
        return Ok(v);
    }
    if layer == Layer::Icmp {
        return Ok(check_icmpv4(pkt, off, seg_len, v));
    }
    let pseudo = if seg.family == FAMILY_IPV4 {
        pseudo_header_v4(
            [seg.src[0], seg.src[1], seg.src[2], seg.src[3]],
            [seg.dst[0], seg.dst[1], seg.dst[2], seg.dst[3]],
            seg.protocol,
            len as u16,
        )
    } else {
        pseudo_header_v6(&seg.src, &seg.dst, seg.protocol, len)
    };
    let folded_pseudo = fold(pseudo);
    // The O(1) path: the skb says this very field is still to be completed (CHECKSUM_PARTIAL at
    // this segment and offset) and the field holds the pseudo-header sum, as the offload-pending
    // signature is recognised below. Without PARTIAL_OK (a frozen 0) this is pruned.
    // (A tracked flow's packets take it too: summing them for their identity, with the answer
    // carried past the sum, made the verifier walk everything after it twice.)
    if PARTIAL_OK.load() != 0
        && (layer == Layer::Tcp || layer == Layer::Udp)
        && got == folded_pseudo
        && skb_state(pkt, s).1 == partial_key(off, field_off)
    {
        v.status = Status::PartialOk;
        v.want = got;
        v.pseudo = folded_pseudo;
        return Ok(v);
    }
    // A tunnel's inner segment takes its sum from the outer datagram's, which covered the same
    // bytes: summed twice, a VXLAN frame cost far more than a plain frame of its size.
    let reused = if s.encap.inner == 0 {
        None
    } else {
        inner_from_outer_sum(pkt, off, len, s)
    };
    let Some(bytes) = reused.or_else(|| sum_range(pkt, off, len, 0)) else {
        return Ok(v);
    };
    if layer == Layer::Udp && s.encap.kind != 0 && s.encap.inner == 0 {
        s.outer_sum = u32::from(fold(bytes)) | OUTER_SUM_VALID;
        s.outer_from = off;
        s.outer_end = off + len;
    }
    let sum = bytes + pseudo;
    v.pseudo = folded_pseudo;
    // Only once the datagram sums wrong, so that good packets never pay for the skb read.
    if !verifies(sum)
        && PARTIAL_OK.load() != 0
        && layer == Layer::Udp
        && s.encap.kind != 0
        && s.encap.inner == 0
        && outer_udp_by_lco(pkt, off, len, pseudo, s)
    {
        v.status = Status::PartialOk;
        v.want = got;
        return Ok(v);
    }
    // RFC 8200 section 8.1: over IPv6 a zero UDP field is always wrong, even where the sum makes
    // 0x0000 and 0xffff equal.
    let udp6_zero = layer == Layer::Udp && got == 0;
    let want = || match expected_field(sum, got) {
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        0 if layer == Layer::Udp => 0xffff,
        want => want,
    };
    v.settle(verifies(sum) && !udp6_zero, want, Some(folded_pseudo));
    Ok(v)
}

/// The sum of the inner segment `[off, off + len)` from the outer datagram's (`outer_sum`): less
/// the bytes before the segment (the UDP, tunnel, inner Ethernet and IP headers, a few dozen
/// bytes). Only when the segment ends where the datagram does and starts an even number of bytes
/// in (an odd one would pair the bytes into other words); `None` otherwise, and the caller sums.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the folded sum is the low 16 bits"
)]
fn inner_from_outer_sum<P: Passes>(pkt: &P, off: u32, len: u32, s: &SourceState) -> Option<u64> {
    if s.outer_sum & OUTER_SUM_VALID == 0 {
        return None;
    }
    let from = bounded(s.outer_from, OFFSET_MASK);
    if off <= from || off + len != s.outer_end || (off - from) % 2 != 0 {
        return None;
    }
    let prefix = sum_range(pkt, from, off - from, 0)?;
    Some(u64::from(ones_sub(s.outer_sum as u16, fold(prefix))))
}

/// A tunnel's outer UDP checksum computed by local checksum offload (LCO, the kernel's
/// `lco_csum`) while the inner one is still to be completed: the skb is `CHECKSUM_PARTIAL` at the
/// inner L4 header, and the outer field already holds the value it will be right for once the
/// device fills in the inner field. Until then the whole datagram sums wrong, so it is checked as
/// LCO computed it: the bytes up to `csum_start`, plus the complement of the pseudo-header sum the
/// inner field holds (what the inner segment will sum to, completed). Only at TC, where the skb
/// says so; false for anything else.
#[inline(always)]
fn outer_udp_by_lco<P: Passes>(
    pkt: &P,
    off: u32,
    len: u32,
    pseudo: u64,
    s: &mut SourceState,
) -> bool {
    let key = skb_state(pkt, s).1;
    if key == u32::MAX {
        return false;
    }
    let start = bounded(key, OFFSET_MASK);
    let field = bounded(key >> 16, 0xff);
    if start <= off + 8 || start >= off + len {
        return false;
    }
    let (Some(prefix), Some(inner_field)) = (
        sum_range(pkt, off, start - off, pseudo),
        pkt.load::<2>(start + field),
    ) else {
        return false;
    };
    verifies(prefix + u64::from(!u16::from_ne_bytes(inner_field.0)))
}

/// ICMPv4 has no pseudo-header, so its data can be all zero bytes; its field is then 0xffff, which
/// a sum over the field cannot tell from 0x0000. Sum the message without its field instead.
#[inline(always)]
fn check_icmpv4<P: Passes>(pkt: &P, off: u32, len: u32, mut v: Verdict) -> Verdict {
    // Type and code: the word before the field.
    let Some(head) = pkt.load::<2>(off) else {
        return v;
    };
    let type_code = u64::from(u16::from_ne_bytes(head.0));
    let Some(data) = sum_range(pkt, off + 4, len - 4, type_code) else {
        return v;
    };
    let ok = verifies(data + u64::from(v.got));
    v.settle(ok, || field_for(data), None);
    v
}

/// Counts a verdict and, when it is to be reported (a mismatch, any verdict with `REPORT_ALL`, a
/// partial-ok field where offload-pending ones are listed, a tracked flow's packet), hands it to
/// `emit`. Only the count and that test run here, on every verdict.
#[inline(always)]
fn record<P: Passes>(pkt: &P, hook: Hook, v: &Verdict, s: &mut SourceState) {
    s.counters.checks[v.layer as usize][v.status as usize] += 1;
    if s.encap.inner != 0 {
        s.counters.inner_checks[v.layer as usize][v.status as usize] += 1;
    }
    let report = v.status == Status::Bad
        || REPORT_ALL.load() != 0
        // Partial-ok fields are what offload-pending mismatches are without the fast path: listed
        // where those would be.
        || (v.status == Status::PartialOk && s.flags & SOURCE_REPORT_OFFLOAD != 0)
        || (track::on() && v.layer != Layer::Ipv4 && s.report == REPORT_TRACKED);
    if !report {
        return;
    }
    let Some(pending) = PENDING.get_ptr_mut(0) else {
        s.counters.events_lost += 1;
        return;
    };
    // SAFETY: this CPU's PENDING value, used by no one else during this run; its segment is the
    // verdict's already (`audit_ip`).
    unsafe {
        (*pending).verdict = *v;
    }
    pkt.emit(hook, s.slot);
}

/// A verdict on its way to `emit`: global functions take only scalars and the context, so it goes
/// through this per-CPU value rather than the stack.
struct Pending {
    seg: Segment,
    verdict: Verdict,
}

/// What `record` hands over: counts a mismatch, applies the per-source and per-flow limits, starts
/// tracking a broken flow, and sends the event (with the frame's first bytes when capture is on).
/// A global function of its own (`csa_emit_*`): its event, budget key and tracking keys are off
/// the pass's stack, and it is verified once, not at every verdict of every path.
#[inline(always)]
pub fn emit<P: Passes>(pkt: &P, hook: Hook, slot: u32) {
    let (Some(s), Some(pending)) = (STATES.get_ptr_mut(slot), PENDING.get_ptr(0)) else {
        return;
    };
    // SAFETY: per-CPU map values, only ever touched by this CPU.
    let (s, pending): (&mut SourceState, &Pending) = unsafe { (&mut *s, &*pending) };
    let (seg, v) = (&pending.seg, &pending.verdict);
    let report_all = REPORT_ALL.load() != 0;
    if v.status == Status::Bad {
        // The verdict was read back from map memory: LLVM takes its enums to be in range and drops
        // the bounds checks, the verifier does not ("invalid access to map value ... off=12720").
        let (layer, kind) = (
            bounded(v.layer as u32, 7) as usize,
            bounded(v.kind as u32, 15) as usize,
        );
        if let Some(count) = s
            .counters
            .mismatches
            .get_mut(layer)
            .and_then(|row| row.get_mut(kind))
        {
            *count += 1;
        }
        if v.kind == Kind::OffloadPending
            && s.flags & SOURCE_REPORT_OFFLOAD == 0
            && !report_all
            && !unfinished_partial(pkt, s)
        {
            return;
        }
        // A problem: every hook now reports this flow's next packets.
        if v.layer != Layer::Ipv4 && !track::start(seg, v.src_port, v.dst_port) {
            s.counters.tracking_full += 1;
        }
        if !within_budget(s.slot, seg, v) {
            s.counters.events_sampled_out += 1;
            return;
        }
    } else if !report_all && (v.status != Status::PartialOk || s.flags & SOURCE_REPORT_OFFLOAD == 0)
    {
        s.counters.tracked_reports += 1;
    }
    let skb = skb_state(pkt, s).0;
    // Built in the per-CPU capture buffer, whose record starts with the event: no room on the
    // stack, and the same bytes serve a capture record.
    let Some(rec) = CAPTURE_BUF.get_ptr_mut(0) else {
        s.counters.events_lost += 1;
        return;
    };
    // SAFETY: this CPU's CAPTURE_BUF value, used by no one else during this run.
    let e = unsafe { &mut (*rec).event };
    write_event(e, pkt, hook, s.slot, seg, v, skb);
    e.report = s.report;
    e.tcp_ack = s.tcp_ack;
    e.encap = if s.encap.kind == EncapKind::None as u8 {
        Encap::default()
    } else {
        s.encap
    };
    let snaplen = CAPTURE_SNAPLEN.load();
    if snaplen != 0 && v.status == Status::Bad {
        // With capture off the verifier sees `snaplen` as the constant 0 (a frozen .rodata map)
        // and prunes this branch.
        capture::send(pkt, snaplen, rec, &mut s.counters);
        return;
    }
    if EVENTS.output::<ChecksumEvent>(e, 0).is_err() {
        s.counters.events_lost += 1;
    }
}

/// An offload-pending field that nothing will complete: with the partial-ok fast path, the
/// fields a `CHECKSUM_PARTIAL` skb is still to complete never get here, so at TC, where the skb
/// state is known, every one that does is a problem wherever it is seen, and is sent. At XDP
/// (no skb) and without the fast path it is not (both frozen, pruned).
#[inline(always)]
fn unfinished_partial<P: Passes>(pkt: &P, s: &mut SourceState) -> bool {
    PARTIAL_OK.load() != 0 && skb_state(pkt, s).0.ip_summed() != IP_SUMMED_UNKNOWN
}

/// `SourceState::skb` before the packet's state is read: no packed state has all bits set (its
/// top bits are zero).
const SKB_NOT_READ: u64 = u64::MAX;

/// The packet's skb checksum state and its `SkbState::partial` key, read on first use (see
/// `audit_ip`).
#[inline(always)]
fn skb_state<P: Passes>(pkt: &P, s: &mut SourceState) -> (SkbState, u32) {
    if s.skb == SKB_NOT_READ {
        let skb = pkt.skb_state();
        s.skb = skb.raw();
        s.partial = skb.partial(s.partial);
    }
    (SkbState::from_raw(s.skb), s.partial)
}

/// A flow and kind at one source, for the per-flow event budget. No padding: the whole key is
/// hashed.
#[repr(C, align(8))]
struct BudgetKey {
    /// The source (its `STATES` slot).
    slot: u32,
    layer: u8,
    kind: u8,
    protocol: u8,
    _pad0: u8,
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    _pad: u32,
}

/// Whether this mismatch may still have an event under `EVENTS_PER_FLOW`; counts it if so.
#[inline(always)]
fn within_budget(slot: u32, seg: &Segment, v: &Verdict) -> bool {
    let limit = EVENTS_PER_FLOW.load();
    if limit == 0 {
        // The verifier sees the frozen 0 and drops the rest of this function.
        return true;
    }
    let key = BudgetKey {
        slot,
        _pad0: 0,
        layer: v.layer as u8,
        kind: v.kind as u8,
        protocol: seg.protocol,
        src: seg.src,
        dst: seg.dst,
        src_port: v.src_port,
        dst_port: v.dst_port,
        _pad: 0,
    };
    if let Some(sent) = EVENT_BUDGET.get_ptr_mut(&key) {
        // SAFETY: a map value; racing CPUs may both pass the limit by one, which is harmless.
        let sent = unsafe { &mut *sent };
        if *sent >= limit {
            return false;
        }
        *sent += 1;
    } else {
        // A full map evicts its least recently used flow; failing to insert still sends.
        let _ = EVENT_BUDGET.insert(&key, &1, 0);
    }
    true
}

/// Fills in an event, field by field: built this way from a zeroed value it takes the least of
/// the programs' stack. The same event as one struct literal, or written in place into the
/// ring-buffer reservation, took more, past the 512 bytes the programs and the summing function
/// share ("combined stack size of 3 calls is 528").
#[inline(always)]
fn write_event<P: Passes>(
    e: &mut ChecksumEvent,
    pkt: &P,
    hook: Hook,
    slot: u32,
    seg: &Segment,
    v: &Verdict,
    skb: SkbState,
) {
    // SAFETY: bpf_ktime_get_ns takes no arguments and touches no memory.
    e.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    e.ifindex = pkt.ifindex();
    e.tcp_seq = v.tcp_seq;
    e.src_addr = seg.src;
    e.dst_addr = seg.dst;
    e.l4_len = v.len;
    e.ip_id = seg.ip_id;
    e.slot = slot;
    e.src_port = v.src_port;
    e.dst_port = v.dst_port;
    e.got = u16::from_be(v.got);
    e.want = u16::from_be(v.want);
    e.pseudo = u16::from_be(v.pseudo);
    e.hook = hook as u8;
    e.direction = hook.direction() as u8;
    e.family = seg.family;
    e.protocol = seg.protocol;
    e.layer = v.layer as u8;
    e.status = v.status as u8;
    e.kind = v.kind as u8;
    e.ip_summed = skb.ip_summed();
    e.csum_start = skb.csum_start();
    e.csum_offset = skb.csum_offset();
    e.network_header = skb.network_header();
    e.csum_level = skb.csum_level();
    e.skb_flags = skb.flags();
    e.flow_label = seg.flow_label;
}
