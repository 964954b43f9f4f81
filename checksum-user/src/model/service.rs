//! A Service as the NAT candidate table needs it: its name, its virtual addresses and its ports,
//! already checked. Two readers fill it, each from its own encoding: the `--nat-candidates`
//! reader from `kubectl get svc -A -o json` (`analysis/candidates.rs`), the cluster watcher from
//! the API's typed objects (`kube/convert.rs`); both report a bad field with the same
//! [`ServiceError`].

use std::{fmt, net::IpAddr};

/// What the candidates of one Service are built from (`analysis::candidates::of_service`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatService {
    /// `namespace/name` (`name` alone without a namespace); `None` without `metadata.name`.
    pub name: Option<String>,
    /// `spec.clusterIP`, then `spec.clusterIPs`, in order; a headless Service has none.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` (entries with only a hostname give none).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.ports`, in order.
    pub ports: Vec<ServicePort>,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name, `""` when unnamed: the key of its Endpoints port.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// An unset targetPort (absent, 0 or `""`) is the port, as the API server sets it.
    pub target: TargetPort,
    /// `None` when absent or 0 (how a request asks for one to be allocated).
    pub node_port: Option<u16>,
}

/// A Service port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// As Kubernetes spells it: `TCP`, `UDP`, `SCTP`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }

    /// The IP protocol number (a flow's `protocol`): 6, 17, 132.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    /// `TCP`, `UDP` or `SCTP` in any case.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Tcp, Self::Udp, Self::Sctp]
            .into_iter()
            .find(|p| s.eq_ignore_ascii_case(p.name()))
    }
}

/// Where a Service port forwards to on the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetPort {
    Number(u16),
    /// A container port's name: the number is the endpoint's, unknown here.
    Named(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(port) => write!(f, "{port}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

/// How much of a bad value an error quotes.
const QUOTE_CHARS: usize = 60;

/// A Service being read: its name, and how its errors begin.
#[derive(Debug, Clone)]
pub struct ServiceReader {
    pub name: Option<String>,
    who: String,
}

impl ServiceReader {
    /// `index` is the Service's place in a list, to say which when it has no name.
    pub fn new(namespace: Option<&str>, name: Option<&str>, index: Option<usize>) -> Self {
        let name = match (namespace, name) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name.to_owned()),
            _ => None,
        };
        let who = match (&name, index) {
            (Some(name), _) => format!("Service {name}"),
            (None, Some(i)) => format!("the Service at items[{i}] (no metadata.name)"),
            (None, None) => "the Service (no metadata.name)".to_owned(),
        };
        Self { name, who }
    }

    /// `<who>: <field> <problem>`.
    pub fn error(&self, field: &str, problem: impl fmt::Display) -> ServiceError {
        ServiceError {
            message: format!("{}: {field} {problem}", self.who),
        }
    }

    /// `<field> <shown> is not <what>`, `shown` being the value as JSON spells it, of which at
    /// most [`QUOTE_CHARS`] characters are quoted.
    pub fn not(&self, field: &str, shown: &str, what: &str) -> ServiceError {
        let shown = if shown.chars().count() > QUOTE_CHARS {
            let cut: String = shown.chars().take(QUOTE_CHARS).collect();
            format!("{cut}…")
        } else {
            shown.to_owned()
        };
        self.error(field, format!("{shown} is not {what}"))
    }

    /// An address field's text: `None` for a headless Service's `"None"` and for `""`.
    pub fn ip(&self, s: &str, field: &str, shown: &str) -> Result<Option<IpAddr>, ServiceError> {
        if s.is_empty() || s == "None" {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| self.not(field, shown, "an IP address"))
    }

    /// A port number, 1 to 65535.
    pub fn port(&self, n: Option<u64>, field: &str, shown: &str) -> Result<u16, ServiceError> {
        n.and_then(|n| u16::try_from(n).ok())
            .filter(|&p| p != 0)
            .ok_or_else(|| self.not(field, shown, "a port (1-65535)"))
    }
}

/// A Service field the candidate table cannot take: one line naming the Service and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    message: String,
}
