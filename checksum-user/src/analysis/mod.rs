//! What the verdicts mean: per-flow aggregation, diagnosis of a flow's mismatches, and severity
//! (where a mismatch is a problem). [`Analysis`] owns all three; live auditing and replay both
//! feed it decoded verdicts and render from it.

pub mod aggregate;
pub mod diagnosis;
pub mod severity;

use checksum_common::{Counters, Hook, Kind};

use crate::kernel::event::Verdict;
use aggregate::{Aggregator, Entry, Key};
use diagnosis::{Diagnoser, Diagnosis, FlowDiagnosis};
use severity::{IfaceClass, Severity};

/// Index of a source (one interface at one hook, or a replayed capture's interface) in an
/// [`Analysis`].
pub type SourceId = u32;

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

/// Decoded verdicts and source counters in; flows, diagnoses and severities out. Every renderer
/// (text, JSON, the terminal view, metrics, pcapng comments) reads from here.
#[derive(Default)]
pub struct Analysis {
    sources: Vec<Source>,
    agg: Aggregator,
    diagnoser: Diagnoser,
}

impl Analysis {
    /// With bounds on the flow table (`max_flows` rows) and the diagnoser (`max_diagnosed` flows,
    /// and as many remembered values); what does not fit is counted, not lost.
    pub fn with_bounds(max_flows: usize, max_diagnosed: usize) -> Self {
        Self {
            sources: Vec::new(),
            agg: Aggregator::with_max_keys(max_flows),
            diagnoser: Diagnoser::with_limit(max_diagnosed),
        }
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
        (self.sources.len() - 1) as SourceId
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
            .map(|(id, s)| (id as SourceId, &s.facts, &s.status))
    }

    /// Takes a verdict seen at `source` (registered before).
    pub fn observe(&mut self, source: SourceId, v: &Verdict) -> Observed {
        let severity = self.severity(source, v.kind);
        self.agg.add(source, v, severity);
        self.diagnoser.observe(source, v);
        Observed {
            severity,
            seen: self.agg.count(&Key::of(source, v)),
        }
    }

    /// The severity of a mismatch of `kind` at `source`.
    pub fn severity(&self, source: SourceId, kind: Kind) -> Severity {
        let s = self.source(source);
        severity::severity(kind, s.hook, &s.class)
    }

    /// Every tracked flow's diagnosis with its severity, most mismatches first.
    pub fn diagnoses(&self) -> Vec<FlowDiagnosis> {
        self.diagnoser.diagnose(|source, d| match d {
            // A partial checksum is judged by place; every other finding is a problem.
            Diagnosis::OffloadPending => self.severity(source, Kind::OffloadPending),
            _ => Severity::Problem,
        })
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
        });
        let veth = a.add_source(SourceFacts {
            name: "ns/veth0".into(),
            hook: Hook::TcIngress,
            class: IfaceClass::Virtual("veth".into()),
            mode: "tcx",
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
    #[should_panic]
    fn an_unregistered_source_is_a_bug_not_a_guess() {
        let (mut a, _, _) = analysis();
        a.observe(9, &verdict(1, Kind::Corrupt, 1));
    }
}
