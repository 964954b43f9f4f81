//! The Prometheus/OpenMetrics text of a snapshot. The exposition format comes from the
//! `prometheus-client` crate; this module only registers each series with its help text.

use checksum_common::{Counters, Kind, Layer, Status};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::snapshot::Snapshot;

/// A per-hook counter series: one sample per source, from its `Counters`.
struct PerHook {
    /// Without the prefix and `_total`.
    name: &'static str,
    help: &'static str,
    value: fn(&Counters) -> u64,
}

/// The per-hook counter series, in the order they are registered (and so rendered).
const PER_HOOK: [PerHook; 10] = [
    PerHook {
        name: "packets",
        help: "Frames audited.",
        value: |c| c.packets,
    },
    PerHook {
        name: "events_lost",
        help: "Mismatch events lost because the ring buffer was full.",
        value: |c| c.events_lost,
    },
    PerHook {
        name: "events_sampled_out",
        help: "Mismatch events not sent: their flow and kind had used up --events-per-flow.",
        value: |c| c.events_sampled_out,
    },
    PerHook {
        name: "tracked_reports",
        help: "Good verdicts sent because their flow was tracked (a hook saw it broken).",
        value: |c| c.tracked_reports,
    },
    PerHook {
        name: "tracking_full",
        help: "Broken flows that could not be tracked: the tracked-flow map was full.",
        value: |c| c.tracking_full,
    },
    PerHook {
        name: "malformed",
        help: "Frames with inconsistent lengths (counted, never reported).",
        value: |c| c.malformed,
    },
    PerHook {
        name: "not_ip",
        help: "Frames that are not IPv4 or IPv6.",
        value: |c| c.not_ip,
    },
    PerHook {
        name: "encapsulated",
        help: "Frames that are VXLAN, VXLAN-GPE or Geneve tunnels: their inner packet is audited too.",
        value: |c| c.encapsulated,
    },
    PerHook {
        name: "inner_malformed",
        help: "Tunnelled frames whose inner packet is inconsistent or cut short (counted, never reported).",
        value: |c| c.inner_malformed,
    },
    PerHook {
        name: "gso_aggregates",
        help: "GSO/GRO super-packets (checked per segment elsewhere).",
        value: |c| c.gso_aggregate,
    },
];

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
    for PerHook { name, help, value } in PER_HOOK {
        let family = Family::<HookLabels, Counter>::default();
        for src in &s.sources {
            let labels = HookLabels {
                iface: src.iface.clone(),
                hook: src.hook.into(),
            };
            family.get_or_create(&labels).inc_by(value(&src.counters));
        }
        registry.register(name, help, family);
    }

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
