//! What a verdict says, in a form both sides produce: the reference directly, the kernel through
//! [`Judged::from_verdict`]. Fields that carry no meaning for a status (the field of an
//! unverifiable segment, the ports of a UDP header that was never read) are `None`, so that the
//! comparison is about what a user of the event can rely on, not about placeholder zeros.

use std::{fmt, net::IpAddr};

use checksum_common::{Counters, Kind, Layer, Status, encap::EncapKind};

use checksum_user::model::Verdict;

/// The tunnel a verdict's packet came in, as the event reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    pub kind: EncapKind,
    pub vni: u32,
    /// The outer IP addresses (for IPv6, the destination the outer pseudo-header uses).
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub layer: Layer,
    pub status: Status,
    /// `Some` for `bad` only.
    pub kind: Option<Kind>,
    /// The field as received: `ok`, `bad` and `none`.
    pub got: Option<u16>,
    /// The value the field should hold: `ok` (the field itself) and `bad`.
    pub want: Option<u16>,
    /// Folded pseudo-header sum for `ok` and `bad`; 0 where the checksum has no pseudo-header.
    pub pseudo: Option<u16>,
    /// Checksummed length: the IPv4 header, the UDP length, or the IP payload after the headers.
    pub len: u32,
    pub src: IpAddr,
    /// For IPv6 with a Routing header that has segments left, the final destination.
    pub dst: IpAddr,
    pub protocol: u8,
    /// TCP/UDP ports once the header was read (`ok`, `bad`, `none`); `None` for other layers.
    pub ports: Option<(u16, u16)>,
    /// The TCP sequence number once the header was read (0 for other layers).
    pub tcp_seq: Option<u32>,
    /// IPv4 identification, or the IPv6 Fragment header's (0 without one).
    pub ip_id: u32,
    /// The level: `true` for a verdict about the packet inside a tunnel.
    pub inner: bool,
    /// The tunnel, for both levels of a tunnelled frame; `None` for a frame that is not one.
    pub encap: Option<Encap>,
}

/// Whether a status means the L4 header was read.
fn header_read(status: Status) -> bool {
    matches!(status, Status::Ok | Status::Bad | Status::None)
}

impl Judged {
    pub fn from_verdict(v: &Verdict) -> Self {
        let verified = matches!(v.status, Status::Ok | Status::Bad);
        let read = header_read(v.status);
        Self {
            layer: v.layer,
            status: v.status,
            kind: (v.status == Status::Bad).then_some(v.kind),
            got: read.then_some(v.got),
            want: verified.then_some(v.want),
            pseudo: verified.then_some(v.pseudo),
            len: v.l4_len,
            src: v.flow.src,
            dst: v.flow.dst,
            protocol: v.flow.protocol,
            ports: if read { v.flow.ports } else { None },
            tcp_seq: read.then_some(v.tcp_seq),
            ip_id: v.ip_id,
            inner: v.encap.is_some_and(|t| t.inner),
            encap: v.encap.map(|t| Encap {
                kind: t.kind,
                vni: t.vni,
                outer_src: t.outer_src,
                outer_dst: t.outer_dst,
            }),
        }
    }
}

impl fmt::Display for Judged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |v: Option<u16>| v.map_or("-".to_string(), |v| format!("{v:#06x}"));
        write!(
            f,
            "{} {}{} got {} want {} pseudo {} len {} {} -> {} proto {}",
            self.layer.name(),
            self.status.name(),
            self.kind
                .map_or(String::new(), |k| format!("/{}", k.name())),
            hex(self.got),
            hex(self.want),
            hex(self.pseudo),
            self.len,
            self.src,
            self.dst,
            self.protocol,
        )?;
        if let Some((s, d)) = self.ports {
            write!(f, " ports {s}->{d}")?;
        }
        if let Some(seq) = self.tcp_seq.filter(|s| *s != 0) {
            write!(f, " seq {seq:#x}")?;
        }
        if self.ip_id != 0 {
            write!(f, " id {:#x}", self.ip_id)?;
        }
        if let Some(e) = &self.encap {
            write!(
                f,
                " [{} {} vni {} outer {} -> {}]",
                if self.inner { "inner" } else { "outer" },
                e.kind.name(),
                e.vni,
                e.outer_src,
                e.outer_dst
            )?;
        } else if self.inner {
            write!(f, " [inner, no tunnel]")?;
        }
        Ok(())
    }
}

/// Everything one frame produces: its verdicts in order, and the frame-level counters.
#[expect(
    clippy::struct_excessive_bools,
    reason = "each flag is whether one counter moved, compared one by one"
)]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub verdicts: Vec<Judged>,
    /// Counted as malformed (inconsistent lengths or versions, a header the frame cuts).
    pub malformed: bool,
    /// Counted as not IP (another ethertype, or more VLAN tags than are parsed).
    pub not_ip: bool,
    /// Counted as a tunnel (`encapsulated`): its header was recognised after the outer UDP header.
    pub encapsulated: bool,
    /// Counted as `inner_malformed`: the packet inside the tunnel is inconsistent or cut short.
    pub inner_malformed: bool,
}

impl Outcome {
    /// The kernel's outcome: its reported verdicts and the counters the run moved.
    pub fn observed(verdicts: &[Verdict], delta: &Counters) -> Self {
        Self {
            verdicts: verdicts.iter().map(Judged::from_verdict).collect(),
            malformed: delta.malformed != 0,
            not_ip: delta.not_ip != 0,
            encapsulated: delta.encapsulated != 0,
            inner_malformed: delta.inner_malformed != 0,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<String> = self
            .verdicts
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        if self.verdicts.is_empty() {
            lines.push("(no verdict)".into());
        }
        if self.malformed {
            lines.push("counted malformed".into());
        }
        if self.not_ip {
            lines.push("counted not IP".into());
        }
        if self.encapsulated {
            lines.push("counted encapsulated".into());
        }
        if self.inner_malformed {
            lines.push("counted inner malformed".into());
        }
        write!(f, "    {}", lines.join("\n    "))
    }
}

/// Where the kernel's outcome departs from the reference's, in words; `None` when they agree.
pub fn differences(expected: &Outcome, observed: &Outcome) -> Option<String> {
    if expected == observed {
        return None;
    }
    let mut out = Vec::new();
    if expected.malformed != observed.malformed {
        out.push(format!(
            "malformed: reference {}, kernel {}",
            expected.malformed, observed.malformed
        ));
    }
    if expected.not_ip != observed.not_ip {
        out.push(format!(
            "not IP: reference {}, kernel {}",
            expected.not_ip, observed.not_ip
        ));
    }
    for (name, e, o) in [
        ("encapsulated", expected.encapsulated, observed.encapsulated),
        (
            "inner malformed",
            expected.inner_malformed,
            observed.inner_malformed,
        ),
    ] {
        if e != o {
            out.push(format!("{name}: reference {e}, kernel {o}"));
        }
    }
    let n = expected.verdicts.len().max(observed.verdicts.len());
    for i in 0..n {
        match (expected.verdicts.get(i), observed.verdicts.get(i)) {
            (Some(e), Some(o)) if e == o => {}
            (Some(e), Some(o)) => {
                out.push(format!("verdict {i}:\n  reference {e}\n  kernel    {o}"));
            }
            (Some(e), None) => out.push(format!("verdict {i}: reference {e}, kernel nothing")),
            (None, Some(o)) => out.push(format!("verdict {i}: reference nothing, kernel {o}")),
            (None, None) => {}
        }
    }
    Some(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ok_tcp() -> Judged {
        Judged {
            layer: Layer::Tcp,
            status: Status::Ok,
            kind: None,
            got: Some(0x1234),
            want: Some(0x1234),
            pseudo: Some(0x0abc),
            len: 20,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            protocol: 6,
            ports: Some((1, 2)),
            tcp_seq: Some(7),
            ip_id: 0,
            inner: false,
            encap: None,
        }
    }

    #[test]
    fn agreement_is_silent() {
        let o = Outcome {
            verdicts: vec![ok_tcp()],
            ..Outcome::default()
        };
        assert_eq!(differences(&o, &o.clone()), None);
    }

    #[test]
    fn a_wrong_reference_verdict_is_reported() {
        let kernel = Outcome {
            verdicts: vec![ok_tcp()],
            ..Outcome::default()
        };
        // Each field a reference could get wrong, one at a time.
        let mut wrong: Vec<Outcome> = Vec::new();
        let mut push = |f: &dyn Fn(&mut Judged)| {
            let mut o = kernel.clone();
            f(&mut o.verdicts[0]);
            wrong.push(o);
        };
        push(&|j| j.status = Status::Bad);
        push(&|j| j.want = Some(0x1235));
        push(&|j| j.kind = Some(Kind::Corrupt));
        push(&|j| j.layer = Layer::Udp);
        push(&|j| j.len = 21);
        push(&|j| j.dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)));
        push(&|j| j.pseudo = Some(0));
        push(&|j| j.inner = true);
        let tunnel = Encap {
            kind: EncapKind::Vxlan,
            vni: 42,
            outer_src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            outer_dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        };
        push(&|j| j.encap = Some(tunnel));
        let mut tunnelled = kernel.clone();
        tunnelled.verdicts[0].encap = Some(tunnel);
        for f in [
            &|e: &mut Encap| e.kind = EncapKind::Geneve,
            &|e: &mut Encap| e.vni = 43,
            &|e: &mut Encap| e.outer_dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
        ] as [&dyn Fn(&mut Encap); 3]
        {
            let mut o = tunnelled.clone();
            f(o.verdicts[0].encap.as_mut().unwrap());
            assert!(differences(&o, &tunnelled).is_some(), "not reported: {o:?}");
        }
        for f in [
            &|o: &mut Outcome| o.encapsulated = true,
            &|o: &mut Outcome| o.inner_malformed = true,
        ] as [&dyn Fn(&mut Outcome); 2]
        {
            let mut o = kernel.clone();
            f(&mut o);
            wrong.push(o);
        }
        let mut malformed = kernel.clone();
        malformed.malformed = true;
        wrong.push(malformed);
        let mut extra = kernel.clone();
        extra.verdicts.push(ok_tcp());
        wrong.push(extra);
        wrong.push(Outcome::default());
        for w in &wrong {
            let d = differences(w, &kernel);
            assert!(d.is_some(), "not reported: {w:?}");
        }
    }
}
