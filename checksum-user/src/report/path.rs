//! A broken packet's path, as text (under its flow's diagnosis) and as JSON (`type: "path"`).

use std::fmt::Write as _;

use checksum_common::{Status, event::IpSummed};
use serde_json::{Value, json};

use crate::{
    analysis::{
        Analysis,
        path::{Change, Hop, Path},
    },
    model::{Flow, hex},
};

/// Where a hop is: `netns/iface hook`.
fn place(analysis: &Analysis, hop: &Hop) -> String {
    let s = analysis.source(hop.source);
    format!("{} {}", s.name, s.hook.name())
}

/// How the checksum looked at a good hop, for sentences.
fn good_state(hop: &Hop) -> &'static str {
    match hop.status {
        Status::PartialOk => "partial, as expected",
        Status::None => "no UDP checksum",
        _ => "verified",
    }
}

fn status_word(hop: &Hop) -> &'static str {
    match hop.status {
        Status::Bad => "BAD",
        Status::PartialOk => "partial-ok",
        Status::Ok => "ok",
        Status::None => "none",
        Status::Unverifiable => "unverifiable",
    }
}

/// "the destination address is 10.199.2.2 (was 10.96.0.10)": each rewritten side as it is at
/// the bad hop, and as it was at the good one.
fn rewritten(changes: &[Change], before: &Flow, after: &Flow) -> String {
    let side = |addr: bool, port: bool, src: bool| {
        let show = |flow: &Flow| {
            let (a, p) = if src {
                (flow.src, flow.ports.map(|p| p.0))
            } else {
                (flow.dst, flow.ports.map(|p| p.1))
            };
            match (addr, port, p) {
                (true, true, Some(p)) => format!("{a}:{p}"),
                (true, _, _) => a.to_string(),
                (false, true, Some(p)) => p.to_string(),
                _ => String::new(),
            }
        };
        let name = if src { "source" } else { "destination" };
        let what = match (addr, port) {
            (true, true) => name.to_owned(),
            (true, false) => format!("{name} address"),
            (false, true) => format!("{name} port"),
            (false, false) => return String::new(),
        };
        format!("the {what} is {} (was {})", show(after), show(before))
    };
    let has = |c| changes.contains(&c);
    let parts: Vec<String> = [
        side(has(Change::SrcAddr), has(Change::SrcPort), true),
        side(has(Change::DstAddr), has(Change::DstPort), false),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    if parts.is_empty() {
        "no address or port changed".into()
    } else {
        parts.join(" and ")
    }
}

/// One sentence: where the packet was last fine, where it first broke, and what changed.
pub fn sentence(analysis: &Analysis, path: &Path) -> String {
    let bad = path.first_bad();
    let Some(good) = path.last_good() else {
        return format!(
            "first seen broken at {}: no earlier audited hook saw this packet (the hop before is \
             not audited, or rewrote what identifies the packet: GSO resegmentation, MSS \
             clamping, an ALG)",
            place(analysis, bad)
        );
    };
    let field = if good.got == bad.got {
        "the checksum field is unchanged".to_owned()
    } else {
        format!(
            "the checksum field changed {} -> {}",
            hex(good.got),
            hex(bad.got)
        )
    };
    format!(
        "{} is fine at {} ({}); at {} {} and {field}: it broke between these two hooks",
        good.flow,
        place(analysis, good),
        good_state(good),
        place(analysis, bad),
        rewritten(&path.changes(), &good.flow, &bad.flow),
    )
}

/// Where it broke, in a few words: for the terminal view's row.
pub fn short(analysis: &Analysis, path: &Path) -> String {
    let bad = path.first_bad();
    match path.last_good() {
        Some(good) => format!(
            "broke between {} and {}: {}",
            place(analysis, good),
            place(analysis, bad),
            rewritten(&path.changes(), &good.flow, &bad.flow)
        ),
        None => format!("first seen broken at {}", place(analysis, bad)),
    }
}

/// The path under a diagnosis: the sentence, then one line per hop.
pub fn text(analysis: &Analysis, path: &Path) -> String {
    let mut out = format!("      path: {}\n", sentence(analysis, path));
    for (i, hop) in path.hops.iter().enumerate() {
        let mark = if i == path.first_bad {
            "  <- first bad"
        } else if Some(i) == path.last_good {
            "  <- last good"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "        {}. {:<36} {:<12} {}  field {}{}{mark}",
            i + 1,
            place(analysis, hop),
            status_word(hop),
            hop.flow,
            hex(hop.got),
            hop.ip_summed
                .map_or_else(String::new, |s| format!(" ({})", s.name())),
        );
    }
    out
}

fn hop_json(analysis: &Analysis, hop: &Hop) -> Value {
    let s = analysis.source(hop.source);
    let (sport, dport) = hop
        .flow
        .ports
        .map_or((Value::Null, Value::Null), |(a, b)| (json!(a), json!(b)));
    json!({
        "iface": s.name,
        "hook": s.hook.name(),
        "status": hop.status.name(),
        "src": hop.flow.src.to_string(),
        "dst": hop.flow.dst.to_string(),
        "sport": sport,
        "dport": dport,
        "got": hex(hop.got),
        "ip_summed": hop.ip_summed.map(IpSummed::name),
        "ts_ns": hop.timestamp_ns,
    })
}

/// The `"type": "path"` object.
pub fn json(analysis: &Analysis, path: &Path) -> Value {
    let bad = path.first_bad();
    let good = path.last_good();
    json!({
        "type": "path",
        "layer": path.id.layer.name(),
        "family": bad.flow.family(),
        "identity": {
            "ip_id": path.id.ip_id,
            "flow_label": path.id.flow_label,
            "tcp_seq": path.id.tcp_seq,
            "tcp_ack": path.id.tcp_ack,
            "len": path.id.l4_len,
        },
        "hops": path.hops.iter().map(|h| hop_json(analysis, h)).collect::<Vec<_>>(),
        "first_bad": path.first_bad,
        "last_good": path.last_good,
        "changed": path.changes().iter().map(|c| c.name()).collect::<Vec<_>>(),
        "rewrites": good.map_or_else(Vec::new, |g| {
            path.changes()
                .iter()
                .map(|c| json!({
                    "field": c.name(),
                    "from": c.value_in(&g.flow),
                    "to": c.value_in(&bad.flow),
                }))
                .collect::<Vec<_>>()
        }),
        "field_changed": good.map(|g| g.got != bad.got),
        "sentence": sentence(analysis, path),
    })
}
