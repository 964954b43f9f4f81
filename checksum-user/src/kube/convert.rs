//! From the API's objects to what the state keeps: a pod's name and addresses, a Service's
//! addresses and ports (as the JSON the candidate reader takes), an Endpoints' port numbers.
//! Only what is used is kept, so memory follows the number of objects, not their size.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use serde_json::{Map, Value, json};

use super::state::PodEntry;

/// `namespace/name` of an object (`name` alone for cluster-scoped ones).
pub fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.clone(),
        _ => String::new(),
    }
}

pub fn pod(p: &Pod) -> PodEntry {
    let status = p.status.as_ref();
    let mut ips: Vec<std::net::IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.parse().ok())
        .collect();
    // Servers before podIPs (1.16) and pods patched by hand may set only podIP.
    if let Some(ip) = status
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        && !ips.contains(&ip)
    {
        ips.insert(0, ip);
    }
    PodEntry {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        ips,
        host_network: p
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false),
    }
}

/// The Service trimmed to its name, `spec` addresses and ports, and load-balancer status: what
/// `candidates::of_service` reads.
pub fn service(s: &Service) -> Value {
    let full = serde_json::to_value(s).unwrap_or(Value::Null);
    let pick = |obj: Option<&Value>, keys: &[&str]| -> Value {
        let mut out = Map::new();
        if let Some(Value::Object(obj)) = obj {
            for k in keys {
                if let Some(v) = obj.get(*k) {
                    out.insert((*k).to_owned(), v.clone());
                }
            }
        }
        Value::Object(out)
    };
    json!({
        "kind": "Service",
        "metadata": pick(full.get("metadata"), &["namespace", "name"]),
        "spec": pick(full.get("spec"), &["clusterIP", "clusterIPs", "externalIPs", "ports"]),
        "status": pick(full.get("status"), &["loadBalancer"]),
    })
}

/// Port numbers by port name over every subset (unnamed ports, a Service's only one, are "").
pub fn endpoints(e: &Endpoints) -> HashMap<String, BTreeSet<u16>> {
    let mut out: HashMap<String, BTreeSet<u16>> = HashMap::new();
    for subset in e.subsets.iter().flatten() {
        for port in subset.ports.iter().flatten() {
            if let Ok(number) = u16::try_from(port.port) {
                out.entry(port.name.clone().unwrap_or_default())
                    .or_default()
                    .insert(number);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_from_its_json() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web-1", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}]},
        }))
        .unwrap();
        let e = pod(&p);
        assert_eq!(e.full_name(), "default/web-1");
        assert_eq!(e.ips.len(), 2);
        assert!(!e.host_network);
        assert_eq!(key(&p.metadata), "default/web-1");
    }

    #[test]
    fn a_service_is_trimmed_to_what_candidates_read() {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web", "uid": "x",
                         "annotations": {"big": "y"}},
            "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "web"},
                     "ports": [{"port": 80, "targetPort": 8080}]},
        }))
        .unwrap();
        let v = service(&s);
        assert_eq!(
            v["metadata"],
            json!({"namespace": "default", "name": "web"})
        );
        assert!(v["spec"].get("selector").is_none());
        let c = crate::analysis::candidates::of_service(&v).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn endpoint_ports_by_name() {
        let e: Endpoints = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "subsets": [{"ports": [{"name": "http", "port": 8080}]},
                        {"ports": [{"name": "http", "port": 8081}, {"port": 53}]}],
        }))
        .unwrap();
        let ports = endpoints(&e);
        assert_eq!(ports["http"], BTreeSet::from([8080, 8081]));
        assert_eq!(ports[""], BTreeSet::from([53]));
    }
}
