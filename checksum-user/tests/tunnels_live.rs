//! Tunnels live: two namespaces joined by a veth underlay, a real VXLAN device on each side, real TCP, UDP and ping through the tunnel, and the auditor on the underlay at both ends.
//! Crafted tunnel frames from the peer stand in for the faults (a broken inner checksum, an inner
//! checksum left partial, a wrong outer UDP checksum). Nothing here touches the host's interfaces.
//! Geneve is not here: the kernel of these machines has no Geneve driver ("Unknown device type",
//! and no modules to load), so Geneve is covered by `BPF_PROG_TEST_RUN` (tests/tunnels.rs) and
//! tcpdump's captures (tests/conformance.rs).

mod common;

use checksum_common::encap::EncapKind;
use checksum_testkit::{
    frames::*,
    netns::{ADDR_A, ADDR_B, VETH_A, VETH_B, VethPair, ordinary_traffic_between, send_raw_frames},
};
use common::auditor::Running;
use serde_json::Value;

const INNER_A: &str = "10.42.0.1";
const INNER_B: &str = "10.42.0.2";
const VNI: &str = "42";

/// The pair with a VXLAN device `tun0` on each side over the veth, TX checksum offload on it `tx`
/// ("on" or "off").
fn tunnel_pair(tag: &str, tx: &str) -> VethPair {
    let pair = VethPair::new(tag);
    for (ns, dev, local, remote, inner) in [
        (&pair.a, VETH_A, ADDR_A, ADDR_B, INNER_A),
        (&pair.b, VETH_B, ADDR_B, ADDR_A, INNER_B),
    ] {
        ns.ip(&[
            "link", "add", "tun0", "type", "vxlan", "id", VNI, "local", local, "remote", remote,
            "dstport", "4789", "dev", dev,
        ]);
        ns.ip(&["addr", "add", &format!("{inner}/24"), "dev", "tun0"]);
        ns.ip(&["link", "set", "tun0", "up"]);
        let out = ns
            .exec()
            .args(["ethtool", "-K", "tun0", "tx", tx])
            .output()
            .expect("ethtool");
        assert!(
            out.status.success(),
            "ethtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    pair
}

fn problems(verdicts: &[&Value]) -> Vec<Value> {
    verdicts
        .iter()
        .filter(|v| v["severity"] != "expected")
        .map(|v| (*v).clone())
        .collect()
}

/// Real traffic through a tunnel: no problems at either end, the tunnel recognised, and its inner
/// packets checked at both hooks. With TX offload on, the inner checksums are `CHECKSUM_PARTIAL`
/// (partial-ok) and the outer UDP checksum was computed by local checksum offload, right only
/// once the inner one is filled in (partial-ok too: `audit::outer_udp_by_lco`).
fn real_traffic_through_a_tunnel_has_no_problems(tx: &str, port: u16) {
    let kind = "vxlan";
    let pair = tunnel_pair(&format!("vx{tx}"), tx);
    let client = Running::start(&pair.a, &["--iface", VETH_A]);
    let server = Running::start(&pair.b, &["--iface", VETH_B]);
    ordinary_traffic_between(&pair, (INNER_A, INNER_B), port, 128 * 1024);
    for (done, dev) in [
        (server.stop(libc::SIGINT), VETH_B),
        (client.stop(libc::SIGTERM), VETH_A),
    ] {
        done.assert_clean();
        let verdicts = done.verdicts();
        let problems = problems(&verdicts);
        assert!(
            problems.is_empty(),
            "{kind} tx {tx}: false alarms on {dev}: {problems:#?}"
        );
        for hook in ["tc-ingress", "tc-egress"] {
            assert!(
                done.counter(dev, hook, &["encapsulated"]) > 3,
                "{kind} tx {tx} {dev} {hook}: tunnel frames recognised"
            );
            assert_eq!(done.counter(dev, hook, &["inner_malformed"]), 0);
            let inner_tcp: u64 = ["ok", "partial-ok"]
                .iter()
                .map(|s| done.counter(dev, hook, &["inner_checks", "tcp", s]))
                .sum();
            assert!(
                inner_tcp > 3,
                "{kind} tx {tx} {dev} {hook}: inner TCP checked"
            );
            assert!(
                done.counter(dev, hook, &["inner_checks", "ipv4", "ok"]) > 3,
                "{kind} tx {tx} {dev} {hook}: inner IPv4 headers checked"
            );
            for k in ["corrupt", "zero", "byte-swapped"] {
                assert_eq!(
                    done.counter(dev, hook, &["mismatches", k]),
                    0,
                    "{dev} {hook} {k}"
                );
            }
        }
        // Pings and the UDP datagrams cross the tunnel from a to b.
        if dev == VETH_B {
            assert!(done.counter(dev, "tc-ingress", &["inner_checks", "icmp", "ok"]) >= 3);
            let udp: u64 = ["ok", "partial-ok"]
                .iter()
                .map(|s| done.counter(dev, "tc-ingress", &["inner_checks", "udp", s]))
                .sum();
            assert!(udp > 0, "{kind} tx {tx}: inner UDP checked");
        }
    }
}

#[test]
fn real_traffic_through_vxlan_has_no_problems_with_tx_offload_on() {
    root_only!();
    real_traffic_through_a_tunnel_has_no_problems("on", 8190);
}

#[test]
fn real_traffic_through_vxlan_has_no_problems_with_tx_offload_off() {
    root_only!();
    real_traffic_through_a_tunnel_has_no_problems("off", 8191);
}

/// Three faults, as crafted VXLAN frames from the peer (VNI 42, over the underlay): a corrupt
/// inner TCP checksum; an inner UDP checksum left holding the pseudo-header sum (offload never
/// completed, the flannel case: the receiver's skb is not `CHECKSUM_PARTIAL`); and a nonzero outer
/// UDP checksum that does not match, with a good inner packet.
#[test]
fn broken_tunnelled_frames_are_problems_with_the_inner_flow_and_vni() {
    root_only!();
    let pair = tunnel_pair("vxbad", "on");
    let pcap = std::env::temp_dir().join(format!("csa-vxlan-{}.pcapng", std::process::id()));
    let pcap_arg = pcap.to_str().unwrap().to_owned();
    let run = Running::start(
        &pair.b,
        &[
            "--iface",
            VETH_B,
            "--hook",
            "tc-ingress",
            "--pcap-out",
            &pcap_arg,
        ],
    );
    let header = tunnel_header(EncapKind::Vxlan, 42, &[], None);
    let mut corrupt = v4_frame(&[], TCP, segment(TCP, 300), &[]);
    let corrupt_want = corrupt.checksum;
    corrupt.set_field(corrupt_want ^ 0x2222);
    let mut pending = v4_frame(&[], UDP, segment(UDP, 120), &[]);
    let pending_want = pending.checksum;
    let pseudo = pending.pseudo;
    pending.set_field(pseudo);
    let good = v6_frame(TCP, segment(TCP, 80));
    let mut outer_bad = tunnel_frame(false, 4789, &header, &good.bytes);
    let outer_want = outer_bad.field();
    outer_bad.set_field(outer_want ^ 0x0f0f);
    let frames = vec![
        tunnel_frame(false, 4789, &header, &corrupt.bytes).bytes,
        tunnel_frame(true, 4789, &header, &pending.bytes).bytes,
        outer_bad.bytes,
    ];
    pair.a.run(move || send_raw_frames(VETH_A, &frames));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let done = run.stop(libc::SIGTERM);
    done.assert_clean();
    let verdicts = done.verdicts();
    let find = |layer: &str, level: &str, kind: &str| {
        verdicts
            .iter()
            .find(|v| v["layer"] == layer && v["encap"]["level"] == level && v["kind"] == kind)
            .copied()
            .unwrap_or_else(|| panic!("no {level} {layer} {kind} in {verdicts:#?}"))
    };
    let v = find("tcp", "inner", "corrupt");
    assert_eq!(v["want"], format!("{corrupt_want:#06x}"));
    assert_eq!(
        (v["src"].as_str(), v["dst"].as_str()),
        (Some("10.9.0.1"), Some("10.9.0.2"))
    );
    assert_eq!(v["encap"]["kind"], "vxlan");
    assert_eq!(v["encap"]["vni"], 42);
    assert_eq!(v["encap"]["outer_dst"], "10.9.0.2");
    assert_eq!(
        (v["severity"].as_str(), v["severity_basis"].as_str()),
        (Some("problem"), Some("skb-state"))
    );
    let v = find("udp", "inner", "offload-pending");
    assert_eq!(v["want"], format!("{pending_want:#06x}"));
    assert_eq!(v["encap"]["outer_src"], "fd00::1");
    assert_eq!(v["skb"]["ip_summed"], "none");
    assert_eq!(v["severity"], "problem", "{v}");
    let v = find("udp", "outer", "corrupt");
    assert_eq!(v["want"], format!("{outer_want:#06x}"));
    assert_eq!(v["severity"], "problem");
    // The inner packet of that frame is fine, and nothing else was called a problem.
    assert!(verdicts.iter().all(|v| v["status"] != "bad"
        || v == &find("tcp", "inner", "corrupt")
        || v == &find("udp", "inner", "offload-pending")
        || v == &find("udp", "outer", "corrupt")));
    assert_eq!(
        done.counter(VETH_B, "tc-ingress", &["inner_checks", "tcp", "bad"]),
        1
    );
    assert!(done.counter(VETH_B, "tc-ingress", &["inner_checks", "tcp", "ok"]) >= 1);
    // The inner packet left partial is the overlay's offload bug, with the tunnel's next step.
    let d = done
        .lines
        .iter()
        .find(|l| l["type"] == "diagnosis" && l["layer"] == "udp" && l["dport"] != 4789)
        .unwrap_or_else(|| panic!("no inner UDP diagnosis in {:#?}", done.lines));
    assert_eq!(d["diagnosis"], "tunnel-offload-pending", "{d}");
    assert_eq!(d["severity"], "problem", "{d}");
    assert!(
        d["next_step"]
            .as_str()
            .unwrap()
            .contains("tx-checksum-ip-generic"),
        "{d}"
    );
    assert_capture_says_which_packet(&pcap);
}

/// The capture holds the whole frames; each comment says which packet of the frame was broken.
fn assert_capture_says_which_packet(pcap: &std::path::Path) {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-e", "frame.comment"])
        .output()
        .expect("tshark reads the capture");
    let _ = std::fs::remove_file(pcap);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.contains("layer=tcp")
            && l.contains("kind=corrupt")
            && l.contains("encap=vxlan vni=42 level=inner")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("layer=udp") && l.contains("level=outer")),
        "{text}"
    );
}
