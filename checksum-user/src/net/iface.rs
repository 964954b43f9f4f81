//! What kind of interface a link is (a NIC, a bond, a VLAN, loopback, or a virtual device of some
//! kind), read from its rtnetlink message: where a verdict was seen, as severity judges it.

use netlink_packet_route::link::LinkMessage;

use crate::sys::netlink::{is_loopback, link_kind};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IfaceClass {
    /// A NIC: no link kind, not loopback.
    Physical,
    Bond,
    Vlan,
    Loopback,
    /// veth, tun/tap, bridge, vxlan, netkit, dummy, ...: the kernel's link kind.
    Virtual(String),
}

impl IfaceClass {
    pub fn of(link: &LinkMessage) -> Self {
        if is_loopback(link) {
            return Self::Loopback;
        }
        match link_kind(link).as_deref() {
            None => Self::Physical,
            Some("bond") => Self::Bond,
            Some("vlan") => Self::Vlan,
            Some(kind) => Self::Virtual(kind.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Physical => "physical",
            Self::Bond => "bond",
            Self::Vlan => "vlan",
            Self::Loopback => "loopback",
            Self::Virtual(kind) => kind,
        }
    }
}
