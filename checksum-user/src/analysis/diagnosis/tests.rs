//! Every case is built from real packet bytes: checksums come from an independent big-endian
//! reference below, faults are applied to the bytes as the buggy component would, and the
//! verdict is what the kernel reports for the packet as it then is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use checksum_common::{
    Hook,
    csum::{classify, ones_add},
};

use super::{value::addr_sum, *};

/// Reference one's-complement sum of `bytes` as big-endian words, folded (not complemented):
/// checksum-common's plain RFC 1071 reference, which shares no code with its `csum`.
fn ref_sum(bytes: &[u8]) -> u16 {
    checksum_common::reference::ref_sum(&[bytes])
}

/// RFC 1624 eqn. 3, word by word, as a NAT updates a checksum it believes complete:
/// HC' = ~(~HC + ~m + m').
fn nat_update(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut hc = u32::from(hc);
    for (m, m2) in old.chunks(2).zip(new.chunks(2)) {
        let m = u32::from(u16::from_be_bytes([m[0], m[1]]));
        let m2 = u32::from(u16::from_be_bytes([m2[0], m2[1]]));
        let mut s = (!hc & 0xffff) + (!m & 0xffff) + m2;
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        hc = !s & 0xffff;
    }
    hc as u16
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// A different payload (content and length) for each `i`.
fn payload(i: usize) -> Vec<u8> {
    format!("request {i}: {}", "x".repeat(i * 7)).into_bytes()
}

const TCP: u8 = 6;
const UDP: u8 = 17;

#[derive(Debug, Clone)]
struct Packet {
    protocol: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    payload: Vec<u8>,
}

impl Packet {
    fn new(protocol: u8, src: (IpAddr, u16), dst: (IpAddr, u16), payload: Vec<u8>) -> Self {
        Self {
            protocol,
            src: src.0,
            sport: src.1,
            dst: dst.0,
            dport: dst.1,
            payload,
        }
    }

    /// The TCP or UDP segment with its checksum field holding `field`.
    fn segment(&self, field: u16) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(self.sport.to_be_bytes());
        s.extend(self.dport.to_be_bytes());
        if self.protocol == TCP {
            s.extend(1000u32.to_be_bytes()); // seq
            s.extend(0u32.to_be_bytes()); // ack
            s.extend([0x50, 0x18]); // header length 20, PSH|ACK
            s.extend(64240u16.to_be_bytes()); // window
            s.extend(field.to_be_bytes());
            s.extend([0, 0]); // urgent pointer
        } else {
            s.extend(((8 + self.payload.len()) as u16).to_be_bytes());
            s.extend(field.to_be_bytes());
        }
        s.extend(&self.payload);
        s
    }

    fn pseudo_header(&self) -> Vec<u8> {
        let len = self.segment(0).len();
        let mut p = octets(self.src);
        p.extend(octets(self.dst));
        if self.src.is_ipv4() {
            p.extend([0, self.protocol]);
            p.extend((len as u16).to_be_bytes());
        } else {
            p.extend((len as u32).to_be_bytes());
            p.extend([0, 0, 0, self.protocol]);
        }
        p
    }

    /// The folded pseudo-header sum: what a partial (offload-pending) field holds.
    fn pseudo(&self) -> u16 {
        ref_sum(&self.pseudo_header())
    }

    fn sum_with(&self, field: u16) -> u16 {
        ref_sum(&[self.pseudo_header(), self.segment(field)].concat())
    }

    /// The correct checksum (a computed zero is sent as 0xffff in UDP, RFC 768).
    fn checksum(&self) -> u16 {
        match !self.sum_with(0) {
            0 if self.protocol == UDP => 0xffff,
            c => c,
        }
    }

    /// The verdict the kernel reports for this packet arriving with `field`.
    fn verdict(&self, field: u16) -> Verdict {
        let (layer, ok) = match self.protocol {
            TCP => (Layer::Tcp, self.sum_with(field) == 0xffff),
            _ => (Layer::Udp, self.sum_with(field) == 0xffff),
        };
        let want = if ok { field } else { self.checksum() };
        let status = match () {
            () if layer == Layer::Udp && field == 0 && self.src.is_ipv4() => Status::None,
            () if ok => Status::Ok,
            () => Status::Bad,
        };
        // classify() takes memory-order words, but only compares and byte-swaps them, so
        // host-order values give the same answer.
        let kind = match status {
            Status::Bad => classify(field, want, Some(self.pseudo())),
            _ => Kind::Match,
        };
        Verdict {
            timestamp_ns: 0,
            hook: Hook::TcIngress,
            layer,
            status,
            flow: Flow {
                src: self.src,
                dst: self.dst,
                ports: Some((self.sport, self.dport)),
                protocol: self.protocol,
            },
            got: field,
            want,
            pseudo: self.pseudo(),
            l4_len: self.segment(0).len() as u32,
            ..crate::analysis::aggregate::tests::verdict(self.sport, kind, 0)
        }
    }

    /// The same packet after a NAT wrote `dst` (address, port) without touching the checksum.
    fn with_dst(&self, dst: (IpAddr, u16)) -> Self {
        Self {
            dst: dst.0,
            dport: dst.1,
            ..self.clone()
        }
    }

    fn with_src(&self, src: (IpAddr, u16)) -> Self {
        Self {
            src: src.0,
            sport: src.1,
            ..self.clone()
        }
    }
}

/// The single diagnosed flow.
fn finding(f: &FlowDiagnosis) -> &RewriteFinding {
    match &f.diagnosis {
        Diagnosis::Rewrite(r) => r,
        other => panic!("no rewrite signature: {other:#?}"),
    }
}

/// The diagnosis of the one flow seen broken at `source`.
fn at_source(d: &Diagnoser, source: u32) -> FlowDiagnosis {
    d.diagnose(|_, _| Severity::Problem)
        .into_iter()
        .find(|f| f.source == source)
        .unwrap()
}

fn only(d: &Diagnoser) -> FlowDiagnosis {
    let all = d.diagnose(|_, _| Severity::Problem);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

const CLIENT: (&str, u16) = ("10.0.0.5", 40000);
const VIP: &str = "10.96.0.10";
const POD: &str = "10.244.1.7";

/// The seed case: UDP to a Service VIP, DNATed to a pod without a checksum update. The client
/// side (source 1) sees the packets before the DNAT, the pod side (source 2) after.
fn stale_dnat(d: &mut Diagnoser, protocol: u8, vip: (IpAddr, u16), pod: (IpAddr, u16), n: usize) {
    let client = (v4(CLIENT.0), CLIENT.1);
    for i in 0..n {
        let before = Packet::new(protocol, client, vip, payload(i));
        let field = before.checksum();
        d.observe(1, &before.verdict(field));
        d.observe(2, &before.with_dst(pod).verdict(field));
    }
}

#[test]
fn stale_after_dnat_names_the_service_vip() {
    let mut d = Diagnoser::default();
    stale_dnat(&mut d, UDP, (v4(VIP), 53), (v4(POD), 53), 5);
    let f = only(&d);
    assert_eq!((f.source, f.layer, f.count), (2, Layer::Udp, 5));
    // The field still reflects the VIP: got - want = sum(POD) - sum(VIP).
    let change = ones_sub(addr_sum(v4(POD)), addr_sum(v4(VIP)));
    assert!(ones_eq(f.delta.unwrap(), change));
    let found = finding(&f);
    let r = found.rewrite.as_ref().unwrap();
    assert!(ones_eq(found.constant, change));
    assert_eq!(f.diagnosis.name(), "stale-after-rewrite");
    assert_eq!(r.field, RewrittenField::DstAddr);
    assert_eq!((r.original.as_str(), r.current.as_str()), (VIP, POD));
    assert_eq!(r.evidence, Evidence::Seen);
    assert_eq!(r.alternatives, 0);
    assert!(
        f.diagnosis
            .explanation()
            .contains("10.96.0.10 -> 10.244.1.7")
    );
    assert!(
        f.diagnosis
            .explanation()
            .contains("evidence: the flow before")
    );
    assert!(
        f.diagnosis
            .next_step()
            .contains("destination address 10.96.0.10")
    );
}

/// Another client's good packet to the VIP (source 3), then four packets of a flow DNATed to
/// the pod with the checksum left stale, seen only after the rewrite (source 2).
fn vip_elsewhere_then_stale_dnat(d: &mut Diagnoser) {
    let other = Packet::new(UDP, (v4("10.0.0.9"), 5353), (v4(VIP), 53), payload(9));
    d.observe(3, &other.verdict(other.checksum()));
    for i in 0..4 {
        let before = Packet::new(UDP, (v4(CLIENT.0), CLIENT.1), (v4(VIP), 53), payload(i));
        d.observe(
            2,
            &before.with_dst((v4(POD), 53)).verdict(before.checksum()),
        );
    }
}

#[test]
fn stale_vip_named_from_another_flow() {
    // The pre-DNAT packets are not seen, only another client's OK packet to the VIP.
    let mut d = Diagnoser::default();
    vip_elsewhere_then_stale_dnat(&mut d);
    let r = only(&d).diagnosis.likely_original().cloned().unwrap();
    assert_eq!(
        (r.field, r.original.as_str()),
        (RewrittenField::DstAddr, VIP)
    );
    // Few values in this run: the match is significant.
    assert!(
        matches!(r.evidence, Evidence::RunWide { hypotheses } if hypotheses < 100),
        "{r:?}"
    );
}

#[test]
fn stale_after_un_dnat_of_a_reply_names_the_pod() {
    // Replies pod -> client get their source rewritten back to the VIP, checksum untouched.
    let mut d = Diagnoser::default();
    for i in 0..3 {
        let reply = Packet::new(TCP, (v4(POD), 80), (v4(CLIENT.0), CLIENT.1), payload(i));
        let field = reply.checksum();
        d.observe(2, &reply.verdict(field));
        d.observe(1, &reply.with_src((v4(VIP), 80)).verdict(field));
    }
    let f = only(&d);
    assert_eq!(
        (f.diagnosis.name(), f.layer),
        ("stale-after-rewrite", Layer::Tcp)
    );
    let r = f.diagnosis.likely_original().unwrap();
    assert_eq!(
        (r.field, r.original.as_str()),
        (RewrittenField::SrcAddr, POD)
    );
    assert_eq!(r.current, VIP);
}

#[test]
fn stale_after_service_port_remap_names_address_and_port() {
    // Service port 80, targetPort 8080: both the address and the port change.
    let mut d = Diagnoser::default();
    stale_dnat(&mut d, TCP, (v4(VIP), 80), (v4(POD), 8080), 4);
    let r = only(&d).diagnosis.likely_original().cloned().unwrap();
    assert_eq!(r.field, RewrittenField::DstAddrPort);
    assert_eq!(
        (r.original.as_str(), r.current.as_str()),
        ("10.96.0.10:80", "10.244.1.7:8080")
    );
    assert_eq!(r.evidence, Evidence::Seen);
}

#[test]
fn stale_after_ipv6_dnat() {
    let mut d = Diagnoser::default();
    let (vip, pod) = (v6("fd00:10:96::a"), v6("fd00:10:244:1::7"));
    let client = (v6("fd00:10:244:2::5"), 40000);
    for i in 0..3 {
        let before = Packet::new(UDP, client, (vip, 53), payload(i));
        let field = before.checksum();
        d.observe(1, &before.verdict(field));
        d.observe(2, &before.with_dst((pod, 53)).verdict(field));
    }
    let r = only(&d).diagnosis.likely_original().cloned().unwrap();
    assert_eq!(
        (r.field, r.original.as_str()),
        (RewrittenField::DstAddr, "fd00:10:96::a")
    );
}

#[test]
fn stale_ipv4_header_checksum() {
    // The IPv4 header checksum covers the addresses too; the packets differ by their ID.
    fn header(dst: IpAddr, id: u16, field: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 28];
        h.extend(id.to_be_bytes());
        h.extend([0, 0, 64, UDP]);
        h.extend(field.to_be_bytes());
        h.extend(octets(v4(CLIENT.0)));
        h.extend(octets(dst));
        h
    }
    let verdict = |dst: IpAddr, got: u16, want: u16| Verdict {
        layer: Layer::Ipv4,
        status: if got == want { Status::Ok } else { Status::Bad },
        kind: if got == want {
            Kind::Match
        } else {
            classify(got, want, None)
        },
        flow: Flow {
            src: v4(CLIENT.0),
            dst,
            ports: None,
            protocol: UDP,
        },
        got,
        want,
        pseudo: 0,
        l4_len: 20,
        ..Packet::new(UDP, (dst, 0), (dst, 0), vec![]).verdict(0)
    };
    let mut d = Diagnoser::default();
    for id in 1..=3 {
        let field = !ref_sum(&header(v4(VIP), id, 0));
        d.observe(1, &verdict(v4(VIP), field, field));
        let want = !ref_sum(&header(v4(POD), id, 0));
        d.observe(2, &verdict(v4(POD), field, want));
    }
    let f = only(&d);
    assert_eq!(
        (f.layer, f.diagnosis.name()),
        (Layer::Ipv4, "stale-after-rewrite")
    );
    assert_eq!(f.diagnosis.likely_original().unwrap().original, VIP);
}

#[test]
fn partial_updated_as_complete_by_un_dnat() {
    // openvswitch/ovs-issues#265: a Windows container replies with a partial checksum (the
    // pseudo-header sum); OVS un-DNATs 10.10.3.10:80 -> 169.254.0.252:30008 and updates the
    // field as if it were a complete checksum.
    let container = (v4("10.10.3.10"), 80u16);
    let node = (v4("169.254.0.252"), 30008u16);
    let client = (v4("192.168.240.220"), 40000);
    let mut d = Diagnoser::default();
    for i in 0..3 {
        let reply = Packet::new(TCP, container, client, payload(i));
        let partial = reply.pseudo();
        d.observe(1, &reply.verdict(partial)); // offload-pending at the container's port
        let old = [octets(container.0), container.1.to_be_bytes().to_vec()].concat();
        let new = [octets(node.0), node.1.to_be_bytes().to_vec()].concat();
        let field = nat_update(partial, &old, &new);
        d.observe(2, &reply.with_src(node).verdict(field));
    }
    let all = d.diagnose(|_, _| Severity::Problem);
    let f = all.iter().find(|f| f.source == 2).unwrap();
    let found = finding(f);
    let r = found.rewrite.as_ref().unwrap();
    assert_eq!(found.signature, Signature::PartialUpdatedAsComplete);
    assert_eq!(f.diagnosis.name(), "partial-updated-as-complete");
    assert_eq!(r.field, RewrittenField::SrcAddrPort);
    assert_eq!(
        (r.original.as_str(), r.current.as_str()),
        ("10.10.3.10:80", "169.254.0.252:30008")
    );
    assert_eq!(r.evidence, Evidence::Seen);
    assert_eq!(f.delta, None); // the offset from the correct checksum varies
    // The container's own port sees a plain partial checksum.
    let at_container = all.iter().find(|f| f.source == 1).unwrap();
    assert_eq!(at_container.diagnosis, Diagnosis::OffloadPending);
}

#[test]
fn partial_in_fixed_size_udp_is_not_taken_for_an_absent_checksum() {
    // Same-size datagrams: the pseudo-header sum, so the updated field, is the same for every
    // packet, as for an updated absent checksum; the named original decides.
    let (pod, vip) = ((v4(POD), 53u16), (v4(VIP), 53u16));
    let mut d = Diagnoser::default();
    for i in 0..4u8 {
        let reply = Packet::new(UDP, pod, (v4(CLIENT.0), CLIENT.1), vec![i; 32]);
        d.observe(1, &reply.verdict(reply.pseudo()));
        let field = nat_update(reply.pseudo(), &octets(pod.0), &octets(vip.0));
        d.observe(2, &reply.with_src(vip).verdict(field));
    }
    let f = at_source(&d, 2);
    assert_eq!(f.diagnosis.name(), "partial-updated-as-complete");
    let r = f.diagnosis.likely_original().unwrap();
    assert_eq!(
        (r.field, r.original.as_str()),
        (RewrittenField::SrcAddr, POD)
    );
}

#[test]
fn partial_left_alone_by_dnat() {
    // A partial checksum for client -> VIP; the DNAT to the pod does not touch the field, so
    // it is still the pseudo-header sum for the VIP.
    let mut d = Diagnoser::default();
    for i in 0..3 {
        let before = Packet::new(TCP, (v4(CLIENT.0), CLIENT.1), (v4(VIP), 80), payload(i));
        d.observe(1, &before.verdict(before.pseudo()));
        d.observe(2, &before.with_dst((v4(POD), 80)).verdict(before.pseudo()));
    }
    let f = at_source(&d, 2);
    let found = finding(&f);
    assert_eq!(found.signature, Signature::PartialLeftAlone);
    assert_eq!(f.diagnosis.name(), "partial-left-alone");
    let r = found.rewrite.as_ref().unwrap();
    assert_eq!(
        (r.field, r.original.as_str()),
        (RewrittenField::DstAddr, VIP)
    );
}

#[test]
fn absent_udp_checksum_updated_by_nat() {
    // The sender sends no UDP checksum (0); the DNAT "updates" it as if it were one.
    let mut d = Diagnoser::default();
    let mut fields = HashSet::new();
    for i in 0..4 {
        let before = Packet::new(UDP, (v4(CLIENT.0), CLIENT.1), (v4(VIP), 53), payload(i));
        d.observe(1, &before.verdict(0)); // status none: legal over IPv4
        let field = nat_update(0, &octets(v4(VIP)), &octets(v4(POD)));
        fields.insert(field);
        d.observe(2, &before.with_dst((v4(POD), 53)).verdict(field));
    }
    assert_eq!(fields.len(), 1);
    let field = fields.into_iter().next().unwrap();
    let f = only(&d);
    let found = finding(&f);
    let r = found.rewrite.as_ref().unwrap();
    assert_eq!(f.diagnosis.name(), "absent-checksum-updated");
    assert_eq!(found.constant, field);
    // The field is the change undone: sum(VIP) - sum(POD).
    assert!(ones_eq(
        field,
        ones_sub(addr_sum(v4(VIP)), addr_sum(v4(POD)))
    ));
    assert_eq!(
        (r.field, r.original.as_str()),
        (RewrittenField::DstAddr, VIP)
    );
    assert_eq!(f.delta, None);
}

/// Diagnoses `n` packets of one client -> server flow (differing payloads) whose field is
/// `fault(packet)`.
fn faulty_flow(protocol: u8, n: usize, fault: impl Fn(&Packet) -> u16) -> FlowDiagnosis {
    let mut d = Diagnoser::default();
    for i in 0..n {
        let p = Packet::new(
            protocol,
            (v4(CLIENT.0), CLIENT.1),
            (v4(POD), 80),
            payload(i),
        );
        d.observe(1, &p.verdict(fault(&p)));
    }
    only(&d)
}

#[test]
fn per_packet_kinds() {
    let swapped = faulty_flow(TCP, 4, |p| p.checksum().swap_bytes());
    assert_eq!(swapped.diagnosis, Diagnosis::ByteSwapped);
    assert_eq!(swapped.diagnosis.name(), "byte-swapped");
    assert_eq!(swapped.delta, None);
    assert_eq!(faulty_flow(TCP, 4, |_| 0).diagnosis, Diagnosis::Zero);
    assert_eq!(
        faulty_flow(TCP, 4, Packet::pseudo).diagnosis,
        Diagnosis::OffloadPending
    );
    // Same-size UDP datagrams: the partial field is constant too, and must not pass for an
    // updated absent checksum.
    let mut d = Diagnoser::default();
    for i in 0..4u8 {
        let p = Packet::new(UDP, (v4(CLIENT.0), CLIENT.1), (v4(POD), 53), vec![i; 32]);
        d.observe(1, &p.verdict(p.pseudo()));
    }
    assert_eq!(only(&d).diagnosis, Diagnosis::OffloadPending);
}

#[test]
fn random_corruption_is_corrupt() {
    // Bytes flipped after the checksum was computed (xorshift, so the test is repeatable).
    let mut state = 0x2545_f491u32;
    let mut d = Diagnoser::default();
    for i in 0..6 {
        let sent = Packet::new(TCP, (v4(CLIENT.0), CLIENT.1), (v4(POD), 80), payload(i));
        let field = sent.checksum();
        let mut received = sent.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let at = state as usize % received.payload.len();
            received.payload[at] ^= (state >> 8) as u8 | 1;
        }
        d.observe(1, &received.verdict(field));
    }
    let f = only(&d);
    assert_eq!((f.diagnosis.name(), f.count), ("corrupt", 6));
    assert!(f.diagnosis.likely_original().is_none());
}

#[test]
fn two_packets_are_not_enough_for_stale() {
    let mut d = Diagnoser::default();
    stale_dnat(&mut d, UDP, (v4(VIP), 53), (v4(POD), 53), 2);
    assert_eq!(only(&d).diagnosis, Diagnosis::Corrupt);
}

#[test]
fn identical_payloads_are_not_evidence_for_stale() {
    let mut d = Diagnoser::default();
    for _ in 0..5 {
        let before = Packet::new(UDP, (v4(CLIENT.0), CLIENT.1), (v4(VIP), 53), payload(1));
        d.observe(1, &before.verdict(before.checksum()));
        d.observe(
            2,
            &before.with_dst((v4(POD), 53)).verdict(before.checksum()),
        );
    }
    let f = only(&d);
    assert_eq!(f.count, 5);
    assert_ne!(f.diagnosis.name(), "stale-after-rewrite");
}

#[test]
fn stale_without_a_candidate_in_the_run() {
    // Only the rewritten packets are seen: the VIP never appears.
    let mut d = Diagnoser::default();
    for i in 0..3 {
        let before = Packet::new(UDP, (v4(CLIENT.0), CLIENT.1), (v4(VIP), 53), payload(i));
        d.observe(
            2,
            &before.with_dst((v4(POD), 53)).verdict(before.checksum()),
        );
    }
    let f = only(&d);
    let found = finding(&f);
    assert_eq!(found.signature, Signature::StaleAfterRewrite);
    assert!(found.rewrite.is_none() && found.consistent_with.is_none());
    assert!(ones_eq(
        found.constant,
        ones_sub(addr_sum(v4(POD)), addr_sum(v4(VIP)))
    ));
    assert!(f.diagnosis.explanation().contains("no address or port"));
}

#[test]
fn pre_rewrite_flow_outranks_a_value_with_the_same_sum() {
    // 10.106.0.0 has the VIP's sum (0x0a6a) and is seen first, in an unrelated flow.
    assert_eq!(addr_sum(v4("10.106.0.0")), addr_sum(v4(VIP)));
    let mut d = Diagnoser::default();
    let decoy = Packet::new(
        UDP,
        (v4("10.0.0.9"), 1000),
        (v4("10.106.0.0"), 53),
        payload(0),
    );
    d.observe(3, &decoy.verdict(decoy.checksum()));
    stale_dnat(&mut d, UDP, (v4(VIP), 53), (v4(POD), 53), 3);
    let r = only(&d).diagnosis.likely_original().cloned().unwrap();
    // The decoy is only a run-wide value: weaker evidence, so no alternative of the same rank.
    assert_eq!((r.original.as_str(), r.alternatives), (VIP, 0));
    assert_eq!(r.evidence, Evidence::Seen);
}

#[test]
fn mixed_kinds_take_the_most_frequent_then_the_most_specific() {
    let p = Packet::new(TCP, (v4(CLIENT.0), CLIENT.1), (v4(POD), 80), payload(0));
    let q = Packet::new(TCP, (v4(CLIENT.0), CLIENT.1), (v4(POD), 80), payload(1));
    let mut d = Diagnoser::default();
    d.observe(1, &p.verdict(0));
    d.observe(1, &q.verdict(q.checksum().swap_bytes()));
    // One each: zero is tested before byte-swapped by classify, so it wins the tie.
    assert_eq!(only(&d).diagnosis, Diagnosis::Zero);
    d.observe(1, &p.verdict(p.checksum().swap_bytes()));
    assert_eq!(only(&d).diagnosis, Diagnosis::ByteSwapped);
}

#[test]
fn a_real_mismatch_is_not_hidden_behind_partial_checksums() {
    let p = Packet::new(TCP, (v4(CLIENT.0), CLIENT.1), (v4(POD), 80), payload(0));
    let mut d = Diagnoser::default();
    for _ in 0..5 {
        d.observe(1, &p.verdict(p.pseudo()));
    }
    assert_eq!(only(&d).diagnosis, Diagnosis::OffloadPending);
    d.observe(1, &p.verdict(p.checksum() ^ 0x0101));
    assert_eq!(only(&d).diagnosis, Diagnosis::Corrupt);
}

/// The Windows/OVS Service case (openvswitch/ovs-issues#231): a pod calls VIP:80; the
/// virtual switch DNATs it to the endpoint 10.244.1.7:8080, updating the partial checksum as
/// if it were complete, and the NIC completes it. The receiving node sees complete checksums
/// off by 2·Δaddr + Δport.
fn ovs_service_case(d: &mut Diagnoser, n: usize) {
    let pod = (v4("10.244.2.5"), 41895u16);
    let (vip, endpoint) = ((v4(VIP), 80u16), (v4(POD), 8080u16));
    for i in 0..n {
        let sent = Packet::new(TCP, pod, vip, payload(i));
        let old = [octets(vip.0), vip.1.to_be_bytes().to_vec()].concat();
        let new = [octets(endpoint.0), endpoint.1.to_be_bytes().to_vec()].concat();
        let updated = nat_update(sent.pseudo(), &old, &new);
        let received = sent.with_dst(endpoint);
        // The NIC sums the segment onto the partial field it holds.
        let completed = !ref_sum(&received.segment(updated));
        d.observe(2, &received.verdict(completed));
    }
}

/// `kubectl get svc -A -o json` of one Service, VIP:80 -> `target_port`.
fn web_service(target_port: u16) -> Candidates {
    Candidates::parse(&format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [{{"kind": "Service",
          "metadata": {{"namespace": "default", "name": "web"}},
          "spec": {{"clusterIP": "{VIP}", "clusterIPs": ["{VIP}"], "type": "ClusterIP",
            "ports": [{{"port": 80, "protocol": "TCP", "targetPort": {target_port}}}]}}}}]}}"#
    ))
    .unwrap()
}

#[test]
fn partial_updated_as_complete_then_completed_is_named_with_a_candidate() {
    let mut d = Diagnoser::default();
    d.add_candidates(&web_service(8080));
    ovs_service_case(&mut d, 4);
    let f = only(&d);
    let found = finding(&f);
    assert_eq!(
        f.diagnosis.name(),
        "partial-updated-as-complete-then-completed"
    );
    let r = found.rewrite.as_ref().unwrap();
    assert_eq!(r.field, RewrittenField::DstAddrPort);
    assert_eq!(
        (r.original.as_str(), r.current.as_str()),
        ("10.96.0.10:80", "10.244.1.7:8080")
    );
    assert_eq!(r.evidence.service(), Some("default/web"));
    assert_eq!(r.service.as_deref(), Some("default/web"));
    assert!(f.diagnosis.explanation().contains("counts twice"), "{f:#?}");
    assert!(
        f.diagnosis
            .next_step()
            .contains("disable TX checksum offload")
    );
    // got - want = 2 (cur_addr - orig_addr) + (cur_port - orig_port).
    let once = ones_sub(addr_sum(v4(POD)), addr_sum(v4(VIP)));
    let want = ones_add(ones_add(once, once), ones_sub(8080, 80));
    assert!(ones_eq(found.constant, want));
}

#[test]
fn partial_updated_as_complete_then_completed_is_named_when_the_original_is_seen() {
    let mut d = Diagnoser::default();
    let pod = (v4("10.244.2.5"), 41895u16);
    let before = Packet::new(TCP, pod, (v4(VIP), 80), payload(0));
    d.observe(1, &before.verdict(before.pseudo())); // at the pod's own port: partial
    ovs_service_case(&mut d, 4);
    let f = at_source(&d, 2);
    assert_eq!(
        f.diagnosis.name(),
        "partial-updated-as-complete-then-completed"
    );
    assert_eq!(
        f.diagnosis.likely_original().unwrap().evidence,
        Evidence::Seen
    );
}

/// The OVS Service case with its original seen at the pod's own port, and `candidates` known:
/// the rewrite named at the receiving hop.
fn seen_service_case(candidates: Option<&Candidates>) -> Rewrite {
    let mut d = Diagnoser::default();
    if let Some(c) = candidates {
        d.add_candidates(c);
    }
    let pod = (v4("10.244.2.5"), 41895u16);
    let before = Packet::new(TCP, pod, (v4(VIP), 80), payload(0));
    d.observe(1, &before.verdict(before.pseudo()));
    ovs_service_case(&mut d, 4);
    at_source(&d, 2)
        .diagnosis
        .likely_original()
        .unwrap()
        .clone()
}

/// Seen hop by hop and a Service's address too: the stronger evidence (seen) names the rewrite,
/// and the Service is still named (the cluster test's case: the agent audits the client's veth).
#[test]
fn a_rewrite_seen_from_a_service_address_names_the_service() {
    let r = seen_service_case(Some(&web_service(8080)));
    assert_eq!(r.evidence, Evidence::Seen);
    assert_eq!(r.service.as_deref(), Some("default/web"));
}

/// Seen, with no Service at that address: no Service is named.
#[test]
fn a_rewrite_seen_from_no_service_names_none() {
    let r = seen_service_case(None);
    assert_eq!(r.evidence, Evidence::Seen);
    assert_eq!(r.service, None);
}

#[test]
fn a_candidate_that_leads_to_another_port_is_no_evidence() {
    let mut d = Diagnoser::default();
    d.add_candidates(&web_service(9090));
    ovs_service_case(&mut d, 4);
    let f = only(&d);
    assert!(f.diagnosis.likely_original().is_none(), "{f:#?}");
    // The constant stands on its own: a stale-shaped flow, nothing named.
    assert_eq!(f.diagnosis.name(), "stale-after-rewrite");
}

/// An address whose sum is `sum`: 0x0a00 + (sum - 0x0a00) in its two words.
fn address_with_sum(sum: u16) -> IpAddr {
    let low = ones_sub(sum, 0x0a00);
    let [a, b] = low.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
}

#[test]
fn a_run_wide_match_among_many_values_is_not_conclusive() {
    let mut d = Diagnoser::default();
    // 2,000 addresses seen in the run, in flows unrelated to the broken one.
    for i in 0..2000u16 {
        let other = Packet::new(
            UDP,
            (v4("192.168.0.1"), 1000),
            (address_with_sum(i.wrapping_mul(31)), 53),
            payload(1),
        );
        d.observe(3, &other.verdict(other.checksum()));
    }
    // The VIP is also among the values, but the pre-DNAT flow was never seen.
    vip_elsewhere_then_stale_dnat(&mut d);
    let f = at_source(&d, 2);
    let found = finding(&f);
    assert_eq!(found.signature, Signature::StaleAfterRewrite);
    assert!(found.rewrite.is_none(), "{f:#?}");
    let (r, hypotheses) = found.consistent_with.as_ref().unwrap();
    assert!(*hypotheses > 2000, "{hypotheses}");
    assert!(f.diagnosis.explanation().contains("not conclusive"));
    assert!(f.diagnosis.explanation().contains(&r.describe()));
}

#[test]
fn one_mismatching_packet_is_never_a_rewrite() {
    // Even with the pre-rewrite flow seen and a candidate that fits.
    let mut d = Diagnoser::default();
    d.add_candidates(&Candidates::parse(&format!("{VIP} kube-system/kube-dns")).unwrap());
    stale_dnat(&mut d, UDP, (v4(VIP), 53), (v4(POD), 53), 1);
    let f = at_source(&d, 2);
    assert_eq!(f.diagnosis, Diagnosis::Corrupt);
}

#[test]
fn a_zero_field_is_never_explained_away_by_a_match() {
    // Same-length datagrams with a zero field (over IPv6, where zero is wrong): got - pseudo
    // is the same for all of them, and a candidate is planted exactly where the left-alone
    // partial rule would look for the original.
    let src = (v6("fd00::5"), 40000u16);
    let dst = (v6("fd00::10"), 53u16);
    let mut d = Diagnoser::default();
    let first = Packet::new(UDP, src, dst, vec![1; 32]);
    let excess = ones_sub(0, first.pseudo());
    let target = Signature::PartialLeftAlone.original(excess, addr_sum(dst.0));
    let planted = IpAddr::V6(Ipv6Addr::new(
        0xfd00,
        0,
        0,
        0,
        0,
        0,
        0,
        ones_sub(target, 0xfd00),
    ));
    assert!(ones_eq(addr_sum(planted), target));
    d.add_candidates(&Candidates::parse(&planted.to_string()).unwrap());
    for i in 0..4u8 {
        let p = Packet::new(UDP, src, dst, vec![i; 32]);
        d.observe(1, &p.verdict(0));
    }
    assert_eq!(only(&d).diagnosis, Diagnosis::Zero);
}

#[test]
fn memory_is_bounded_and_overflow_counted() {
    let mut d = Diagnoser::with_limit(2);
    for port in 0..5 {
        let p = Packet::new(TCP, (v4(CLIENT.0), port), (v4(POD), 80), payload(0));
        d.observe(1, &p.verdict(0));
    }
    // An existing flow still counts.
    let p = Packet::new(TCP, (v4(CLIENT.0), 0), (v4(POD), 80), payload(1));
    d.observe(1, &p.verdict(0));
    assert_eq!(d.tracked_flows(), 2);
    let u = d.untracked();
    assert_eq!(u.mismatches, 3);
    assert_eq!(u.flows, 3);
    // Two values fit (the first flow's addresses); every later new value is counted.
    assert!(u.values > 0);
    assert_eq!(
        d.diagnose(|_, _| Severity::Problem)
            .iter()
            .map(|f| f.count)
            .sum::<u64>(),
        3
    );
    assert_eq!(d.values.len(), 2);
}
