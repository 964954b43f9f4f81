//! Live tests: the real binary attached by XDP to a veth in namespaces the test creates, with
//! real traffic and crafted frames from the peer. Nothing here touches the host's interfaces.

mod common;

use common::{
    auditor::{BIN, Running, run_to_end, xdp_state},
    frames::*,
    netns::{VETH_A, VETH_B, VethPair, ordinary_traffic, send_raw_frames},
    require_root,
};

macro_rules! root_only {
    () => {
        if !require_root(module_path!()) {
            return;
        }
    };
}

/// Crafted frames with known-bad checksums, each with the layer, kind, got and want the auditor
/// must report.
fn bad_frames() -> Vec<(Vec<u8>, &'static str, &'static str, u16, u16)> {
    let mut out = Vec::new();
    let mut f = v4_frame(&[], TCP, segment(TCP, 200), &[]);
    let want = f.checksum;
    f.set_field(want ^ 0x1111);
    out.push((f.bytes.clone(), "tcp", "corrupt", want ^ 0x1111, want));
    let mut f = v4_frame(&[], UDP, segment(UDP, 64), &[]);
    let want = f.checksum;
    f.set_field(want.swap_bytes());
    out.push((
        f.bytes.clone(),
        "udp",
        "byte-swapped",
        want.swap_bytes(),
        want,
    ));
    let mut f = v6_frame(UDP, segment(UDP, 64));
    let want = f.checksum;
    f.set_field(0);
    out.push((f.bytes.clone(), "udp", "zero", 0, want));
    let mut f = v4_frame(&[0x8100], ICMP, segment(ICMP, 56), &[]);
    let want = f.checksum;
    f.set_field(want ^ 0x00f0);
    out.push((f.bytes.clone(), "icmp", "corrupt", want ^ 0x00f0, want));
    let mut f = v6_frame(TCP, segment(TCP, 1000));
    let want = f.checksum;
    let pseudo = f.pseudo;
    f.set_field(pseudo);
    out.push((f.bytes.clone(), "tcp", "offload-pending", pseudo, want));
    out
}

#[test]
fn bad_frames_from_the_peer_arrive_as_events() {
    root_only!();
    let pair = VethPair::new("bad");
    let run = Running::start(&pair.b, &["--iface", VETH_B, "--show-offload"]);
    let frames = bad_frames();
    let raw: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    pair.a.run(move || send_raw_frames(VETH_A, &raw));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let done = run.stop(libc::SIGTERM);
    assert!(
        done.status.success(),
        "exit {}: {}",
        done.status,
        done.stderr
    );
    let verdicts = done.verdicts();
    for (_, layer, kind, got, want) in &frames {
        let hit = verdicts.iter().find(|v| {
            v["layer"] == *layer
                && v["kind"] == *kind
                && v["got"] == format!("{got:#06x}")
                && v["want"] == format!("{want:#06x}")
        });
        let v = hit.unwrap_or_else(|| {
            panic!("no {layer} {kind} event got {got:#06x} want {want:#06x} in {verdicts:#?}")
        });
        assert_eq!(v["status"], "bad");
        assert_eq!(v["iface"], VETH_B);
        assert_eq!(v["hook"], "xdp");
        assert_eq!(v["direction"], "ingress");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }
    let tcp4 = verdicts
        .iter()
        .find(|v| v["kind"] == "corrupt" && v["layer"] == "tcp")
        .unwrap();
    assert_eq!(tcp4["src"], "10.9.0.1");
    assert_eq!(tcp4["dst"], "10.9.0.2");
    assert_eq!(tcp4["sport"], 40682);
    assert_eq!(tcp4["dport"], 8080);
    assert_eq!(tcp4["tcp_seq"], 0x01020304);
    assert_eq!(tcp4["ip_id"], 0x1234);
    // Counters agree with the events, and nothing was lost.
    assert_eq!(done.counter(&["mismatches", "corrupt"]), 2);
    assert_eq!(done.counter(&["mismatches", "byte-swapped"]), 1);
    assert_eq!(done.counter(&["mismatches", "zero"]), 1);
    assert!(done.counter(&["mismatches", "offload-pending"]) >= 1);
    assert_eq!(done.counter(&["events_lost"]), 0);
    assert_eq!(xdp_state(&pair.b, VETH_B), "", "program left attached");
}

#[test]
fn real_tcp_udp_and_ping_produce_no_corrupt_reports() {
    root_only!();
    let pair = VethPair::new("tcp");
    let run = Running::start(&pair.b, &["--iface", VETH_B, "--show-offload"]);
    ordinary_traffic(&pair, 8080, 256 * 1024);
    let done = run.stop(libc::SIGINT);
    assert!(
        done.status.success(),
        "exit {}: {}",
        done.status,
        done.stderr
    );
    let not_offload: Vec<_> = done
        .verdicts()
        .into_iter()
        .filter(|v| v["kind"] != "offload-pending")
        .collect();
    assert!(
        not_offload.is_empty(),
        "false alarms on ordinary traffic: {not_offload:#?}"
    );
    for kind in ["corrupt", "zero", "byte-swapped"] {
        assert_eq!(done.counter(&["mismatches", kind]), 0, "{kind}");
    }
    // The traffic was really audited: partial checksums from the veth peer, verified pings.
    assert!(done.counter(&["mismatches", "offload-pending"]) > 0);
    assert!(done.counter(&["checks", "icmp", "ok"]) >= 3);
    assert!(done.counter(&["checks", "ipv4", "ok"]) > 20);
    assert_eq!(done.counter(&["events_lost"]), 0);
}

#[test]
fn without_show_offload_partial_checksums_are_counted_not_listed() {
    root_only!();
    let pair = VethPair::new("off");
    let run = Running::start(&pair.b, &["--iface", VETH_B]);
    ordinary_traffic(&pair, 8081, 4096);
    let done = run.stop(libc::SIGTERM);
    assert!(done.verdicts().is_empty(), "{:#?}", done.verdicts());
    assert!(done.counter(&["mismatches", "offload-pending"]) > 0);
}

#[test]
fn generic_mode_and_nothing_left_after_sigkill() {
    root_only!();
    let pair = VethPair::new("kill");
    let run = Running::start(&pair.b, &["--iface", VETH_B, "--xdp-mode", "generic"]);
    assert!(
        xdp_state(&pair.b, VETH_B).contains("xdpgeneric"),
        "{}",
        xdp_state(&pair.b, VETH_B)
    );
    let done = run.stop(libc::SIGKILL);
    assert!(!done.status.success());
    // XDP links die with the process's file descriptors: nothing stays attached.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !xdp_state(&pair.b, VETH_B).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still attached after SIGKILL: {}",
            xdp_state(&pair.b, VETH_B)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn duration_ends_the_run_with_a_final_summary() {
    root_only!();
    let pair = VethPair::new("dur");
    let mut cmd = pair.b.exec();
    cmd.args([
        BIN,
        "--iface",
        VETH_B,
        "--duration",
        "1s",
        "--format",
        "json",
    ]);
    let (code, stdout, stderr) = run_to_end(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["final"], true);
    assert!(stderr.contains("auditing veth-b"), "{stderr}");
    assert_eq!(xdp_state(&pair.b, VETH_B), "");
}

#[test]
fn an_occupied_xdp_slot_is_never_replaced() {
    root_only!();
    use checksum_user::{
        loader::{LoadOptions, Loaded, NOOP_XDP},
        xdp_slot::xdp_holder,
    };
    let pair = VethPair::new("busy");
    let ifindex = pair.b.ifindex(VETH_B);
    // Another tool's program: our no-op, attached from a thread inside the namespace.
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let holder = pair.b.spawn(move || {
        let mut other = Loaded::load(&LoadOptions::default()).expect("load");
        other
            .xdp(NOOP_XDP)
            .unwrap()
            .attach(ifindex, aya::programs::XdpMode::Skb)
            .expect("attach other");
        ready_tx
            .send(xdp_holder(ifindex).unwrap().unwrap())
            .unwrap();
        hold_rx.recv().ok();
    });
    let other = ready_rx.recv().unwrap();
    let mut cmd = pair.b.exec();
    cmd.args([BIN, "--iface", VETH_B, "--duration", "1s"]);
    let (code, _, stderr) = run_to_end(&mut cmd);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "taken by program 'noop_xdp' (id {})",
            other.prog_id
        )),
        "{stderr}"
    );
    assert!(stderr.contains("never replaces"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");
    // The other program is still there, untouched.
    assert_eq!(
        pair.b.run(move || xdp_holder(ifindex).unwrap()),
        Some(other)
    );
    hold_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn one_bad_interface_detaches_the_ones_already_attached() {
    root_only!();
    let pair = VethPair::new("part");
    let mut cmd = pair.b.exec();
    cmd.args([
        BIN,
        "--iface",
        VETH_B,
        "--iface",
        "nosuch0",
        "--duration",
        "5s",
    ]);
    let (code, _, stderr) = run_to_end(&mut cmd);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown interface 'nosuch0'"), "{stderr}");
    assert_eq!(xdp_state(&pair.b, VETH_B), "");
}
