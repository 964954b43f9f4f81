//! `cargo xtask bench --live`, part two: real TCP streams. iperf3 between two namespaces over a
//! veth pair (TX offload on, so every segment leaves `CHECKSUM_PARTIAL`), 10 s each, with nothing
//! attached and with checksum-audit at tc-ingress and tc-egress on both ends: throughput, and the
//! machine's CPU over the run (/proc/stat, since BPF programs run in the senders' and softirq
//! context, not in a process of their own). `CSA_BENCH_BASELINE_BIN` adds a row for another
//! build of the binary (for example one from before a change), in the same run.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};
use checksum_testkit::netns::{ADDR_B, NetNs, VETH_A, VETH_B, VethPair};
use serde_json::Value;

const SECONDS: u32 = 10;
const PORT: &str = "5301";

/// Busy and total jiffies of all CPUs so far.
fn cpu_jiffies() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Ok((total - idle, total))
}

/// checksum-audit on `iface` in `ns` (TC ingress and egress), once it has attached.
fn start_auditor(bin: &Path, ns: &NetNs, iface: &str) -> Result<Child> {
    let ready = std::env::temp_dir().join(format!("{}-iperf.ready", ns.name));
    let _ = std::fs::remove_file(&ready);
    let mut child = ns
        .exec()
        .arg(bin)
        .args(["--iface", iface, "--format", "json", "--interval", "1h"])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    crate::bench::harness::wait_ready(&mut child, &ready).with_context(|| format!("on {iface}"))?;
    let _ = std::fs::remove_file(&ready);
    Ok(child)
}

/// Stops an auditor; its final summary's TCP checks at both hooks, as `ok/partial-ok/bad`.
fn stop_auditor(child: Child) -> Result<String> {
    // SAFETY: plain syscall; no memory is passed.
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
    let out = child.wait_with_output()?;
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["type"] == "summary")
        })
        .context("no final summary from checksum-audit")?;
    let mut parts = Vec::new();
    for i in summary["interfaces"].as_array().into_iter().flatten() {
        let tcp = &i["checks"]["tcp"];
        parts.push(format!(
            "{} {}: {} ok, {} partial-ok, {} bad",
            i["iface"].as_str().unwrap_or("?"),
            i["hook"].as_str().unwrap_or("?"),
            tcp["ok"],
            tcp["partial-ok"],
            tcp["bad"],
        ));
    }
    Ok(parts.join("; "))
}

struct Stream {
    name: String,
    gbits: f64,
    cpu_percent: f64,
    note: String,
}

/// One iperf3 run of `SECONDS` from `a` to `b`, with auditors from `bin` on both ends if given.
fn stream(pair: &VethPair, name: &str, bin: Option<&Path>) -> Result<Stream> {
    let mut server = pair
        .b
        .exec()
        .args(["iperf3", "-s", "-1", "-p", PORT, "-B", ADDR_B])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 (Debian package iperf3)")?;
    let auditors = match bin {
        Some(bin) => vec![
            start_auditor(bin, &pair.a, VETH_A)?,
            start_auditor(bin, &pair.b, VETH_B)?,
        ],
        None => Vec::new(),
    };
    std::thread::sleep(Duration::from_millis(300)); // the server listens
    let before = cpu_jiffies()?;
    let out = pair
        .a
        .exec()
        .args(["iperf3", "-c", ADDR_B, "-p", PORT, "-J", "-t"])
        .arg(SECONDS.to_string())
        .output()
        .context("iperf3 client")?;
    let after = cpu_jiffies()?;
    let _ = server.kill();
    let _ = server.wait();
    let report: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    let gbits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("no throughput in iperf3's report: {report}"))?
        / 1e9;
    let busy = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64 * 100.0;
    let note = auditors
        .into_iter()
        .map(stop_auditor)
        .collect::<Result<Vec<_>>>()?
        .join("; ");
    Ok(Stream {
        name: name.into(),
        gbits,
        cpu_percent: busy,
        note,
    })
}

/// Rounds of the comparison: each one runs every receiver once, alternating, so that a slow
/// moment of this noisy machine does not fall on one receiver only.
const ROUNDS: usize = 2;

pub fn run(bin: &Path) -> Result<()> {
    let pair = VethPair::new("iperf");
    let baseline = std::env::var_os("CSA_BENCH_BASELINE_BIN").map(PathBuf::from);
    let mut rows = Vec::new();
    for _ in 0..ROUNDS {
        rows.push(stream(&pair, "nothing attached", None)?);
        rows.push(stream(&pair, "checksum-audit, both ends", Some(bin))?);
        if let Some(baseline) = &baseline {
            rows.push(stream(&pair, "baseline binary, both ends", Some(baseline))?);
        }
    }
    // Against the mean of the runs with nothing attached.
    let nothing: Vec<f64> = rows
        .iter()
        .filter(|r| r.name == "nothing attached")
        .map(|r| r.gbits)
        .collect();
    let base = nothing.iter().sum::<f64>() / nothing.len().max(1) as f64;
    println!(
        "\niperf3 TCP, {SECONDS} s, TX offload on (partial checksums), tc-ingress and tc-egress on both ends:"
    );
    println!(
        "{:<28} {:>8} {:>9} {:>9}  note",
        "receiver", "Gbit/s", "of none", "CPU %"
    );
    for r in &rows {
        println!(
            "{:<28} {:>8.2} {:>8.1}% {:>8.1}%  {}",
            r.name,
            r.gbits,
            100.0 * r.gbits / base.max(1e-9),
            r.cpu_percent,
            r.note
        );
    }
    Ok(())
}
