//! Hop by hop: one packet followed across hooks, interfaces and namespaces, to the hop where its
//! checksum turned bad.
//!
//! The kernel reports every packet of a tracked flow at every hook (`checksum_common::track`),
//! good ones included. A packet is recognised from hop to hop by what a NAT does not rewrite
//! ([`PacketId`]): its IPv4 ID or IPv6 flow label, protocol, TCP sequence and acknowledgment
//! numbers, L4 length, and, where it was summed at both hops, the sum of its L4 bytes but the
//! ports and the checksum field. What rewrites those too (GSO resegmentation, MSS clamping, an
//! ALG) breaks the chain: the path then starts at the first hop that saw the packet, and says
//! that no earlier hop did, instead of guessing.

use std::collections::{BTreeMap, HashMap, VecDeque};

use checksum_common::{
    Layer, Status,
    csum::{ones_add, ones_eq, ones_sub},
    event::IpSummed,
};

use super::SourceId;
use crate::model::{Flow, Verdict};

/// Packets followed at once; the oldest is forgotten first (counted).
pub const MAX_PACKETS: usize = 8192;

/// Hops kept per packet: more than any path of veth pairs and bridges has.
pub const MAX_HOPS: usize = 16;

/// What identifies one packet at every hop it crosses, NAT or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId {
    pub layer: Layer,
    pub protocol: u8,
    /// IPv4 ID, or the IPv6 fragment identification.
    pub ip_id: u32,
    pub flow_label: u32,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub l4_len: u32,
}

impl PacketId {
    pub fn of(v: &Verdict) -> Self {
        Self {
            layer: v.layer,
            protocol: v.flow.protocol,
            ip_id: v.ip_id,
            flow_label: v.flow_label,
            tcp_seq: v.tcp_seq,
            tcp_ack: v.tcp_ack,
            l4_len: v.l4_len,
        }
    }
}

/// The packet at one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub source: SourceId,
    pub timestamp_ns: u64,
    pub status: Status,
    pub flow: Flow,
    /// The checksum field as seen here.
    pub got: u16,
    pub ip_summed: Option<IpSummed>,
    /// The L4 bytes' sum without the ports and the checksum field, where they were summed.
    pub kept_sum: Option<u16>,
}

impl Hop {
    fn of(source: SourceId, v: &Verdict) -> Self {
        Self {
            source,
            timestamp_ns: v.timestamp_ns,
            status: v.status,
            flow: v.flow,
            got: v.got,
            ip_summed: v.skb.map(|s| s.ip_summed),
            kept_sum: kept_sum(v),
        }
    }

    pub fn is_bad(&self) -> bool {
        self.status == Status::Bad
    }

    /// A hop where the checksum was fine (verified, partial and still to be completed, or an
    /// absent UDP checksum).
    pub fn is_good(&self) -> bool {
        matches!(self.status, Status::Ok | Status::PartialOk | Status::None)
    }
}

/// The sum of the L4 bytes a NAT does not touch: the segment's sum without the field (the
/// complement of the correct checksum) less the pseudo-header and the ports. `None` where the
/// segment was not summed (a partial checksum settled in O(1), an unverifiable segment).
fn kept_sum(v: &Verdict) -> Option<u16> {
    if !matches!(v.status, Status::Ok | Status::Bad) || !matches!(v.layer, Layer::Tcp | Layer::Udp)
    {
        return None;
    }
    let (sport, dport) = v.flow.ports?;
    let without_field = !v.want;
    Some(ones_sub(
        ones_sub(without_field, v.pseudo),
        ones_add(sport, dport),
    ))
}

/// What changed between two hops of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Self::SrcAddr => "src-addr",
            Self::DstAddr => "dst-addr",
            Self::SrcPort => "src-port",
            Self::DstPort => "dst-port",
        }
    }

    /// The field's value in `flow`, as the report prints it.
    pub fn value_in(self, flow: &Flow) -> String {
        match (self, flow.ports) {
            (Self::SrcAddr, _) => flow.src.to_string(),
            (Self::DstAddr, _) => flow.dst.to_string(),
            (Self::SrcPort, Some((p, _))) | (Self::DstPort, Some((_, p))) => p.to_string(),
            _ => String::new(),
        }
    }

    /// The header fields that differ between `before` and `after`.
    pub fn between(before: &Flow, after: &Flow) -> Vec<Self> {
        let mut out = Vec::new();
        if before.src != after.src {
            out.push(Self::SrcAddr);
        }
        if before.dst != after.dst {
            out.push(Self::DstAddr);
        }
        if let (Some((s0, d0)), Some((s1, d1))) = (before.ports, after.ports) {
            if s0 != s1 {
                out.push(Self::SrcPort);
            }
            if d0 != d1 {
                out.push(Self::DstPort);
            }
        }
        out
    }
}

/// One broken packet's path, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub id: PacketId,
    pub hops: Vec<Hop>,
    /// Index in `hops` of the first hop where the checksum was bad.
    pub first_bad: usize,
    /// The last good hop before it, if any hop saw the packet before it broke.
    pub last_good: Option<usize>,
}

impl Path {
    pub fn first_bad(&self) -> &Hop {
        &self.hops[self.first_bad]
    }

    pub fn last_good(&self) -> Option<&Hop> {
        self.last_good.map(|i| &self.hops[i])
    }

    /// The header fields rewritten between the last good hop and the first bad one.
    pub fn changes(&self) -> Vec<Change> {
        self.last_good()
            .map(|g| Change::between(&g.flow, &self.first_bad().flow))
            .unwrap_or_default()
    }

    /// Whether the checksum field changed between the last good hop and the first bad one.
    pub fn field_changed(&self) -> Option<bool> {
        self.last_good().map(|g| g.got != self.first_bad().got)
    }

    /// Whether `source` saw this packet, with `flow`, broken.
    pub fn broke_at(&self, source: SourceId, flow: &Flow) -> bool {
        self.hops
            .iter()
            .any(|h| h.is_bad() && h.source == source && h.flow == *flow)
    }
}

/// Paths of the packets followed so far.
#[derive(Debug, Default)]
pub struct Paths {
    hops: HashMap<PacketId, Vec<Hop>, foldhash::fast::RandomState>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<PacketId>,
    /// Packets forgotten to stay within `MAX_PACKETS`, and hops beyond `MAX_HOPS`.
    pub forgotten: u64,
    pub hops_dropped: u64,
}

impl Paths {
    /// Takes a verdict: a mismatch, or any verdict of a tracked flow. Others say nothing of a
    /// path and are ignored, as are layers without a flow identity (the IPv4 header).
    pub fn observe(&mut self, source: SourceId, v: &Verdict) {
        if !(v.tracked || v.status == Status::Bad) || v.layer == Layer::Ipv4 {
            return;
        }
        let id = PacketId::of(v);
        if !self.hops.contains_key(&id) {
            if self.order.len() >= MAX_PACKETS
                && let Some(old) = self.order.pop_front()
            {
                self.hops.remove(&old);
                self.forgotten += 1;
            }
            self.order.push_back(id);
        }
        let hops = self.hops.entry(id).or_default();
        if hops.len() >= MAX_HOPS {
            self.hops_dropped += 1;
            return;
        }
        hops.push(Hop::of(source, v));
    }

    /// One path per broken flow (the source and flow where it first broke): the latest packet
    /// whose path shows a good hop before the bad one, else the latest broken packet.
    pub fn broken(&self) -> Vec<Path> {
        let mut best: BTreeMap<(SourceId, Layer, Flow), Path> = BTreeMap::new();
        for (id, hops) in &self.hops {
            let Some(path) = path_of(*id, hops) else {
                continue;
            };
            let bad = path.first_bad();
            let key = (bad.source, id.layer, bad.flow);
            let better = best.get(&key).is_none_or(|old| {
                (path.last_good.is_some(), bad.timestamp_ns)
                    > (old.last_good.is_some(), old.first_bad().timestamp_ns)
            });
            if better {
                best.insert(key, path);
            }
        }
        best.into_values().collect()
    }

    /// Packets being followed.
    pub fn len(&self) -> usize {
        self.hops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }
}

/// A packet's path, when it broke somewhere: hops in time order, those whose sum of the kept
/// bytes contradicts the broken hop's left out (another packet with the same identity).
fn path_of(id: PacketId, hops: &[Hop]) -> Option<Path> {
    let mut hops: Vec<Hop> = hops.to_vec();
    hops.sort_by_key(|h| h.timestamp_ns);
    let first_bad = hops.iter().position(Hop::is_bad)?;
    if let Some(sum) = hops[first_bad].kept_sum {
        hops.retain(|h| h.kept_sum.is_none_or(|s| ones_eq(s, sum)));
    }
    let first_bad = hops.iter().position(Hop::is_bad)?;
    let last_good = hops[..first_bad].iter().rposition(Hop::is_good);
    Some(Path {
        id,
        hops,
        first_bad,
        last_good,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use checksum_common::{Hook, Kind};

    use super::*;

    fn verdict(ts: u64, dst: [u8; 4], status: Status, got: u16, tracked: bool) -> Verdict {
        let kind = if status == Status::Bad {
            Kind::Corrupt
        } else {
            Kind::Match
        };
        Verdict {
            hook: Hook::TcIngress,
            layer: Layer::Udp,
            status,
            flow: Flow {
                src: IpAddr::V4(Ipv4Addr::new(10, 199, 1, 2)),
                dst: IpAddr::V4(Ipv4Addr::from(dst)),
                ports: Some((41895, 5353)),
                protocol: 17,
            },
            got,
            want: 0x1234,
            pseudo: 0x0a0a,
            l4_len: 48,
            tracked,
            ..crate::analysis::aggregate::tests::verdict(41895, kind, ts)
        }
    }

    const VIP: [u8; 4] = [10, 96, 0, 10];
    const SERVER: [u8; 4] = [10, 199, 2, 2];

    #[test]
    fn the_first_bad_hop_and_the_last_good_one_before_it() {
        let mut p = Paths::default();
        // Out of order, as events from several CPUs arrive.
        p.observe(2, &verdict(300, SERVER, Status::Bad, 0x0a0a, true));
        p.observe(1, &verdict(100, VIP, Status::PartialOk, 0x0a0a, true));
        p.observe(3, &verdict(400, SERVER, Status::Bad, 0x0a0a, true));
        let paths = p.broken();
        assert_eq!(paths.len(), 1);
        let path = &paths[0];
        assert_eq!(path.hops.len(), 3);
        assert_eq!(path.first_bad().source, 2);
        assert_eq!(path.last_good().unwrap().source, 1);
        assert_eq!(path.changes(), [Change::DstAddr]);
        assert_eq!(path.field_changed(), Some(false));
        assert!(path.broke_at(3, &path.hops[2].flow));
    }

    #[test]
    fn a_packet_first_seen_broken_has_no_good_hop() {
        let mut p = Paths::default();
        p.observe(2, &verdict(300, SERVER, Status::Bad, 0x0a0a, false));
        let path = &p.broken()[0];
        assert_eq!(path.last_good, None);
        assert_eq!(path.changes(), []);
        assert_eq!(path.field_changed(), None);
    }

    #[test]
    fn good_verdicts_of_untracked_flows_and_unbroken_packets_make_no_path() {
        let mut p = Paths::default();
        p.observe(1, &verdict(100, VIP, Status::Ok, 0x1234, false));
        assert!(p.is_empty());
        p.observe(1, &verdict(100, VIP, Status::Ok, 0x1234, true));
        assert_eq!(p.len(), 1);
        assert_eq!(p.broken(), []);
    }

    #[test]
    fn a_complete_path_is_preferred_to_a_later_partial_one() {
        let mut p = Paths::default();
        let mut first = verdict(100, VIP, Status::PartialOk, 0x0a0a, true);
        first.ip_id = 1;
        let mut bad = verdict(200, SERVER, Status::Bad, 0x0a0a, true);
        bad.ip_id = 1;
        p.observe(1, &first);
        p.observe(2, &bad);
        let mut later = verdict(900, SERVER, Status::Bad, 0x0a0a, false);
        later.ip_id = 2;
        p.observe(2, &later);
        let paths = p.broken();
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].id.ip_id, 1);
    }

    #[test]
    fn the_kept_bytes_tell_two_packets_with_one_identity_apart() {
        let mut p = Paths::default();
        let mut other = verdict(100, VIP, Status::Ok, 0x4321, true);
        other.want = 0x4321; // a good packet: want = got, another payload
        p.observe(1, &other);
        p.observe(2, &verdict(200, SERVER, Status::Bad, 0x0a0a, true));
        let path = &p.broken()[0];
        assert_eq!(path.hops.len(), 1, "{path:#?}");
    }

    #[test]
    fn memory_is_bounded() {
        let mut p = Paths::default();
        for i in 0..u32::try_from(MAX_PACKETS + 10).unwrap() {
            let mut v = verdict(u64::from(i), SERVER, Status::Bad, 0, false);
            v.ip_id = i;
            p.observe(1, &v);
        }
        assert_eq!(p.len(), MAX_PACKETS);
        assert_eq!(p.forgotten, 10);
    }
}
