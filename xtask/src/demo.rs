//! The README's demo: a client reaches a "service address" through a middle hop whose NAT
//! rewrites it to the server but leaves the TCP/UDP checksum stale, while ordinary traffic to the
//! server flows beside it. checksum-audit audits all three hops at once (--netns), follows the
//! broken packets hop by hop, and names the hop where they broke, `stale-after-rewrite` at the
//! server and the service address, with no false problems.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::dnat::{DnatLab, netns_args};

use crate::{
    sandbox::require_root,
    workspace::{cargo, run as run_cmd, target_dir},
};

pub fn run() -> Result<()> {
    require_root("demo")?;
    run_cmd(cargo().args([
        "build",
        "--package",
        "checksum-user",
        "--bin",
        "checksum-audit",
    ]))?;
    // Where the build above put it: CARGO_TARGET_DIR is honoured, as by `release_binary`.
    let bin = target_dir().join("debug/checksum-audit");

    println!(
        "== demo: client -> service address 10.96.0.10 -> middle (a NAT that forgets the L4 checksum) -> server 10.199.2.2"
    );
    let lab = DnatLab::new("demo");
    let ready = std::env::temp_dir().join(format!("{}.ready", lab.server.name));
    let mut args = netns_args(&lab);
    // No --show-offload: once a hook sees a packet broken, its flow is tracked and every hook
    // reports its next packets, the client's own included, so the auditor sees each packet
    // before the NAT rewrote it and follows it to where it broke.
    args.extend(["--iface", "veth-*", "--interval", "1h", "--ready-file"].map(String::from));
    // Piped, so that the auditor prints plain summaries rather than its terminal table.
    let mut auditor = std::process::Command::new(&bin)
        .args(&args)
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting checksum-audit")?;
    let stdout = auditor.stdout.take().expect("piped");
    let printer = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
        }
    });
    let started = Instant::now();
    while !ready.exists() {
        if let Some(status) = auditor.try_wait()? {
            bail!("checksum-audit exited before attaching: {status}");
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = auditor.kill();
            bail!("checksum-audit did not attach within 20s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "== traffic: TCP and ping to the server's own address (fine); UDP datagrams and a TCP connection to the service address (broken by the NAT)"
    );
    let answered = lab.traffic();
    println!(
        "== the service address {}",
        if answered {
            "answered (unexpected)"
        } else {
            "never answered: its packets were dropped for bad checksums"
        }
    );
    std::thread::sleep(Duration::from_millis(300));

    // SAFETY: plain syscall; no memory is passed.
    unsafe { libc::kill(auditor.id().cast_signed(), libc::SIGINT) };
    let status = auditor.wait()?;
    let _ = printer.join();
    let _ = std::fs::remove_file(&ready);
    if !status.success() {
        bail!("checksum-audit failed: {status}");
    }
    let mut left = Vec::new();
    for (ns, iface) in [
        (&lab.client, "veth-c"),
        (&lab.middle, "veth-m0"),
        (&lab.middle, "veth-m1"),
        (&lab.server, "veth-s"),
    ] {
        // The fault injector itself stays attached until the lab is dropped; only ours count.
        left.extend(
            ns.tcx_programs(iface)
                .into_iter()
                .filter(|p| p.contains("csum_")),
        );
        left.extend(Some(ns.xdp_state(iface)).filter(|s| !s.is_empty()));
    }
    let still = !left.is_empty();
    println!(
        "== after exit: checksum-audit programs left attached: {}",
        if still {
            format!("{left:?} (bug)")
        } else {
            "none".into()
        }
    );
    drop(lab);
    println!("== namespaces removed");
    if still {
        bail!("programs left attached");
    }
    Ok(())
}
