//! The README's demo: two namespaces joined by a veth pair, checksum-audit attached on one end,
//! ordinary traffic (a real TCP connection, UDP, ping) beside frames with broken checksums.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_user::testkit::{
    frames::*,
    netns::{VETH_A, VETH_B, VethPair, ordinary_traffic, send_raw_frames},
};

use crate::{cargo, require_root, run as run_cmd, workspace_root};

pub fn run() -> Result<()> {
    require_root("demo")?;
    run_cmd(cargo().args([
        "build",
        "--package",
        "checksum-user",
        "--bin",
        "checksum-audit",
    ]))?;
    let bin = workspace_root().join("target/debug/checksum-audit");

    println!(
        "== demo: namespaces csa-demo-*, veth pair {VETH_A} <-> {VETH_B}; checksum-audit on {VETH_B} (default hooks: TC ingress and egress)"
    );
    let pair = VethPair::new("demo");
    let ready = std::env::temp_dir().join(format!("{}.ready", pair.b.name));
    let mut auditor = pair
        .b
        .exec()
        .arg(&bin)
        .args(["--iface", VETH_B, "--interval", "1h", "--ready-file"])
        .arg(&ready)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting checksum-audit")?;
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

    println!("== ordinary traffic: a TCP connection (1 MiB each way), 20 UDP datagrams, 3 pings");
    ordinary_traffic(&pair, 8080, 1 << 20);

    println!(
        "== broken frames from the peer: stale TCP checksums, a zero UDP checksum over IPv6, a byte-swapped UDP checksum, an IPv4 header with a changed TTL"
    );
    let broken = broken_frames();
    pair.a.run(move || send_raw_frames(VETH_A, &broken));
    std::thread::sleep(Duration::from_millis(300));

    unsafe { libc::kill(auditor.id() as i32, libc::SIGINT) };
    let status = auditor.wait()?;
    let _ = std::fs::remove_file(&ready);
    if !status.success() {
        bail!("checksum-audit failed: {status}");
    }
    let mut left = pair.b.tcx_programs(VETH_B);
    left.extend(Some(pair.b.xdp_state(VETH_B)).filter(|s| !s.is_empty()));
    let still = !left.is_empty();
    println!(
        "== after exit: programs on {VETH_B}: {}",
        if still {
            format!("STILL ATTACHED (bug): {left:?}")
        } else {
            "none (detached)".into()
        }
    );
    drop(pair);
    println!("== namespaces removed");
    if still {
        bail!("program left attached");
    }
    Ok(())
}

fn broken_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    // A TCP flow whose checksum went stale: a constant error across different payloads.
    for i in 0..5 {
        let mut f = v4_frame(&[], TCP, segment(TCP, 100 + i * 10), &[]);
        let c = f.checksum;
        f.set_field(c.wrapping_add(0x0102));
        frames.push(f.bytes);
    }
    let mut f = v6_frame(UDP, segment(UDP, 48));
    f.set_field(0);
    frames.push(f.bytes);
    let mut f = v4_frame(&[0x8100], UDP, segment(UDP, 48), &[]);
    let c = f.checksum;
    f.set_field(c.swap_bytes());
    frames.push(f.bytes);
    let mut f = v4_frame(&[], ICMP, segment(ICMP, 56), &[]);
    f.bytes[f.l3_off + 8] = 3; // TTL rewritten without updating the header checksum
    frames.push(f.bytes);
    frames
}
