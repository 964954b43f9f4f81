//! The precision/recall corpus of the diagnosis (issue 12): thousands of random single-packet
//! corruptions over more than a thousand addresses, beside true rewrites of every signature, each
//! with and without its original flow in the capture and with and without a candidates file.
//! Every packet is built on real bytes, the faults applied the way the faulty component would
//! (RFC 1624 word by word, a NIC summing a partial field), with the reference checksum of
//! `frames`, which shares no code with checksum-common.
#![expect(
    clippy::cast_possible_truncation,
    reason = "test frames: lengths, counters and folded sums of small, known sizes"
)]

use std::net::Ipv4Addr;

use super::frames::{TCP, UDP, ethernet, field_offset, pseudo_v4, reference_checksum};

/// A rewrite signature as the diagnosis names it.
pub const SIGNATURES: [&str; 5] = [
    "stale-after-rewrite",
    "partial-left-alone",
    "partial-updated-as-complete",
    "partial-updated-as-complete-then-completed",
    "absent-checksum-updated",
];

/// What a generated flow truly is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    /// Random damage: `kind` is the per-packet kind it must keep (corrupt, byte-swapped, zero).
    Random { kind: &'static str, packets: usize },
    /// A rewrite of `signature` from `original` to `current` (as the diagnosis prints them).
    Rewrite {
        signature: &'static str,
        original: String,
        current: String,
        /// The flow before the rewrite is in the capture.
        seen: bool,
        /// The original is in the candidates file.
        candidate: bool,
    },
}

/// One generated flow, as the receiver sees it.
#[derive(Debug, Clone)]
pub struct CorpusFlow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub truth: Truth,
}

#[derive(Debug, Default)]
pub struct Corpus {
    /// Ethernet frames, in capture order.
    pub frames: Vec<Vec<u8>>,
    pub flows: Vec<CorpusFlow>,
    /// `--nat-candidates`, as `kubectl get svc -A -o json` prints it: a Service for the original
    /// of each candidate flow, and decoys.
    pub candidates: String,
    /// Mismatching packets of the random flows.
    pub random_corruptions: usize,
    /// Distinct addresses in the capture.
    pub addresses: usize,
}

/// xorshift32: repeatable without a dependency.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }
}

/// A TCP or UDP packet before any fault, its checksum field zero.
#[derive(Debug, Clone)]
struct Packet {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    protocol: u8,
    id: u16,
    payload: Vec<u8>,
}

impl Packet {
    fn segment(&self, field: u16) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(self.sport.to_be_bytes());
        s.extend(self.dport.to_be_bytes());
        if self.protocol == TCP {
            s.extend((u32::from(self.id) * 1000).to_be_bytes()); // seq
            s.extend(0u32.to_be_bytes());
            s.extend([0x50, 0x18]);
            s.extend(512u16.to_be_bytes());
            s.extend(field.to_be_bytes());
            s.extend([0, 0]);
        } else {
            s.extend(((8 + self.payload.len()) as u16).to_be_bytes());
            s.extend(field.to_be_bytes());
        }
        s.extend(&self.payload);
        s
    }

    fn pseudo(&self) -> Vec<u8> {
        pseudo_v4(self.src, self.dst, self.protocol, self.segment(0).len())
    }

    /// The folded pseudo-header sum: what a partial field holds.
    fn partial(&self) -> u16 {
        !reference_checksum(&[&self.pseudo()])
    }

    fn checksum(&self) -> u16 {
        match reference_checksum(&[&self.pseudo(), &self.segment(0)]) {
            0 if self.protocol == UDP => 0xffff,
            c => c,
        }
    }

    /// The words a NAT rewriting the destination (address, and port if `port`) replaces.
    fn dst_words(&self, port: bool) -> Vec<u8> {
        let mut w = self.dst.to_vec();
        if port {
            w.extend(self.dport.to_be_bytes());
        }
        w
    }

    fn frame(&self, field: u16) -> Vec<u8> {
        let seg = self.segment(field);
        let mut ip = vec![0x45, 0];
        ip.extend(((20 + seg.len()) as u16).to_be_bytes());
        ip.extend(self.id.to_be_bytes());
        ip.extend([0x40, 0, 64, self.protocol, 0, 0]);
        ip.extend(self.src);
        ip.extend(self.dst);
        let c = reference_checksum(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = ethernet(&[], 0x0800);
        f.extend(ip);
        f.extend(seg);
        f
    }
}

/// RFC 1624 eqn. 3, word by word, as a NAT updates a checksum it believes complete.
fn rfc1624(mut hc: u16, old: &[u8], new: &[u8]) -> u16 {
    for (m, m2) in old.chunks(2).zip(new.chunks(2)) {
        let m = u16::from_be_bytes([m[0], m[1]]);
        let m2 = u16::from_be_bytes([m2[0], m2[1]]);
        // reference_checksum complements its folded sum: ~(~hc + ~m + m').
        hc = reference_checksum(&[&(!hc).to_be_bytes(), &(!m).to_be_bytes(), &m2.to_be_bytes()]);
    }
    hc
}

fn addr(n: usize, net: u8) -> [u8; 4] {
    [10, net, (n >> 8) as u8, n as u8]
}

/// Builds the corpus. `true_per_variant` flows of each signature for each of the four evidence
/// variants (seen or not, candidate or not).
pub fn build(random_flows: usize, true_per_variant: usize) -> Corpus {
    let mut b = Builder {
        rng: Rng(0x2545_f491),
        c: Corpus::default(),
        addresses: std::collections::HashSet::new(),
        next_port: 20000,
        services: Vec::new(),
    };
    b.random(random_flows);
    b.rewrites(true_per_variant);
    b.finish()
}

struct Builder {
    rng: Rng,
    c: Corpus,
    addresses: std::collections::HashSet<[u8; 4]>,
    next_port: u16,
    /// The candidates file's Services.
    services: Vec<serde_json::Value>,
}

impl Builder {
    /// A source port no other flow uses.
    fn port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }

    fn random(&mut self, random_flows: usize) {
        // Random damage: a quarter of the flows with one bad packet, the rest with three (so at
        // least two corruptions per flow on average), each flow after two good packets.
        let kinds = ["corrupt", "byte-swapped", "zero"];
        for i in 0..random_flows {
            let kind = kinds[i % kinds.len()];
            let protocol = if i % 2 == 0 { TCP } else { UDP };
            let bad = if i % 4 == 0 { 1 } else { 3 };
            let mut p = Packet {
                src: addr(self.rng.below(600), 1),
                dst: addr(self.rng.below(600), 2),
                sport: self.port(),
                dport: [53, 80, 443, 8080][self.rng.below(4)],
                protocol,
                id: 0,
                payload: Vec::new(),
            };
            self.addresses.insert(p.src);
            self.addresses.insert(p.dst);
            // What each bad packet turned out to be: a UDP zero over IPv4 is "no checksum" and a
            // palindrome swaps to itself, so those are corrupted instead.
            let mut made = [0usize; 3];
            for n in 0..bad + 2 {
                p.id = n as u16 + 1;
                p.payload = (0..16 + self.rng.below(200))
                    .map(|_| self.rng.next() as u8)
                    .collect();
                let good = p.checksum();
                let field = if n < 2 {
                    good
                } else {
                    match kind {
                        "byte-swapped" if good.swap_bytes() != good => {
                            made[1] += 1;
                            good.swap_bytes()
                        }
                        "zero" if protocol == TCP => {
                            made[2] += 1;
                            0
                        }
                        _ => {
                            made[0] += 1;
                            // Flip bits in a random payload byte after the checksum was computed.
                            let at = self.rng.below(p.payload.len());
                            p.payload[at] ^= (self.rng.next() as u8) | 1;
                            good
                        }
                    }
                };
                self.c.frames.push(p.frame(field));
            }
            // The kind the flow must keep: the most frequent, ties to the more specific (zero, then
            // byte-swapped), as the diagnosis breaks them.
            let kind = match made {
                [c, s, z] if z >= s && z >= c && z > 0 => "zero",
                [c, s, _] if s >= c => "byte-swapped",
                _ => "corrupt",
            };
            self.c.random_corruptions += bad;
            self.c.flows.push(CorpusFlow {
                src: p.src.into(),
                dst: p.dst.into(),
                sport: p.sport,
                dport: p.dport,
                protocol,
                truth: Truth::Random { kind, packets: bad },
            });
        }
    }

    fn rewrites(&mut self, true_per_variant: usize) {
        // True rewrites: a DNAT of a "Service" 10.96.x.y to an endpoint 10.244.x.y, with and without
        // a port change.
        let mut n = 0usize;
        // Endpoints anywhere in the pod network, as a cluster assigns them; Service VIPs in order.
        let endpoint = |rng: &mut Rng| {
            let e = rng.next();
            [10, 244, (e >> 8) as u8, e as u8 | 1]
        };
        for signature in SIGNATURES {
            for (seen, candidate) in [(true, true), (true, false), (false, true), (false, false)] {
                for k in 0..true_per_variant {
                    n += 1;
                    let protocol = if signature == "absent-checksum-updated" || k % 2 == 1 {
                        UDP
                    } else {
                        TCP
                    };
                    // A partial checksum left alone shows only the address change.
                    let with_port = k % 3 == 0 && signature != "partial-left-alone";
                    let before = Packet {
                        src: addr(self.rng.below(600), 1),
                        dst: [10, 96, (n >> 8) as u8, n as u8],
                        sport: self.port(),
                        dport: 80,
                        protocol,
                        id: 0,
                        payload: Vec::new(),
                    };
                    let mut after = before.clone();
                    after.dst = endpoint(&mut self.rng);
                    if with_port {
                        after.dport = 8080;
                    }
                    self.addresses.extend([before.src, before.dst, after.dst]);
                    for m in 0..4u16 {
                        let mut b = before.clone();
                        let mut a = after.clone();
                        b.id = m + 1;
                        a.id = m + 1;
                        b.payload = (0..20 + self.rng.below(100))
                            .map(|_| self.rng.next() as u8)
                            .collect();
                        a.payload.clone_from(&b.payload);
                        let nat = |field| {
                            rfc1624(field, &b.dst_words(with_port), &a.dst_words(with_port))
                        };
                        let (seen_field, field) = match signature {
                            "stale-after-rewrite" => (b.checksum(), b.checksum()),
                            "partial-left-alone" => (b.partial(), b.partial()),
                            "partial-updated-as-complete" => (b.partial(), nat(b.partial())),
                            "partial-updated-as-complete-then-completed" => {
                                let partial = nat(b.partial());
                                (b.partial(), reference_checksum(&[&a.segment(partial)]))
                            }
                            _ => (0, nat(0)),
                        };
                        if seen {
                            self.c.frames.push(b.frame(seen_field));
                        }
                        self.c.frames.push(a.frame(field));
                    }
                    let show = |p: &Packet| {
                        let a = Ipv4Addr::from(p.dst);
                        if with_port {
                            format!("{a}:{}", p.dport)
                        } else {
                            a.to_string()
                        }
                    };
                    let (original, current) = (show(&before), show(&after));
                    if candidate {
                        self.services.push(service(
                            &format!("svc-{n}"),
                            before.dst,
                            protocol,
                            after.dport,
                        ));
                    }
                    self.c.flows.push(CorpusFlow {
                        src: after.src.into(),
                        dst: after.dst.into(),
                        sport: after.sport,
                        dport: after.dport,
                        protocol,
                        truth: Truth::Rewrite {
                            signature,
                            original,
                            current,
                            seen,
                            candidate,
                        },
                    });
                }
            }
        }
    }

    fn finish(mut self) -> Corpus {
        // Decoy Services nobody called, the next VIPs in order.
        for d in 0..50u8 {
            self.services
                .push(service(&format!("decoy-{d}"), [10, 96, 1, d], TCP, 8080));
        }
        self.c.candidates = serde_json::to_string_pretty(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": { "resourceVersion": "" },
            "items": self.services,
        }))
        .expect("JSON");
        self.c.addresses = self.addresses.len();
        self.c
    }
}

/// A Service `corpus/name` at `vip`, port 80 forwarding to `target_port`.
fn service(name: &str, vip: [u8; 4], protocol: u8, target_port: u16) -> serde_json::Value {
    let vip = Ipv4Addr::from(vip).to_string();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": "corpus" },
        "spec": {
            "clusterIP": vip,
            "clusterIPs": [vip],
            "type": "ClusterIP",
            "ports": [{
                "name": "http",
                "port": 80,
                "protocol": if protocol == TCP { "TCP" } else { "UDP" },
                "targetPort": target_port,
            }],
        },
        "status": { "loadBalancer": {} },
    })
}

/// The field offset inside a frame of `protocol` built here.
pub fn field_pos(protocol: u8) -> usize {
    14 + 20 + field_offset(protocol)
}
