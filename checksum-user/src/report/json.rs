//! The JSON form of a verdict: the one place a `--format json` verdict line is built, for replay
//! and live alike.

use serde_json::{Value, json};

use checksum_common::{Status, event::IpSummed};

use crate::{
    analysis::severity::{Basis, Severity},
    model::{SkbCsum, Tunnel, Verdict, hex},
};

/// What a verdict line says besides the verdict: where the verdict was seen.
pub enum Seen<'a> {
    /// `replay`: the packet's number in the capture file.
    Replay { packet: u64 },
    /// A live run: the interface, the time (RFC 3339), and how severe the verdict is there.
    Live {
        iface: &'a str,
        ts: String,
        severity: Severity,
        basis: Basis,
    },
}

/// A verdict's JSON line (`--format json`), without its newline.
pub fn verdict_line(v: &Verdict, seen: Seen<'_>) -> String {
    let mut m = v.json_fields();
    match seen {
        Seen::Replay { packet } => {
            m.insert("packet".into(), json!(packet));
        }
        Seen::Live {
            iface,
            ts,
            severity,
            basis,
        } => {
            m.insert("iface".into(), json!(iface));
            m.insert("hook".into(), json!(v.hook.name()));
            m.insert("ts".into(), json!(ts));
            m.insert("severity".into(), json!(severity.name()));
            m.insert("severity_basis".into(), json!(basis.name()));
            m.insert("direction".into(), json!(v.direction.name()));
            m.insert("ip_id".into(), json!(v.ip_id));
            m.insert("tcp_seq".into(), json!(v.tcp_seq));
            m.insert("tcp_ack".into(), json!(v.tcp_ack));
            m.insert("flow_label".into(), json!(v.flow_label));
            m.insert("tracked".into(), json!(v.tracked));
            m.insert("pseudo".into(), json!(hex(v.pseudo)));
            m.insert("len".into(), json!(v.l4_len));
        }
    }
    Value::Object(m).to_string()
}

impl Verdict {
    /// The fields every verdict line has, whatever command prints it (`verdict_line` adds where it
    /// was seen).
    pub fn json_fields(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!("verdict"));
        m.insert("layer".into(), json!(self.layer.name()));
        m.insert("status".into(), json!(self.status.name()));
        let verified = matches!(self.status, Status::Ok | Status::Bad);
        m.insert(
            "got".into(),
            if verified || matches!(self.status, Status::None | Status::PartialOk) {
                json!(hex(self.got))
            } else {
                Value::Null
            },
        );
        m.insert(
            "want".into(),
            if verified {
                json!(hex(self.want))
            } else {
                Value::Null
            },
        );
        m.insert(
            "kind".into(),
            if self.status == Status::Bad {
                json!(self.kind.name())
            } else {
                Value::Null
            },
        );
        m.insert("family".into(), json!(self.family()));
        m.insert("src".into(), json!(self.flow.src.to_string()));
        m.insert("dst".into(), json!(self.flow.dst.to_string()));
        let (sport, dport) = self
            .flow
            .ports
            .map_or((Value::Null, Value::Null), |(s, d)| (json!(s), json!(d)));
        m.insert("sport".into(), sport);
        m.insert("dport".into(), dport);
        let mut skb = self.skb.as_ref().map_or(Value::Null, skb_json);
        if let (Some(d), Value::Object(o)) = (self.device_sum_disagrees(), &mut skb) {
            o.insert("device_sum_disagrees".into(), json!(d));
        }
        m.insert("skb".into(), skb);
        m.insert(
            "encap".into(),
            self.encap.as_ref().map_or(Value::Null, tunnel_json),
        );
        m
    }
}

fn tunnel_json(t: &Tunnel) -> Value {
    json!({
        "kind": t.kind.name(),
        "vni": t.vni,
        "level": t.level(),
        "outer_src": t.outer_src.to_string(),
        "outer_dst": t.outer_dst.to_string(),
    })
}

fn skb_json(s: &SkbCsum) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("ip_summed".into(), json!(s.ip_summed.name()));
    if s.ip_summed == IpSummed::Partial {
        m.insert("csum_start".into(), json!(s.csum_start));
        m.insert("csum_offset".into(), json!(s.csum_offset));
        m.insert("network_header".into(), json!(s.network_header));
    }
    if s.ip_summed == IpSummed::Complete {
        m.insert("csum".into(), json!(format!("{:#010x}", s.csum())));
    }
    if s.ip_summed == IpSummed::Unnecessary {
        m.insert("csum_level".into(), json!(s.csum_level));
    }
    m.insert("encapsulation".into(), json!(s.encapsulation));
    Value::Object(m)
}
