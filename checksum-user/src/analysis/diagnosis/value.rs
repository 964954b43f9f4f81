//! The values a rewrite may have changed (an address, a port, both) and how each enters a
//! checksum, indexed by their sum so that each rule inverts its arithmetic with one lookup.

use std::net::IpAddr;

use checksum_common::{
    csum::{addr_sum_v4, addr_sum_v6},
    signature::{Rewritten, Signature},
};

use super::{Evidence, RewrittenField};
use crate::model::Flow;

/// How a rewritten value enters the checksum (`Signature::contribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Shape {
    Addr,
    /// An address counted twice: a partial checksum updated as if complete (the address is in
    /// both the pseudo-header sum it held and the update).
    AddrTwice,
    Port,
    AddrPort,
    AddrTwicePort,
}

impl Shape {
    pub(super) fn of(sig: Signature, what: Rewritten) -> Self {
        match (what, sig.counts_the_address_twice()) {
            (Rewritten::Addr, false) => Self::Addr,
            (Rewritten::Addr, true) => Self::AddrTwice,
            (Rewritten::Port, _) => Self::Port,
            (Rewritten::AddrPort, false) => Self::AddrPort,
            (Rewritten::AddrPort, true) => Self::AddrTwicePort,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Value {
    Addr(IpAddr),
    Port(u16),
    AddrPort(IpAddr, u16),
}

impl Value {
    pub(super) fn is_v6(self) -> bool {
        match self {
            Self::Addr(a) | Self::AddrPort(a, _) => a.is_ipv6(),
            Self::Port(_) => false,
        }
    }

    /// The shapes this value can be rewritten as.
    pub(super) fn shapes(self) -> &'static [Shape] {
        match self {
            Self::Addr(_) => &[Shape::Addr, Shape::AddrTwice],
            Self::Port(_) => &[Shape::Port],
            Self::AddrPort(..) => &[Shape::AddrPort, Shape::AddrTwicePort],
        }
    }

    /// What the value contributes to a checksum when rewritten as `shape`.
    pub(super) fn sum(self, shape: Shape) -> u16 {
        let twice = matches!(shape, Shape::AddrTwice | Shape::AddrTwicePort);
        let sig = if twice {
            Signature::CompletedAfterPartialUpdatedAsComplete
        } else {
            Signature::StaleAfterRewrite
        };
        match self {
            Self::Addr(a) => sig.contribution(Some(addr_sum(a)), None),
            Self::Port(p) => sig.contribution(None, Some(p)),
            Self::AddrPort(a, p) => sig.contribution(Some(addr_sum(a)), Some(p)),
        }
    }

    /// An address:port rewrite must change both; one that keeps either is an address or port
    /// rewrite, found (and better named) as such.
    pub(super) fn changes_every_part_of(self, current: Value) -> bool {
        match (self, current) {
            (Self::AddrPort(a, p), Self::AddrPort(b, q)) => a != b && p != q,
            _ => self != current,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(a) => write!(f, "{a}"),
            Self::Port(p) => write!(f, "{p}"),
            Self::AddrPort(a @ IpAddr::V6(_), p) => write!(f, "[{a}]:{p}"),
            Self::AddrPort(a, p) => write!(f, "{a}:{p}"),
        }
    }
}

pub(super) fn addr_sum(a: IpAddr) -> u16 {
    match a {
        IpAddr::V4(a) => addr_sum_v4(a.octets()),
        IpAddr::V6(a) => addr_sum_v6(&a.octets()),
    }
}

/// Index key: shape, family, and the contribution modulo 0xffff (both zeros are one key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SumKey(Shape, bool, u16);

impl SumKey {
    pub(super) fn new(shape: Shape, v6: bool, sum: u16) -> Self {
        Self(shape, v6, sum % 0xffff)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    Src,
    Dst,
}

impl Side {
    /// The flow's value of `what` on this side (`None` for ports of a portless layer).
    pub(super) fn value(self, flow: &Flow, what: Rewritten) -> Option<Value> {
        let (addr, port) = match self {
            Self::Src => (flow.src, flow.ports.map(|p| p.0)),
            Self::Dst => (flow.dst, flow.ports.map(|p| p.1)),
        };
        match what {
            Rewritten::Addr => Some(Value::Addr(addr)),
            Rewritten::Port => port.map(Value::Port),
            Rewritten::AddrPort => port.map(|p| Value::AddrPort(addr, p)),
        }
    }

    pub(super) fn field(self, what: Rewritten) -> RewrittenField {
        match (self, what) {
            (Self::Src, Rewritten::Addr) => RewrittenField::SrcAddr,
            (Self::Dst, Rewritten::Addr) => RewrittenField::DstAddr,
            (Self::Src, Rewritten::Port) => RewrittenField::SrcPort,
            (Self::Dst, Rewritten::Port) => RewrittenField::DstPort,
            (Self::Src, Rewritten::AddrPort) => RewrittenField::SrcAddrPort,
            (Self::Dst, Rewritten::AddrPort) => RewrittenField::DstAddrPort,
        }
    }

    /// The flow with this side's address and/or port replaced by `v`: the flow before the rewrite.
    pub(super) fn with(self, flow: &Flow, v: Value) -> Flow {
        let mut f = *flow;
        let (addr, port) = match self {
            Self::Src => (&mut f.src, f.ports.as_mut().map(|p| &mut p.0)),
            Self::Dst => (&mut f.dst, f.ports.as_mut().map(|p| &mut p.1)),
        };
        match (v, port) {
            (Value::Addr(a), _) => *addr = a,
            (Value::Port(p), Some(port)) => *port = p,
            (Value::AddrPort(a, p), Some(port)) => (*addr, *port) = (a, p),
            _ => {}
        }
        f
    }
}

/// A value that explains a flow's field.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) field: RewrittenField,
    pub(super) original: Value,
    pub(super) current: Value,
    pub(super) evidence: Evidence,
    pub(super) signature: Signature,
}
