//! Decoding kernel events into owned reports, and their JSON form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use checksum_common::{
    ChecksumEvent, Hook, Kind, Layer, Status,
    event::{Direction, FAMILY_IPV4},
};
use serde_json::{Value, json};

/// The flow a verdict belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports for TCP and UDP; `None` for the IPv4 header, ICMP and ICMPv6.
    pub ports: Option<(u16, u16)>,
    pub protocol: u8,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ports, self.src) {
            (Some((sp, dp)), IpAddr::V6(_)) => {
                write!(f, "[{}]:{sp} -> [{}]:{dp}", self.src, self.dst)
            }
            (Some((sp, dp)), _) => write!(f, "{}:{sp} -> {}:{dp}", self.src, self.dst),
            (None, _) => write!(f, "{} -> {}", self.src, self.dst),
        }
    }
}

/// One decoded checksum verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub hook: Hook,
    pub direction: Direction,
    pub layer: Layer,
    pub status: Status,
    pub kind: Kind,
    pub flow: Flow,
    pub got: u16,
    pub want: u16,
    pub pseudo: u16,
    pub l4_len: u32,
    pub ip_id: u32,
    pub tcp_seq: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed event from the kernel program: {0}")]
pub struct DecodeError(&'static str);

impl Verdict {
    /// Decodes a ring-buffer record. The bytes come from our own program, but are still checked:
    /// a short record or an unknown enum value is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < size_of::<ChecksumEvent>() {
            return Err(DecodeError("short record"));
        }
        // SAFETY: length checked; ChecksumEvent is Pod (any bit pattern is valid); read_unaligned
        // because ring-buffer records are only 8-byte aligned by convention.
        let e: ChecksumEvent = unsafe { bytes.as_ptr().cast::<ChecksumEvent>().read_unaligned() };
        Self::from_event(&e)
    }

    pub fn from_event(e: &ChecksumEvent) -> Result<Self, DecodeError> {
        let layer = Layer::from_u8(e.layer).ok_or(DecodeError("layer"))?;
        let (src, dst) = if e.family == FAMILY_IPV4 {
            let [a, b, c, d, ..] = e.src_addr;
            let [w, x, y, z, ..] = e.dst_addr;
            (
                IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
                IpAddr::V4(Ipv4Addr::new(w, x, y, z)),
            )
        } else {
            (
                IpAddr::V6(Ipv6Addr::from(e.src_addr)),
                IpAddr::V6(Ipv6Addr::from(e.dst_addr)),
            )
        };
        let ports = matches!(layer, Layer::Tcp | Layer::Udp).then_some((e.src_port, e.dst_port));
        Ok(Self {
            timestamp_ns: e.timestamp_ns,
            ifindex: e.ifindex,
            hook: Hook::from_u8(e.hook).ok_or(DecodeError("hook"))?,
            direction: Direction::from_u8(e.direction).ok_or(DecodeError("direction"))?,
            layer,
            status: Status::from_u8(e.status).ok_or(DecodeError("status"))?,
            kind: Kind::from_u8(e.kind).ok_or(DecodeError("kind"))?,
            flow: Flow {
                src,
                dst,
                ports,
                protocol: e.protocol,
            },
            got: e.got,
            want: e.want,
            pseudo: e.pseudo,
            l4_len: e.l4_len,
            ip_id: e.ip_id,
            tcp_seq: e.tcp_seq,
        })
    }

    pub fn family(&self) -> &'static str {
        if self.flow.src.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        }
    }

    /// The JSON object shared by `replay --format json` and live `--format json`; the caller adds
    /// `packet`, or `iface`, `hook` and `ts`.
    pub fn json_fields(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!("verdict"));
        m.insert("layer".into(), json!(self.layer.name()));
        m.insert("status".into(), json!(self.status.name()));
        let verified = matches!(self.status, Status::Ok | Status::Bad);
        m.insert(
            "got".into(),
            if verified || self.status == Status::None {
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
        m
    }
}

pub fn hex(v: u16) -> String {
    format!("{v:#06x}")
}
