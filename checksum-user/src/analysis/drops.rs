//! The kernel's checksum drops, by flow, and what they say about the audit's findings: a flow
//! whose bad packets the kernel dropped for a checksum reason is confirmed; drops of flows the
//! audit never saw bad are listed apart (a hop not audited, or a state trusted).

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use checksum_common::Layer;

use crate::model::Flow;

/// A flow as both sides can name it: the IPv4 header's checksum (`IP_CSUM`, the `ipv4` layer)
/// is a matter of addresses alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropFlow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ports: Option<(u16, u16)>,
    /// 0 for the IPv4 header.
    pub protocol: u8,
}

impl DropFlow {
    /// The key of an audited flow at `layer`.
    pub fn of(layer: Layer, flow: &Flow) -> Self {
        match layer {
            Layer::Ipv4 => Self {
                src: flow.src,
                dst: flow.dst,
                ports: None,
                protocol: 0,
            },
            _ => Self::from(flow),
        }
    }

    pub fn to_flow(self) -> Flow {
        Flow {
            src: self.src,
            dst: self.dst,
            ports: self.ports,
            protocol: self.protocol,
        }
    }
}

impl From<&Flow> for DropFlow {
    fn from(flow: &Flow) -> Self {
        Self {
            src: flow.src,
            dst: flow.dst,
            ports: flow.ports,
            protocol: flow.protocol,
        }
    }
}

/// One checksum drop as the analysis takes it in: names resolved by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropSeen {
    pub timestamp_ns: u64,
    /// `TCP_CSUM`, `UDP_CSUM`, ...
    pub reason: String,
    /// `tcp_v4_rcv+0x4a1`, or the address.
    pub location: String,
    /// `netns/iface`, `iface`, or `ifindex N` where the device is not one audited.
    pub device: String,
    /// The audited namespace it was dropped in (its place in the run's list, as
    /// `SourceFacts::namespace`), `None` for one not audited.
    pub namespace: Option<usize>,
    /// `None` when the packet's headers could not be read.
    pub flow: Option<Flow>,
}

/// The drops of one flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowDrops {
    pub count: u64,
    /// By reason and location.
    pub places: BTreeMap<(String, String), u64>,
    /// Where the last one was.
    pub device: String,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl FlowDrops {
    /// `TCP_CSUM at tcp_v4_do_rcv+0x1a0` (the most frequent place first; `, ...` when more).
    pub fn places_text(&self) -> String {
        let mut places: Vec<_> = self.places.iter().collect();
        places.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
        let mut s = places
            .iter()
            .take(2)
            .map(|((reason, location), _)| format!("{reason} at {location}"))
            .collect::<Vec<_>>()
            .join(", ");
        if places.len() > 2 {
            s.push_str(", ...");
        }
        s
    }
}

/// Every checksum drop of the run, bounded: at most `limit` flows are kept, the rest counted.
#[derive(Debug)]
pub struct KernelDrops {
    limit: usize,
    /// By namespace and flow: the same addresses may be in use in several namespaces.
    by_flow: HashMap<(Option<usize>, DropFlow), FlowDrops>,
    /// Drops by reason, all of them.
    pub by_reason: BTreeMap<String, u64>,
    pub total: u64,
    /// Drops whose packet headers could not be read (counted by reason, not by flow).
    pub unreadable: u64,
    /// Drops of flows past `limit`.
    pub untracked: u64,
}

impl Default for KernelDrops {
    fn default() -> Self {
        Self::with_limit(crate::analysis::aggregate::DEFAULT_MAX_KEYS)
    }
}

impl KernelDrops {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            by_flow: HashMap::new(),
            by_reason: BTreeMap::new(),
            total: 0,
            unreadable: 0,
            untracked: 0,
        }
    }

    pub fn add(&mut self, d: &DropSeen) {
        self.total += 1;
        *self.by_reason.entry(d.reason.clone()).or_default() += 1;
        let Some(flow) = &d.flow else {
            self.unreadable += 1;
            return;
        };
        let key = (d.namespace, DropFlow::from(flow));
        let tracked = self.by_flow.len();
        let e = match self.by_flow.get_mut(&key) {
            Some(e) => e,
            None if tracked < self.limit => self.by_flow.entry(key).or_insert(FlowDrops {
                first_ns: d.timestamp_ns,
                ..FlowDrops::default()
            }),
            None => {
                self.untracked += 1;
                return;
            }
        };
        e.count += 1;
        e.first_ns = e.first_ns.min(d.timestamp_ns);
        e.last_ns = e.last_ns.max(d.timestamp_ns);
        e.device.clone_from(&d.device);
        *e.places
            .entry((d.reason.clone(), d.location.clone()))
            .or_default() += 1;
    }

    /// The drops of the audited flow `flow` at `layer`: in its own namespace `namespace`, else in
    /// a namespace the run does not audit. The second is the node agent's case: a pod's host-side
    /// veth is audited in the node's namespace, and the pod's own kernel, in the pod's, drops
    /// the flow's packets at delivery. The flow's addresses and ports make them the same packets.
    pub fn of(&self, namespace: usize, layer: Layer, flow: &Flow) -> Option<&FlowDrops> {
        let flow = DropFlow::of(layer, flow);
        self.by_flow
            .get(&(Some(namespace), flow))
            .or_else(|| self.by_flow.get(&(None, flow)))
    }

    /// The drops so far of `d`'s namespace and flow.
    pub fn of_drop(&self, d: &DropSeen) -> Option<&FlowDrops> {
        self.by_flow
            .get(&(d.namespace, DropFlow::from(d.flow.as_ref()?)))
    }

    /// The dropped flows for which `audited` says no, most drops first.
    pub fn unexplained(
        &self,
        audited: impl Fn(&(Option<usize>, DropFlow)) -> bool,
    ) -> Vec<(DropFlow, &FlowDrops)> {
        let mut rows: Vec<_> = self
            .by_flow
            .iter()
            .filter(|(k, _)| !audited(k))
            .map(|(k, v)| (k.1, v))
            .collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        rows
    }

    pub fn flows(&self) -> usize {
        self.by_flow.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn drop(sport: u16, reason: &str, protocol: u8) -> DropSeen {
        DropSeen {
            timestamp_ns: u64::from(sport),
            reason: reason.into(),
            location: "tcp_v4_rcv+0x10".into(),
            device: "ns/veth-b".into(),
            namespace: Some(0),
            flow: Some(Flow {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                ports: (protocol != 0).then_some((sport, 80)),
                protocol,
            }),
        }
    }

    #[test]
    fn drops_are_found_by_the_audited_flow_and_layer() {
        let mut k = KernelDrops::default();
        k.add(&drop(1, "TCP_CSUM", 6));
        k.add(&drop(1, "TCP_CSUM", 6));
        k.add(&drop(0, "IP_CSUM", 0));
        let tcp = drop(1, "TCP_CSUM", 6).flow.unwrap();
        let found = k.of(0, Layer::Tcp, &tcp).expect("tcp drops");
        assert!(
            k.of(1, Layer::Tcp, &tcp).is_none(),
            "another audited namespace"
        );
        assert_eq!(found.count, 2);
        assert_eq!(found.places_text(), "TCP_CSUM at tcp_v4_rcv+0x10");
        // An ipv4-layer verdict names the IP protocol and no ports; the drop has neither.
        let mut v4 = tcp;
        v4.ports = None;
        assert_eq!(k.of(0, Layer::Ipv4, &v4).map(|d| d.count), Some(1));
        let udp = drop(1, "UDP_CSUM", 17).flow.unwrap();
        assert!(
            k.of(0, Layer::Udp, &udp).is_none(),
            "same ports, other protocol"
        );
        assert_eq!(k.by_reason["TCP_CSUM"], 2);
        // Nothing audited: both flows are unexplained, most drops first.
        let rows = k.unexplained(|_| false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.count, 2);
        assert_eq!(k.unexplained(|_| true), []);
    }

    #[test]
    fn memory_is_bounded_and_the_rest_counted() {
        let mut k = KernelDrops::with_limit(2);
        for port in 0..5 {
            k.add(&drop(port + 1, "UDP_CSUM", 17));
        }
        let mut unreadable = drop(9, "UDP_CSUM", 17);
        unreadable.flow = None;
        k.add(&unreadable);
        assert_eq!(k.flows(), 2);
        assert_eq!((k.total, k.untracked, k.unreadable), (6, 3, 1));
        assert_eq!(k.by_reason["UDP_CSUM"], 6, "every drop counted by reason");
    }

    /// A pod's kernel drops, in a namespace the run does not audit, confirm the flow audited on
    /// the pod's host-side veth; drops in another audited namespace do not.
    #[test]
    fn drops_in_a_namespace_not_audited_confirm_the_flow() {
        let mut k = KernelDrops::default();
        let mut d = drop(7, "TCP_CSUM", 6);
        d.namespace = None;
        k.add(&d);
        let tcp = d.flow.unwrap();
        assert_eq!(k.of(0, Layer::Tcp, &tcp).map(|f| f.count), Some(1));
        assert_eq!(k.of(3, Layer::Tcp, &tcp).map(|f| f.count), Some(1));
        let mut other = tcp;
        other.ports = Some((8, 80));
        assert!(k.of(0, Layer::Tcp, &other).is_none(), "another flow");
    }
}
