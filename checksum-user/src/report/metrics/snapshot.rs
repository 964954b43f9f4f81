//! What a scrape reports, taken from the analysis: per source, per kind of event, per diagnosis,
//! per pod, and the run's lifecycle, as plain values the renderer and the probes read.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use checksum_common::{Counters, Kind, event::IpSummed};

use crate::{
    analysis::{Analysis, DropTracing, SourceId, aggregate::Evicted, severity::Severity},
    lifecycle::Lifecycle,
};

/// One interface at one hook.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    pub iface: String,
    pub hook: &'static str,
    pub mode: &'static str,
    pub attached: bool,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    pub iface: String,
    pub hook: &'static str,
    pub kind: &'static str,
    pub severity: &'static str,
    /// The skb's checksum state (`ip_summed`), or "unknown" where there is none (XDP).
    pub state: &'static str,
    /// The tunnel and level (`vxlan-inner`), or "none" (`Tunnel::label`).
    pub encap: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosisCount {
    pub iface: String,
    pub hook: &'static str,
    pub diagnosis: &'static str,
    pub severity: &'static str,
    /// Mismatching packets of flows with this diagnosis.
    pub mismatches: u64,
    pub flows: u64,
}

/// Problem flows received by one pod, by diagnosis (the series with `namespace` and `pod`):
/// bounded by the pods of the node times the diagnoses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDiagnosisCount {
    pub namespace: String,
    pub pod: String,
    pub diagnosis: &'static str,
    pub mismatches: u64,
    pub flows: u64,
}

/// The Kubernetes API side (`--kubeconfig` or agent mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetrics {
    /// Every watch has its first list: part of `/readyz`.
    pub synced: bool,
    /// Per resource: synced, gaps, errors, objects over the bound.
    pub watches: Vec<(&'static str, bool, u64, u64, u64)>,
    pub pods: u64,
    pub services: u64,
    pub events_created: u64,
    pub events_updated: u64,
    pub events_failed: u64,
    pub events_deferred: u64,
}

/// Everything a scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sources: Vec<SourceMetrics>,
    /// Mismatch events received in user space, by kind.
    pub events: Vec<EventCount>,
    /// Mismatches by the diagnosis of their flow.
    pub diagnoses: Vec<DiagnosisCount>,
    /// Flow rows evicted from the full flow table, and their mismatches.
    pub evicted: Evicted,
    /// Attachments made and undone as interfaces and namespaces came and went.
    pub lifecycle: Lifecycle,
    /// The kernel's checksum drops by reason, and those the drop ring had no room for; `None`
    /// when they are not traced.
    pub kernel_drops: Option<(BTreeMap<String, u64>, u64)>,
    /// Broken flows by where their packets were last fine ("none" when no audited hook saw them
    /// before) and first broken, as `iface@hook`: at most one series per pair of sources.
    pub broken_hops: BTreeMap<(String, String), u64>,
    /// Tracked flow halves now, and those expired over the run.
    pub tracking: crate::analysis::Tracking,
    /// Problem flows by receiving pod (with a cluster view).
    pub pods: Vec<PodDiagnosisCount>,
    /// Audited interfaces named by pod: (iface, namespace, pod), for joins on `iface`.
    pub interface_pods: Vec<(String, String, String)>,
    /// With a cluster view: its watches and Events (filled by the live loop).
    pub cluster: Option<ClusterMetrics>,
    /// When the live loop took it; `None` before it was ready (every namespace scanned and
    /// what matched attached), which is what `/readyz` answers.
    pub taken_at: Option<std::time::Instant>,
}

impl Snapshot {
    /// What a scrape reports now: sources still there (a gone interface's series go at once;
    /// `detachments_total` counts it), events received by kind and severity, and mismatches by
    /// diagnosis.
    pub fn of(analysis: &Analysis, lifecycle: &Lifecycle) -> Self {
        let present = |id: SourceId| analysis.status(id).gone.is_none();
        let mut events: BTreeMap<(SourceId, Kind, &'static str, &'static str), (u64, Severity)> =
            BTreeMap::new();
        for (key, entry) in analysis.flows().rows() {
            let state = entry.state.map_or("unknown", IpSummed::name);
            events
                .entry((key.source, key.kind, state, entry.encap))
                .or_insert((0, entry.severity))
                .0 += entry.count;
        }
        // By source and diagnosis: mismatches, flows, and the severity (which both fix).
        let mut diagnoses: BTreeMap<(SourceId, &'static str), (u64, u64, Severity)> =
            BTreeMap::new();
        for d in analysis.diagnoses() {
            let e = diagnoses
                .entry((d.source, d.diagnosis.name()))
                .or_insert((0, 0, d.severity));
            e.0 += d.count;
            e.1 += 1;
        }
        let place = |id: SourceId| {
            let s = analysis.source(id);
            (s.name.clone(), s.hook.name())
        };
        Self {
            sources: analysis
                .sources()
                .filter(|(id, _, _)| present(*id))
                .map(|(_, facts, status)| SourceMetrics {
                    iface: facts.name.clone(),
                    hook: facts.hook.name(),
                    mode: facts.mode,
                    attached: status.attached,
                    counters: status.counters,
                })
                .collect(),
            events: events
                .into_iter()
                .filter(|((source, _, _, _), _)| present(*source))
                .map(|((source, kind, state, encap), (count, severity))| {
                    let (iface, hook) = place(source);
                    EventCount {
                        iface,
                        hook,
                        kind: kind.name(),
                        severity: severity.name(),
                        state,
                        encap,
                        count,
                    }
                })
                .collect(),
            diagnoses: diagnoses
                .into_iter()
                .filter(|((source, _), _)| present(*source))
                .map(|((source, diagnosis), (mismatches, flows, severity))| {
                    let (iface, hook) = place(source);
                    DiagnosisCount {
                        iface,
                        hook,
                        diagnosis,
                        severity: severity.name(),
                        mismatches,
                        flows,
                    }
                })
                .collect(),
            evicted: analysis.flows().evicted,
            lifecycle: *lifecycle,
            kernel_drops: match analysis.drop_tracing() {
                DropTracing::On { lost } => {
                    Some((analysis.kernel_drops().by_reason.clone(), *lost))
                }
                _ => None,
            },
            broken_hops: broken_hops(analysis),
            pods: pod_diagnoses(analysis),
            interface_pods: {
                let mut v: Vec<_> = analysis
                    .endpoint_names()
                    .interfaces()
                    .map(|(iface, pod)| {
                        let (ns, name) = pod.split_once('/').unwrap_or(("", pod));
                        (iface.to_owned(), ns.to_owned(), name.to_owned())
                    })
                    .collect();
                v.sort();
                v
            },
            cluster: None,
            tracking: analysis.tracking(),
            taken_at: Some(std::time::Instant::now()),
        }
    }
}

/// A pod's problem flows of one diagnosis: (layer, flow) -> the most mismatches a hop saw.
type PodFlows = BTreeMap<(&'static str, String), u64>;

/// Problem flows and their mismatching packets by receiving pod and diagnosis. A flow counts
/// once, however many audited hops saw it broken (one broken packet crosses the bridge and the
/// pod's veth), with the most mismatches any of them saw.
fn pod_diagnoses(analysis: &Analysis) -> Vec<PodDiagnosisCount> {
    let names = analysis.endpoint_names();
    if names.is_empty() {
        return Vec::new();
    }
    let mut by: BTreeMap<(String, &'static str), PodFlows> = BTreeMap::new();
    for d in analysis.diagnoses() {
        if d.severity != Severity::Problem {
            continue;
        }
        if let Some(pod) = names.name(d.flow.dst) {
            let flows = by.entry((pod.to_owned(), d.diagnosis.name())).or_default();
            let seen = flows
                .entry((d.layer.name(), d.flow.to_string()))
                .or_default();
            *seen = (*seen).max(d.count);
        }
    }
    by.into_iter()
        .map(|((pod, diagnosis), flows)| {
            let (namespace, pod) = pod.split_once('/').unwrap_or(("", &pod));
            PodDiagnosisCount {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                diagnosis,
                mismatches: flows.values().sum(),
                flows: flows.len() as u64,
            }
        })
        .collect()
}

fn broken_hops(analysis: &Analysis) -> BTreeMap<(String, String), u64> {
    let place = |id: SourceId| {
        let s = analysis.source(id);
        format!("{}@{}", s.name, s.hook.name())
    };
    let mut out = BTreeMap::new();
    for path in analysis.paths() {
        let from = path
            .last_good()
            .map_or_else(|| "none".to_owned(), |h| place(h.source));
        *out.entry((from, place(path.first_bad().source)))
            .or_default() += 1;
    }
    out
}

/// The latest snapshot, written by the live loop and read by the server.
pub type Shared = Arc<Mutex<Snapshot>>;
