//! `cargo xtask bench --live`: a veth pair driven as hard as this machine can with `AF_PACKET`
//! `sendmmsg`, and what share of the frames each auditor actually verified: nothing attached (the
//! receive rate), checksum-audit, and `tcpdump -vvv` on the same interface. All in one run, in
//! namespaces this command creates.

use std::{
    fmt::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use checksum_testkit::{
    frames::{TCP, segment, v4_frame},
    netns::{NetNs, VETH_A, VETH_B, VethPair},
};

use super::harness::wait_ready;
use crate::{sandbox::require_root, workspace::release_binary};

const SECONDS: f64 = 3.0;

/// Frames received by `iface` in `ns` so far (kernel interface statistics).
fn rx_packets(ns: &NetNs, iface: &str) -> Result<u64> {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "-s", "-j", "link", "show", iface])
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j link")?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .context("no rx packets in ip -s -j link")
}

/// Sends 64-byte frames with a corrupted TCP checksum from `a` for `SECONDS`, as fast as this
/// machine goes; returns frames sent.
fn flood(pair: &VethPair) -> u64 {
    pair.a.run(move || {
        let mut f = v4_frame(&[], TCP, segment(TCP, 10), &[]);
        let c = f.checksum;
        f.set_field(c ^ 0x0101);
        let start = Instant::now();
        crate::flood::flood(VETH_A, &[f.bytes], None, || {
            start.elapsed().as_secs_f64() >= SECONDS
        })
    })
}

struct Measured {
    name: &'static str,
    sent: u64,
    received: u64,
    verified: u64,
    note: String,
}

/// One flood with checksum-audit attached at TC ingress of veth-b with `extra` arguments.
fn measure_auditor(
    bin: &std::path::Path,
    pair: &VethPair,
    name: &'static str,
    extra: &[&str],
) -> Result<Measured> {
    let ready = std::env::temp_dir().join(format!("{}.ready", pair.b.name));
    let _ = std::fs::remove_file(&ready);
    let mut auditor = pair
        .b
        .exec()
        .arg(bin)
        .args([
            "--iface",
            VETH_B,
            "--hook",
            "tc-ingress",
            "--format",
            "json",
            "--interval",
            "1h",
        ])
        .args(extra)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    wait_ready(&mut auditor, &ready)?;
    let before = rx_packets(&pair.b, VETH_B)?;
    let sent = flood(pair);
    let received = rx_packets(&pair.b, VETH_B)? - before;
    // SAFETY: plain syscall; no memory is passed.
    unsafe { libc::kill(auditor.id().cast_signed(), libc::SIGINT) };
    let out = auditor.wait_with_output()?;
    let _ = std::fs::remove_file(&ready);
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v["type"] == "summary")
        })
        .context("no final summary from checksum-audit")?;
    let c = &summary["interfaces"][0];
    let verified = ["ok", "bad", "none"]
        .iter()
        .map(|s| c["checks"]["tcp"][s].as_u64().unwrap_or(0))
        .sum();
    let mut note = format!("{} events lost (counted)", c["events_lost"]);
    if c["events_sampled_out"].as_u64().unwrap_or(0) > 0 {
        let _ = write!(note, ", {} sampled out (counted)", c["events_sampled_out"]);
    }
    Ok(Measured {
        name,
        sent,
        received,
        verified,
        note,
    })
}

pub fn run() -> Result<()> {
    require_root("bench")?;
    let bin = release_binary()?;
    let pair = VethPair::new("live");
    let mut rows = Vec::new();

    // 1. Nothing attached: the rate this machine delivers frames to veth-b.
    let before = rx_packets(&pair.b, VETH_B)?;
    let sent = flood(&pair);
    let received = rx_packets(&pair.b, VETH_B)? - before;
    rows.push(Measured {
        name: "nothing attached",
        sent,
        received,
        verified: 0,
        note: String::new(),
    });

    // 2. checksum-audit at TC ingress on veth-b: every event sent (the ring buffer overflows and
    // counts what it lost), then with an event budget per flow (the rest counted, none lost).
    rows.push(measure_auditor(
        &bin,
        &pair,
        "checksum-audit (tc-ingress)",
        &[],
    )?);
    rows.push(measure_auditor(
        &bin,
        &pair,
        "  --events-per-flow 100",
        &["--events-per-flow", "100"],
    )?);

    // 3. tcpdump -vvv, which verifies checksums in user space for every frame it is handed.
    let tcpdump = pair
        .b
        .exec()
        .args(["tcpdump", "-i", VETH_B, "-n", "-vvv", "-B", "4096"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("tcpdump")?;
    std::thread::sleep(Duration::from_millis(1000));
    let before = rx_packets(&pair.b, VETH_B)?;
    let sent = flood(&pair);
    let received = rx_packets(&pair.b, VETH_B)? - before;
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain syscall; no memory is passed.
    unsafe { libc::kill(tcpdump.id().cast_signed(), libc::SIGINT) };
    let out = tcpdump.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let count = |what: &str| {
        stderr
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let captured = count("packets captured");
    rows.push(Measured {
        name: "tcpdump -vvv",
        sent,
        received,
        verified: captured,
        note: format!("{} dropped by kernel", count("dropped by kernel")),
    });

    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>9}  note",
        "receiver", "sent", "received/s", "verified", "share"
    );
    for r in &rows {
        let share = if r.received > 0 {
            100.0 * r.verified as f64 / r.received as f64
        } else {
            0.0
        };
        println!(
            "{:<28} {:>10} {:>12.0} {:>12} {:>8.1}%  {}",
            r.name,
            r.sent,
            r.received as f64 / SECONDS,
            r.verified,
            if r.name == "nothing attached" {
                0.0
            } else {
                share
            },
            r.note
        );
    }
    drop(pair);
    crate::bench::iperf::run(&bin)
}
