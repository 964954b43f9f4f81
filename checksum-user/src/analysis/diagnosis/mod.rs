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

mod finding;
mod value;

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet, hash_map::Entry},
};

use checksum_common::{
    Kind, Layer, Status,
    csum::{ones_eq, ones_sub},
    signature::{Observed, Rewritten, Signature},
};

use crate::{
    analysis::{
        aggregate::DEFAULT_MAX_KEYS,
        candidates::{Candidate, CandidateValue, Candidates, Origin, Protocol, TargetPort},
        severity::Severity,
    },
    model::{Flow, Verdict},
};

pub use finding::{CHANCE_LIMIT, Diagnosis, Evidence, Rewrite, RewriteFinding, RewrittenField};
use value::{Found, Shape, Side, SumKey, Value};

/// Mismatching packets with distinct payloads a flow needs before a constant offset counts as a
/// rewrite signature: two packets agree by chance too easily.
pub const MIN_PACKETS: usize = 3;

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

    /// Replaces every NAT candidate with `candidates` (the live cluster view's Services change).
    pub fn set_candidates(&mut self, candidates: &Candidates) {
        self.supplied.clear();
        self.supplied_per_shape.clear();
        self.candidates.clear();
        self.add_candidates(candidates);
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
            Kind::OffloadPending if s.inner => Diagnosis::TunnelOffloadPending,
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
    // The Service of the best value, from its candidate entry, before dedup keeps only the
    // entry with the strongest evidence (which may be `Seen`).
    let service = found.first().and_then(|first| {
        found
            .iter()
            .filter(|f| {
                (f.signature, f.field, f.original) == (first.signature, first.field, first.original)
            })
            .find_map(|f| f.evidence.service().map(str::to_owned))
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
        service,
    };
    Some((rewrite, first.signature))
}

/// The hypotheses tried for one flow, by the evidence a match would give.
#[derive(Debug, Default)]
struct Hypotheses {
    run_wide: u64,
    candidates: u64,
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
    /// The flow's packets are a tunnel's inner packets.
    inner: bool,
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
            inner: v.encap.is_some_and(|t| t.inner),
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

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "test packets: lengths and folded sums of small, known sizes"
)]
mod tests;
