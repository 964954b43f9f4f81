//! Hop by hop, live, in the demo topology (client -> VIP -> middle NAT -> server) the tests
//! create: a broken packet is followed from the client's egress to the server, the path names
//! the last good hop and the first bad one with the rewrite between them, and the diagnosis of
//! each hop rests on having seen the packet before the rewrite.

mod common;

use checksum_testkit::dnat::{
    CLIENT_IF, DnatLab, Fault, L4Update, MIDDLE_IN, Place, SERVER_IF, SERVICE_TCP_PORT,
    SERVICE_UDP_PORT, netns_args,
};
use common::auditor::Running;
use serde_json::Value;

/// Runs the lab's traffic under an auditor of all three namespaces; its JSON lines, and a metrics
/// scrape taken before it stops (on the host's loopback).
fn audit(lab: &DnatLab) -> (Vec<Value>, String) {
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port().to_string()
    };
    let mut args = netns_args(lab);
    args.extend(["--iface", "veth-*", "--metrics-addr", &port].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = Running::start_with_netns(&lab.server.name, &args);
    assert!(
        !lab.traffic(),
        "the service answered: the NAT did not break it"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500)); // a metrics refresh
    let scrape = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let done = run.stop(libc::SIGTERM);
    done.assert_clean();
    (done.lines, scrape)
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// A JSON index.
fn index(v: &Value) -> usize {
    usize::try_from(v.as_u64().unwrap_or_else(|| panic!("not an index: {v}"))).unwrap()
}

/// The diagnosis of the broken `layer` flow at `iface` (`netns/iface`) and `hook`.
fn diagnosis<'a>(lines: &'a [Value], iface: &str, hook: &str, layer: &str) -> &'a Value {
    let port = if layer == "udp" {
        SERVICE_UDP_PORT
    } else {
        SERVICE_TCP_PORT
    };
    of_type(lines, "diagnosis")
        .into_iter()
        .find(|d| {
            d["iface"] == iface && d["hook"] == hook && d["layer"] == layer && d["dport"] == port
        })
        .unwrap_or_else(|| {
            panic!(
                "no {layer} diagnosis at {iface} {hook}: {:#?}",
                of_type(lines, "diagnosis")
            )
        })
}

/// Checks the path of the broken `layer` flow: last good at the client's egress, first bad at the
/// middle's ingress, the destination rewritten and the checksum field left as it was.
fn check_path(lab: &DnatLab, lines: &[Value], layer: &str) {
    let client = format!("{}/{CLIENT_IF}", lab.client.name);
    let middle = format!("{}/{MIDDLE_IN}", lab.middle.name);
    let port = if layer == "udp" {
        SERVICE_UDP_PORT
    } else {
        SERVICE_TCP_PORT
    };
    let paths = of_type(lines, "path");
    let path = paths
        .iter()
        .find(|p| p["layer"] == layer && p["hops"][index(&p["first_bad"])]["dport"] == port)
        .unwrap_or_else(|| panic!("no {layer} path: {paths:#?}"));
    eprintln!("{layer} path: {}", path["sentence"]);
    let hop = |i: &Value| &path["hops"][index(i)];
    let (good, bad) = (hop(&path["last_good"]), hop(&path["first_bad"]));
    assert_eq!(
        (good["iface"].as_str(), good["hook"].as_str()),
        (Some(client.as_str()), Some("tc-egress")),
        "{path:#}"
    );
    assert_eq!(
        (bad["iface"].as_str(), bad["hook"].as_str()),
        (Some(middle.as_str()), Some("tc-ingress")),
        "{path:#}"
    );
    assert_eq!(good["dst"], "10.96.0.10");
    assert_eq!(bad["dst"], "10.199.2.2");
    assert_eq!(path["changed"], serde_json::json!(["dst-addr"]), "{path:#}");
    assert_eq!(
        path["rewrites"],
        serde_json::json!([{"field": "dst-addr", "from": "10.96.0.10", "to": "10.199.2.2"}]),
        "{path:#}"
    );
    assert_eq!(
        path["field_changed"], false,
        "the NAT left the field: {path:#}"
    );
    let sentence = path["sentence"].as_str().unwrap();
    assert!(
        sentence.contains(&format!("fine at {client} tc-egress")),
        "{sentence}"
    );
    assert!(
        sentence.contains(&format!(
            "at {middle} tc-ingress the destination address is 10.199.2.2 (was 10.96.0.10)"
        )),
        "{sentence}"
    );
    assert!(
        sentence.contains("checksum field is unchanged: it broke between these two hooks"),
        "{sentence}"
    );
    // And on to the server, broken all the way.
    let server = format!("{}/{SERVER_IF}", lab.server.name);
    assert!(
        path["hops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["iface"] == server.as_str() && h["status"] == "bad"),
        "{path:#}"
    );
}

#[test]
fn a_nat_that_leaves_a_partial_checksum_is_found_between_two_hooks() {
    root_only!();
    let lab = DnatLab::new("pathl");
    let (lines, scrape) = audit(&lab);
    // Both broken flows (UDP, TCP) broke between the client's egress and the middle's ingress.
    let series = format!(
        "checksum_audit_broken_hops{{from=\"{}/{CLIENT_IF}@tc-egress\",to=\"{}/{MIDDLE_IN}@tc-ingress\"}} 2",
        lab.client.name, lab.middle.name
    );
    assert!(scrape.contains(&series), "no {series} in:\n{scrape}");
    let middle = format!("{}/{MIDDLE_IN}", lab.middle.name);
    let server = format!("{}/{SERVER_IF}", lab.server.name);
    for layer in ["udp", "tcp"] {
        check_path(&lab, &lines, layer);
        // The packet seen before the rewrite (tracked at the client's egress) is the evidence.
        let d = diagnosis(&lines, &middle, "tc-ingress", layer);
        assert_eq!(d["diagnosis"], "partial-left-alone", "{d}");
        assert_eq!(
            (d["likely_original"].as_str(), d["evidence"].as_str()),
            (Some("10.96.0.10"), Some("seen")),
            "{d}"
        );
        let d = diagnosis(&lines, &server, "tc-ingress", layer);
        assert_eq!(d["diagnosis"], "stale-after-rewrite", "{d}");
        // This very packet, at the client's egress, before the NAT.
        let client = format!("{}/{CLIENT_IF} tc-egress", lab.client.name);
        assert_eq!(d["seen_at"].as_str(), Some(client.as_str()), "{d}");
        assert!(
            d["explanation"].as_str().unwrap().contains(&format!(
                "the same packet was seen before the rewrite, at {client}"
            )),
            "{d}"
        );
        assert_eq!(
            (d["likely_original"].as_str(), d["evidence"].as_str()),
            (Some("10.96.0.10"), Some("seen")),
            "{d}"
        );
    }
}

#[test]
fn a_nat_that_updates_a_partial_checksum_as_if_complete_is_named_so() {
    root_only!();
    let lab = DnatLab::with_fault(
        "pathc",
        Fault {
            place: Place::MiddleIngress,
            l4: L4Update::AsIfComplete,
            port: None,
        },
    );
    let (lines, _) = audit(&lab);
    let middle = format!("{}/{MIDDLE_IN}", lab.middle.name);
    let server = format!("{}/{SERVER_IF}", lab.server.name);
    for layer in ["udp", "tcp"] {
        let d = diagnosis(&lines, &middle, "tc-ingress", layer);
        assert_eq!(d["diagnosis"], "partial-updated-as-complete", "{d}");
        assert_eq!(d["evidence"], "seen", "{d}");
        // Completed in software on the way out of the middle hop: the ovs-issues#231 shape.
        let d = diagnosis(&lines, &server, "tc-ingress", layer);
        assert_eq!(
            d["diagnosis"], "partial-updated-as-complete-then-completed",
            "{d}"
        );
        assert_eq!(d["likely_original"], "10.96.0.10", "{d}");
        // Its path: the field changed at the NAT.
        let paths = of_type(&lines, "path");
        let path = paths
            .iter()
            .find(|p| p["layer"] == layer && p["last_good"].is_u64())
            .unwrap_or_else(|| panic!("{paths:#?}"));
        assert_eq!(path["field_changed"], true, "{path:#}");
    }
}
