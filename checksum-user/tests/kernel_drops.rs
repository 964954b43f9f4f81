//! The kernel's own checksum drops (the `kfree_skb` tracepoint program): frames with bad checksums
//! sent to an address of the audited namespace are each confirmed as a drop with its reason and
//! location, the counts agree with the bad verdicts and with `InCsumErrors`, and a kernel where it
//! cannot run is a warning, not a failure.

mod common;

use checksum_testkit::frames::*;
use checksum_testkit::netns::{VETH_A, VETH_B, VethPair, send_raw_frames};
use common::auditor::Running;
use serde_json::Value;

/// Makes `veth-b` the frames' destination: their MAC and addresses (10.9.0.2, `fd00::2`).
fn deliverable(pair: &VethPair) {
    let mac = MAC_B.map(|b| format!("{b:02x}")).join(":");
    pair.b.ip(&["link", "set", VETH_B, "address", &mac]);
    pair.b.ip(&["addr", "add", "10.9.0.2/24", "dev", VETH_B]);
    pair.b
        .ip(&["addr", "add", "fd00::2/64", "dev", VETH_B, "nodad"]);
}

/// 3 TCP and 3 UDP segments with corrupt checksums, 2 IPv6 UDP ones, 1 bad IPv4 header and 2
/// good UDP datagrams (no listener: dropped as `NoPorts`, not for a checksum).
fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..3 {
        let mut f = v4_frame(&[], TCP, segment(TCP, 100 + i), &[]);
        f.set_field(f.checksum ^ 0x1111);
        out.push(f.bytes);
        let mut f = v4_frame(&[], UDP, segment(UDP, 60 + i), &[]);
        f.set_field(f.checksum ^ 0x0f0f);
        out.push(f.bytes);
    }
    for i in 0..2 {
        let mut f = v6_frame(UDP, segment(UDP, 80 + i));
        f.set_field(f.checksum ^ 0x0101);
        out.push(f.bytes);
    }
    let mut f = v4_frame(&[], ICMP, segment(ICMP, 56), &[]);
    f.bytes[f.l3_off + 10] ^= 0xff; // the IPv4 header checksum
    out.push(f.bytes);
    for i in 0..2 {
        out.push(v4_frame(&[], UDP, segment(UDP, 30 + i), &[]).bytes);
    }
    out
}

/// Sends the frames from `a` while a UDP socket on `[fd00::2]:53` in `b` reads: over IPv6 the
/// kernel names a bad UDP checksum to a port without a socket `NO_SOCKET` (the reason is set
/// before the sum is checked), so the IPv6 datagrams go to a listener, whose receive path drops
/// them as `UDP_CSUM`. Over IPv4 no socket listens: `__udp4_lib_rcv` drops them as `UDP_CSUM`.
fn send(pair: &VethPair) {
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let listener = pair.b.spawn(move || {
        let s = std::net::UdpSocket::bind("[fd00::2]:53").expect("bind [fd00::2]:53");
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        bound_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        // Nothing valid arrives; reading is what makes the kernel check the sums.
        while s.recv(&mut buf).is_ok() {}
    });
    bound_rx.recv().unwrap();
    let raw = frames();
    pair.a.run(move || send_raw_frames(VETH_A, &raw));
    listener.join().unwrap();
}

/// Audits `veth-b` at `hook` while the frames arrive there (see `send`); the finished run.
fn audit_the_frames(tag: &str, hook: &str) -> common::auditor::Finished {
    let pair = VethPair::new(tag);
    deliverable(&pair);
    let run = Running::start(&pair.b, &["--iface", VETH_B, "--hook", hook]);
    send(&pair);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let done = run.stop(libc::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    done
}

fn by_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

#[test]
fn bad_checksums_are_confirmed_as_kernel_drops() {
    root_only!();
    let done = audit_the_frames("kdrop", "tc-ingress");
    common::assert_matches_schema(&done.lines);

    // Every checksum drop of this namespace's device, by reason and where the kernel dropped it.
    // (Other tests' namespaces drop too: the tracepoint sees the whole machine.)
    let drops: Vec<&Value> = by_type(&done.lines, "kernel_drop")
        .into_iter()
        .filter(|d| d["device"] == VETH_B)
        .collect();
    let count = |reason: &str| drops.iter().filter(|d| d["reason"] == reason).count();
    assert_eq!(
        (count("TCP_CSUM"), count("UDP_CSUM"), count("IP_CSUM")),
        (3, 5, 1),
        "{drops:#?}"
    );
    let located = |reason: &str, code: &str| {
        drops
            .iter()
            .filter(|d| d["reason"] == reason)
            .all(|d| d["location"].as_str().unwrap().contains(code))
    };
    assert!(located("TCP_CSUM", "tcp_v4"), "{drops:#?}");
    assert!(located("UDP_CSUM", "udp"), "{drops:#?}");
    assert!(located("IP_CSUM", "ip_rcv"), "{drops:#?}");
    let tcp = drops.iter().find(|d| d["reason"] == "TCP_CSUM").unwrap();
    assert_eq!(
        (&tcp["src"], &tcp["dst"], &tcp["sport"], &tcp["dport"]),
        (
            &Value::from("10.9.0.1"),
            &Value::from("10.9.0.2"),
            &Value::from(40682),
            &Value::from(8080)
        ),
        "{tcp}"
    );
    let v6: Vec<_> = drops.iter().filter(|d| d["family"] == "ipv6").collect();
    assert_eq!(v6.len(), 2, "{drops:#?}");

    // Each diagnosed flow is confirmed: as many kernel drops as bad packets.
    for d in by_type(&done.lines, "diagnosis") {
        let confirmed = d["kernel_drops"]["count"].as_u64().unwrap();
        assert_eq!(confirmed, d["count"].as_u64().unwrap(), "{d}");
    }
    assert!(by_type(&done.lines, "diagnosis").len() >= 4);

    // The bad verdicts, the drops and the kernel's own InCsumErrors agree.
    let bad = |layer: &str| done.counter(VETH_B, "tc-ingress", &["checks", layer, "bad"]);
    assert_eq!((bad("tcp"), bad("udp"), bad("ipv4")), (3, 5, 1));
    let summary = done.final_summary();
    let k = &summary["kernel_drops"];
    assert_eq!(k["traced"], true, "{k}");
    assert_eq!(k["lost"], 0, "{k}");
    let errors = &k["in_csum_errors"][0];
    assert_eq!(
        (&errors["tcp"], &errors["udp"], &errors["ip"]),
        (&Value::from(3), &Value::from(5), &Value::from(1)),
        "{k}"
    );
    // Every flow the kernel dropped here was seen bad by the audit.
    assert!(
        k["never_seen_bad"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["device"] != VETH_B),
        "{k}"
    );
}

#[test]
fn drops_on_a_path_not_audited_are_listed_apart() {
    root_only!();
    // Only egress is audited: the bad frames arrive unseen, and the kernel still drops them.
    let done = audit_the_frames("kdun", "tc-egress");
    let k = &done.final_summary()["kernel_drops"];
    let unseen: Vec<&Value> = k["never_seen_bad"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["device"] == VETH_B)
        .collect();
    let dropped: u64 = unseen.iter().map(|f| f["count"].as_u64().unwrap()).sum();
    assert_eq!(dropped, 9, "{k}");
    assert!(
        unseen
            .iter()
            .any(|f| f["dport"] == 8080 && f["places"][0]["reason"] == "TCP_CSUM"),
        "{k}"
    );
}

#[test]
fn without_the_mechanism_the_audit_goes_on_and_says_why() {
    root_only!();
    let pair = VethPair::new("kdoff");
    deliverable(&pair);
    let empty = std::env::temp_dir().join(format!("csa-empty-btf-{}", std::process::id()));
    std::fs::write(&empty, b"").unwrap();
    for (btf, why) in [
        (empty.to_str().unwrap(), "not little-endian BTF"),
        ("/nonexistent/vmlinux", "reading /nonexistent/vmlinux"),
    ] {
        let mut cmd = pair.b.exec();
        cmd.env("CHECKSUM_AUDIT_BTF", btf).arg(common::auditor::BIN);
        let run = Running::spawn(
            cmd,
            &pair.b.name,
            &["--iface", VETH_B, "--hook", "tc-ingress"],
        );
        let raw = frames();
        pair.a.run(move || send_raw_frames(VETH_A, &raw));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let done = run.stop(libc::SIGTERM);
        assert!(done.status.success(), "{}", done.stderr);
        assert!(
            done.stderr
                .contains("the kernel's checksum drops are not traced")
                && done.stderr.contains(why),
            "{}",
            done.stderr
        );
        assert_eq!(
            done.stderr.matches("not traced").count(),
            1,
            "one line: {}",
            done.stderr
        );
        // The skb's checksum state needs the same file: without it severity at TC falls back to
        // the interface class, says so once, and the summary too.
        assert_eq!(
            done.stderr
                .matches("the skb's checksum state is not read at TC")
                .count(),
            1,
            "{}",
            done.stderr
        );
        assert!(
            done.final_summary()["skb_state"]["unavailable"]
                .as_str()
                .is_some_and(|w| w.contains(why)),
            "{}",
            done.final_summary()
        );
        for v in done.verdicts() {
            assert_eq!(v["severity_basis"], "interface-class", "{v}");
        }
        // The audit itself is untouched.
        assert_eq!(
            done.counter(VETH_B, "tc-ingress", &["checks", "tcp", "bad"]),
            3
        );
        let k = &done.final_summary()["kernel_drops"];
        assert_eq!(k["traced"], false, "{k}");
        assert!(k["unavailable"].as_str().unwrap().contains(why), "{k}");
        assert_eq!(by_type(&done.lines, "kernel_drop"), [] as [&Value; 0]);
    }
    let _ = std::fs::remove_file(&empty);

    // Turned off: nothing traced, nothing said.
    let run = Running::start(
        &pair.b,
        &[
            "--iface",
            VETH_B,
            "--hook",
            "tc-ingress",
            "--no-kernel-drops",
        ],
    );
    let raw = frames();
    pair.a.run(move || send_raw_frames(VETH_A, &raw));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let done = run.stop(libc::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(!done.stderr.contains("not traced"), "{}", done.stderr);
    assert!(done.final_summary()["kernel_drops"].is_null());
    assert_eq!(by_type(&done.lines, "kernel_drop"), [] as [&Value; 0]);
    for d in by_type(&done.lines, "diagnosis") {
        assert!(d["kernel_drops"].is_null(), "{d}");
    }
}
