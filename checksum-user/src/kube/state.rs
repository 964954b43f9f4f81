//! What the agent knows of the cluster: the pods on its node, the Services (what the NAT
//! candidates are built from) and the port names of their Endpoints. Pure data, filled by the
//! watchers (`watch.rs`), read by the live loop; every table has a bound, and what does not fit
//! is counted.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use crate::{
    analysis::{
        EndpointNames,
        candidates::{self, Candidate, Candidates},
    },
    model::service::{NatService, ServiceError, TargetPort},
};

/// Most pods kept: far above a node's pod limit (110 by default, a few hundred at most).
pub const MAX_PODS: usize = 4096;
/// Most Services and Endpoints kept (a large cluster has a few thousand).
pub const MAX_SERVICES: usize = 20_000;

/// One pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `status.podIPs` (or `status.podIP`); empty until the kubelet sets them, and ignored for
    /// hostNetwork pods, whose address is the node's.
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
}

impl PodEntry {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A watched resource, for counters and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Pods,
    Services,
    Endpoints,
}

impl Resource {
    pub const ALL: [Self; 3] = [Self::Pods, Self::Services, Self::Endpoints];

    /// As RBAC spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pods => "pods",
            Self::Services => "services",
            Self::Endpoints => "endpoints",
        }
    }
}

/// How one watch is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStatus {
    /// The first full list arrived (and every re-list since completed).
    pub synced: bool,
    /// Times the watch broke after having worked (disconnect, API server restart, expired
    /// resource version): each is a gap in which changes may have been missed until the
    /// watcher resumed or listed again.
    pub gaps: u64,
    /// Errors seen (every failed attempt, while broken too).
    pub errors: u64,
    /// Objects that did not fit under the table's bound.
    pub overflow: u64,
}

/// The cluster as the watchers last saw it.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// Bumped at every change that the live loop must pick up.
    pub generation: u64,
    pods: BTreeMap<String, PodEntry>,
    /// What candidates need of each Service, or why it could not be read, by `namespace/name`.
    services: BTreeMap<String, Result<NatService, ServiceError>>,
    /// Endpoints' port numbers by port name, by `namespace/name` (the Service's).
    endpoints: HashMap<String, HashMap<String, BTreeSet<u16>>>,
    pub watches: BTreeMap<Resource, WatchStatus>,
    /// Services that could not be read (counted; the first error kept).
    pub bad_services: (u64, Option<ServiceError>),
    pub events: EventStats,
}

/// What the Event poster did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    pub created: u64,
    pub updated: u64,
    pub failed: u64,
    /// Writes put off by the rate limits.
    pub deferred: u64,
    /// Events followed now.
    pub tracked: usize,
    /// RBAC refused a write.
    pub forbidden: bool,
}

impl ClusterState {
    pub fn watch(&mut self, r: Resource) -> &mut WatchStatus {
        self.watches.entry(r).or_default()
    }

    /// Every watch has its first list.
    pub fn synced(&self) -> bool {
        Resource::ALL
            .iter()
            .all(|r| self.watches.get(r).is_some_and(|w| w.synced))
    }

    /// The pods on this node.
    pub fn pods(&self) -> Vec<PodEntry> {
        self.pods.values().cloned().collect()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn upsert_pod(&mut self, key: String, pod: PodEntry) {
        if !self.pods.contains_key(&key) && self.pods.len() >= MAX_PODS {
            self.watch(Resource::Pods).overflow += 1;
            return;
        }
        if self.pods.get(&key) != Some(&pod) {
            self.pods.insert(key, pod);
            self.generation += 1;
        }
    }

    pub fn remove_pod(&mut self, key: &str) {
        if self.pods.remove(key).is_some() {
            self.generation += 1;
        }
    }

    pub fn upsert_service(&mut self, key: String, service: Result<NatService, ServiceError>) {
        if !self.services.contains_key(&key) && self.services.len() >= MAX_SERVICES {
            self.watch(Resource::Services).overflow += 1;
            return;
        }
        if self.services.get(&key) != Some(&service) {
            self.services.insert(key, service);
            self.generation += 1;
        }
    }

    pub fn remove_service(&mut self, key: &str) {
        if self.services.remove(key).is_some() {
            self.generation += 1;
        }
    }

    pub fn upsert_endpoints(&mut self, key: String, ports: HashMap<String, BTreeSet<u16>>) {
        if !self.endpoints.contains_key(&key) && self.endpoints.len() >= MAX_SERVICES {
            self.watch(Resource::Endpoints).overflow += 1;
            return;
        }
        if self.endpoints.get(&key) != Some(&ports) {
            self.endpoints.insert(key, ports);
            self.generation += 1;
        }
    }

    pub fn remove_endpoints(&mut self, key: &str) {
        if self.endpoints.remove(key).is_some() {
            self.generation += 1;
        }
    }

    /// Keeps only the keys of `resource` in `keep` (after a full list: what it did not list is
    /// gone).
    pub fn retain(&mut self, resource: Resource, keep: &BTreeSet<String>) {
        let before = self.generation;
        match resource {
            Resource::Pods => self.pods.retain(|k, _| keep.contains(k)),
            Resource::Services => self.services.retain(|k, _| keep.contains(k)),
            Resource::Endpoints => self.endpoints.retain(|k, _| keep.contains(k)),
        }
        self.generation = before + 1;
    }

    /// `namespace/pod` by pod IP, for flow ends (hostNetwork pods are not named by address: it
    /// is the node's).
    pub fn endpoint_names(&self) -> EndpointNames {
        let mut by_ip = HashMap::new();
        for pod in self.pods.values().filter(|p| !p.host_network) {
            for ip in &pod.ips {
                by_ip.insert(*ip, pod.full_name());
            }
        }
        EndpointNames::new(by_ip)
    }

    /// The pod on this node with `ip`.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&PodEntry> {
        self.pods
            .values()
            .find(|p| !p.host_network && p.ips.contains(&ip))
    }

    /// Every Service's candidates, named targetPorts resolved through its Endpoints where they
    /// agree on one number (pods of one Service may name different numbers; then it stays a
    /// name, which fits any port).
    pub fn candidates(&mut self) -> Vec<Candidate> {
        let mut list = Vec::new();
        let mut bad = (0, None);
        for (key, service) in &self.services {
            match service {
                Ok(service) => {
                    let resolved = resolve_named_ports(service, self.endpoints.get(key));
                    list.extend(candidates::of_service(&resolved));
                }
                Err(e) => {
                    bad.0 += 1;
                    bad.1.get_or_insert_with(|| e.clone());
                }
            }
        }
        self.bad_services = bad;
        list
    }

    /// The candidates of the Services, with those of `--nat-candidates` first.
    pub fn merged_candidates(&mut self, file: Option<&Candidates>) -> Candidates {
        let mut list: Vec<Candidate> = file
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        list.extend(self.candidates());
        Candidates::from_list(list)
    }
}

/// The Service with each named `targetPort` replaced by the number its Endpoints give the port
/// of the same name (an Endpoints port is named after the Service port).
fn resolve_named_ports(
    service: &NatService,
    endpoints: Option<&HashMap<String, BTreeSet<u16>>>,
) -> NatService {
    let mut service = service.clone();
    let Some(endpoints) = endpoints else {
        return service;
    };
    for port in &mut service.ports {
        if let TargetPort::Named(_) = port.target
            && let Some(numbers) = endpoints.get(&port.name)
            && numbers.len() == 1
            && let Some(&number) = numbers.first()
        {
            // 0, which the API refuses in an Endpoints, would be an unset target: the port.
            port.target = TargetPort::Number(if number == 0 { port.port } else { number });
        }
    }
    service
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::analysis::candidates::CandidateValue;

    fn pod(ns: &str, name: &str, ip: &str, host_network: bool) -> PodEntry {
        PodEntry {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            ips: vec![ip.parse().unwrap()],
            host_network,
        }
    }

    /// The Service of `json`, as the watcher converts it.
    fn service(json: Value) -> Result<NatService, ServiceError> {
        super::super::convert::service(&serde_json::from_value(json).unwrap())
    }

    fn web() -> Result<NatService, ServiceError> {
        service(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [
                {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            ]},
        }))
    }

    #[test]
    fn pods_are_named_by_ip_except_host_network_ones() {
        let mut s = ClusterState::default();
        s.upsert_pod("a".into(), pod("default", "web-1", "10.244.0.5", false));
        s.upsert_pod("b".into(), pod("kube-system", "proxy", "192.0.2.1", true));
        let names = s.endpoint_names();
        assert_eq!(
            names.name("10.244.0.5".parse().unwrap()),
            Some("default/web-1")
        );
        assert_eq!(names.name("192.0.2.1".parse().unwrap()), None);
        assert_eq!(
            s.pod_by_ip("10.244.0.5".parse().unwrap()).unwrap().uid,
            "uid-web-1"
        );
        let g = s.generation;
        s.upsert_pod("a".into(), pod("default", "web-1", "10.244.0.5", false));
        assert_eq!(s.generation, g, "an unchanged pod is no change");
        s.remove_pod("a");
        assert!(
            s.endpoint_names()
                .name("10.244.0.5".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn a_named_target_port_is_resolved_through_the_endpoints() {
        let mut s = ClusterState::default();
        s.upsert_service("default/web".into(), web());
        let target = |s: &mut ClusterState| {
            s.candidates()
                .into_iter()
                .find(|c| c.value == CandidateValue::AddrPort("10.96.0.20".parse().unwrap(), 80))
                .and_then(|c| c.target_port)
        };
        assert_eq!(target(&mut s), Some(TargetPort::Named("web".into())));
        s.upsert_endpoints(
            "default/web".into(),
            HashMap::from([("http".into(), BTreeSet::from([8080]))]),
        );
        assert_eq!(target(&mut s), Some(TargetPort::Number(8080)));
        // Endpoints that disagree leave it a name.
        s.upsert_endpoints(
            "default/web".into(),
            HashMap::from([("http".into(), BTreeSet::from([8080, 9090]))]),
        );
        assert_eq!(target(&mut s), Some(TargetPort::Named("web".into())));
        let all = s.merged_candidates(None);
        assert!(all.iter().all(|c| c.name.as_deref() == Some("default/web")));
    }

    #[test]
    fn tables_are_bounded_and_a_relist_drops_what_is_gone() {
        let mut s = ClusterState::default();
        for i in 0..=MAX_PODS {
            s.upsert_pod(
                format!("p{i}"),
                pod("n", &format!("p{i}"), "10.0.0.1", false),
            );
        }
        assert_eq!(s.pod_count(), MAX_PODS);
        assert_eq!(s.watch(Resource::Pods).overflow, 1);
        s.retain(Resource::Pods, &BTreeSet::from(["p1".to_owned()]));
        assert_eq!(s.pod_count(), 1);
        assert!(!s.synced());
        for r in Resource::ALL {
            s.watch(r).synced = true;
        }
        assert!(s.synced());
    }

    #[test]
    fn a_bad_service_is_counted_not_fatal() {
        let mut s = ClusterState::default();
        s.upsert_service(
            "x/bad".into(),
            service(json!({"metadata": {"namespace": "x", "name": "bad"},
                           "spec": {"clusterIP": "not-an-ip"}})),
        );
        s.upsert_service("default/web".into(), web());
        assert_eq!(s.candidates().len(), 2);
        assert_eq!(s.bad_services.0, 1);
        assert_eq!(
            s.bad_services.1.unwrap().to_string(),
            r#"Service x/bad: spec.clusterIP "not-an-ip" is not an IP address"#
        );
    }
}
