//! The values of `--nat-candidates FILE`: addresses and ports a NAT on the audited path may have
//! rewritten a packet's to or from. The diagnoser names a rewrite only with evidence; a value
//! from here is such evidence, with the Service it belongs to as the name to show.
//!
//! Two formats, told apart by content:
//!
//! * `kubectl get svc -A -o json` output (a `List` or `ServiceList` of Services, or one
//!   `Service`). Each virtual address of a Service (`spec.clusterIP` and `spec.clusterIPs`,
//!   `spec.externalIPs`, `status.loadBalancer.ingress[].ip`) is a candidate alone and with each
//!   of the Service's ports; each node port is a candidate alone, as the node's address is not in
//!   the Service. Headless Services have no virtual address and give none.
//! * Plain text: one `ADDR` or `ADDR:PORT` a line (`[v6addr]:port` for IPv6 with a port),
//!   optionally followed by whitespace and a label that names it
//!   (`10.96.0.10:53 kube-system/kube-dns`); `#` starts a comment, blank lines are skipped.
//!
//! A file that gives no candidate at all is an error: whoever passed the option expected some.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::Path,
};

use serde_json::{Map, Value};

use crate::model::service::{NatService, ServiceError, ServicePort, ServiceReader};
pub use crate::model::service::{Protocol, TargetPort};

/// What a candidate is: an address, a port, or both together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateValue {
    Addr(IpAddr),
    /// A port whatever the address (a node port: the node's address is not in the Service).
    Port(u16),
    AddrPort(IpAddr, u16),
}

impl fmt::Display for CandidateValue {
    /// `10.96.0.10`, `port 30080`, `10.96.0.10:53`, `[fd00::1]:53`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Addr(ip) => write!(f, "{ip}"),
            Self::Port(port) => write!(f, "port {port}"),
            Self::AddrPort(ip, port) => write!(f, "{}", SocketAddr::new(ip, port)),
        }
    }
}

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// `spec.clusterIP` / `spec.clusterIPs`.
    ClusterIp,
    /// `spec.externalIPs`.
    ExternalIp,
    /// `status.loadBalancer.ingress[].ip`.
    LoadBalancer,
    /// `spec.ports[].nodePort`.
    NodePort,
    /// A line of a plain-text file.
    File,
}

impl Origin {
    /// `cluster-ip`, `external-ip`, `load-balancer`, `node-port` or `file`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClusterIp => "cluster-ip",
            Self::ExternalIp => "external-ip",
            Self::LoadBalancer => "load-balancer",
            Self::NodePort => "node-port",
            Self::File => "file",
        }
    }
}

/// One value a NAT may have rewritten to or from, and what it is known to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub value: CandidateValue,
    /// The Service port's protocol; `None` for an address alone and for plain-text lines.
    pub protocol: Option<Protocol>,
    /// Where the Service port forwards to; `None` for an address alone and plain-text lines.
    pub target_port: Option<TargetPort>,
    /// `namespace/name` of the Service, or a plain-text line's label.
    pub name: Option<String>,
    pub origin: Origin,
}

/// The candidates of one file, in file order, without duplicates.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    list: Vec<Candidate>,
    /// Positions in `list` of each value's candidates.
    by_value: HashMap<CandidateValue, Vec<usize>>,
}

/// What a Service list is, for errors saying the JSON is something else.
const SERVICE_LIST: &str = "kubectl get svc -A -o json output (a Service list)";

/// How much of a bad line an error quotes.
const QUOTE_CHARS: usize = 60;

/// Why a `--nat-candidates` file was refused: one line, without the file's name.
#[derive(Debug, thiserror::Error)]
pub enum CandidatesError {
    #[error("no addresses or ports in it")]
    Empty,
    /// `quoted` is the line, trimmed and quoted (see `quoted`).
    #[error(
        "line {line} is not ADDR or ADDR:PORT (or kubectl get svc -A -o json output): {quoted}"
    )]
    BadLine { line: usize, quoted: String },
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    /// What the JSON is instead (`JSON of kind "PodList"`).
    #[error("{0}, not {SERVICE_LIST}")]
    NotServices(String),
    /// A `List` or `ServiceList` (the kind) without its items.
    #[error("JSON of kind {0:?} without an \"items\" list")]
    NoItems(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Candidates {
    /// Reads and parses the file given to `--nat-candidates`; errors are one line that names it.
    /// `--nat-candidates`, when given: loaded, with a line on stderr saying how many.
    pub fn load_option(path: Option<&Path>) -> anyhow::Result<Option<Self>> {
        let Some(path) = path else {
            return Ok(None);
        };
        let candidates = Self::load(path)?;
        eprintln!(
            "checksum-audit: {} NAT candidates from {}",
            candidates.len(),
            path.display()
        );
        Ok(Some(candidates))
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --nat-candidates {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("--nat-candidates {}: {e}", path.display()))
    }

    /// Parses either format (module docs); the error is one line, without the file's name.
    pub fn parse(text: &str) -> Result<Self, CandidatesError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let list = if looks_like_json(text) {
            parse_json(text)?
        } else {
            parse_lines(text)?
        };
        if list.is_empty() {
            return Err(CandidatesError::Empty);
        }
        Ok(Self::from_list(list))
    }

    /// Candidates from a list, in its order, without duplicates (the live cluster view builds
    /// one from its Services and any `--nat-candidates` file).
    pub fn from_list(list: Vec<Candidate>) -> Self {
        let mut seen = HashSet::new();
        let list: Vec<Candidate> = list
            .into_iter()
            .filter(|c| seen.insert(c.clone()))
            .collect();
        let mut by_value: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, c) in list.iter().enumerate() {
            by_value.entry(c.value).or_default().push(i);
        }
        Self { list, by_value }
    }

    /// Every candidate, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Candidate> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Candidates whose value equals `v` (several services can share a value), in file order.
    pub fn matching(&self, v: &CandidateValue) -> impl Iterator<Item = &Candidate> {
        self.by_value
            .get(v)
            .into_iter()
            .flatten()
            .map(|&i| &self.list[i])
    }
}

/// JSON starts with `{` or `[`; so does a plain-text `[v6addr]:port` line, which JSON is not
/// (a bad one, say with a scope id, is then a bad line rather than bad JSON).
fn looks_like_json(text: &str) -> bool {
    let text = text.trim_start();
    match text.chars().next() {
        Some('{') => true,
        Some('[') => {
            let first = text.lines().next().unwrap_or_default();
            !bracketed_addr_like(first.split_whitespace().next().unwrap_or_default())
        }
        _ => false,
    }
}

/// `[…]` or `[…]:…` with an IPv6-address-like inside: colons, dots, letters, digits, `%-_`.
fn bracketed_addr_like(token: &str) -> bool {
    let Some((inner, after)) = token.strip_prefix('[').and_then(|t| t.split_once(']')) else {
        return false;
    };
    inner.contains(':')
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '%' | '-' | '_'))
        && (after.is_empty() || after.starts_with(':'))
}

/// `s` in double quotes, escaped, cut after [`QUOTE_CHARS`] characters (then ending in `…`).
fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &s[..cut])),
        None => format!("{s:?}"),
    }
}

// ---- plain text -------------------------------------------------------------------------------

fn parse_lines(text: &str) -> Result<Vec<Candidate>, CandidatesError> {
    let mut list = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = strip_comment(line).trim();
        if content.is_empty() {
            continue;
        }
        let (token, label) = match content.split_once(char::is_whitespace) {
            Some((token, label)) => (token, Some(label.trim())),
            None => (content, None),
        };
        let value = parse_value(token).ok_or_else(|| CandidatesError::BadLine {
            line: i + 1,
            quoted: quoted(line.trim()),
        })?;
        list.push(Candidate {
            value,
            protocol: None,
            target_port: None,
            name: label.map(str::to_owned),
            origin: Origin::File,
        });
    }
    Ok(list)
}

/// `line` up to a `#` that starts it or follows whitespace (a label may hold one, as in `svc#2`).
fn strip_comment(line: &str) -> &str {
    let mut after_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && after_space {
            return &line[..i];
        }
        after_space = c.is_whitespace();
    }
    line
}

/// `ADDR`, `[v6addr]` or `ADDR:PORT` (`[v6addr]:port`); port 0 and IPv6 scope ids are not.
fn parse_value(token: &str) -> Option<CandidateValue> {
    if let Ok(ip) = token.parse::<IpAddr>() {
        return Some(CandidateValue::Addr(ip));
    }
    if let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| CandidateValue::Addr(ip.into()));
    }
    let sa = token.parse::<SocketAddr>().ok()?;
    if sa.port() == 0 || matches!(sa, SocketAddr::V6(v6) if v6.scope_id() != 0) {
        return None;
    }
    Some(CandidateValue::AddrPort(sa.ip(), sa.port()))
}

// ---- kubectl get svc -A -o json ---------------------------------------------------------------

/// The candidates of one Service: each virtual address alone and with each port, then each
/// node port alone (module docs). The one place a Service becomes candidates, whether it came
/// from a file or from the cluster watcher.
pub fn of_service(svc: &NatService) -> Vec<Candidate> {
    let mut vips: Vec<(IpAddr, Origin)> = Vec::new();
    let addresses = [
        (&svc.cluster_ips, Origin::ClusterIp),
        (&svc.external_ips, Origin::ExternalIp),
        (&svc.load_balancer_ips, Origin::LoadBalancer),
    ];
    for (ips, origin) in addresses {
        for &ip in ips {
            if !vips.contains(&(ip, origin)) {
                vips.push((ip, origin));
            }
        }
    }
    let mut list = Vec::new();
    for &(ip, origin) in &vips {
        list.push(Candidate {
            value: CandidateValue::Addr(ip),
            protocol: None,
            target_port: None,
            name: svc.name.clone(),
            origin,
        });
        for p in &svc.ports {
            list.push(Candidate {
                value: CandidateValue::AddrPort(ip, p.port),
                protocol: Some(p.protocol),
                target_port: Some(p.target.clone()),
                name: svc.name.clone(),
                origin,
            });
        }
    }
    for p in &svc.ports {
        if let Some(node_port) = p.node_port {
            list.push(Candidate {
                value: CandidateValue::Port(node_port),
                protocol: Some(p.protocol),
                target_port: Some(p.target.clone()),
                name: svc.name.clone(),
                origin: Origin::NodePort,
            });
        }
    }
    list
}

fn parse_json(text: &str) -> Result<Vec<Candidate>, CandidatesError> {
    let not_services = |what: String| CandidatesError::NotServices(what);
    let doc: Value = serde_json::from_str(text).map_err(CandidatesError::Json)?;
    let Value::Object(top) = &doc else {
        return Err(not_services("JSON array".to_owned()));
    };
    let mut list = Vec::new();
    match top.get("kind").and_then(Value::as_str) {
        Some("Service") => list.extend(of_service(&service(top, None)?)),
        Some(kind @ ("List" | "ServiceList")) => {
            let items = top
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| CandidatesError::NoItems(kind.to_owned()))?;
            for (i, item) in items.iter().enumerate() {
                let Value::Object(item) = item else {
                    return Err(not_services(format!("JSON items[{i}] is not an object")));
                };
                match item.get("kind").and_then(Value::as_str) {
                    Some("Service") => {}
                    None if kind == "ServiceList" && !item.contains_key("kind") => {}
                    Some(other) => {
                        return Err(not_services(format!(
                            "JSON of kind {other:?} at items[{i}]"
                        )));
                    }
                    None => {
                        return Err(not_services(format!(
                            "JSON without a \"kind\" at items[{i}]"
                        )));
                    }
                }
                list.extend(of_service(&service(item, Some(i))?));
            }
        }
        Some(kind) => return Err(not_services(format!("JSON of kind {kind:?}"))),
        None => return Err(not_services("JSON without a \"kind\"".to_owned())),
    }
    Ok(list)
}

/// What the JSON of one Service gives: read in the order of its fields below, so that the
/// first bad one is the one named.
fn service(obj: &Map<String, Value>, index: Option<usize>) -> Result<NatService, ServiceError> {
    let meta = obj.get("metadata");
    let field = |key| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    let svc = ServiceReader::new(field("namespace"), field("name"), index);
    let empty = Map::new();
    let spec = object(&svc, obj, "spec", "spec")?.unwrap_or(&empty);

    let mut out = NatService {
        name: svc.name.clone(),
        ..NatService::default()
    };
    if let Some(v) = spec.get("clusterIP") {
        out.cluster_ips.extend(ip(&svc, v, "spec.clusterIP")?);
    }
    for (i, v) in array(&svc, spec, "clusterIPs", "spec.clusterIPs")?
        .iter()
        .enumerate()
    {
        out.cluster_ips
            .extend(ip(&svc, v, &format!("spec.clusterIPs[{i}]"))?);
    }
    for (i, v) in array(&svc, spec, "externalIPs", "spec.externalIPs")?
        .iter()
        .enumerate()
    {
        out.external_ips
            .extend(ip(&svc, v, &format!("spec.externalIPs[{i}]"))?);
    }
    let status = object(&svc, obj, "status", "status")?.unwrap_or(&empty);
    let lb = object(&svc, status, "loadBalancer", "status.loadBalancer")?.unwrap_or(&empty);
    for (i, entry) in array(&svc, lb, "ingress", "status.loadBalancer.ingress")?
        .iter()
        .enumerate()
    {
        let field = format!("status.loadBalancer.ingress[{i}]");
        let Value::Object(entry) = entry else {
            return Err(not(&svc, &field, entry, "an object"));
        };
        // An entry with only a hostname (a cloud load balancer's DNS name) has no address.
        if let Some(v) = entry.get("ip") {
            out.load_balancer_ips
                .extend(ip(&svc, v, &format!("{field}.ip"))?);
        }
    }
    out.ports = service_ports(&svc, spec)?;
    Ok(out)
}

fn service_ports(
    svc: &ServiceReader,
    spec: &Map<String, Value>,
) -> Result<Vec<ServicePort>, ServiceError> {
    let mut ports = Vec::new();
    for (i, entry) in array(svc, spec, "ports", "spec.ports")?.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let Value::Object(entry) = entry else {
            return Err(not(svc, &field, entry, "an object"));
        };
        let port = match entry.get("port") {
            Some(v) => port(svc, v, &format!("{field}.port"))?,
            None => return Err(svc.error(&format!("{field}.port"), "is missing")),
        };
        let protocol = match entry.get("protocol") {
            None | Some(Value::Null) => Protocol::Tcp,
            Some(v) => v
                .as_str()
                .and_then(Protocol::parse)
                .ok_or_else(|| not(svc, &format!("{field}.protocol"), v, "TCP, UDP or SCTP"))?,
        };
        // The API server sets an unset targetPort (absent, 0 or "") to the port.
        let target = match entry.get("targetPort") {
            None | Some(Value::Null) => TargetPort::Number(port),
            Some(Value::String(s)) if s.is_empty() => TargetPort::Number(port),
            Some(Value::String(s)) => TargetPort::Named(s.clone()),
            Some(v) if v.as_u64() == Some(0) => TargetPort::Number(port),
            Some(v) => TargetPort::Number(self::port(svc, v, &format!("{field}.targetPort"))?),
        };
        // 0 is how a request asks for one to be allocated; kubectl's output omits it instead.
        let node_port = match entry.get("nodePort") {
            None | Some(Value::Null) => None,
            Some(v) if v.as_u64() == Some(0) => None,
            Some(v) => Some(self::port(svc, v, &format!("{field}.nodePort"))?),
        };
        ports.push(ServicePort {
            name: entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            port,
            protocol,
            target,
            node_port,
        });
    }
    Ok(ports)
}

/// `<field> <value> is not <what>`, the value as JSON spells it.
fn not(svc: &ServiceReader, field: &str, value: &Value, what: &str) -> ServiceError {
    svc.not(field, &value.to_string(), what)
}

/// The object at `key` of `obj`; absent or null is empty.
fn object<'v>(
    svc: &ServiceReader,
    obj: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'v Map<String, Value>>, ServiceError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(not(svc, field, v, "an object")),
    }
}

/// The list at `key` of `obj`; absent or null is empty.
fn array<'v>(
    svc: &ServiceReader,
    obj: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'v [Value], ServiceError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(not(svc, field, v, "a list")),
    }
}

/// An address field: `None` for null, a headless Service's `"None"` and `""`.
fn ip(svc: &ServiceReader, value: &Value, field: &str) -> Result<Option<IpAddr>, ServiceError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => svc.ip(s, field, &value.to_string()),
        _ => Err(not(svc, field, value, "an IP address")),
    }
}

/// A port number, 1 to 65535.
fn port(svc: &ServiceReader, value: &Value, field: &str) -> Result<u16, ServiceError> {
    svc.port(value.as_u64(), field, &value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_FIXTURE: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kubectl-svc.json");
    const TEXT_FIXTURE: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nat-candidates.txt");

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> CandidateValue {
        CandidateValue::Addr(ip(s))
    }

    fn addr_port(s: &str, port: u16) -> CandidateValue {
        CandidateValue::AddrPort(ip(s), port)
    }

    fn cand(
        value: CandidateValue,
        protocol: Option<Protocol>,
        target: Option<TargetPort>,
        name: &str,
        origin: Origin,
    ) -> Candidate {
        Candidate {
            value,
            protocol,
            target_port: target,
            name: Some(name.to_owned()),
            origin,
        }
    }

    fn named(c: &Candidates, name: &str) -> Vec<Candidate> {
        c.iter()
            .filter(|c| c.name.as_deref() == Some(name))
            .cloned()
            .collect()
    }

    fn parse_err(text: &str) -> String {
        let e = Candidates::parse(text).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    /// A temporary file with `text`, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(tag: &str, text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("csa-candidates-{tag}-{}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn service_json(spec: &str, status: &str) -> String {
        format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"web","namespace":"shop"}},
               "spec":{spec},"status":{status}}}"#
        )
    }

    // ---- the fixtures ----

    #[test]
    fn kubectl_fixture_kube_dns_is_its_vip_alone_and_with_each_named_port() {
        let c = Candidates::load(Path::new(KUBECTL_FIXTURE)).unwrap();
        let n = "kube-system/kube-dns";
        let named_port = |s: &str| Some(TargetPort::Named(s.to_owned()));
        assert_eq!(
            named(&c, n),
            [
                cand(addr("10.96.0.10"), None, None, n, Origin::ClusterIp),
                cand(
                    addr_port("10.96.0.10", 53),
                    Some(Protocol::Udp),
                    named_port("dns"),
                    n,
                    Origin::ClusterIp
                ),
                cand(
                    addr_port("10.96.0.10", 53),
                    Some(Protocol::Tcp),
                    named_port("dns-tcp"),
                    n,
                    Origin::ClusterIp
                ),
                cand(
                    addr_port("10.96.0.10", 9153),
                    Some(Protocol::Tcp),
                    named_port("metrics"),
                    n,
                    Origin::ClusterIp
                ),
            ]
        );
        // 53 over UDP and over TCP: one value, two candidates.
        assert_eq!(c.matching(&addr_port("10.96.0.10", 53)).count(), 2);
    }

    #[test]
    fn kubectl_fixture_dual_stack_has_both_families_once() {
        let c = Candidates::load(Path::new(KUBECTL_FIXTURE)).unwrap();
        let n = "shop/api-dual";
        let tcp = Some(Protocol::Tcp);
        let target = || Some(TargetPort::Number(9000));
        assert_eq!(
            named(&c, n),
            [
                cand(addr("10.96.77.5"), None, None, n, Origin::ClusterIp),
                cand(
                    addr_port("10.96.77.5", 9090),
                    tcp,
                    target(),
                    n,
                    Origin::ClusterIp
                ),
                cand(addr("fd00:10:96::4d05"), None, None, n, Origin::ClusterIp),
                cand(
                    addr_port("fd00:10:96::4d05", 9090),
                    tcp,
                    target(),
                    n,
                    Origin::ClusterIp
                ),
            ]
        );
    }

    #[test]
    fn kubectl_fixture_headless_gives_nothing_and_the_rest_is_all_there() {
        let c = Candidates::load(Path::new(KUBECTL_FIXTURE)).unwrap();
        assert_eq!(named(&c, "shop/db-headless"), []);
        assert_eq!(c.matching(&addr_port("10.96.0.1", 443)).count(), 1);
        let web: Vec<_> = c
            .matching(&addr_port("10.96.45.12", 443))
            .map(|c| c.target_port.clone())
            .collect();
        assert_eq!(web, [Some(TargetPort::Number(8443))]);
        let node: Vec<_> = c.matching(&CandidateValue::Port(30080)).collect();
        assert_eq!(
            node,
            [&cand(
                CandidateValue::Port(30080),
                Some(Protocol::Tcp),
                Some(TargetPort::Number(8080)),
                "shop/web-nodeport",
                Origin::NodePort
            )]
        );
        let lb = "shop/frontend-lb";
        let origins: Vec<_> = named(&c, lb)
            .into_iter()
            .map(|c| (c.value, c.origin.name()))
            .collect();
        assert_eq!(
            origins,
            [
                (addr("10.96.200.33"), "cluster-ip"),
                (addr_port("10.96.200.33", 443), "cluster-ip"),
                (addr("192.0.2.50"), "external-ip"),
                (addr_port("192.0.2.50", 443), "external-ip"),
                (addr("203.0.113.10"), "load-balancer"),
                (addr_port("203.0.113.10", 443), "load-balancer"),
                (CandidateValue::Port(31443), "node-port"),
            ]
        );
        // 7 services: kubernetes 2, kube-dns 4, web 3, web-nodeport 3, frontend-lb 7,
        // api-dual 4, db-headless 0.
        assert_eq!(c.len(), 23);
    }

    #[test]
    fn text_fixture() {
        let c = Candidates::load(Path::new(TEXT_FIXTURE)).unwrap();
        let got: Vec<_> = c
            .iter()
            .map(|c| {
                assert_eq!(
                    (c.origin, c.protocol, &c.target_port),
                    (Origin::File, None, &None)
                );
                (c.value, c.name.clone())
            })
            .collect();
        let label = |s: &str| Some(s.to_owned());
        assert_eq!(
            got,
            [
                (addr_port("10.96.0.10", 53), label("kube-system/kube-dns")),
                (addr("10.96.45.12"), None),
                (
                    addr_port("192.0.2.50", 443),
                    label("shop/frontend-lb (external IP)")
                ),
                (addr("fd00:10:96::4d05"), None),
                (addr_port("fd00:10:96::4d05", 9090), label("shop/api-dual")),
            ]
        );
    }

    // ---- plain text ----

    #[test]
    fn text_lines_in_every_form() {
        let c = Candidates::parse(
            "[fd00::1]:53 first\r\n[fd00::2]\r\n10.0.0.1:80\tweb#2 # comment\n  # indented\n10.0.0.1:80 web#2\n",
        )
        .unwrap();
        let got: Vec<_> = c.iter().map(|c| (c.value, c.name.as_deref())).collect();
        assert_eq!(
            got,
            [
                (addr_port("fd00::1", 53), Some("first")),
                (addr("fd00::2"), None),
                // The repeat is dropped; a `#` inside a label is the label's.
                (addr_port("10.0.0.1", 80), Some("web#2")),
            ]
        );
        assert_eq!(c.len(), 3);
        assert!(!c.is_empty());
        assert_eq!(c.matching(&addr("10.0.0.1")).count(), 0);
        assert_eq!(addr_port("fd00::1", 53).to_string(), "[fd00::1]:53");
        assert_eq!(CandidateValue::Port(30080).to_string(), "port 30080");
    }

    #[test]
    fn labels_share_a_value() {
        let c = Candidates::parse("10.96.0.10:53 a/dns\n10.96.0.10:53 b/dns\n").unwrap();
        let names: Vec<_> = c
            .matching(&addr_port("10.96.0.10", 53))
            .map(|c| c.name.as_deref())
            .collect();
        assert_eq!(names, [Some("a/dns"), Some("b/dns")]);
    }

    #[test]
    fn a_bad_line_is_named_and_quoted() {
        assert_eq!(
            parse_err("# ok\n10.0.0.1\nkube-dns.kube-system.svc:53 dns\n"),
            "line 3 is not ADDR or ADDR:PORT (or kubectl get svc -A -o json output): \
             \"kube-dns.kube-system.svc:53 dns\""
        );
        for bad in [
            "10.0.0.1:0",
            "10.0.0.1:65536",
            "10.96.0.300",
            "fd00::1:53:x",
            "[fe80::1%2]:53",
            "[::1]:99999",
            ":53",
        ] {
            assert!(parse_err(bad).starts_with("line 1 is not ADDR"), "{bad}");
        }
        let long = "x".repeat(100);
        let e = parse_err(&long);
        assert!(e.ends_with(&format!("\"{}…\"", "x".repeat(60))), "{e}");
    }

    #[test]
    fn nothing_in_it_is_an_error() {
        for text in ["", "\n\n", "# only\n   # comments\n"] {
            assert_eq!(parse_err(text), "no addresses or ports in it", "{text:?}");
        }
    }

    // ---- JSON ----

    #[test]
    fn a_single_service_and_a_service_list() {
        let one = service_json(
            r#"{"clusterIP":"10.96.1.2","clusterIPs":["10.96.1.2"],
                "ports":[{"port":80,"targetPort":"http","protocol":"SCTP"},{"port":81}]}"#,
            r#"{"loadBalancer":{"ingress":[{"hostname":"lb.example.com"},{"ip":"198.51.100.7"}]}}"#,
        );
        let c = Candidates::parse(&one).unwrap();
        let got: Vec<_> = c
            .iter()
            .map(|c| (c.value, c.protocol, c.target_port.clone(), c.origin))
            .collect();
        let sctp_http = (Some(Protocol::Sctp), Some(TargetPort::Named("http".into())));
        let tcp_81 = (Some(Protocol::Tcp), Some(TargetPort::Number(81)));
        assert_eq!(
            got,
            [
                (addr("10.96.1.2"), None, None, Origin::ClusterIp),
                (
                    addr_port("10.96.1.2", 80),
                    sctp_http.0,
                    sctp_http.1.clone(),
                    Origin::ClusterIp
                ),
                (
                    addr_port("10.96.1.2", 81),
                    tcp_81.0,
                    tcp_81.1.clone(),
                    Origin::ClusterIp
                ),
                (addr("198.51.100.7"), None, None, Origin::LoadBalancer),
                (
                    addr_port("198.51.100.7", 80),
                    sctp_http.0,
                    sctp_http.1,
                    Origin::LoadBalancer
                ),
                (
                    addr_port("198.51.100.7", 81),
                    tcp_81.0,
                    tcp_81.1,
                    Origin::LoadBalancer
                ),
            ]
        );
        assert!(c.iter().all(|c| c.name.as_deref() == Some("shop/web")));

        // A ServiceList's items may leave out their kind.
        let list = r#"{"kind":"ServiceList","items":[{"metadata":{"name":"a","namespace":"n"},
            "spec":{"clusterIP":"10.0.0.1"}}]}"#;
        let c = Candidates::parse(list).unwrap();
        assert_eq!(named(&c, "n/a").len(), 1);
    }

    #[test]
    fn node_ports_without_a_vip_still_count() {
        let c = Candidates::parse(&service_json(
            r#"{"clusterIP":"None","ports":[{"port":53,"protocol":"UDP","nodePort":30053}]}"#,
            "{}",
        ))
        .unwrap();
        let got: Vec<_> = c.iter().map(|c| (c.value, c.protocol, c.origin)).collect();
        assert_eq!(
            got,
            [(
                CandidateValue::Port(30053),
                Some(Protocol::Udp),
                Origin::NodePort
            )]
        );
    }

    #[test]
    fn not_json_of_services() {
        let tail = ", not kubectl get svc -A -o json output (a Service list)";
        for (text, head) in [
            (
                r#"{"apiVersion":"v1","kind":"PodList","items":[]}"#,
                r#"JSON of kind "PodList""#,
            ),
            (
                r#"{"kind":"List","items":[{"kind":"Service","spec":{}},{"kind":"Pod"}]}"#,
                r#"JSON of kind "Pod" at items[1]"#,
            ),
            (
                r#"{"kind":"List","items":[{"spec":{"clusterIP":"10.0.0.1"}}]}"#,
                r#"JSON without a "kind" at items[0]"#,
            ),
            (
                r#"{"kind":"ServiceList","items":[{"kind":"Endpoints"}]}"#,
                r#"JSON of kind "Endpoints" at items[0]"#,
            ),
            (
                r#"{"kind":"List","items":[3]}"#,
                "JSON items[0] is not an object",
            ),
            (r#"{"items":[]}"#, r#"JSON without a "kind""#),
            (r#"[{"kind":"Service"}]"#, "JSON array"),
        ] {
            assert_eq!(parse_err(text), format!("{head}{tail}"), "{text}");
        }
        assert_eq!(
            parse_err(r#"{"kind":"List"}"#),
            r#"JSON of kind "List" without an "items" list"#
        );
    }

    #[test]
    fn broken_json() {
        for text in [
            "{\"kind\": \"List\",",
            "[1, 2",
            "[\"10.0.0.1\", ",
            "  {nope}",
        ] {
            let e = parse_err(text);
            assert!(e.starts_with("not valid JSON: "), "{text}: {e}");
        }
    }

    #[test]
    fn malformed_service_fields_name_the_service_and_field() {
        let cases = [
            (
                r#"{"clusterIP":"10.96.0.300"}"#,
                "{}",
                r#"Service shop/web: spec.clusterIP "10.96.0.300" is not an IP address"#,
            ),
            (
                r#"{"clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1","fd00::zz"]}"#,
                "{}",
                r#"Service shop/web: spec.clusterIPs[1] "fd00::zz" is not an IP address"#,
            ),
            (
                r#"{"clusterIP":"10.0.0.1","ports":[{"port":80},{"port":70000}]}"#,
                "{}",
                "Service shop/web: spec.ports[1].port 70000 is not a port (1-65535)",
            ),
            (
                r#"{"ports":[{"port":"80"}]}"#,
                "{}",
                r#"Service shop/web: spec.ports[0].port "80" is not a port (1-65535)"#,
            ),
            (
                r#"{"ports":[{"protocol":"TCP"}]}"#,
                "{}",
                "Service shop/web: spec.ports[0].port is missing",
            ),
            (
                r#"{"ports":[{"port":80,"protocol":"ICMP"}]}"#,
                "{}",
                r#"Service shop/web: spec.ports[0].protocol "ICMP" is not TCP, UDP or SCTP"#,
            ),
            (
                r#"{"ports":[{"port":80,"targetPort":-1}]}"#,
                "{}",
                "Service shop/web: spec.ports[0].targetPort -1 is not a port (1-65535)",
            ),
            (
                r#"{"ports":[{"port":80,"nodePort":99999}]}"#,
                "{}",
                "Service shop/web: spec.ports[0].nodePort 99999 is not a port (1-65535)",
            ),
            (
                r#"{"externalIPs":"192.0.2.1"}"#,
                "{}",
                r#"Service shop/web: spec.externalIPs "192.0.2.1" is not a list"#,
            ),
            (
                "{}",
                r#"{"loadBalancer":{"ingress":[{"ip":"203.0.113.300"}]}}"#,
                "Service shop/web: status.loadBalancer.ingress[0].ip \"203.0.113.300\" \
                 is not an IP address",
            ),
        ];
        for (spec, status, want) in cases {
            assert_eq!(
                parse_err(&service_json(spec, status)),
                want,
                "{spec} {status}"
            );
        }
        // Without a name, the item's place says which.
        let e =
            parse_err(r#"{"kind":"List","items":[{"kind":"Service","spec":{"clusterIP":"x"}}]}"#);
        assert_eq!(
            e,
            r#"the Service at items[0] (no metadata.name): spec.clusterIP "x" is not an IP address"#
        );
    }

    #[test]
    fn only_headless_services_is_nothing() {
        let list = r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[
            {"kind":"Service","metadata":{"name":"db","namespace":"a"},
             "spec":{"clusterIP":"None","clusterIPs":["None"]},"status":{"loadBalancer":{}}},
            {"kind":"Service","metadata":{"name":"db","namespace":"b"},
             "spec":{"clusterIP":"","ports":[{"port":5432}]}}]}"#;
        assert_eq!(parse_err(list), "no addresses or ports in it");
        assert_eq!(
            parse_err(r#"{"apiVersion":"v1","kind":"List","items":[]}"#),
            "no addresses or ports in it"
        );
    }

    // ---- load ----

    #[test]
    fn load_errors_name_the_path() {
        let missing = std::env::temp_dir().join("csa-candidates-surely-missing");
        let e = Candidates::load(&missing).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot read --nat-candidates {}: No such file or directory (os error 2)",
                missing.display()
            )
        );

        let dir = std::env::temp_dir();
        let e = Candidates::load(&dir).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot read --nat-candidates {}: Is a directory (os error 21)",
                dir.display()
            )
        );

        let bad = TempFile::new("bad", "\n\nnot-an-address\n");
        let e = Candidates::load(&bad.0).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--nat-candidates {}: line 3 is not ADDR or ADDR:PORT \
                 (or kubectl get svc -A -o json output): \"not-an-address\"",
                bad.0.display()
            )
        );

        let empty = TempFile::new("empty", "# nothing yet\n");
        let e = Candidates::load(&empty.0).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--nat-candidates {}: no addresses or ports in it",
                empty.0.display()
            )
        );

        let pods = TempFile::new("pods", r#"{"kind":"PodList","items":[]}"#);
        let e = Candidates::load(&pods.0).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--nat-candidates {}: JSON of kind \"PodList\", not kubectl get svc -A -o json \
                 output (a Service list)",
                pods.0.display()
            )
        );
    }

    #[test]
    fn load_unreadable_file() {
        use std::os::unix::fs::PermissionsExt;
        let f = TempFile::new("perm", "10.0.0.1\n");
        std::fs::set_permissions(&f.0, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&f.0).is_ok() {
            // Root reads it anyway: nothing to test here.
            return;
        }
        let e = Candidates::load(&f.0).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot read --nat-candidates {}: Permission denied (os error 13)",
                f.0.display()
            )
        );
    }
}
