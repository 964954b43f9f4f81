//! Flow-level diagnosis: from the mismatches of a flow (and what the run and the user supplied
//! as evidence), names the likely cause and what to check next.
//!
//! Per packet, the kernel can only say what the field looks like (`Kind`). Across a flow more is
//! visible: a field rewritten without a correct checksum update leaves every packet off by the
//! same amount however the payload varies, and that amount is a function of the rewritten value
//! before and after (the signatures of `checksum_common::signature`, with their arithmetic).
//!
//! **A rewrite is named only with evidence** (a 16-bit sum matches *something* by chance once
//! there are enough candidates):
//! 1. `seen`: the flow as it was before the rewrite was itself seen in this run;
//! 2. `candidate`: the original is a NAT candidate the user or the cluster supplied
//!    (`--nat-candidates`: Service VIPs, ports, node ports);
//! 3. `run-wide`: the original is a value seen elsewhere in the run, and the expected number of
//!    chance matches over every hypothesis tried for the flow (each remembered value of each
//!    shape, on each side, for each signature the flow's constants allow) is below 1%
//!    (`CHANCE_LIMIT`). Otherwise the match is only reported as "consistent with".
//!
//! And a signature at all needs `MIN_PACKETS` mismatching packets whose payloads differ (so one
//! or two corrupted packets never make a rewrite), and a per-packet kind that is an explanation
//! in itself (zero, byte-swapped) is never replaced by a match.
//!
//! Arithmetic is one's complement on checksum values as events carry them (host-order numbers of
//! the wire value); `!x` is `-x`.

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet, hash_map::Entry},
    net::IpAddr,
};

use checksum_common::{
    Kind, Layer, Status,
    csum::{addr_sum_v4, addr_sum_v6, ones_eq, ones_sub},
    signature::{Observed, Rewritten, Signature},
};

use crate::{
    analysis::{
        aggregate::DEFAULT_MAX_KEYS,
        candidates::{Candidate, CandidateValue, Candidates, Origin, Protocol, TargetPort},
        severity::Severity,
    },
    kernel::event::{Flow, Verdict, hex},
};

/// Mismatching packets with distinct payloads a flow needs before a constant offset counts as a
/// rewrite signature: two packets agree by chance too easily.
pub const MIN_PACKETS: usize = 3;

/// The most chance matches expected over a flow's hypotheses for a run-wide value to be named.
pub const CHANCE_LIMIT: f64 = 0.01;

/// The chance that one wrong value has a given one's-complement sum (0x0000 and 0xffff are one).
const CHANCE_PER_HYPOTHESIS: f64 = 1.0 / 65535.0;

/// Which header field a rewrite changed.
///
/// Declared from the most to the least likely explanation; when several values fit the
/// arithmetic equally well this order picks one. Addresses come first (DNAT of a Service VIP is
/// the common case), ports last: they are a dense space, so a chance fit is likely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RewrittenField {
    DstAddr,
    SrcAddr,
    /// Address and port together (a Service whose port differs from its targetPort, a NodePort).
    DstAddrPort,
    SrcAddrPort,
    DstPort,
    SrcPort,
}

impl RewrittenField {
    pub fn name(self) -> &'static str {
        match self {
            Self::DstAddr => "dst-addr",
            Self::SrcAddr => "src-addr",
            Self::DstAddrPort => "dst-addr-port",
            Self::SrcAddrPort => "src-addr-port",
            Self::DstPort => "dst-port",
            Self::SrcPort => "src-port",
        }
    }

    /// For sentences: "destination address 10.96.0.10 -> 10.244.1.7".
    pub fn label(self) -> &'static str {
        match self {
            Self::DstAddr => "destination address",
            Self::SrcAddr => "source address",
            Self::DstAddrPort => "destination",
            Self::SrcAddrPort => "source",
            Self::DstPort => "destination port",
            Self::SrcPort => "source port",
        }
    }
}

/// What a named rewrite rests on, strongest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// The flow as it was before the rewrite was itself seen in this run.
    Seen,
    /// The original is a NAT candidate the user or the cluster supplied, and chance cannot
    /// account for the match: `hypotheses` candidates were tried for the flow.
    Candidate {
        /// The Service ("namespace/name") or the label of the candidate's line.
        name: Option<String>,
        /// Which field it came from: cluster-ip, external-ip, load-balancer, node-port, file.
        origin: &'static str,
        hypotheses: u64,
    },
    /// The original was seen elsewhere in the run, and chance cannot account for the match:
    /// `hypotheses` values were tried for the flow.
    RunWide { hypotheses: u64 },
}

impl Evidence {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Candidate { .. } => "candidate",
            Self::RunWide { .. } => "run-wide",
        }
    }

    /// For sentences, after "evidence: ".
    pub fn describe(&self) -> String {
        match self {
            Self::Seen => "the flow before the rewrite was seen in this run".into(),
            Self::Candidate {
                name: Some(name),
                origin,
                ..
            } => format!("a NAT candidate, {origin} of {name}"),
            Self::Candidate { origin, .. } => format!("a NAT candidate ({origin})"),
            Self::RunWide { hypotheses } => format!(
                "a value seen elsewhere in this run; {hypotheses} tried, {:.2}% expected by chance",
                expected_chance(*hypotheses) * 100.0
            ),
        }
    }

    /// The Service (or candidate label) the original belongs to.
    pub fn service(&self) -> Option<&str> {
        match self {
            Self::Candidate { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "hypothesis counts are far below 2^52"
)]
fn expected_chance(hypotheses: u64) -> f64 {
    hypotheses as f64 * CHANCE_PER_HYPOTHESIS
}

/// A rewrite that explains a flow's checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub field: RewrittenField,
    /// The value before the rewrite: an address, a port, or address:port.
    pub original: String,
    /// The value now in the packet, in the same form.
    pub current: String,
    pub evidence: Evidence,
    /// How many other values fit the arithmetic with evidence as strong (0: unambiguous).
    pub alternatives: usize,
    /// With `Evidence::Seen`: the hook that saw this very packet before the rewrite, where its
    /// path shows it (`Analysis::diagnoses`).
    pub seen_at: Option<String>,
}

impl Rewrite {
    /// Whether `flow` carries the original value where this rewrite changed it: the flow as it
    /// was before the rewrite.
    pub fn original_in(&self, flow: &Flow) -> bool {
        let (side, what) = match self.field {
            RewrittenField::DstAddr => (Side::Dst, Rewritten::Addr),
            RewrittenField::SrcAddr => (Side::Src, Rewritten::Addr),
            RewrittenField::DstAddrPort => (Side::Dst, Rewritten::AddrPort),
            RewrittenField::SrcAddrPort => (Side::Src, Rewritten::AddrPort),
            RewrittenField::DstPort => (Side::Dst, Rewritten::Port),
            RewrittenField::SrcPort => (Side::Src, Rewritten::Port),
        };
        side.value(flow, what)
            .is_some_and(|v| v.to_string() == self.original)
    }

    /// What the rewrite rests on, for sentences.
    pub fn evidence_text(&self) -> String {
        match (&self.evidence, &self.seen_at) {
            (Evidence::Seen, Some(at)) => {
                format!("the same packet was seen before the rewrite, at {at}")
            }
            (evidence, _) => evidence.describe(),
        }
    }
    /// "destination address 10.96.0.10 -> 10.244.1.7".
    pub fn describe(&self) -> String {
        format!(
            "{} {} -> {}",
            self.field.label(),
            self.original,
            self.current
        )
    }
}

/// A flow's rewrite signature, and the rewrite when evidence names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteFinding {
    pub signature: Signature,
    /// What every mismatch of the flow shows (`Signature::observed`): got - want, got - pseudo,
    /// or the field.
    pub constant: u16,
    pub rewrite: Option<Rewrite>,
    /// Without a named rewrite: a run-wide value that fits, but that chance could explain.
    pub consistent_with: Option<(Rewrite, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// Boxed: the other variants carry nothing, and flows are mostly not rewritten.
    Rewrite(Box<RewriteFinding>),
    OffloadPending,
    ByteSwapped,
    Zero,
    Corrupt,
}

impl Diagnosis {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rewrite(r) => r.signature.name(),
            Self::OffloadPending => "offload-pending",
            Self::ByteSwapped => "byte-swapped",
            Self::Zero => "zero",
            Self::Corrupt => "corrupt",
        }
    }

    /// The rewrite named with evidence.
    pub fn likely_original(&self) -> Option<&Rewrite> {
        match self {
            Self::Rewrite(r) => r.rewrite.as_ref(),
            _ => None,
        }
    }

    /// A rewrite that fits but is not conclusive, with the hypotheses tried.
    pub fn consistent_with(&self) -> Option<&(Rewrite, u64)> {
        match self {
            Self::Rewrite(r) => r.consistent_with.as_ref(),
            _ => None,
        }
    }

    /// One sentence: what the checksums show.
    pub fn explanation(&self) -> String {
        match self {
            Self::Rewrite(r) => r.explanation(),
            Self::OffloadPending => "The field holds only the pseudo-header sum: the checksum was \
                 left to TX offload (CHECKSUM_PARTIAL) and not completed before this point."
                .into(),
            Self::ByteSwapped => {
                "The field is the correct checksum with its two bytes swapped.".into()
            }
            Self::Zero => {
                "The field is zero where a checksum is mandatory (TCP, ICMP, UDP over IPv6).".into()
            }
            Self::Corrupt => "The field fits no known signature: the packet changed after its \
                 checksum was computed, or the checksum was computed wrongly."
                .into(),
        }
    }

    /// One actionable sentence: where to look.
    pub fn next_step(&self) -> String {
        match self {
            Self::Rewrite(r) => r.next_step(),
            Self::OffloadPending => "Normal at egress and on veth/tap; if seen on ingress at a \
                 physical NIC, check TX checksum offload on the sender (ethtool -k, \
                 tx-checksumming) and any userspace dataplane or AF_PACKET path that forwarded the \
                 packet without completing it."
                .into(),
            Self::ByteSwapped => "Look for an endianness bug in whatever writes this checksum (a \
                 missing or extra htons in a userspace stack, NAT, tunnel or packet generator): \
                 audit upstream to find the last writer."
                .into(),
            Self::Zero => {
                "Find who clears the checksum (sender, tunnel or rewriter); for UDP over \
                 IPv6, check tunnel settings that allow zero checksums (RFC 6935, e.g. \
                 udp6zerocsumtx) and whether the receiver accepts them."
                    .into()
            }
            Self::Corrupt => "Compare captures upstream and downstream to find where the bytes \
                 change; check NIC and driver errors (ethtool -S), RX checksum offload (try \
                 ethtool -K <iface> rx off) and veth paths that mark packets as already verified."
                .into(),
        }
    }
}

impl RewriteFinding {
    fn explanation(&self) -> String {
        let c = hex(self.constant);
        let what = match (&self.rewrite, self.signature) {
            (Some(r), Signature::StaleAfterRewrite) => format!(
                "Every mismatch is off by the same {c} while the payload varies: the checksum was \
                 computed before the {} rewrite and never updated.",
                r.describe()
            ),
            (None, Signature::StaleAfterRewrite) => format!(
                "Every mismatch is off by the same {c} while the payload varies: a field covered by \
                 the checksum was rewritten after it was computed (no address or port with \
                 evidence accounts for the difference)."
            ),
            (Some(r), Signature::PartialLeftAlone) => format!(
                "The field holds a partial (pseudo-header only) checksum still computed for the \
                 addresses before the {} rewrite.",
                r.describe()
            ),
            (Some(r), Signature::PartialUpdatedAsComplete) => format!(
                "The field holds a partial (pseudo-header only) checksum that the {} rewrite \
                 updated as if it were a complete checksum.",
                r.describe()
            ),
            (Some(r), Signature::CompletedAfterPartialUpdatedAsComplete) => format!(
                "Every mismatch is off by the same {c} while the payload varies: the {} rewrite \
                 updated a partial (pseudo-header only) checksum as if it were complete, and it \
                 was completed downstream, so the address change counts twice and the port \
                 change once.",
                r.describe()
            ),
            (Some(r), Signature::AbsentChecksumUpdated) => format!(
                "The UDP checksum is the same {c} whatever the payload: the sender sent none \
                 (zero) and the {} rewrite updated the zero as if it were a checksum.",
                r.describe()
            ),
            (None, _) => format!(
                "The UDP checksum is the same {c} whatever the payload: the sender sent none \
                 (zero) and a rewrite on the path updated the zero as if it were a checksum."
            ),
        };
        let evidence = self
            .rewrite
            .as_ref()
            .map(|r| format!(" (evidence: {})", r.evidence_text()));
        let consistent = self.consistent_with.as_ref().map(|(r, hypotheses)| {
            format!(
                " Consistent with a rewrite of the {}; not conclusive: {hypotheses} values were \
                 tried and {:.1} chance matches expected.",
                r.describe(),
                expected_chance(*hypotheses)
            )
        });
        what + &evidence.unwrap_or_default() + &consistent.unwrap_or_default()
    }

    fn next_step(&self) -> String {
        let ovs = |r: &Rewrite| {
            format!(
                "Check the NAT that rewrites the {} (a virtual switch such as Open vSwitch on \
                 Windows, or a userspace dataplane): with checksum offload it must update a \
                 partial checksum as a pseudo-header sum, not as a complete checksum. To confirm, \
                 disable TX checksum offload on the sending node's interface or vNIC and the \
                 errors stop; the fix is a datapath that updates partial checksums as \
                 pseudo-header sums (openvswitch/ovs-issues#231).",
                r.describe()
            )
        };
        match (&self.rewrite, self.signature) {
            (Some(r), Signature::StaleAfterRewrite) => format!(
                "Check the NAT or service rule that rewrites the {}: it does not update the \
                 checksum (look for a tc/XDP program, an IPVS/iptables/nftables or OVS ct(nat) rule, \
                 or a userspace dataplane on the path).",
                r.describe()
            ),
            (None, Signature::StaleAfterRewrite)
                if ones_eq(self.constant, 1) || ones_eq(self.constant, !1) =>
            {
                "Find the incremental checksum update on the path: an offset of exactly 1 is the \
                 signature of two's-complement arithmetic (RFC 1141) where RFC 1624 is needed."
                    .into()
            }
            (None, Signature::StaleAfterRewrite) => "Follow the flow hop by hop (audit every hop \
                 at once), or pass the cluster's Services with --nat-candidates, to find the \
                 rewrite that leaves the checksum unchanged; capture before and after each NAT, \
                 load balancer, tunnel endpoint or tc/XDP program on the path."
                .into(),
            (Some(r), Signature::PartialLeftAlone) => format!(
                "Check the NAT that rewrites the {}: with checksum offload it must update the \
                 pseudo-header sum in the field (it left it alone); to confirm, disable TX \
                 checksum offload on the sending interface.",
                r.describe()
            ),
            (
                Some(r),
                Signature::PartialUpdatedAsComplete
                | Signature::CompletedAfterPartialUpdatedAsComplete,
            ) => ovs(r),
            (Some(r), Signature::AbsentChecksumUpdated) => format!(
                "Fix the NAT that rewrites the {} to leave a zero UDP checksum alone (RFC 768), or \
                 make the sender compute UDP checksums (e.g. a tunnel's udp-csum option).",
                r.describe()
            ),
            (None, _) => "Find the NAT on the path that updates zero UDP checksums (it must leave \
                 them alone, RFC 768), or make the sender compute UDP checksums (e.g. a tunnel's \
                 udp-csum option)."
                .into(),
        }
    }
}

/// The diagnosis of one flow as seen at one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDiagnosis {
    pub source: u32,
    pub layer: Layer,
    pub flow: Flow,
    pub diagnosis: Diagnosis,
    /// Mismatching packets.
    pub count: u64,
    /// got - want (one's complement) when every mismatch had the same; `None` when it varied.
    pub delta: Option<u16>,
    /// Judged from the diagnosis and where the flow was seen (`Analysis::diagnoses`).
    pub severity: Severity,
}

/// Observations that did not fit under the memory bound (counted, never silently dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Untracked {
    /// Mismatches of flows that could not be tracked.
    pub mismatches: u64,
    /// Addresses, ports and address:port pairs not remembered as candidates.
    pub values: u64,
    /// Flows not remembered as evidence of a pre-rewrite flow.
    pub flows: u64,
}

/// Accumulates mismatches per flow and remembers what the run has seen, then diagnoses each flow.
///
/// Memory is bounded: at most `limit` tracked flows, `limit` remembered values (addresses, ports
/// and address:port pairs) and `limit` remembered flows; the rest is counted in `untracked()`.
#[derive(Debug)]
pub struct Diagnoser {
    limit: usize,
    flows: HashMap<FlowKey, FlowState, foldhash::fast::RandomState>,
    values: HashSet<Value, foldhash::fast::RandomState>,
    /// Remembered values by their contribution, so each rule inverts its arithmetic with one
    /// lookup instead of a scan; and how many values each (shape, family) holds: the hypotheses
    /// one lookup tries.
    by_sum: HashMap<SumKey, Vec<Value>, foldhash::fast::RandomState>,
    per_shape: HashMap<(Shape, bool), u64, foldhash::fast::RandomState>,
    /// NAT candidates (`--nat-candidates`) by their contribution, as indexes into `candidates`.
    supplied: HashMap<SumKey, Vec<(Value, usize)>, foldhash::fast::RandomState>,
    /// How many candidates each (shape, family, from a Service) holds.
    supplied_per_shape: HashMap<(Shape, bool, bool), u64, foldhash::fast::RandomState>,
    candidates: Vec<Candidate>,
    seen_flows: HashSet<Flow, foldhash::fast::RandomState>,
    untracked: Untracked,
}

impl Default for Diagnoser {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_KEYS)
    }
}

impl Diagnoser {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            flows: HashMap::default(),
            values: HashSet::default(),
            by_sum: HashMap::default(),
            per_shape: HashMap::default(),
            supplied: HashMap::default(),
            supplied_per_shape: HashMap::default(),
            candidates: Vec::new(),
            seen_flows: HashSet::default(),
            untracked: Untracked::default(),
        }
    }

    /// Adds NAT candidates (`--nat-candidates`): evidence for a rewrite whose original is one.
    pub fn add_candidates(&mut self, candidates: &Candidates) {
        for c in candidates.iter() {
            let value = match c.value {
                CandidateValue::Addr(a) => Value::Addr(a),
                CandidateValue::Port(p) => Value::Port(p),
                CandidateValue::AddrPort(a, p) => Value::AddrPort(a, p),
            };
            let index = self.candidates.len();
            self.candidates.push(c.clone());
            for &shape in value.shapes() {
                let key = SumKey::new(shape, value.is_v6(), value.sum(shape));
                self.supplied.entry(key).or_default().push((value, index));
                *self
                    .supplied_per_shape
                    .entry((shape, value.is_v6(), c.is_from_a_service()))
                    .or_default() += 1;
            }
        }
    }

    /// Takes any verdict seen at `source`: every one is remembered as a candidate original; a
    /// mismatch also counts towards its flow's diagnosis. Pass all verdicts available (replay
    /// `--all`, or live with every verdict reported): the pre-rewrite flow is usually fine.
    pub fn observe(&mut self, source: u32, v: &Verdict) {
        self.remember(&v.flow);
        if v.status != Status::Bad {
            return;
        }
        let key = FlowKey {
            source,
            layer: v.layer,
            flow: v.flow,
        };
        let tracked = self.flows.len();
        match self.flows.entry(key) {
            Entry::Occupied(e) => e.into_mut().add(v),
            Entry::Vacant(e) if tracked < self.limit => {
                e.insert(FlowState::new(v));
            }
            Entry::Vacant(_) => self.untracked.mismatches += 1,
        }
    }

    /// Every tracked flow's diagnosis, most mismatches first (ties in key order, for stable output).
    /// `severity` judges a diagnosis at its source (the diagnoser knows no sources).
    pub fn diagnose(&self, severity: impl Fn(u32, &Diagnosis) -> Severity) -> Vec<FlowDiagnosis> {
        let mut out: Vec<_> = self
            .flows
            .iter()
            .map(|(k, s)| {
                let diagnosis = self.diagnose_flow(k, s);
                FlowDiagnosis {
                    source: k.source,
                    layer: k.layer,
                    flow: k.flow,
                    severity: severity(k.source, &diagnosis),
                    diagnosis,
                    count: s.count,
                    delta: s.delta.get(),
                }
            })
            .collect();
        out.sort_by_key(|d| (Reverse(d.count), d.source, d.layer, d.flow));
        out
    }

    /// The current diagnosis of the flow `v` belongs to at `source` (after `observe`).
    pub fn diagnosis_of(&self, source: u32, v: &Verdict) -> Option<Diagnosis> {
        let key = FlowKey {
            source,
            layer: v.layer,
            flow: v.flow,
        };
        self.flows.get(&key).map(|s| self.diagnose_flow(&key, s))
    }

    /// The source, layer and flow of every tracked flow, undiagnosed (cheap: no rule is run).
    pub fn tracked_flow_keys(&self) -> impl Iterator<Item = (u32, Layer, &Flow)> {
        self.flows.keys().map(|k| (k.source, k.layer, &k.flow))
    }

    pub fn untracked(&self) -> Untracked {
        self.untracked
    }

    /// Flows with at least one mismatch being tracked.
    pub fn tracked_flows(&self) -> usize {
        self.flows.len()
    }

    fn remember(&mut self, flow: &Flow) {
        if !self.seen_flows.contains(flow) {
            if self.seen_flows.len() < self.limit {
                self.seen_flows.insert(*flow);
            } else {
                self.untracked.flows += 1;
            }
        }
        for side in [Side::Src, Side::Dst] {
            for what in [Rewritten::Addr, Rewritten::Port, Rewritten::AddrPort] {
                if let Some(value) = side.value(flow, what) {
                    self.remember_value(value);
                }
            }
        }
    }

    fn remember_value(&mut self, value: Value) {
        if self.values.contains(&value) {
            return;
        }
        if self.values.len() >= self.limit {
            self.untracked.values += 1;
            return;
        }
        self.values.insert(value);
        for &shape in value.shapes() {
            let key = SumKey::new(shape, value.is_v6(), value.sum(shape));
            self.by_sum.entry(key).or_default().push(value);
            *self.per_shape.entry((shape, value.is_v6())).or_default() += 1;
        }
    }

    /// The rules, in order: a per-packet kind that explains itself stays; a signature needs
    /// `MIN_PACKETS` differing payloads; then every signature the flow's constants allow is tried
    /// and the best-evidenced rewrite named; failing that, the signature the constants show
    /// without a name (stale, absent), else the most frequent per-packet kind.
    fn diagnose_flow(&self, key: &FlowKey, s: &FlowState) -> Diagnosis {
        let kind = s.most_frequent_kind();
        let per_kind = match kind {
            Kind::OffloadPending => Diagnosis::OffloadPending,
            Kind::ByteSwapped => Diagnosis::ByteSwapped,
            Kind::Zero => Diagnosis::Zero,
            Kind::Corrupt | Kind::Match => Diagnosis::Corrupt,
        };
        if matches!(kind, Kind::Zero | Kind::ByteSwapped) || s.wants.len() < MIN_PACKETS {
            return per_kind;
        }
        let (layer, flow) = (key.layer, &key.flow);
        let ported = matches!(layer, Layer::Tcp | Layer::Udp | Layer::Icmpv6);
        let mut tried: Vec<(Signature, u16)> = Vec::new();
        for sig in Signature::ALL {
            let constant = match sig.observed() {
                Observed::Delta => s.delta.get(),
                // A field equal to P is offload-pending, not rewritten.
                Observed::Excess if ported => s.excess.get().filter(|e| !ones_eq(*e, 0)),
                // F = 0 or 0xffff would mean nothing changed; a partial field is no absent one.
                Observed::Field if layer == Layer::Udp => s
                    .field
                    .get()
                    .filter(|f| !ones_eq(*f, 0) && s.kinds[Kind::OffloadPending as usize] == 0),
                Observed::Excess | Observed::Field => None,
            };
            if let Some(c) = constant {
                tried.push((sig, c));
            }
        }
        let mut found = Vec::new();
        let mut hypotheses = Hypotheses::default();
        for &(sig, constant) in &tried {
            found.extend(self.explain(layer, flow, sig, constant, &mut hypotheses));
        }
        for f in &mut found {
            match &mut f.evidence {
                Evidence::RunWide { hypotheses: h } => *h = hypotheses.run_wide,
                Evidence::Candidate { hypotheses: h, .. } => *h = hypotheses.candidates,
                Evidence::Seen => {}
            }
        }
        let (conclusive, chance): (Vec<_>, Vec<_>) =
            found.into_iter().partition(|f| f.evidence.is_significant());
        if let Some((rewrite, sig)) = best(conclusive) {
            let constant = tried.iter().find(|(s, _)| *s == sig).map_or(0, |t| t.1);
            return Diagnosis::Rewrite(Box::new(RewriteFinding {
                signature: sig,
                constant,
                rewrite: Some(rewrite),
                consistent_with: None,
            }));
        }
        // No rewrite named: the signatures that stand on their constants alone.
        let consistent_with = best(chance).map(|(r, _)| {
            let tried = r.evidence.hypotheses();
            (r, tried)
        });
        for &(sig, constant) in &tried {
            if matches!(
                sig,
                Signature::StaleAfterRewrite | Signature::AbsentChecksumUpdated
            ) {
                return Diagnosis::Rewrite(Box::new(RewriteFinding {
                    signature: sig,
                    constant,
                    rewrite: None,
                    consistent_with,
                }));
            }
        }
        per_kind
    }

    /// Values that explain the flow's `constant` under `sig`: for each kind of rewrite the
    /// signature covers, on either side, a value whose contribution is the original one the
    /// arithmetic gives. Counts every remembered value such a lookup could have matched into
    /// `hypotheses`. ICMPv4 covers no address, and ports exist only for TCP and UDP.
    fn explain(
        &self,
        layer: Layer,
        flow: &Flow,
        sig: Signature,
        constant: u16,
        hypotheses: &mut Hypotheses,
    ) -> Vec<Found> {
        let mut found = Vec::new();
        if layer == Layer::Icmp {
            return found;
        }
        for what in [Rewritten::Addr, Rewritten::AddrPort, Rewritten::Port] {
            // A port-only change shows the same under both of these: named once, as stale.
            let duplicate =
                sig == Signature::CompletedAfterPartialUpdatedAsComplete && what == Rewritten::Port;
            if !sig.covers(what) || duplicate {
                continue;
            }
            let shape = Shape::of(sig, what);
            for side in [Side::Src, Side::Dst] {
                let Some(current) = side.value(flow, what) else {
                    continue;
                };
                let want = sig.original(constant, current.sum(shape));
                let key = SumKey::new(shape, current.is_v6(), want);
                let v6 = current.is_v6();
                hypotheses.run_wide += self.per_shape.get(&(shape, v6)).copied().unwrap_or(0);
                // A Service's address is tried only as a destination before a DNAT.
                let services = matches!(side, Side::Dst);
                for from_a_service in [false, true] {
                    if services || !from_a_service {
                        hypotheses.candidates += self
                            .supplied_per_shape
                            .get(&(shape, v6, from_a_service))
                            .copied()
                            .unwrap_or(0);
                    }
                }
                let field = side.field(what);
                let mut push = |original: Value, evidence: Evidence| {
                    if original.changes_every_part_of(current) {
                        found.push(Found {
                            field,
                            original,
                            current,
                            evidence,
                            signature: sig,
                        });
                    }
                };
                for &original in self.by_sum.get(&key).into_iter().flatten() {
                    let evidence = if self.seen_flows.contains(&side.with(flow, original)) {
                        Evidence::Seen
                    } else {
                        Evidence::RunWide { hypotheses: 0 }
                    };
                    push(original, evidence);
                }
                for &(original, index) in self.supplied.get(&key).into_iter().flatten() {
                    let c = &self.candidates[index];
                    if c.fits(layer, current) && (services || !c.is_from_a_service()) {
                        push(
                            original,
                            Evidence::Candidate {
                                name: c.name.clone(),
                                origin: c.origin.name(),
                                hypotheses: 0,
                            },
                        );
                    }
                }
            }
        }
        found
    }
}

/// The best explanation, with how many others fit as well: the strongest evidence, then the
/// signature order, the field order of `RewrittenField`, then the value (deterministic). A value
/// found both as seen and as a candidate counts once.
fn best(mut found: Vec<Found>) -> Option<(Rewrite, Signature)> {
    found.sort_by(|a, b| {
        (a.evidence.rank(), a.signature, a.field, a.original).cmp(&(
            b.evidence.rank(),
            b.signature,
            b.field,
            b.original,
        ))
    });
    found.dedup_by_key(|f| (f.signature, f.field, f.original));
    let first = found.first()?;
    let alternatives = found
        .iter()
        .skip(1)
        .filter(|f| f.evidence.rank() == first.evidence.rank())
        .count();
    let rewrite = Rewrite {
        field: first.field,
        original: first.original.to_string(),
        current: first.current.to_string(),
        evidence: first.evidence.clone(),
        alternatives,
        seen_at: None,
    };
    Some((rewrite, first.signature))
}

/// The hypotheses tried for one flow, by the evidence a match would give.
#[derive(Debug, Default)]
struct Hypotheses {
    run_wide: u64,
    candidates: u64,
}

impl Evidence {
    /// The values of its kind tried for the flow (none for seen evidence).
    fn hypotheses(&self) -> u64 {
        match self {
            Self::Seen => 0,
            Self::Candidate { hypotheses, .. } | Self::RunWide { hypotheses } => *hypotheses,
        }
    }

    /// Seen evidence stands; a candidate or run-wide match only when the expected number of
    /// chance matches among the values of its kind tried for the flow is below `CHANCE_LIMIT`.
    fn is_significant(&self) -> bool {
        matches!(self, Self::Seen) || expected_chance(self.hypotheses()) < CHANCE_LIMIT
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Seen => 0,
            Self::Candidate { .. } => 1,
            Self::RunWide { .. } => 2,
        }
    }
}

impl Candidate {
    /// A Service's address, port or node port (not a line of a plain file): the original of a
    /// DNAT, so only ever a destination before the rewrite.
    fn is_from_a_service(&self) -> bool {
        !matches!(self.origin, Origin::File)
    }

    /// Whether a rewrite from this candidate can have led to `current` in a flow of `layer`: a
    /// Service port of another protocol, or whose numeric targetPort is not the port the packet
    /// now carries, cannot.
    fn fits(&self, layer: Layer, current: Value) -> bool {
        let protocol_fits = matches!(
            (self.protocol, layer),
            (None, _) | (Some(Protocol::Tcp), Layer::Tcp) | (Some(Protocol::Udp), Layer::Udp)
        );
        let port_fits = match (&self.target_port, current) {
            (Some(TargetPort::Number(t)), Value::AddrPort(_, p) | Value::Port(p)) => *t == p,
            _ => true,
        };
        protocol_fits && port_fits
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FlowKey {
    source: u32,
    layer: Layer,
    flow: Flow,
}

#[derive(Debug, Clone)]
struct FlowState {
    count: u64,
    kinds: [u64; Kind::COUNT],
    /// got - want.
    delta: Constant,
    /// got.
    field: Constant,
    /// got - pseudo.
    excess: Constant,
    /// Up to `MIN_PACKETS` distinct correct checksums: evidence that the payloads differ.
    wants: Vec<u16>,
}

impl FlowState {
    fn new(v: &Verdict) -> Self {
        let mut s = Self {
            count: 0,
            kinds: [0; Kind::COUNT],
            delta: Constant::new(ones_sub(v.got, v.want)),
            field: Constant::new(v.got),
            excess: Constant::new(ones_sub(v.got, v.pseudo)),
            wants: Vec::with_capacity(MIN_PACKETS),
        };
        s.add(v);
        s
    }

    fn add(&mut self, v: &Verdict) {
        self.count += 1;
        self.kinds[v.kind as usize] += 1;
        self.delta.add(ones_sub(v.got, v.want));
        self.field.add(v.got);
        self.excess.add(ones_sub(v.got, v.pseudo));
        if self.wants.len() < MIN_PACKETS && !self.wants.contains(&v.want) {
            self.wants.push(v.want);
        }
    }

    /// The most frequent kind; on a tie the more specific one (`Kind::MISMATCHES` order, the
    /// order `classify` tests them in). Offload-pending only when nothing else was seen: one
    /// corrupt packet among partial ones is the finding, and must not hide behind them.
    fn most_frequent_kind(&self) -> Kind {
        let mut best = Kind::OffloadPending;
        let mut best_count = 0;
        for kind in [Kind::Zero, Kind::ByteSwapped, Kind::Corrupt] {
            if self.kinds[kind as usize] > best_count {
                best = kind;
                best_count = self.kinds[kind as usize];
            }
        }
        best
    }
}

/// A value and whether every later one equalled it.
#[derive(Debug, Clone, Copy)]
struct Constant {
    value: u16,
    constant: bool,
}

impl Constant {
    fn new(value: u16) -> Self {
        Self {
            value,
            constant: true,
        }
    }

    fn add(&mut self, v: u16) {
        self.constant &= ones_eq(self.value, v);
    }

    fn get(self) -> Option<u16> {
        self.constant.then_some(self.value)
    }
}

/// How a rewritten value enters the checksum (`Signature::contribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    Addr,
    /// An address counted twice: a partial checksum updated as if complete (the address is in
    /// both the pseudo-header sum it held and the update).
    AddrTwice,
    Port,
    AddrPort,
    AddrTwicePort,
}

impl Shape {
    fn of(sig: Signature, what: Rewritten) -> Self {
        match (what, sig.counts_the_address_twice()) {
            (Rewritten::Addr, false) => Self::Addr,
            (Rewritten::Addr, true) => Self::AddrTwice,
            (Rewritten::Port, _) => Self::Port,
            (Rewritten::AddrPort, false) => Self::AddrPort,
            (Rewritten::AddrPort, true) => Self::AddrTwicePort,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Value {
    Addr(IpAddr),
    Port(u16),
    AddrPort(IpAddr, u16),
}

impl Value {
    fn is_v6(self) -> bool {
        match self {
            Self::Addr(a) | Self::AddrPort(a, _) => a.is_ipv6(),
            Self::Port(_) => false,
        }
    }

    /// The shapes this value can be rewritten as.
    fn shapes(self) -> &'static [Shape] {
        match self {
            Self::Addr(_) => &[Shape::Addr, Shape::AddrTwice],
            Self::Port(_) => &[Shape::Port],
            Self::AddrPort(..) => &[Shape::AddrPort, Shape::AddrTwicePort],
        }
    }

    /// What the value contributes to a checksum when rewritten as `shape`.
    fn sum(self, shape: Shape) -> u16 {
        let twice = matches!(shape, Shape::AddrTwice | Shape::AddrTwicePort);
        let sig = if twice {
            Signature::CompletedAfterPartialUpdatedAsComplete
        } else {
            Signature::StaleAfterRewrite
        };
        match self {
            Self::Addr(a) => sig.contribution(Some(addr_sum(a)), None),
            Self::Port(p) => sig.contribution(None, Some(p)),
            Self::AddrPort(a, p) => sig.contribution(Some(addr_sum(a)), Some(p)),
        }
    }

    /// An address:port rewrite must change both; one that keeps either is an address or port
    /// rewrite, found (and better named) as such.
    fn changes_every_part_of(self, current: Value) -> bool {
        match (self, current) {
            (Self::AddrPort(a, p), Self::AddrPort(b, q)) => a != b && p != q,
            _ => self != current,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(a) => write!(f, "{a}"),
            Self::Port(p) => write!(f, "{p}"),
            Self::AddrPort(a @ IpAddr::V6(_), p) => write!(f, "[{a}]:{p}"),
            Self::AddrPort(a, p) => write!(f, "{a}:{p}"),
        }
    }
}

fn addr_sum(a: IpAddr) -> u16 {
    match a {
        IpAddr::V4(a) => addr_sum_v4(a.octets()),
        IpAddr::V6(a) => addr_sum_v6(&a.octets()),
    }
}

/// Index key: shape, family, and the contribution modulo 0xffff (both zeros are one key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SumKey(Shape, bool, u16);

impl SumKey {
    fn new(shape: Shape, v6: bool, sum: u16) -> Self {
        Self(shape, v6, sum % 0xffff)
    }
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Src,
    Dst,
}

impl Side {
    /// The flow's value of `what` on this side (`None` for ports of a portless layer).
    fn value(self, flow: &Flow, what: Rewritten) -> Option<Value> {
        let (addr, port) = match self {
            Self::Src => (flow.src, flow.ports.map(|p| p.0)),
            Self::Dst => (flow.dst, flow.ports.map(|p| p.1)),
        };
        match what {
            Rewritten::Addr => Some(Value::Addr(addr)),
            Rewritten::Port => port.map(Value::Port),
            Rewritten::AddrPort => port.map(|p| Value::AddrPort(addr, p)),
        }
    }

    fn field(self, what: Rewritten) -> RewrittenField {
        match (self, what) {
            (Self::Src, Rewritten::Addr) => RewrittenField::SrcAddr,
            (Self::Dst, Rewritten::Addr) => RewrittenField::DstAddr,
            (Self::Src, Rewritten::Port) => RewrittenField::SrcPort,
            (Self::Dst, Rewritten::Port) => RewrittenField::DstPort,
            (Self::Src, Rewritten::AddrPort) => RewrittenField::SrcAddrPort,
            (Self::Dst, Rewritten::AddrPort) => RewrittenField::DstAddrPort,
        }
    }

    /// The flow with this side's address and/or port replaced by `v`: the flow before the rewrite.
    fn with(self, flow: &Flow, v: Value) -> Flow {
        let mut f = *flow;
        let (addr, port) = match self {
            Self::Src => (&mut f.src, f.ports.as_mut().map(|p| &mut p.0)),
            Self::Dst => (&mut f.dst, f.ports.as_mut().map(|p| &mut p.1)),
        };
        match (v, port) {
            (Value::Addr(a), _) => *addr = a,
            (Value::Port(p), Some(port)) => *port = p,
            (Value::AddrPort(a, p), Some(port)) => (*addr, *port) = (a, p),
            _ => {}
        }
        f
    }
}

/// A value that explains a flow's field.
#[derive(Debug, Clone)]
struct Found {
    field: RewrittenField,
    original: Value,
    current: Value,
    evidence: Evidence,
    signature: Signature,
}

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "test packets: lengths and folded sums of small, known sizes"
)]
mod tests {
    //! Every case is built from real packet bytes: checksums come from an independent big-endian
    //! reference below, faults are applied to the bytes as the buggy component would, and the
    //! verdict is what the kernel reports for the packet as it then is.

    use std::net::{Ipv4Addr, Ipv6Addr};

    use checksum_common::{
        Hook,
        csum::{classify, ones_add},
        event::Direction,
    };

    use super::*;

    /// Reference one's-complement sum of `bytes` as big-endian words, folded (not complemented):
    /// the test kit's plain RFC 1071 implementation, which shares no code with checksum-common.
    fn ref_sum(bytes: &[u8]) -> u16 {
        !crate::testkit::frames::reference_checksum(&[bytes])
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
                slot: 0,
                ifindex: 1,
                hook: Hook::TcIngress,
                direction: Direction::Ingress,
                layer,
                status,
                kind,
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
                ip_id: 0,
                tcp_seq: 0,
                tcp_ack: 0,
                flow_label: 0,
                tracked: false,
                skb: None,
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
    fn stale_dnat(
        d: &mut Diagnoser,
        protocol: u8,
        vip: (IpAddr, u16),
        pod: (IpAddr, u16),
        n: usize,
    ) {
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
}
