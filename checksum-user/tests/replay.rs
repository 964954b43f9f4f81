//! `checksum-audit replay`: the JSON contract of verdicts, the diagnosis objects, and the text
//! summary, on captures built here.

mod common;

use checksum_testkit::frames::*;
use common::{
    replay::{json_lines, replay},
    require_root,
};

const VIP: [u8; 4] = [10, 9, 0, 2]; // the frames' own destination: the "service address"
const POD: [u8; 4] = [10, 244, 1, 7];

/// A capture of a flow to a service address, then the same flow DNATed to a pod by a faulty NAT
/// that leaves the TCP checksum stale, and one ordinary good packet.
fn dnat_capture() -> Vec<u8> {
    let mut packets = Vec::new();
    // The flow before the rewrite (a good packet): the run has seen the service address.
    packets.push(v4_frame(&[], TCP, segment(TCP, 10), &[]).bytes);
    for i in 0..4 {
        let mut f = v4_frame(&[], TCP, segment(TCP, 20 + i * 7), &[]);
        f.rewrite_v4_dst_stale(POD);
        packets.push(f.bytes);
    }
    let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    pcap_file(1, &refs)
}

#[test]
fn verdict_lines_keep_the_documented_contract() {
    if !require_root(module_path!()) {
        return;
    }
    let (all, _) = replay(&dnat_capture(), &["--format", "json", "--all"]);
    let lines = json_lines(&all);
    common::assert_matches_schema(&lines);
    // The schema is strict enough to notice a broken contract.
    let mut broken = lines[0].clone();
    broken["got"] = serde_json::json!("1443");
    assert!(!common::schema_errors(&broken).is_empty(), "{broken}");
    let mut broken = lines[0].clone();
    broken.as_object_mut().unwrap().remove("packet");
    assert!(!common::schema_errors(&broken).is_empty(), "{broken}");
    let verdicts: Vec<_> = lines.iter().filter(|l| l["type"] == "verdict").collect();
    // Five packets, each with an IPv4 header and a TCP verdict.
    assert_eq!(verdicts.len(), 10, "{all}");
    for v in &verdicts {
        let keys: Vec<_> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for key in [
            "type", "packet", "layer", "status", "got", "want", "kind", "family", "src", "dst",
            "sport", "dport",
        ] {
            assert!(keys.contains(&key), "{key} missing in {v}");
        }
        assert!(v["packet"].as_u64().unwrap() >= 1);
        assert!(["ipv4", "tcp"].contains(&v["layer"].as_str().unwrap()));
        assert!(v["got"].as_str().unwrap().starts_with("0x"));
    }
    let stale: Vec<_> = verdicts.iter().filter(|v| v["status"] == "bad").collect();
    assert_eq!(stale.len(), 4);
    assert!(stale.iter().all(|v| v["kind"] == "corrupt"
        && v["dst"] == "10.244.1.7"
        && v["dport"] == 8080
        && v["packet"] != 1));
    assert!(
        verdicts
            .iter()
            .filter(|v| v["status"] == "ok")
            .all(|v| v["kind"].is_null())
    );
    // Without --all only the bad ones.
    let (bad_only, _) = replay(&dnat_capture(), &["--format", "json"]);
    assert_eq!(
        json_lines(&bad_only)
            .iter()
            .filter(|l| l["type"] == "verdict")
            .count(),
        4
    );
    assert_eq!(lines.last().unwrap()["type"], "summary");
}

#[test]
fn a_stale_checksum_after_dnat_names_the_service_address() {
    if !require_root(module_path!()) {
        return;
    }
    let (stdout, _) = replay(&dnat_capture(), &["--format", "json"]);
    let lines = json_lines(&stdout);
    common::assert_matches_schema(&lines);
    let d: Vec<_> = lines.iter().filter(|l| l["type"] == "diagnosis").collect();
    assert_eq!(d.len(), 1, "{stdout}");
    let d = d[0];
    assert_eq!(d["diagnosis"], "stale-after-rewrite", "{d}");
    let vip = std::net::Ipv4Addr::from(VIP).to_string();
    assert_eq!(d["likely_original"], vip.as_str(), "{d}");
    assert_eq!(d["family"], "ipv4");
    assert_eq!(d["layer"], "tcp");
    assert_eq!(
        (d["src"].as_str(), d["dst"].as_str()),
        (Some("10.9.0.1"), Some("10.244.1.7"))
    );
    assert_eq!(
        (d["sport"].as_u64(), d["dport"].as_u64()),
        (Some(40682), Some(8080))
    );
    assert_eq!(d["count"], 4);
    assert!(d["delta"].as_str().unwrap().starts_with("0x"));
    assert_eq!(d["severity"], "problem");
    assert!(
        !d["explanation"].as_str().unwrap().is_empty()
            && !d["next_step"].as_str().unwrap().is_empty()
    );
    // The text summary says the same to a person.
    let (text, _) = replay(&dnat_capture(), &[]);
    assert!(text.contains("stale-after-rewrite (4 packets"), "{text}");
    assert!(
        text.contains(&format!("destination address {vip} -> 10.244.1.7")),
        "{text}"
    );
    assert!(text.contains("next: "), "{text}");
}

/// A pcapng file with `packets` on each named interface, written by our own writer.
fn pcapng_file(interfaces: &[(&str, Vec<Vec<u8>>)]) -> Vec<u8> {
    use checksum_user::pcap::write::PcapngWriter;
    let mut w = PcapngWriter::new(Vec::new(), None).unwrap();
    let ids: Vec<u32> = interfaces
        .iter()
        .map(|(name, _)| w.add_interface(name, 65535).unwrap())
        .collect();
    // Interleaved, so that replay switches between the interfaces' counters.
    let longest = interfaces.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    for i in 0..longest {
        for (id, (_, packets)) in ids.iter().zip(interfaces) {
            if let Some(p) = packets.get(i) {
                w.write_packet(
                    *id,
                    1_000 + i as u64,
                    u32::try_from(p.len()).unwrap(),
                    p,
                    "",
                )
                .unwrap();
            }
        }
    }
    w.into_inner().unwrap()
}

#[test]
fn each_capture_interface_is_counted_apart() {
    if !require_root(module_path!()) {
        return;
    }
    let good = v4_frame(&[], UDP, segment(UDP, 40), &[]).bytes;
    let mut bad = v4_frame(&[], TCP, segment(TCP, 30), &[]);
    bad.corrupt_payload();
    let file = pcapng_file(&[
        (
            "ns1/veth-a@tc-egress",
            vec![good.clone(), good.clone(), good.clone()],
        ),
        (
            "ns2/veth-b@tc-ingress",
            vec![good.clone(), bad.bytes.clone()],
        ),
    ]);
    let (stdout, _) = replay(&file, &["--format", "json"]);
    let lines = json_lines(&stdout);
    common::assert_matches_schema(&lines);
    let summary = lines.last().unwrap();
    let ifaces = summary["interfaces"].as_array().expect("interfaces");
    let by_name = |name: &str| {
        ifaces
            .iter()
            .find(|i| i["iface"] == name)
            .unwrap_or_else(|| panic!("{name} missing in {summary}"))
    };
    let a = by_name("ns1/veth-a@tc-egress");
    let b = by_name("ns2/veth-b@tc-ingress");
    assert_eq!(a["packets"], 3, "{a}");
    assert_eq!(b["packets"], 2, "{b}");
    assert_eq!(a["mismatches"]["corrupt"], 0, "{a}");
    assert_eq!(b["mismatches"]["corrupt"], 1, "{b}");
    // The whole file is still counted once.
    assert_eq!(summary["counters"]["packets"], 5, "{summary}");
    // The mismatch is attributed to its interface, in its flow row and its diagnosis.
    let flows = summary["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{summary}");
    assert_eq!(flows[0]["iface"], "ns2/veth-b@tc-ingress");
    let diagnoses: Vec<_> = lines.iter().filter(|l| l["type"] == "diagnosis").collect();
    assert!(
        diagnoses
            .iter()
            .all(|d| d["iface"] == "ns2/veth-b@tc-ingress"),
        "{diagnoses:?}"
    );

    // Text: a block for the file and one per interface.
    let (text, _) = replay(&file, &[]);
    assert!(
        text.contains("ns1/veth-a@tc-egress (capture, xdp, test-run): 3 packets"),
        "{text}"
    );
    assert!(
        text.contains("ns2/veth-b@tc-ingress (capture, xdp, test-run): 2 packets"),
        "{text}"
    );
}

#[test]
fn a_capture_of_one_interface_keeps_one_block() {
    if !require_root(module_path!()) {
        return;
    }
    let (text, _) = replay(&dnat_capture(), &[]);
    assert_eq!(
        text.matches("(capture, xdp, test-run)").count(),
        1,
        "{text}"
    );
    let (json, _) = replay(&dnat_capture(), &["--format", "json"]);
    let summary = json_lines(&json).pop().unwrap();
    let ifaces = summary["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 1, "{summary}");
    assert_eq!(ifaces[0]["packets"], summary["counters"]["packets"]);
}

/// A frame no XDP test run takes on any kernel: more bytes than its page and fragments hold
/// (`MAX_SKB_FRAGS` is at most 45 pages, 184 KiB; a capture record at most 256 KiB).
fn unrunnable_frame() -> Vec<u8> {
    let mut f = v4_frame(&[], UDP, segment(UDP, 10), &[]).bytes;
    f.resize(260_000, 0);
    f
}

#[test]
fn a_capture_whose_every_frame_fails_to_run_is_an_error() {
    if !require_root(module_path!()) {
        return;
    }
    let frame = unrunnable_frame();
    let path = std::env::temp_dir().join(format!("csa-unrunnable-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap_file(1, &[&frame, &frame])).unwrap();
    let (code, stdout, stderr) = common::auditor::run_to_end(
        std::process::Command::new(common::auditor::BIN)
            .arg("replay")
            .arg(&path),
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 1, "{stderr}");
    // No verdict and no summary that could read as an all-clear: only the error.
    assert_eq!(stdout, "", "{stderr}");
    let error = stderr.lines().last().unwrap_or_default();
    assert!(
        error.starts_with("checksum-audit: error: ")
            && error
                .contains("no frame was audited: the kernel's test run failed for all 2 frames")
            && error.contains("the first, packet 1: BPF_PROG_TEST_RUN failed"),
        "{stderr}"
    );
}

#[test]
fn a_capture_with_some_frames_audited_still_gets_its_summary() {
    if !require_root(module_path!()) {
        return;
    }
    let good = v4_frame(&[], UDP, segment(UDP, 10), &[]).bytes;
    let (text, stderr) = replay(&pcap_file(1, &[&unrunnable_frame(), &good]), &[]);
    assert!(
        text.contains("2 frames, 1 audited, 0 too short, 1 refused by the kernel test run"),
        "{text}"
    );
    assert!(stderr.contains("packet 1: not audited"), "{stderr}");
}
