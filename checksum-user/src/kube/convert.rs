//! From the API's objects to what the state keeps: a pod's name and addresses, a Service's
//! addresses and ports (the `NatService` the candidate table is built from), an Endpoints' port
//! numbers.
//! Only what is used is kept, so memory follows the number of objects, not their size.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::{
    api::core::v1::{Endpoints, Pod, Service},
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde_json::Value;

use super::state::PodEntry;
use crate::model::service::{
    NatService, Protocol, ServiceError, ServicePort, ServiceReader, TargetPort,
};

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

/// What the candidate table needs of the Service (`model::service`), checked field by field in
/// the order, and with the messages, of the `--nat-candidates` reader of its JSON.
pub fn service(s: &Service) -> Result<NatService, ServiceError> {
    let svc = ServiceReader::new(
        s.metadata.namespace.as_deref(),
        s.metadata.name.as_deref(),
        None,
    );
    let spec = s.spec.as_ref();
    let mut out = NatService {
        name: svc.name.clone(),
        ..NatService::default()
    };
    if let Some(ip) = spec.and_then(|spec| spec.cluster_ip.as_deref()) {
        out.cluster_ips
            .extend(svc.ip(ip, "spec.clusterIP", &json_string(ip))?);
    }
    let cluster_ips = spec.and_then(|s| s.cluster_ips.as_deref());
    for (i, ip) in cluster_ips.unwrap_or_default().iter().enumerate() {
        let field = format!("spec.clusterIPs[{i}]");
        out.cluster_ips
            .extend(svc.ip(ip, &field, &json_string(ip))?);
    }
    let external_ips = spec.and_then(|s| s.external_ips.as_deref());
    for (i, ip) in external_ips.unwrap_or_default().iter().enumerate() {
        let field = format!("spec.externalIPs[{i}]");
        out.external_ips
            .extend(svc.ip(ip, &field, &json_string(ip))?);
    }
    let ingress = s
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, entry) in ingress.into_iter().flatten().enumerate() {
        // An entry with only a hostname (a cloud load balancer's DNS name) has no address.
        if let Some(ip) = entry.ip.as_deref() {
            let field = format!("status.loadBalancer.ingress[{i}].ip");
            out.load_balancer_ips
                .extend(svc.ip(ip, &field, &json_string(ip))?);
        }
    }
    let ports = spec.and_then(|s| s.ports.as_ref());
    for (i, p) in ports.into_iter().flatten().enumerate() {
        out.ports.push(service_port(&svc, i, p)?);
    }
    Ok(out)
}

fn service_port(
    svc: &ServiceReader,
    i: usize,
    p: &k8s_openapi::api::core::v1::ServicePort,
) -> Result<ServicePort, ServiceError> {
    let field = format!("spec.ports[{i}]");
    let number = |n: i32, what: &str| {
        svc.port(
            u64::try_from(n).ok(),
            &format!("{field}.{what}"),
            &n.to_string(),
        )
    };
    let port = number(p.port, "port")?;
    let protocol = match p.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            svc.not(
                &format!("{field}.protocol"),
                &json_string(s),
                "TCP, UDP or SCTP",
            )
        })?,
    };
    // The API server sets an unset targetPort (absent, 0 or "") to the port.
    let target = match &p.target_port {
        None | Some(IntOrString::Int(0)) => TargetPort::Number(port),
        Some(IntOrString::String(s)) if s.is_empty() => TargetPort::Number(port),
        Some(IntOrString::String(s)) => TargetPort::Named(s.clone()),
        Some(IntOrString::Int(n)) => TargetPort::Number(number(*n, "targetPort")?),
    };
    // 0 is how a request asks for one to be allocated.
    let node_port = match p.node_port {
        None | Some(0) => None,
        Some(n) => Some(number(n, "nodePort")?),
    };
    Ok(ServicePort {
        name: p.name.clone().unwrap_or_default(),
        port,
        protocol,
        target,
        node_port,
    })
}

/// `s` as JSON spells it, as the JSON reader's messages quote it.
fn json_string(s: &str) -> String {
    Value::from(s).to_string()
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
    use serde_json::json;

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
        let v = service(&s).unwrap();
        assert_eq!(v.name.as_deref(), Some("default/web"));
        let c = crate::analysis::candidates::of_service(&v);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_bad_service_field_reads_as_in_a_file() {
        let spec = json!({"clusterIP": "10.0.0.1", "ports": [
            {"port": 80}, {"port": 81, "protocol": "ICMP", "targetPort": "x"}]});
        let typed: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web"}, "spec": spec}))
        .unwrap();
        let file = json!({"kind": "Service", "metadata": {"namespace": "shop", "name": "web"},
                          "spec": spec});
        let from_file = crate::analysis::candidates::Candidates::parse(&file.to_string())
            .unwrap_err()
            .to_string();
        assert_eq!(service(&typed).unwrap_err().to_string(), from_file);
        assert_eq!(
            from_file,
            r#"Service shop/web: spec.ports[1].protocol "ICMP" is not TCP, UDP or SCTP"#
        );
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
