//! What the verdicts mean: per-flow aggregation, diagnosis of a flow's mismatches, and severity
//! (where a mismatch is a problem). [`Analysis`] owns all three; live auditing and replay both
//! feed it decoded verdicts and render from it.

pub mod aggregate;
pub mod candidates;
pub mod diagnosis;
pub mod drops;
pub mod path;
pub mod severity;

use checksum_common::{Counters, Hook, Kind};

use crate::{
    model::{SkbStateUse, Verdict},
    net::{iface::IfaceClass, snmp::CsumErrors},
};
use aggregate::{Aggregator, Entry, Key};
use diagnosis::{Diagnoser, Diagnosis, FlowDiagnosis};
use drops::{DropFlow, DropSeen, FlowDrops, KernelDrops};
use path::{Path, Paths};
use severity::{Basis, Severity};

/// Index of a source (one interface at one hook, or a replayed capture's interface) in an
/// [`Analysis`].
pub type SourceId = u32;

/// The id of the source at `index` of a list kept in registration order.
///
/// # Panics
/// Past 2^32 sources, which months of pod churn at one a second would not reach.
pub fn source_id(index: usize) -> SourceId {
    SourceId::try_from(index).expect("fewer than 2^32 sources")
}

/// What the analysis must know of a source: how to name it, and where it is, which decides
/// whether a partial checksum there is a problem. Fixed when it is registered.
#[derive(Debug, Clone)]
pub struct SourceFacts {
    /// `iface`, `netns/iface`, or a replayed capture's interface.
    pub name: String,
    pub hook: Hook,
    pub class: IfaceClass,
    /// How it is attached ("native", "generic", "tcx", "clsact"), or "test-run" for replay.
    pub mode: &'static str,
    /// Which of the run's audited namespaces it is in (0 for the only one, and for replay).
    pub namespace: usize,
}

/// What changes while a source is audited; its owner (the live registry, replay) brings it up
/// to date before anything is rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// The kernel's counters for it.
    pub counters: Counters,
    pub attached: bool,
    /// Set when its interface or namespace went away: the how-many-th such detach it was.
    pub gone: Option<u64>,
}

#[derive(Debug)]
struct Source {
    facts: SourceFacts,
    status: SourceStatus,
}

/// One verdict, taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Judged once, here, from where it was seen.
    pub severity: Severity,
    /// Verdicts of its flow, layer and kind so far, this one included.
    pub seen: u64,
}

/// A row of the flow table with the source it was seen at.
#[derive(Debug, Clone, Copy)]
pub struct FlowRow<'a> {
    pub key: Key,
    pub entry: Entry,
    pub source: &'a SourceFacts,
}

/// Whether the kernel's checksum drops are traced this run (`kernel::drops`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropTracing {
    /// Not asked for (`--no-kernel-drops`, replay).
    Off,
    /// Asked for, but this kernel cannot: why, in one line.
    Unavailable(String),
    /// Attached; `lost` drops found the ring buffer full (counted by the kernel).
    On { lost: u64 },
}

/// What the kernel's checksum drops say of a diagnosed flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelSays<'a> {
    /// Drops are not traced this run.
    NotTraced,
    /// Traced, and none of this flow's packets was dropped for a checksum in its namespace.
    NoDrop,
    Dropped(&'a FlowDrops),
}

/// The kernel's `InCsumErrors` counters of one audited namespace, over the run so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceCsumErrors {
    /// As the user named it; empty for the current namespace.
    pub namespace: String,
    pub delta: CsumErrors,
}

/// Decoded verdicts and source counters in; flows, diagnoses and severities out. Every renderer
/// (text, JSON, the terminal view, metrics, pcapng comments) reads from here.
pub struct Analysis {
    sources: Vec<Source>,
    agg: Aggregator,
    diagnoser: Diagnoser,
    kernel_drops: KernelDrops,
    drop_tracing: DropTracing,
    in_csum_errors: Vec<NamespaceCsumErrors>,
    skb_state: SkbStateUse,
    paths: Paths,
    tracking: Tracking,
    endpoint_names: EndpointNames,
}

/// `namespace/pod` by pod IP: what a live cluster view says each flow end is. Replaced whole
/// as pods come and go; bounded by the pods of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointNames {
    by_ip: std::collections::HashMap<std::net::IpAddr, String>,
    /// The pod each audited interface (as sources name it) belongs to.
    by_iface: std::collections::HashMap<String, String>,
}

impl EndpointNames {
    pub fn new(by_ip: std::collections::HashMap<std::net::IpAddr, String>) -> Self {
        Self {
            by_ip,
            by_iface: std::collections::HashMap::new(),
        }
    }

    /// With the pods of the audited interfaces (interface name -> `namespace/pod`).
    #[must_use]
    pub fn with_interfaces(mut self, by_iface: std::collections::HashMap<String, String>) -> Self {
        self.by_iface = by_iface;
        self
    }

    /// Every audited interface named by pod: (interface, `namespace/pod`).
    pub fn interfaces(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_iface.iter().map(|(i, p)| (i.as_str(), p.as_str()))
    }

    /// The pod whose network namespace holds the other end of interface `iface`.
    pub fn interface(&self, iface: &str) -> Option<&str> {
        self.by_iface.get(iface).map(String::as_str)
    }

    /// The pod at `ip`, as `namespace/pod`.
    pub fn name(&self, ip: std::net::IpAddr) -> Option<&str> {
        self.by_ip.get(&ip).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

/// The kernel's tracked flows (`checksum_common::track`), as user space last swept them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracking {
    /// Tracked halves now.
    pub live: u64,
    /// Halves removed after they expired, over the run.
    pub expired: u64,
}

impl Default for Analysis {
    fn default() -> Self {
        Self::with_bounds(aggregate::DEFAULT_MAX_KEYS, aggregate::DEFAULT_MAX_KEYS)
    }
}

impl Analysis {
    /// With bounds on the flow table (`max_flows` rows) and the diagnoser (`max_diagnosed` flows,
    /// and as many remembered values); what does not fit is counted, not lost.
    pub fn with_bounds(max_flows: usize, max_diagnosed: usize) -> Self {
        Self {
            sources: Vec::new(),
            agg: Aggregator::with_max_keys(max_flows),
            diagnoser: Diagnoser::with_limit(max_diagnosed),
            kernel_drops: KernelDrops::with_limit(max_flows),
            drop_tracing: DropTracing::Off,
            in_csum_errors: Vec::new(),
            skb_state: SkbStateUse::Off,
            paths: Paths::default(),
            tracking: Tracking::default(),
            endpoint_names: EndpointNames::default(),
        }
    }

    /// Replaces the NAT candidates (a live cluster's Services, with the file's, as they change).
    pub fn set_nat_candidates(&mut self, candidates: &candidates::Candidates) {
        self.diagnoser.set_candidates(candidates);
    }

    /// Who the addresses of flow ends are (pods of a live cluster), for the reports.
    pub fn set_endpoint_names(&mut self, names: EndpointNames) {
        self.endpoint_names = names;
    }

    pub fn endpoint_names(&self) -> &EndpointNames {
        &self.endpoint_names
    }

    /// NAT candidates (`--nat-candidates`): evidence the diagnosis may name a rewrite on.
    pub fn add_nat_candidates(&mut self, candidates: &candidates::Candidates) {
        self.diagnoser.add_candidates(candidates);
    }

    /// Registers a source; ids are handed out in order from 0. It starts attached, with zero
    /// counters.
    pub fn add_source(&mut self, facts: SourceFacts) -> SourceId {
        self.sources.push(Source {
            facts,
            status: SourceStatus {
                attached: true,
                ..SourceStatus::default()
            },
        });
        source_id(self.sources.len() - 1)
    }

    /// Sources registered so far.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    pub fn source(&self, id: SourceId) -> &SourceFacts {
        &self.sources[id as usize].facts
    }

    pub fn status(&self, id: SourceId) -> &SourceStatus {
        &self.sources[id as usize].status
    }

    /// Brings a source's counters and attachment up to date.
    pub fn set_status(&mut self, id: SourceId, status: SourceStatus) {
        self.sources[id as usize].status = status;
    }

    /// Every source, in id order.
    pub fn sources(&self) -> impl Iterator<Item = (SourceId, &SourceFacts, &SourceStatus)> {
        self.sources
            .iter()
            .enumerate()
            .map(|(id, s)| (source_id(id), &s.facts, &s.status))
    }

    /// Takes a verdict seen at `source` (registered before).
    pub fn observe(&mut self, source: SourceId, v: &Verdict) -> Observed {
        let severity = self.severity(source, v.kind);
        self.agg.add(source, v, severity);
        self.diagnoser.observe(source, v);
        self.paths.observe(source, v);
        Observed {
            severity,
            seen: self.agg.count(&Key::of(source, v)),
        }
    }

    /// The severity of a mismatch of `kind` at `source`.
    pub fn severity(&self, source: SourceId, kind: Kind) -> Severity {
        let s = self.source(source);
        severity::severity_on(self.basis(source), kind, s.hook, &s.class)
    }

    /// What decides severity at `source`.
    pub fn basis(&self, source: SourceId) -> Basis {
        Basis::at(self.source(source).hook, self.skb_state == SkbStateUse::On)
    }

    /// Whether the run's TC programs settle partial checksums with the skb's state (live runs
    /// set it once, before any verdict; replay has no skb).
    pub fn set_skb_state(&mut self, state: SkbStateUse) {
        self.skb_state = state;
    }

    pub fn skb_state(&self) -> &SkbStateUse {
        &self.skb_state
    }

    /// Every tracked flow's diagnosis with its severity, most mismatches first. A rewrite seen
    /// before it happened says where, when the packet's path shows it there.
    pub fn diagnoses(&self) -> Vec<FlowDiagnosis> {
        let mut out = self.diagnoser.diagnose(|source, d| match d {
            // A partial checksum is judged by place; every other finding is a problem.
            Diagnosis::OffloadPending | Diagnosis::TunnelOffloadPending => {
                self.severity(source, Kind::OffloadPending)
            }
            _ => Severity::Problem,
        });
        let paths = self.paths.broken();
        if paths.is_empty() {
            return out;
        }
        for d in &mut out {
            let Diagnosis::Rewrite(finding) = &mut d.diagnosis else {
                continue;
            };
            let Some(rewrite) = &mut finding.rewrite else {
                continue;
            };
            let before = paths
                .iter()
                .filter(|p| p.broke_at(d.source, &d.flow))
                .filter_map(path::Path::last_good)
                .find(|good| rewrite.original_in(&good.flow));
            if let (diagnosis::Evidence::Seen, Some(good)) = (&rewrite.evidence, before) {
                let s = self.source(good.source);
                rewrite.seen_at = Some(format!("{} {}", s.name, s.hook.name()));
            }
        }
        out
    }

    /// One path per broken flow: where its packets were last fine and first broken.
    pub fn paths(&self) -> Vec<Path> {
        self.paths.broken()
    }

    /// Packets followed, forgotten (the oldest, past `path::MAX_PACKETS`), and hops not kept.
    pub fn path_stats(&self) -> (usize, u64, u64) {
        (
            self.paths.len(),
            self.paths.forgotten,
            self.paths.hops_dropped,
        )
    }

    /// After a sweep of the kernel's tracked flows: `expired` more were removed, `live` are left.
    pub fn note_tracking(&mut self, expired: u64, live: u64) {
        self.tracking.expired += expired;
        self.tracking.live = live;
    }

    pub fn tracking(&self) -> Tracking {
        self.tracking
    }

    /// The diagnosis of the flow `v` belongs to, if it has one yet.
    pub fn diagnosis_of(&self, source: SourceId, v: &Verdict) -> Option<Diagnosis> {
        self.diagnoser.diagnosis_of(source, v)
    }

    /// The flow table.
    pub fn flows(&self) -> &Aggregator {
        &self.agg
    }

    /// The flow table's rows, problems first, then by count; expected partial checksums only
    /// with `show_offload`.
    pub fn flow_rows(&self, show_offload: bool) -> Vec<FlowRow<'_>> {
        let mut rows: Vec<_> = self
            .agg
            .rows()
            .into_iter()
            .filter(|(k, e)| {
                show_offload || e.severity == Severity::Problem || k.kind != Kind::OffloadPending
            })
            .map(|(key, entry)| FlowRow {
                key,
                entry,
                source: self.source(key.source),
            })
            .collect();
        rows.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.entry.severity),
                std::cmp::Reverse(r.entry.count),
            )
        });
        rows
    }

    /// Takes in one of the kernel's checksum drops; returns how many of its flow (and reason)
    /// were seen so far, this one included.
    pub fn observe_drop(&mut self, d: &DropSeen) -> u64 {
        self.kernel_drops.add(d);
        self.kernel_drops
            .of_drop(d)
            .and_then(|fd| fd.places.iter().find(|((r, _), _)| *r == d.reason))
            .map_or(1, |(_, n)| *n)
    }

    pub fn kernel_drops(&self) -> &KernelDrops {
        &self.kernel_drops
    }

    pub fn drop_tracing(&self) -> &DropTracing {
        &self.drop_tracing
    }

    pub fn set_drop_tracing(&mut self, tracing: DropTracing) {
        self.drop_tracing = tracing;
    }

    /// What the kernel did with diagnosed flow `d`, in the namespace it was diagnosed in.
    pub fn drops_of(&self, d: &FlowDiagnosis) -> KernelSays<'_> {
        if !matches!(self.drop_tracing, DropTracing::On { .. }) {
            return KernelSays::NotTraced;
        }
        match self
            .kernel_drops
            .of(self.source(d.source).namespace, d.layer, &d.flow)
        {
            Some(drops) => KernelSays::Dropped(drops),
            None => KernelSays::NoDrop,
        }
    }

    /// Dropped flows that no diagnosis explains (the audit never saw them bad), most drops first.
    pub fn unexplained_drops(&self) -> Vec<(DropFlow, &FlowDrops)> {
        let diagnosed: std::collections::HashSet<(Option<usize>, DropFlow)> = self
            .diagnoser
            .tracked_flow_keys()
            .map(|(source, layer, flow)| {
                (
                    Some(self.source(source).namespace),
                    DropFlow::of(layer, flow),
                )
            })
            .collect();
        // A drop in a namespace not audited is explained by the flow audited anywhere (`of`).
        let flows: std::collections::HashSet<DropFlow> = diagnosed.iter().map(|k| k.1).collect();
        self.kernel_drops
            .unexplained(|f| diagnosed.contains(f) || (f.0.is_none() && flows.contains(&f.1)))
    }

    pub fn set_in_csum_errors(&mut self, counters: Vec<NamespaceCsumErrors>) {
        self.in_csum_errors = counters;
    }

    pub fn in_csum_errors(&self) -> &[NamespaceCsumErrors] {
        &self.in_csum_errors
    }

    /// Observations the diagnoser had no room for.
    pub fn untracked(&self) -> diagnosis::Untracked {
        self.diagnoser.untracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::aggregate::tests::verdict;

    fn analysis() -> (Analysis, SourceId, SourceId) {
        let mut a = Analysis::default();
        let nic = a.add_source(SourceFacts {
            name: "eth0".into(),
            hook: Hook::TcIngress,
            class: IfaceClass::Physical,
            mode: "tcx",
            namespace: 0,
        });
        let veth = a.add_source(SourceFacts {
            name: "ns/veth0".into(),
            hook: Hook::TcIngress,
            class: IfaceClass::Virtual("veth".into()),
            mode: "tcx",
            namespace: 0,
        });
        (a, nic, veth)
    }

    #[test]
    fn severity_is_judged_from_where_a_verdict_was_seen() {
        let (mut a, nic, veth) = analysis();
        assert_eq!((nic, veth), (0, 1));
        let pending = verdict(1, Kind::OffloadPending, 1);
        assert_eq!(a.observe(nic, &pending).severity, Severity::Problem);
        assert_eq!(a.observe(veth, &pending).severity, Severity::Expected);
        // Real corruption is a problem anywhere.
        let corrupt = verdict(2, Kind::Corrupt, 2);
        assert_eq!(a.observe(veth, &corrupt).severity, Severity::Problem);
        assert_eq!(a.source(veth).name, "ns/veth0");
    }

    #[test]
    fn counts_each_flow_and_kind_per_source() {
        let (mut a, nic, veth) = analysis();
        let v = verdict(7, Kind::Corrupt, 1);
        assert_eq!(a.observe(nic, &v).seen, 1);
        assert_eq!(a.observe(nic, &v).seen, 2);
        // The same flow at another source is another row.
        assert_eq!(a.observe(veth, &v).seen, 1);
        assert_eq!(a.flows().rows().len(), 2);
        assert!(a.diagnosis_of(nic, &v).is_some());
        assert!(
            a.diagnoses()
                .iter()
                .all(|d| d.severity == Severity::Problem)
        );
    }

    #[test]
    #[should_panic(expected = "index out of bounds")]
    fn an_unregistered_source_is_a_bug_not_a_guess() {
        let (mut a, _, _) = analysis();
        a.observe(9, &verdict(1, Kind::Corrupt, 1));
    }
}
