//! `checksum-audit replay`: the JSON contract of verdicts, the diagnosis objects, and the text
//! summary, on captures built here.

mod common;

use std::{io::Write, process::Command};

use checksum_user::testkit::frames::*;
use common::{auditor::BIN, require_root};
use serde_json::Value;

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

fn replay(bytes: &[u8], args: &[&str]) -> (String, String) {
    let path = std::env::temp_dir().join(format!(
        "csa-replay-{}-{}.pcap",
        std::process::id(),
        args.join("_")
    ));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    let out = Command::new(BIN)
        .arg("replay")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
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
