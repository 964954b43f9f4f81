//! The skb's own checksum state, read by the TC programs (checksum-ebpf/src/skb.rs) at offsets
//! resolved from the running kernel's BTF, checked on real traffic: TCP and UDP from namespace a
//! to a listener in namespace b over a veth pair, audited at veth-a's TC egress (and, for the
//! record, veth-b's ingress) by the library, loaded with `report_all` so that every verdict comes
//! back as an event.
//!
//! How `csum_start` is compared: the kernel counts it from `skb->head`, and the program's frame
//! starts at `skb->data` (the Ethernet header at TC). `network_header` also counts from
//! `skb->head`, so `csum_start - network_header` is the offset of the checksummed bytes from the
//! IP header, whatever the headroom: for the packet's own TCP/UDP segment it is the IP header's
//! length (20 for IPv4 without options, 40 for IPv6 without extension headers), and
//! `csum_offset` is the field's offset in the segment (16 for TCP, 6 for UDP).

mod common;

use std::{
    io::{Read, Write},
    net::{IpAddr, TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use checksum_common::{Hook, Kind, Layer, Status, event::IpSummed};
use checksum_testkit::netns::{
    ADDR_A, ADDR_B, ADDR6_A, ADDR6_B, NetNs, VETH_A, VETH_B, VethPair, sh,
};
use checksum_user::{
    kernel::attach::{Attachment, SharedKernel, XdpAttachMode, attach},
    kernel::loader::{LoadOptions, Loaded},
    model::Verdict,
    net::iface::IfaceClass,
};
use common::require_root;

const PORT: u16 = 7781;
/// Small writes with `TCP_NODELAY`: one segment each, never a GSO super-packet (those are counted,
/// not checked).
const TCP_WRITES: usize = 10;
const UDP_DATAGRAMS: usize = 10;

/// The loaded object, its events, and its programs attached (the attachments hold the object and
/// detach when dropped).
struct Auditor {
    events: RingBuf<MapData>,
    attachments: Vec<Attachment>,
}

impl Auditor {
    fn new(pair: &VethPair, partial_ok: bool) -> Self {
        let mut loaded = Loaded::load(&LoadOptions {
            report_all: true,
            partial_ok,
            ..LoadOptions::default()
        })
        .expect("load");
        let events = loaded.take_events().expect("events");
        let kernel: SharedKernel = std::sync::Arc::new(std::sync::Mutex::new(loaded));
        let mut attachments = Vec::new();
        for (ns, iface, hook) in [
            (&pair.a, VETH_A, Hook::TcEgress),
            (&pair.b, VETH_B, Hook::TcIngress),
        ] {
            let (k, ifindex) = (kernel.clone(), ns.ifindex(iface));
            attachments.push(ns.run(move || {
                // A veth pair, without --show-offload: offload-pending mismatches are only counted.
                let veth = (IfaceClass::Virtual("veth".into()), false);
                attach(&k, iface, (0, ifindex), hook, XdpAttachMode::Auto, veth).expect("attach")
            }));
        }
        Self {
            events,
            attachments,
        }
    }

    /// Every verdict reported so far.
    fn drain(&mut self) -> Vec<Verdict> {
        let mut out = Vec::new();
        while let Some(record) = self.events.next() {
            out.push(Verdict::decode(&record).expect("decode"));
        }
        out
    }

    fn counters(&self, i: usize) -> checksum_common::Counters {
        self.attachments[i].counters()
    }
}

/// TCP over IPv4, UDP over IPv4 and UDP over IPv6 from a to b.
fn traffic(pair: &VethPair) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = pair.b.spawn(move || {
        let listener = TcpListener::bind((ADDR_B, PORT)).expect("bind");
        let udp4 = UdpSocket::bind((ADDR_B, PORT)).expect("udp4 bind");
        let udp6 = UdpSocket::bind((ADDR6_B, PORT)).expect("udp6 bind");
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; TCP_WRITES * 100];
        conn.read_exact(&mut got).expect("server read");
        let mut n = 0;
        for udp in [udp4, udp6] {
            udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 2048];
            for _ in 0..UDP_DATAGRAMS {
                if udp.recv(&mut buf).is_ok() {
                    n += 1;
                }
            }
        }
        n
    });
    ready_rx.recv().expect("server ready");
    pair.a.run(move || {
        let mut conn = TcpStream::connect((ADDR_B, PORT)).expect("connect");
        conn.set_nodelay(true).unwrap();
        for i in 0..TCP_WRITES {
            conn.write_all(&[u8::try_from(i).unwrap(); 100])
                .expect("client write");
            std::thread::sleep(Duration::from_millis(5));
        }
        let udp4 = UdpSocket::bind((ADDR_A, 0)).expect("udp4");
        let udp6 = UdpSocket::bind((ADDR6_A, 0)).expect("udp6");
        for i in 0..UDP_DATAGRAMS {
            udp4.send_to(&[u8::try_from(i).unwrap(); 100], (ADDR_B, PORT))
                .expect("udp4 send");
            udp6.send_to(&[u8::try_from(i).unwrap(); 100], (ADDR6_B, PORT))
                .expect("udp6 send");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    assert_eq!(
        server.join().expect("server"),
        2 * UDP_DATAGRAMS,
        "datagrams lost"
    );
}

/// The TCP and UDP verdicts of a's packets at `hook`.
fn l4_from_a(verdicts: &[Verdict], hook: Hook) -> Vec<&Verdict> {
    let a4: IpAddr = ADDR_A.parse().unwrap();
    let a6: IpAddr = ADDR6_A.parse().unwrap();
    verdicts
        .iter()
        .filter(|v| {
            v.hook == hook
                && matches!(v.layer, Layer::Tcp | Layer::Udp)
                && (v.flow.src == a4 || v.flow.src == a6)
        })
        .collect()
}

/// A segment without data that the kernel sent from its control socket (`tcp_v4_send_ack`, a
/// reset): checksummed in software, so `CHECKSUM_NONE` with a correct field even with offload on.
/// Whether one shows up depends on timing (seen once, on a loaded machine: a 32-byte ACK).
fn from_control_socket(v: &Verdict) -> bool {
    v.layer == Layer::Tcp
        && v.status == Status::Ok
        && v.l4_len <= 60
        && v.skb.is_some_and(|skb| skb.ip_summed == IpSummed::None)
}

fn summary(verdicts: &[&Verdict]) -> Vec<String> {
    let mut seen: Vec<String> = verdicts
        .iter()
        .map(|v| {
            let skb = v.skb.expect("TC verdicts carry the skb state");
            // The offsets share their bytes with skb->csum: meaningful only when PARTIAL.
            let at = if skb.ip_summed == IpSummed::Partial {
                format!(
                    " start-from-ip {} offset {}",
                    skb.start_from_ip_header(),
                    skb.csum_offset
                )
            } else {
                String::new()
            };
            format!(
                "{} {} {} {}{at} level {} -> {}",
                v.hook.name(),
                v.family(),
                v.layer.name(),
                skb.ip_summed.name(),
                skb.csum_level,
                v.status.name(),
            )
        })
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

fn tx(ns: &NetNs, iface: &str, on: &str) {
    sh(&[
        "ip", "netns", "exec", &ns.name, "ethtool", "-K", iface, "tx", on,
    ]);
}

/// With TX checksum offload on (veth's default) every TCP and UDP packet a sends leaves
/// `CHECKSUM_PARTIAL` at its egress, `csum_start`/`csum_offset` at its own L4 checksum field, and
/// the field holds the pseudo-header sum (offload-pending). With the partial-ok fast path the
/// same packets are `partial-ok`, without a sum. With TX offload off, UDP is checksummed in
/// software before TC (`CHECKSUM_NONE`, a verified field).
#[test]
fn egress_skbs_carry_their_checksum_state() {
    if !require_root(module_path!()) {
        return;
    }
    let pair = VethPair::new("skb");

    // 1. Offload on: PARTIAL at this very field.
    let mut auditor = Auditor::new(&pair, false);
    traffic(&pair);
    let verdicts = auditor.drain();
    let egress = l4_from_a(&verdicts, Hook::TcEgress);
    eprintln!("offload on:\n  {}", summary(&egress).join("\n  "));
    eprintln!(
        "  (peer ingress: {})",
        summary(&l4_from_a(&verdicts, Hook::TcIngress)).join("; ")
    );
    let tcp = egress.iter().filter(|v| v.layer == Layer::Tcp).count();
    let udp4 = egress
        .iter()
        .filter(|v| v.layer == Layer::Udp && v.flow.src.is_ipv4())
        .count();
    let udp6 = egress
        .iter()
        .filter(|v| v.layer == Layer::Udp && v.flow.src.is_ipv6())
        .count();
    assert!(tcp > TCP_WRITES, "{tcp} TCP verdicts at egress");
    assert_eq!((udp4, udp6), (UDP_DATAGRAMS, UDP_DATAGRAMS));
    for v in egress.iter().filter(|v| !from_control_socket(v)) {
        let skb = v.skb.expect("skb state");
        let ip_header = if v.flow.src.is_ipv4() { 20 } else { 40 };
        let field = if v.layer == Layer::Tcp { 16 } else { 6 };
        assert_eq!(skb.ip_summed, IpSummed::Partial, "{v:?}");
        assert_eq!(
            (skb.start_from_ip_header(), skb.csum_offset),
            (ip_header, field),
            "{v:?}"
        );
        // The field holds the pseudo-header sum, as CHECKSUM_PARTIAL promises.
        assert_eq!(
            (v.status, v.kind),
            (Status::Bad, Kind::OffloadPending),
            "{v:?}"
        );
        assert_eq!(v.got, v.pseudo, "{v:?}");
    }
    let before = auditor.counters(0);
    assert_eq!(before.check(Layer::Tcp, Status::PartialOk), 0);
    drop(auditor);

    // 2. The same with the fast path: partial-ok, counted as such, no offload-pending mismatch.
    let mut auditor = Auditor::new(&pair, true);
    traffic(&pair);
    let verdicts = auditor.drain();
    let egress = l4_from_a(&verdicts, Hook::TcEgress);
    eprintln!("partial-ok on:\n  {}", summary(&egress).join("\n  "));
    assert!(egress.len() > TCP_WRITES + 2 * UDP_DATAGRAMS);
    for v in egress.iter().filter(|v| !from_control_socket(v)) {
        assert_eq!(v.status, Status::PartialOk, "{v:?}");
        assert_eq!(v.got, v.pseudo, "{v:?}");
    }
    let c = auditor.counters(0);
    assert!(
        c.check(Layer::Tcp, Status::PartialOk) > TCP_WRITES as u64,
        "{c:?}"
    );
    assert_eq!(
        c.check(Layer::Udp, Status::PartialOk),
        2 * UDP_DATAGRAMS as u64,
        "{c:?}"
    );
    assert_eq!(c.mismatch(Kind::OffloadPending), 0, "{c:?}");
    drop(auditor);

    // 3. Offload off at the sender.
    tx(&pair.a, VETH_A, "off");
    let mut auditor = Auditor::new(&pair, false);
    traffic(&pair);
    let verdicts = auditor.drain();
    let egress = l4_from_a(&verdicts, Hook::TcEgress);
    eprintln!("offload off:\n  {}", summary(&egress).join("\n  "));
    let udp: Vec<_> = egress.iter().filter(|v| v.layer == Layer::Udp).collect();
    assert_eq!(udp.len(), 2 * UDP_DATAGRAMS);
    for v in udp {
        let skb = v.skb.expect("skb state");
        assert_eq!(skb.ip_summed, IpSummed::None, "{v:?}");
        assert_eq!(v.status, Status::Ok, "{v:?}");
    }
    // TCP is CHECKSUM_PARTIAL whatever the device offers (tcp_transmit_skb); without offload the
    // checksum is completed after TC, by validate_xmit_skb. Either way it is one of the two.
    for v in egress.iter().filter(|v| v.layer == Layer::Tcp) {
        let skb = v.skb.expect("skb state");
        assert!(
            matches!(skb.ip_summed, IpSummed::Partial | IpSummed::None),
            "{v:?}"
        );
    }
}
