//! What the verdicts mean: per-flow aggregation, diagnosis of a flow's mismatches, and severity
//! (where a mismatch is a problem). [`Analysis`] owns all three; live auditing and replay both
//! feed it decoded verdicts and render from it.

pub mod aggregate;
pub mod diagnosis;
pub mod severity;

use checksum_common::{Hook, Kind};

use crate::kernel::event::Verdict;
use aggregate::{Aggregator, Key};
use diagnosis::{Diagnoser, Diagnosis, FlowDiagnosis};
use severity::{IfaceClass, Severity};

/// Index of a source (one interface at one hook, or a replayed capture) in an [`Analysis`].
pub type SourceId = u32;

/// What the analysis must know of a source: how to name it, and where it is, which decides
/// whether a partial checksum there is a problem.
#[derive(Debug, Clone)]
pub struct SourceFacts {
    /// `iface`, `netns/iface`, or what replay calls its capture.
    pub name: String,
    pub hook: Hook,
    pub class: IfaceClass,
}

/// One verdict, taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Judged once, here, from where it was seen.
    pub severity: Severity,
    /// Verdicts of its flow, layer and kind so far, this one included.
    pub seen: u64,
}

/// Decoded verdicts in; flows, diagnoses and severities out.
#[derive(Default)]
pub struct Analysis {
    sources: Vec<SourceFacts>,
    agg: Aggregator,
    diagnoser: Diagnoser,
}

impl Analysis {
    /// Registers a source; ids are handed out in order from 0.
    pub fn add_source(&mut self, facts: SourceFacts) -> SourceId {
        self.sources.push(facts);
        (self.sources.len() - 1) as SourceId
    }

    /// Sources registered so far.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    pub fn source(&self, id: SourceId) -> &SourceFacts {
        &self.sources[id as usize]
    }

    /// Takes a verdict seen at `source` (registered before).
    pub fn observe(&mut self, source: SourceId, v: &Verdict) -> Observed {
        self.agg.add(source, v);
        self.diagnoser.observe(source, v);
        Observed {
            severity: self.severity(source, v.kind),
            seen: self.agg.count(&Key::of(source, v)),
        }
    }

    /// The severity of a mismatch of `kind` at `source`.
    pub fn severity(&self, source: SourceId, kind: Kind) -> Severity {
        let s = self.source(source);
        severity::severity(kind, s.hook, &s.class)
    }

    /// The severity of a flow row.
    pub fn key_severity(&self, key: &Key) -> Severity {
        self.severity(key.source, key.kind)
    }

    /// The severity of a flow's diagnosis.
    pub fn diagnosis_severity(&self, d: &FlowDiagnosis) -> Severity {
        let s = self.source(d.source);
        diagnosis::diagnosis_severity(d, s.hook, &s.class)
    }

    pub fn diagnoses(&self) -> Vec<FlowDiagnosis> {
        self.diagnoser.diagnose()
    }

    /// The diagnosis of the flow `v` belongs to, if it has one yet.
    pub fn diagnosis_of(&self, source: SourceId, v: &Verdict) -> Option<Diagnosis> {
        self.diagnoser.diagnosis_of(source, v)
    }

    /// The flow table.
    pub fn flows(&self) -> &Aggregator {
        &self.agg
    }

    /// A source's name, for renderers that take a naming function.
    pub fn name(&self, source: SourceId) -> String {
        self.source(source).name.clone()
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
        });
        let veth = a.add_source(SourceFacts {
            name: "ns/veth0".into(),
            hook: Hook::TcIngress,
            class: IfaceClass::Virtual("veth".into()),
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
        assert_eq!(a.name(veth), "ns/veth0");
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
                .all(|d| a.diagnosis_severity(d) == Severity::Problem)
        );
    }

    #[test]
    #[should_panic]
    fn an_unregistered_source_is_a_bug_not_a_guess() {
        let (mut a, _, _) = analysis();
        a.observe(9, &verdict(1, Kind::Corrupt, 1));
    }
}
