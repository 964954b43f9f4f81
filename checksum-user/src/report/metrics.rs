//! `--metrics-addr`: Prometheus metrics over HTTP. The exposition format comes from the
//! `prometheus-client` crate; this module only gathers values and answers `GET /metrics`.
//! Kernel counters are totals already, so each scrape renders a fresh registry from the latest
//! snapshot (refreshed by the live loop every second).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use checksum_common::{Counters, Kind, Layer, Status, event::IpSummed};

use crate::{
    analysis::{Analysis, DropTracing, SourceId, aggregate::Evicted, severity::Severity},
    lifecycle::Lifecycle,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
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

/// A snapshot older than this means the live loop stopped refreshing it: `/healthz` fails.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// `/healthz` and `/readyz` for probes (liveness and readiness of a Kubernetes agent): ready once the
/// programs are attached where the run asked; healthy unless the live loop stopped refreshing
/// the metrics after that. Status line and body.
pub fn probe(path: &str, snapshot: &Snapshot) -> Option<(&'static str, String)> {
    let age = snapshot.taken_at.map(|t| t.elapsed());
    match path {
        "/readyz" => Some(match age {
            Some(_) if snapshot.cluster.as_ref().is_some_and(|c| !c.synced) => (
                "503 Service Unavailable",
                "not ready: programs attached; waiting for the Kubernetes API watches to sync\n"
                    .to_owned(),
            ),
            Some(_) => ("200 OK", "ready\n".to_owned()),
            None => (
                "503 Service Unavailable",
                "not ready: attaching\n".to_owned(),
            ),
        }),
        "/healthz" => Some(match age {
            Some(age) if age > STALE_AFTER => (
                "503 Service Unavailable",
                format!("unhealthy: metrics not refreshed for {}s\n", age.as_secs()),
            ),
            _ => ("200 OK", "ok\n".to_owned()),
        }),
        _ => None,
    }
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

pub type Shared = Arc<Mutex<Snapshot>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    iface: String,
    hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    iface: String,
    hook: String,
    layer: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    iface: String,
    hook: String,
    layer: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    iface: String,
    hook: String,
    kind: String,
    severity: String,
    state: String,
    encap: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiagnosisLabels {
    iface: String,
    hook: String,
    diagnosis: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    namespace: String,
    pod: String,
    diagnosis: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfacePodLabels {
    iface: String,
    namespace: String,
    pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HopLabels {
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachLabels {
    iface: String,
    hook: String,
    mode: String,
}

/// Renders a snapshot in the Prometheus/OpenMetrics text format.
///
/// # Panics
/// If the text encoder fails to write into a `String`, which cannot happen.
#[expect(
    clippy::too_many_lines,
    reason = "one registration after another, each with its help text: splitting would scatter the metric list"
)]
pub fn render(s: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("checksum_audit");
    let per_hook =
        |name: &str, help: &str, registry: &mut Registry, value: &dyn Fn(&Counters) -> u64| {
            let family = Family::<HookLabels, Counter>::default();
            for src in &s.sources {
                let labels = HookLabels {
                    iface: src.iface.clone(),
                    hook: src.hook.into(),
                };
                family.get_or_create(&labels).inc_by(value(&src.counters));
            }
            registry.register(name, help, family);
        };
    per_hook("packets", "Frames audited.", &mut registry, &|c| c.packets);
    per_hook(
        "events_lost",
        "Mismatch events lost because the ring buffer was full.",
        &mut registry,
        &|c| c.events_lost,
    );
    per_hook(
        "events_sampled_out",
        "Mismatch events not sent: their flow and kind had used up --events-per-flow.",
        &mut registry,
        &|c| c.events_sampled_out,
    );
    per_hook(
        "tracked_reports",
        "Good verdicts sent because their flow was tracked (a hook saw it broken).",
        &mut registry,
        &|c| c.tracked_reports,
    );
    per_hook(
        "tracking_full",
        "Broken flows that could not be tracked: the tracked-flow map was full.",
        &mut registry,
        &|c| c.tracking_full,
    );
    per_hook(
        "malformed",
        "Frames with inconsistent lengths (counted, never reported).",
        &mut registry,
        &|c| c.malformed,
    );
    per_hook(
        "not_ip",
        "Frames that are not IPv4 or IPv6.",
        &mut registry,
        &|c| c.not_ip,
    );
    per_hook(
        "encapsulated",
        "Frames that are VXLAN, VXLAN-GPE or Geneve tunnels: their inner packet is audited too.",
        &mut registry,
        &|c| c.encapsulated,
    );
    per_hook(
        "inner_malformed",
        "Tunnelled frames whose inner packet is inconsistent or cut short (counted, never reported).",
        &mut registry,
        &|c| c.inner_malformed,
    );
    per_hook(
        "gso_aggregates",
        "GSO/GRO super-packets (checked per segment elsewhere).",
        &mut registry,
        &|c| c.gso_aggregate,
    );

    let checks = Family::<CheckLabels, Counter>::default();
    let inner_checks = Family::<CheckLabels, Counter>::default();
    let mismatches = Family::<KindLabels, Counter>::default();
    for src in &s.sources {
        for layer in Layer::ALL {
            for status in Status::ALL {
                let labels = CheckLabels {
                    iface: src.iface.clone(),
                    hook: src.hook.into(),
                    layer: layer.name().into(),
                    verdict: status.name().into(),
                };
                inner_checks
                    .get_or_create(&labels)
                    .inc_by(src.counters.inner_check(layer, status));
                checks
                    .get_or_create(&labels)
                    .inc_by(src.counters.check(layer, status));
            }
            for kind in Kind::MISMATCHES {
                let labels = KindLabels {
                    iface: src.iface.clone(),
                    hook: src.hook.into(),
                    layer: layer.name().into(),
                    kind: kind.name().into(),
                };
                mismatches
                    .get_or_create(&labels)
                    .inc_by(src.counters.layer_mismatch(layer, kind));
            }
        }
    }
    registry.register(
        "checks",
        "Checksums checked, by layer and verdict (ok, bad, none, unverifiable).",
        checks,
    );
    registry.register(
        "inner_checks",
        "The checks of tunnels' inner packets among checks, by layer and verdict.",
        inner_checks,
    );
    registry.register(
        "mismatches",
        "Mismatching checksums counted in the kernel, by layer and kind.",
        mismatches,
    );

    let events = Family::<EventLabels, Counter>::default();
    for e in &s.events {
        let labels = EventLabels {
            iface: e.iface.clone(),
            hook: e.hook.into(),
            kind: e.kind.into(),
            severity: e.severity.into(),
            state: e.state.into(),
            encap: e.encap.into(),
        };
        events.get_or_create(&labels).inc_by(e.count);
    }
    registry.register(
        "mismatch_events",
        "Mismatch events received in user space, by kind, severity, the skb's checksum state \
         (ip_summed; unknown at XDP) and tunnel (encap: none, or vxlan, vxlan-gpe or geneve with \
         -outer or -inner).",
        events,
    );
    let diagnosed = Family::<DiagnosisLabels, Counter>::default();
    let flows = Family::<DiagnosisLabels, Gauge>::default();
    for d in &s.diagnoses {
        let labels = DiagnosisLabels {
            iface: d.iface.clone(),
            hook: d.hook.into(),
            diagnosis: d.diagnosis.into(),
            severity: d.severity.into(),
        };
        diagnosed.get_or_create(&labels).inc_by(d.mismatches);
        flows
            .get_or_create(&labels)
            .set(i64::try_from(d.flows).unwrap_or(i64::MAX));
    }
    registry.register(
        "diagnosed_mismatches",
        "Mismatch events by the diagnosis of their flow (stale-after-rewrite, offload-pending, ...).",
        diagnosed,
    );
    registry.register(
        "diagnosed_flows",
        "Flows with mismatches, by diagnosis.",
        flows,
    );
    let evicted_flows = Counter::<u64>::default();
    evicted_flows.inc_by(s.evicted.rows);
    registry.register(
        "evicted_flows",
        "Least recently seen flow rows evicted from the full flow table.",
        evicted_flows,
    );
    let evicted_mismatches = Counter::<u64>::default();
    evicted_mismatches.inc_by(s.evicted.mismatches);
    registry.register(
        "evicted_mismatches",
        "Mismatches counted in flow rows evicted from the full flow table.",
        evicted_mismatches,
    );

    if let Some((by_reason, lost)) = &s.kernel_drops {
        let drops = Family::<ReasonLabels, Counter>::default();
        for (reason, n) in by_reason {
            drops
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .inc_by(*n);
        }
        registry.register(
            "kernel_checksum_drops",
            "Packets the kernel dropped for a bad checksum (kfree_skb with a *_CSUM reason), in every namespace, by reason.",
            drops,
        );
        let lost_drops = Counter::<u64>::default();
        lost_drops.inc_by(*lost);
        registry.register(
            "kernel_checksum_drops_lost",
            "Kernel checksum drops not reported: the drop ring buffer was full (counted in the kernel).",
            lost_drops,
        );
    }

    let hops = Family::<HopLabels, Gauge>::default();
    for ((from, to), n) in &s.broken_hops {
        hops.get_or_create(&HopLabels {
            from: from.clone(),
            to: to.clone(),
        })
        .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    registry.register(
        "broken_hops",
        "Broken flows by the last hook that saw their packets fine (from; none when no earlier \
         audited hook saw them) and the first that saw them broken (to), from tracked flows.",
        hops,
    );
    let tracked = Gauge::<i64>::default();
    tracked.set(i64::try_from(s.tracking.live).unwrap_or(i64::MAX));
    registry.register(
        "tracked_flow_halves",
        "Halves of broken flows' 5-tuples the kernel is tracking now (every hook reports their \
         packets).",
        tracked,
    );
    let expired = Counter::<u64>::default();
    expired.inc_by(s.tracking.expired);
    registry.register(
        "tracked_flow_halves_expired",
        "Tracked flow halves removed after they expired.",
        expired,
    );

    let attached = Family::<AttachLabels, Gauge>::default();
    for src in &s.sources {
        let labels = AttachLabels {
            iface: src.iface.clone(),
            hook: src.hook.into(),
            mode: src.mode.into(),
        };
        attached.get_or_create(&labels).set(i64::from(src.attached));
    }
    registry.register(
        "attached",
        "1 while the program is attached at this interface and hook.",
        attached,
    );
    let attachments = Counter::<u64>::default();
    attachments.inc_by(s.lifecycle.attached);
    registry.register(
        "attachments",
        "Programs attached since start (one per interface and hook).",
        attachments,
    );
    let detachments = Family::<ReasonLabels, Counter>::default();
    for (reason, n) in [
        ("interface-deleted", s.lifecycle.detached_interface_gone),
        ("namespace-deleted", s.lifecycle.detached_namespace_gone),
    ] {
        detachments
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc_by(n);
    }
    registry.register(
        "detachments",
        "Programs detached while running because their interface or network namespace was deleted.",
        detachments,
    );
    let namespaces_gone = Counter::<u64>::default();
    namespaces_gone.inc_by(s.lifecycle.namespaces_gone);
    registry.register(
        "namespaces_deleted",
        "Network namespaces given with --netns that were deleted while audited.",
        namespaces_gone,
    );

    render_pods_and_cluster(s, &mut registry);

    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// The join series naming audited interfaces by pod.
fn render_interface_pods(s: &Snapshot, registry: &mut Registry) {
    let interface_pods = Family::<InterfacePodLabels, Gauge>::default();
    for (iface, namespace, pod) in &s.interface_pods {
        interface_pods
            .get_or_create(&InterfacePodLabels {
                iface: iface.clone(),
                namespace: namespace.clone(),
                pod: pod.clone(),
            })
            .set(1);
    }
    registry.register(
        "interface_pod",
        "1 for each audited interface whose other end is in a pod's network namespace: join on \
         iface to give any per-interface series its namespace and pod.",
        interface_pods,
    );
}

/// The series with pod labels, and the Kubernetes API's.
fn render_pods_and_cluster(s: &Snapshot, registry: &mut Registry) {
    let mismatches = Family::<PodLabels, Counter>::default();
    let flows = Family::<PodLabels, Gauge>::default();
    for p in &s.pods {
        let labels = PodLabels {
            namespace: p.namespace.clone(),
            pod: p.pod.clone(),
            diagnosis: p.diagnosis.into(),
        };
        mismatches.get_or_create(&labels).inc_by(p.mismatches);
        flows
            .get_or_create(&labels)
            .set(i64::try_from(p.flows).unwrap_or(i64::MAX));
    }
    registry.register(
        "pod_problem_mismatches",
        "Mismatching packets of problem flows, by the pod on this node that receives them and \
         their diagnosis; a packet counts once however many hops saw it.",
        mismatches,
    );
    registry.register(
        "pod_problem_flows",
        "Problem flows, by the pod on this node that receives them and their diagnosis (a flow \
         counts once however many hops saw it).",
        flows,
    );
    render_interface_pods(s, registry);
    let Some(c) = &s.cluster else {
        return;
    };
    let synced = Family::<ResourceLabels, Gauge>::default();
    let gaps = Family::<ResourceLabels, Counter>::default();
    let errors = Family::<ResourceLabels, Counter>::default();
    let overflow = Family::<ResourceLabels, Counter>::default();
    for &(resource, is_synced, n_gaps, n_errors, n_overflow) in &c.watches {
        let labels = ResourceLabels {
            resource: resource.into(),
        };
        synced.get_or_create(&labels).set(i64::from(is_synced));
        gaps.get_or_create(&labels).inc_by(n_gaps);
        errors.get_or_create(&labels).inc_by(n_errors);
        overflow.get_or_create(&labels).inc_by(n_overflow);
    }
    registry.register(
        "kube_watch_synced",
        "1 once the list+watch of this resource has its first full list.",
        synced,
    );
    registry.register(
        "kube_watch_gaps",
        "Times the watch of this resource broke after working (disconnect, API server restart, \
         expired resource version); it resumes by itself.",
        gaps,
    );
    registry.register(
        "kube_watch_errors",
        "Failed list or watch attempts of this resource (retried with backoff).",
        errors,
    );
    registry.register(
        "kube_objects_over_bound",
        "Objects of this resource not kept: its table was full.",
        overflow,
    );
    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    registry.register("kube_pods", "Pods on this node known now.", gauge(c.pods));
    registry.register("kube_services", "Services known now.", gauge(c.services));
    let events = Family::<ReasonLabels, Counter>::default();
    for (what, n) in [
        ("created", c.events_created),
        ("updated", c.events_updated),
        ("failed", c.events_failed),
        ("deferred", c.events_deferred),
    ] {
        events
            .get_or_create(&ReasonLabels {
                reason: what.into(),
            })
            .inc_by(n);
    }
    registry.register(
        "kube_events",
        "Kubernetes Event writes: created, updated (count grown), failed, and deferred by the \
         rate limits (reason).",
        events,
    );
}

/// `PORT` or `:PORT` binds to loopback (the default, so metrics are not exposed by accident);
/// `ADDR:PORT` binds where it says.
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().with_context(|| {
        format!("--metrics-addr {s}: expected PORT, :PORT or ADDR:PORT (e.g. 9465, 127.0.0.1:9465)")
    })
}

/// Binds now, so that a busy port is an error at startup rather than later.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) => bail!("cannot serve metrics on {addr}: {e}"),
    }
}

/// Answers scrapes until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Shared) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            Err(e) => {
                let (pause, log) = backoff.failed();
                if log {
                    log::warn!("metrics: accepting a connection: {e} (retrying in {pause:?})");
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &shared).await {
                log::debug!("metrics request: {e}");
            }
        });
    }
}

/// The pause after failed accepts in a row. Errors such as EMFILE (out of descriptors) last until
/// something else closes one, and the listener stays readable meanwhile: retrying at once would
/// spin a core, on the runtime that also drains the ring buffers. So: 5 ms, doubling to 1 s, back
/// to none after a success; one log line per step, and once a minute at the cap, not per retry.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// The last pause, `None` after a success.
    pause: Option<Duration>,
    /// Failures in a row since the pause reached `MAX`.
    at_max: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);
    /// At the cap, log every this many failures (one a minute).
    const LOG_EVERY_AT_MAX: u32 = 60;

    /// An accept failed: how long to pause before the next, and whether to log the error.
    fn failed(&mut self) -> (Duration, bool) {
        let pause = self.pause.map_or(Self::FIRST, |p| (p * 2).min(Self::MAX));
        let log = if self.pause == Some(Self::MAX) {
            self.at_max += 1;
            self.at_max.is_multiple_of(Self::LOG_EVERY_AT_MAX)
        } else {
            true
        };
        self.pause = Some(pause);
        (pause, log)
    }

    /// An accept succeeded: the next failure starts again at `FIRST`.
    fn succeeded(&mut self) {
        *self = Self::default();
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    // Read the request head (bounded); only the request line matters.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let snapshot = shared.lock().map(|s| s.clone()).unwrap_or_default();
            // Rendering takes milliseconds with many interfaces: not on the thread that drains
            // the ring buffers, where a stall loses events.
            let text = tokio::task::spawn_blocking(move || render(&snapshot))
                .await
                .map_err(std::io::Error::other)?;
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "checksum-audit: metrics at /metrics; probes at /healthz and /readyz\n".to_owned(),
        ),
        ("GET", "/healthz" | "/readyz") => {
            let snapshot = shared.lock().map(|s| s.clone()).unwrap_or_default();
            let (status, body) = probe(path, &snapshot).unwrap_or(("404 Not Found", String::new()));
            (status, "text/plain; charset=utf-8", body)
        }
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(
            parse_addr("9465").unwrap(),
            "127.0.0.1:9465".parse().unwrap()
        );
        assert_eq!(
            parse_addr(":9465").unwrap(),
            "127.0.0.1:9465".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:9465").unwrap(),
            "0.0.0.0:9465".parse().unwrap()
        );
        assert_eq!(
            parse_addr("[::1]:9465").unwrap(),
            "[::1]:9465".parse().unwrap()
        );
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("99999").is_err());
    }

    #[test]
    fn accept_errors_back_off_exponentially_to_a_cap_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let ms = Duration::from_millis;
        let steps: Vec<_> = (0..10).map(|_| b.failed()).collect();
        let want = [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000];
        assert_eq!(
            steps.iter().map(|&(p, _)| p).collect::<Vec<_>>(),
            want.map(ms)
        );
        // Each step is logged once; the first pause at the cap is a step, repeats of it are not.
        let logged: Vec<_> = steps.iter().map(|&(_, log)| log).collect();
        assert_eq!(
            logged,
            [true; 9].into_iter().chain([false]).collect::<Vec<_>>()
        );
        // At the cap: one line a minute (the 60th repeat), not one per second.
        let logs_at_max = (0..120).filter(|_| b.failed().1).count();
        assert_eq!(logs_at_max, 2);
        assert_eq!(b.failed().0, AcceptBackoff::MAX);

        b.succeeded();
        assert_eq!(b.failed(), (ms(5), true));
        assert_eq!(b.failed(), (ms(10), true));
    }

    /// One source with a few counters, events, a diagnosis, drops, a broken hop and tracking.
    fn sample() -> Snapshot {
        let mut counters = Counters {
            packets: 42,
            ..Counters::default()
        };
        counters.checks[Layer::Tcp as usize][Status::Bad as usize] = 3;
        counters.mismatches[Layer::Tcp as usize][Kind::Corrupt as usize] = 3;
        Snapshot {
            sources: vec![SourceMetrics {
                iface: "veth0".into(),
                hook: "tc-ingress",
                mode: "tcx",
                attached: true,
                counters,
            }],
            events: vec![EventCount {
                iface: "veth0".into(),
                hook: "tc-ingress",
                kind: "corrupt",
                severity: "problem",
                state: "none",
                encap: "none",
                count: 3,
            }],
            diagnoses: vec![DiagnosisCount {
                iface: "veth0".into(),
                hook: "tc-ingress",
                diagnosis: "stale-after-rewrite",
                severity: "problem",
                mismatches: 3,
                flows: 1,
            }],
            evicted: Evicted::default(),
            lifecycle: Lifecycle {
                attached: 3,
                detached_interface_gone: 2,
                ..Lifecycle::default()
            },
            kernel_drops: Some(([("TCP_CSUM".to_owned(), 5)].into(), 1)),
            broken_hops: [(
                (
                    "ns-c/veth-c@tc-egress".to_owned(),
                    "ns-m/veth-m0@tc-ingress".to_owned(),
                ),
                2,
            )]
            .into(),
            tracking: crate::analysis::Tracking {
                live: 4,
                expired: 6,
            },
            pods: Vec::new(),
            interface_pods: Vec::new(),
            cluster: None,
            taken_at: None,
        }
    }

    #[test]
    fn pod_series_carry_namespace_and_pod_and_readiness_waits_for_the_watches() {
        let mut s = Snapshot {
            taken_at: Some(std::time::Instant::now()),
            pods: vec![PodDiagnosisCount {
                namespace: "default".into(),
                pod: "web-1".into(),
                diagnosis: "stale-after-rewrite",
                mismatches: 5,
                flows: 1,
            }],
            interface_pods: vec![("veth0".into(), "default".into(), "gw".into())],
            cluster: Some(ClusterMetrics {
                synced: false,
                watches: vec![("pods", false, 2, 7, 0)],
                pods: 3,
                services: 4,
                events_created: 1,
                ..ClusterMetrics::default()
            }),
            ..sample()
        };
        let text = render(&s);
        for want in [
            r#"checksum_audit_pod_problem_mismatches_total{namespace="default",pod="web-1",diagnosis="stale-after-rewrite"} 5"#,
            r#"checksum_audit_pod_problem_flows{namespace="default",pod="web-1",diagnosis="stale-after-rewrite"} 1"#,
            r#"checksum_audit_kube_watch_gaps_total{resource="pods"} 2"#,
            r#"checksum_audit_kube_watch_synced{resource="pods"} 0"#,
            r#"checksum_audit_kube_events_total{reason="created"} 1"#,
            "checksum_audit_kube_pods 3",
            r#"checksum_audit_interface_pod{iface="veth0",namespace="default",pod="gw"} 1"#,
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        let (status, body) = probe("/readyz", &s).unwrap();
        assert_eq!(status, "503 Service Unavailable");
        assert!(body.contains("Kubernetes API"), "{body}");
        s.cluster.as_mut().unwrap().synced = true;
        assert_eq!(probe("/readyz", &s).unwrap().0, "200 OK");
    }

    #[test]
    fn probes_say_ready_once_attached_and_unhealthy_when_stale() {
        let attaching = sample();
        assert_eq!(
            probe("/readyz", &attaching).unwrap().0,
            "503 Service Unavailable"
        );
        assert_eq!(probe("/healthz", &attaching).unwrap().0, "200 OK");
        let running = Snapshot {
            taken_at: Some(std::time::Instant::now()),
            ..sample()
        };
        assert_eq!(
            probe("/readyz", &running).unwrap(),
            ("200 OK", "ready\n".into())
        );
        assert_eq!(probe("/healthz", &running).unwrap().0, "200 OK");
        let stalled = Snapshot {
            taken_at: std::time::Instant::now().checked_sub(STALE_AFTER * 2),
            ..sample()
        };
        let (status, body) = probe("/healthz", &stalled).unwrap();
        assert_eq!(status, "503 Service Unavailable");
        assert!(body.contains("not refreshed for 20s"), "{body}");
        assert_eq!(probe("/nope", &running), None);
    }

    #[test]
    fn renders_paths_and_tracking() {
        let text = render(&sample());
        assert!(
            text.contains(r#"checksum_audit_broken_hops{from="ns-c/veth-c@tc-egress",to="ns-m/veth-m0@tc-ingress"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("checksum_audit_tracked_flow_halves 4"),
            "{text}"
        );
        assert!(
            text.contains("checksum_audit_tracked_flow_halves_expired_total 6"),
            "{text}"
        );
    }

    #[test]
    fn renders_counters_with_conventional_names() {
        let s = sample();
        let text = render(&s);
        assert!(
            text.contains(r#"checksum_audit_kernel_checksum_drops_total{reason="TCP_CSUM"} 5"#),
            "{text}"
        );
        assert!(
            text.contains("checksum_audit_kernel_checksum_drops_lost_total 1"),
            "{text}"
        );
        // Not traced: no series at all, rather than zeros that look like "no drops".
        let untraced = render(&Snapshot {
            kernel_drops: None,
            ..s.clone()
        });
        assert!(!untraced.contains("kernel_checksum_drops"), "{untraced}");
        assert!(
            text.contains("checksum_audit_attachments_total 3"),
            "{text}"
        );
        assert!(
            text.contains(r#"checksum_audit_detachments_total{reason="interface-deleted"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"checksum_audit_packets_total{iface="veth0",hook="tc-ingress"} 42"#),
            "{text}"
        );
        assert!(text.contains(r#"checksum_audit_checks_total{iface="veth0",hook="tc-ingress",layer="tcp",verdict="bad"} 3"#), "{text}");
        assert!(
            text.contains(
                r#"checksum_audit_attached{iface="veth0",hook="tc-ingress",mode="tcx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"checksum_audit_mismatch_events_total{iface="veth0",hook="tc-ingress",kind="corrupt",severity="problem",state="none",encap="none"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"checksum_audit_diagnosed_mismatches_total{iface="veth0",hook="tc-ingress",diagnosis="stale-after-rewrite",severity="problem"} 3"#),
            "{text}"
        );
    }
}
