//! Rendering verdicts and summaries as text for people and JSON lines for machines.

use std::{fmt::Write as _, time::Duration};

use checksum_common::{Counters, Kind, Layer, Status};
use serde_json::{Value, json};

use crate::{
    analysis::{
        Analysis, DropTracing, FlowRow, KernelSays, SourceId,
        diagnosis::{FlowDiagnosis, Rewrite},
        drops::DropSeen,
        severity::{Basis, Severity},
    },
    model::{Flow, SkbStateUse, Verdict, hex},
    sys::clock::Clock,
};

/// One line per verdict, text form: `tcp bad got 0x1443 want 0x46a1 offload-pending ...`.
pub fn verdict_text(v: &Verdict) -> String {
    let mut s = format!("{:<6} {:<12}", v.layer.name(), v.status.name());
    match v.status {
        Status::Bad => {
            let _ = write!(
                s,
                " got {} want {} {:<15}",
                hex(v.got),
                hex(v.want),
                v.kind.name()
            );
        }
        Status::Ok => {
            let _ = write!(s, " {}", hex(v.got));
        }
        _ => {}
    }
    let _ = write!(s, " {} {}", v.family(), v.flow);
    if let Some(t) = v.encap {
        let _ = write!(s, "  [{t}]");
    }
    if v.zero_outer_udp6() {
        s.push_str("  (zero outer UDP checksum over IPv6: allowed for tunnels, RFC 6935)");
    }
    // The NIC verified it, so the stack will not look again: the packet changed after that, or
    // the NIC is wrong, and it is accepted anyway.
    if v.status == Status::Bad
        && v.skb
            .is_some_and(|skb| skb.ip_summed == checksum_common::event::IpSummed::Unnecessary)
    {
        s.push_str("  (skb CHECKSUM_UNNECESSARY: the stack accepts it anyway)");
    }
    if v.device_sum_disagrees() == Some(true) {
        s.push_str(
            "  (the device's CHECKSUM_COMPLETE sum disagrees: the packet changed after the device \
             summed it, or it summed Ethernet padding)",
        );
    }
    s
}

/// A summary of one interface (or one replayed file), as the counter blocks show it.
pub struct Source<'a> {
    pub name: &'a str,
    pub hook: &'a str,
    /// How it is attached ("native", "generic", "tcx", "clsact"), or "test-run" for replay.
    pub mode: &'a str,
    /// Interface class ("physical", "veth", ...), or "capture" for replay.
    pub class: &'a str,
    /// What a partial checksum (offload-pending) means here, and what decided it.
    pub offload: Severity,
    pub basis: Basis,
    pub counters: Counters,
}

impl<'a> Source<'a> {
    /// Source `id` of the analysis, with the counters it was last brought up to date with.
    pub fn of(analysis: &'a Analysis, id: SourceId) -> Self {
        let facts = analysis.source(id);
        Self {
            name: &facts.name,
            hook: facts.hook.name(),
            mode: facts.mode,
            class: facts.class.name(),
            offload: analysis.severity(id, Kind::OffloadPending),
            basis: analysis.basis(id),
            counters: analysis.status(id).counters,
        }
    }
}

fn checks_json(c: &Counters) -> Value {
    checks_by_layer(|layer, status| c.check(layer, status))
}

/// `checks_json` of the tunnels' inner packets alone.
fn inner_checks_json(c: &Counters) -> Value {
    checks_by_layer(|layer, status| c.inner_check(layer, status))
}

/// `{layer: {status: count}}` for every layer and status.
fn checks_by_layer(count: impl Fn(Layer, Status) -> u64) -> Value {
    let mut layers = serde_json::Map::new();
    for layer in Layer::ALL {
        let mut statuses = serde_json::Map::new();
        for status in Status::ALL {
            statuses.insert(status.name().into(), json!(count(layer, status)));
        }
        layers.insert(layer.name().into(), Value::Object(statuses));
    }
    Value::Object(layers)
}

fn mismatches_json(c: &Counters) -> Value {
    let mut kinds = serde_json::Map::new();
    for kind in Kind::MISMATCHES {
        kinds.insert(kind.name().into(), json!(c.mismatch(kind)));
    }
    Value::Object(kinds)
}

pub fn source_json(s: &Source) -> Value {
    json!({
        "iface": s.name,
        "hook": s.hook,
        "mode": s.mode,
        "class": s.class,
        "gso_aggregate": s.counters.gso_aggregate,
        "packets": s.counters.packets,
        "not_ip": s.counters.not_ip,
        "malformed": s.counters.malformed,
        "events_lost": s.counters.events_lost,
        "events_sampled_out": s.counters.events_sampled_out,
        "tracked_reports": s.counters.tracked_reports,
        "tracking_full": s.counters.tracking_full,
        "severity_basis": s.basis.name(),
        "checks": checks_json(&s.counters),
        "mismatches": mismatches_json(&s.counters),
        "encapsulated": s.counters.encapsulated,
        "inner_malformed": s.counters.inner_malformed,
        "inner_checks": inner_checks_json(&s.counters),
    })
}

/// The text block for one source: counters by layer and the mismatch kinds.
pub fn source_text(s: &Source) -> String {
    let c = &s.counters;
    let mut out = format!(
        "{} ({}, {}, {}): {} packets, {} GSO/GRO aggregates, {} not IP, {} malformed, {} events lost{}{}\n",
        s.name,
        s.class,
        s.hook,
        s.mode,
        c.packets,
        c.gso_aggregate,
        c.not_ip,
        c.malformed,
        c.events_lost,
        if c.events_lost > 0 {
            " (ring buffer full: raise --ring-buffer-size)"
        } else {
            ""
        },
        if c.events_sampled_out > 0 {
            format!(
                ", {} events sampled out (--events-per-flow)",
                c.events_sampled_out
            )
        } else {
            String::new()
        },
    );
    for layer in Layer::ALL {
        let total: u64 = Status::ALL.iter().map(|st| c.check(layer, *st)).sum();
        if total == 0 {
            continue;
        }
        let partial = c.layer_mismatch(layer, Kind::OffloadPending);
        let partial_ok = c.check(layer, Status::PartialOk);
        let _ = writeln!(
            out,
            "  {:<7} ok {:<9} bad {:<9} (offload-pending {partial}, real {})  none {}  unverifiable {}{}",
            layer.name(),
            c.check(layer, Status::Ok),
            c.check(layer, Status::Bad),
            c.check(layer, Status::Bad) - partial,
            c.check(layer, Status::None),
            c.check(layer, Status::Unverifiable),
            if partial_ok > 0 {
                format!("  partial-ok {partial_ok}")
            } else {
                String::new()
            },
        );
    }
    let real: u64 = [Kind::Zero, Kind::ByteSwapped, Kind::Corrupt]
        .iter()
        .map(|k| c.mismatch(*k))
        .sum();
    let _ = writeln!(
        out,
        "  mismatches: {real} real (zero {}, byte-swapped {}, corrupt {}); {} offload-pending ({})",
        c.mismatch(Kind::Zero),
        c.mismatch(Kind::ByteSwapped),
        c.mismatch(Kind::Corrupt),
        c.mismatch(Kind::OffloadPending),
        match (s.offload, s.basis, c.mismatch(Kind::OffloadPending)) {
            (Severity::Expected, _, _) => "partial checksums, expected here",
            (Severity::Problem, Basis::SkbState, 0) =>
                "partial checksums the skb still completes are counted as partial-ok",
            (Severity::Problem, Basis::SkbState, _) =>
                "PROBLEM: the skb is not CHECKSUM_PARTIAL at these fields, so nothing will complete them",
            (Severity::Problem, Basis::InterfaceClass, _) =>
                "PROBLEM here: nothing will complete these checksums; the sender's offload never happened",
        },
    );
    out
}

/// Rows of the flow table (text), at most `limit`, problems first; expected partial checksums
/// only with `show_offload`.
pub fn flows_text(analysis: &Analysis, clock: &Clock, limit: usize, show_offload: bool) -> String {
    let rows = analysis.flow_rows(show_offload);
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "  {:<12} {:<10} {:<8} {:<6} {:<15} {:>8}  {:<15} {:<27} FLOW\n",
        "IFACE", "HOOK", "SEVERITY", "LAYER", "KIND", "COUNT", "GOT -> WANT", "LAST SEEN"
    );
    for FlowRow { key, entry, source } in rows.iter().take(limit) {
        let _ = writeln!(
            out,
            "  {:<12} {:<10} {:<8} {:<6} {:<15} {:>8}  {} -> {}  {:<27} {}",
            source.name,
            key.hook.name(),
            entry.severity.name(),
            key.layer.name(),
            key.kind.name(),
            entry.count,
            hex(entry.got),
            hex(entry.want),
            clock.rfc3339(entry.last_ns),
            key.flow,
        );
    }
    if rows.len() > limit {
        let _ = writeln!(out, "  ... {} more flows", rows.len() - limit);
    }
    let evicted = analysis.flows().evicted;
    if evicted.rows > 0 {
        let _ = writeln!(
            out,
            "  {} stale flows with {} mismatches evicted from the flow table (full)",
            evicted.rows, evicted.mismatches
        );
    }
    out
}

/// Every row of the flow table (JSON), problems first.
pub fn flows_json(analysis: &Analysis, clock: &Clock) -> Value {
    Value::Array(
        analysis
            .flow_rows(true)
            .into_iter()
            .map(|FlowRow { key, entry, source }| {
                let mut row = flow_json(&key.flow);
                row.extend([
                    ("iface".into(), json!(source.name)),
                    ("hook".into(), json!(key.hook.name())),
                    ("layer".into(), json!(key.layer.name())),
                    ("kind".into(), json!(key.kind.name())),
                    ("severity".into(), json!(entry.severity.name())),
                    ("count".into(), json!(entry.count)),
                    ("first_seen".into(), json!(clock.rfc3339(entry.first_ns))),
                    ("last_seen".into(), json!(clock.rfc3339(entry.last_ns))),
                    ("got".into(), json!(hex(entry.got))),
                    ("want".into(), json!(hex(entry.want))),
                ]);
                Value::Object(row)
            })
            .collect(),
    )
}

/// A flow's family, addresses and ports, the fields every flow-shaped JSON object starts with.
fn flow_json(flow: &Flow) -> serde_json::Map<String, Value> {
    let (sport, dport) = flow
        .ports
        .map_or((Value::Null, Value::Null), |(s, d)| (json!(s), json!(d)));
    serde_json::Map::from_iter([
        ("family".into(), json!(flow.family())),
        ("src".into(), json!(flow.src.to_string())),
        ("dst".into(), json!(flow.dst.to_string())),
        ("sport".into(), sport),
        ("dport".into(), dport),
    ])
}

pub fn elapsed_text(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Where a diagnosis was seen, in text: the source's name, and its hook where a run has several.
fn diagnosis_place(analysis: &Analysis, d: &FlowDiagnosis, with_hook: bool) -> String {
    let source = analysis.source(d.source);
    if with_hook {
        format!("{} {}", source.name, source.hook.name())
    } else {
        source.name.clone()
    }
}

/// The diagnosis of each flow, text form: problems first, with the explanation and a next step.
/// `with_hook` names the hook beside the interface (live runs audit several).
pub fn diagnoses_text(
    analysis: &Analysis,
    rows: &[FlowDiagnosis],
    with_hook: bool,
    limit: usize,
) -> String {
    // Only problems get a diagnosis paragraph; flows whose only finding is expected (partial
    // checksums where they are normal) are counted in one line.
    let expected = rows
        .iter()
        .filter(|d| d.severity == Severity::Expected)
        .count();
    let mut rows: Vec<_> = rows
        .iter()
        .filter(|d| d.severity == Severity::Problem)
        .collect();
    rows.sort_by_key(|d| std::cmp::Reverse(d.count));
    if rows.is_empty() && expected == 0 {
        return String::new();
    }
    let mut out = String::from("  diagnosis per flow:\n");
    let paths = analysis.paths();
    let mut printed = Vec::new();
    if rows.is_empty() {
        out.push_str("  no problems\n");
    }
    for d in rows.iter().take(limit) {
        let delta = d
            .delta
            .map_or_else(String::new, |x| format!(", got-want {}", hex(x)));
        let _ = writeln!(
            out,
            "  {} {} {} {}: {} ({} packets{delta}, {})",
            diagnosis_place(analysis, d, with_hook),
            d.layer.name(),
            d.flow.family(),
            d.flow,
            d.diagnosis.name(),
            d.count,
            d.severity.name(),
        );
        if !analysis.endpoint_names().is_empty() {
            let _ = writeln!(out, "      who: {}", diagnosis_sentence(analysis, d));
        }
        let _ = writeln!(out, "      why: {}", d.diagnosis.explanation());
        let _ = writeln!(out, "      next: {}", d.diagnosis.next_step());
        if let Some(kernel) = confirmation_text(d, analysis.drops_of(d)) {
            let _ = writeln!(out, "      kernel: {kernel}");
        }
        if let Some(path) = paths.iter().find(|p| p.broke_at(d.source, &d.flow)) {
            // Each path in full once, under the first of its flow's diagnoses.
            if printed.contains(&path.id) {
                let _ = writeln!(
                    out,
                    "      path: {} (above)",
                    super::path::short(analysis, path)
                );
            } else {
                printed.push(path.id);
                out.push_str(&super::path::text(analysis, path));
            }
        }
    }
    if rows.len() > limit {
        let _ = writeln!(out, "  ... {} more flows", rows.len() - limit);
    }
    if expected > 0 {
        let _ = writeln!(
            out,
            "  {expected} more flows only carry partial checksums where they are expected (offload-pending)"
        );
    }
    out
}

/// What the kernel's checksum drops say of a diagnosed flow; `None` when they are not traced.
fn confirmation_text(d: &FlowDiagnosis, says: KernelSays) -> Option<String> {
    match says {
        KernelSays::NotTraced => None,
        KernelSays::Dropped(k) => Some(format!(
            "confirmed: {} of {} bad packets dropped by the kernel ({})",
            k.count,
            d.count,
            k.places_text()
        )),
        KernelSays::NoDrop => Some("no checksum drop of this flow seen in the kernel".into()),
    }
}

/// A flow's drops in JSON: `null` when tracing is off, a count of 0 when none were seen.
fn drops_json(says: KernelSays) -> Value {
    match says {
        KernelSays::NotTraced => Value::Null,
        KernelSays::NoDrop => json!({ "count": 0, "places": [] }),
        KernelSays::Dropped(k) => json!({
            "count": k.count,
            "places": k.places.iter().map(|((reason, location), n)| json!({
                "reason": reason, "location": location, "count": n,
            })).collect::<Vec<_>>(),
        }),
    }
}

/// One of the kernel's checksum drops, text form (the live stream, beside the verdicts).
pub fn kernel_drop_text(d: &DropSeen, clock: &Clock) -> String {
    format!(
        "{} {:<12} kernel-drop {:<8} {} at {}",
        clock.rfc3339(d.timestamp_ns),
        d.device,
        d.reason,
        d.flow.as_ref().map_or_else(
            || "(headers unreadable)".into(),
            |f| format!("{} {f}", f.family())
        ),
        d.location,
    )
}

/// One of the kernel's checksum drops (the `"type": "kernel_drop"` lines).
pub fn kernel_drop_json(d: &DropSeen, clock: &Clock) -> Value {
    let mut obj = d.flow.as_ref().map(flow_json).unwrap_or_default();
    obj.extend([
        ("type".into(), json!("kernel_drop")),
        ("ts".into(), json!(clock.rfc3339(d.timestamp_ns))),
        ("reason".into(), json!(d.reason)),
        ("location".into(), json!(d.location)),
        ("device".into(), json!(d.device)),
    ]);
    Value::Object(obj)
}

/// The summary's kernel block: drops by reason, dropped flows the audit never saw bad, and each
/// namespace's `InCsumErrors` over the run. Empty when tracing is off.
pub fn kernel_drops_text(analysis: &Analysis, limit: usize) -> String {
    let drops = analysis.kernel_drops();
    let mut out = String::new();
    match analysis.drop_tracing() {
        DropTracing::Off => return out,
        DropTracing::Unavailable(why) => {
            let _ = writeln!(out, "  kernel checksum drops: not traced ({why})");
        }
        DropTracing::On { lost } => {
            let reasons: Vec<String> = drops
                .by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "  kernel checksum drops: {}{}{}",
                drops.total,
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join(", "))
                },
                if *lost > 0 {
                    format!(", {lost} more lost (drop ring buffer full)")
                } else {
                    String::new()
                }
            );
            let unexplained = analysis.unexplained_drops();
            for (flow, k) in unexplained.iter().take(limit) {
                let flow = flow.to_flow();
                let _ = writeln!(
                    out,
                    "    never seen bad by the audit: {} {flow}: {} dropped on {} ({})",
                    flow.family(),
                    k.count,
                    k.device,
                    k.places_text()
                );
            }
            if unexplained.len() > limit {
                let _ = writeln!(out, "    ... {} more flows", unexplained.len() - limit);
            }
        }
    }
    for ns in analysis.in_csum_errors() {
        let c = &ns.delta;
        let _ = writeln!(
            out,
            "  InCsumErrors this run{}: Ip {}, Tcp {}, Udp {}, Icmp {}",
            if ns.namespace.is_empty() {
                String::new()
            } else {
                format!(" in {}", ns.namespace)
            },
            c.ip,
            c.tcp,
            c.udp,
            c.icmp
        );
    }
    out
}

/// The summary's `skb_state`: `"on"` when severity at TC follows the skb's checksum state,
/// `"off"`, or `{"unavailable": why}`.
pub fn skb_state_json(state: &SkbStateUse) -> Value {
    match state {
        SkbStateUse::On => json!("on"),
        SkbStateUse::Off => json!("off"),
        SkbStateUse::Unavailable(why) => json!({ "unavailable": why }),
    }
}

/// The summary's `kernel_drops` object; `null` when tracing is off.
pub fn kernel_drops_json(analysis: &Analysis) -> Value {
    let drops = analysis.kernel_drops();
    let (traced, lost, why) = match analysis.drop_tracing() {
        DropTracing::Off => return Value::Null,
        DropTracing::Unavailable(why) => (false, 0, Some(why.clone())),
        DropTracing::On { lost } => (true, *lost, None),
    };
    json!({
        "traced": traced,
        "unavailable": why,
        "total": drops.total,
        "lost": lost,
        "unreadable": drops.unreadable,
        "untracked": drops.untracked,
        "by_reason": drops.by_reason,
        "never_seen_bad": analysis.unexplained_drops().into_iter().map(|(flow, k)| {
            let mut obj = flow_json(&flow.to_flow());
            obj.insert("count".into(), json!(k.count));
            obj.insert("device".into(), json!(k.device));
            obj.insert("places".into(), drops_json(KernelSays::Dropped(k))["places"].clone());
            Value::Object(obj)
        }).collect::<Vec<_>>(),
        "in_csum_errors": analysis.in_csum_errors().iter().map(|ns| json!({
            "netns": ns.namespace,
            "ip": ns.delta.ip,
            "tcp": ns.delta.tcp,
            "udp": ns.delta.udp,
            "icmp": ns.delta.icmp,
        })).collect::<Vec<_>>(),
    })
}

/// One JSON object per flow diagnosis (the `"type": "diagnosis"` lines).
pub fn diagnosis_json(analysis: &Analysis, d: &FlowDiagnosis) -> Value {
    let source = analysis.source(d.source);
    let mut obj = flow_json(&d.flow);
    obj.extend([
        ("type".into(), json!("diagnosis")),
        ("iface".into(), json!(source.name)),
        ("hook".into(), json!(source.hook.name())),
        ("layer".into(), json!(d.layer.name())),
        ("diagnosis".into(), json!(d.diagnosis.name())),
        ("severity".into(), json!(d.severity.name())),
        (
            "severity_basis".into(),
            json!(analysis.basis(d.source).name()),
        ),
        ("count".into(), json!(d.count)),
        ("delta".into(), json!(d.delta.map(hex))),
        (
            "likely_original".into(),
            json!(d.diagnosis.likely_original().map(|r| r.original.clone())),
        ),
        (
            "rewrite".into(),
            json!(d.diagnosis.likely_original().map(Rewrite::describe)),
        ),
        (
            "evidence".into(),
            json!(d.diagnosis.likely_original().map(|r| r.evidence.name())),
        ),
        (
            "service".into(),
            json!(
                d.diagnosis
                    .likely_original()
                    .and_then(|r| r.service.as_deref())
            ),
        ),
        (
            "seen_at".into(),
            json!(
                d.diagnosis
                    .likely_original()
                    .and_then(|r| r.seen_at.clone())
            ),
        ),
        (
            "consistent_with".into(),
            json!(d.diagnosis.consistent_with().map(|(r, _)| r.describe())),
        ),
        ("explanation".into(), json!(d.diagnosis.explanation())),
        ("next_step".into(), json!(d.diagnosis.next_step())),
        ("kernel_drops".into(), drops_json(analysis.drops_of(d))),
    ]);
    let names = analysis.endpoint_names();
    if !names.is_empty() {
        obj.extend([
            ("src_pod".into(), json!(names.name(d.flow.src))),
            ("dst_pod".into(), json!(names.name(d.flow.dst))),
            ("iface_pod".into(), json!(names.interface(&source.name))),
            ("message".into(), json!(diagnosis_sentence(analysis, d))),
        ]);
    }
    Value::Object(obj)
}

/// A flow end as a sentence names it: `namespace/pod (address)` when a pod has the address.
fn endpoint_text(analysis: &Analysis, ip: std::net::IpAddr) -> String {
    match analysis.endpoint_names().name(ip) {
        Some(pod) => format!("{pod} ({ip})"),
        None => ip.to_string(),
    }
}

/// One sentence with who and what: "default/web-7d9f (10.244.0.5) receives TCP from
/// default/client (10.244.0.6) with checksums broken by the Service default/web rewrite
/// (destination address:port 10.96.0.10:80 -> 10.244.0.5:8080); the kernel dropped 5 of 5
/// (`TCP_CSUM` at `tcp_v4_rcv+0x1a0`)". The JSON `message`, and the Kubernetes Event's.
pub fn diagnosis_sentence(analysis: &Analysis, d: &FlowDiagnosis) -> String {
    let what = match d.diagnosis.likely_original() {
        Some(r) => match r.service.as_deref() {
            Some(service) => format!(
                "checksums broken by the Service {service} rewrite ({})",
                r.describe()
            ),
            None => format!("checksums broken by a rewrite ({})", r.describe()),
        },
        None => format!("{} checksums", d.diagnosis.name()),
    };
    let kernel = match analysis.drops_of(d) {
        KernelSays::NotTraced => String::new(),
        KernelSays::NoDrop => "; no kernel drop of it seen".to_owned(),
        KernelSays::Dropped(k) => format!(
            "; the kernel dropped {} of {} ({})",
            k.count,
            d.count,
            k.places_text()
        ),
    };
    format!(
        "{} receives {} from {} with {what}{kernel}",
        endpoint_text(analysis, d.flow.dst),
        d.layer.name().to_uppercase(),
        endpoint_text(analysis, d.flow.src),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_in_an_unnecessary_skb_says_the_stack_accepts_it() {
        use crate::{analysis::aggregate::tests::verdict, model::SkbCsum};
        use checksum_common::event::IpSummed;
        let mut v = verdict(1, Kind::Corrupt, 1);
        assert!(!verdict_text(&v).contains("UNNECESSARY"));
        let skb = |ip_summed| SkbCsum {
            ip_summed,
            csum_start: 0,
            csum_offset: 0,
            network_header: 0,
            csum_level: 0,
            encapsulation: false,
        };
        v.skb = Some(skb(IpSummed::Unnecessary));
        assert!(
            verdict_text(&v).contains("CHECKSUM_UNNECESSARY: the stack accepts it anyway"),
            "{}",
            verdict_text(&v)
        );
        v.skb = Some(skb(IpSummed::None));
        assert!(!verdict_text(&v).contains("UNNECESSARY"));
    }
}
