//! `cargo xtask fuzz`: the differential test at any length. Frames from `--seed` go through the
//! XDP program (every 16th through TC too) and are compared with the reference verifier; each
//! disagreement is printed with its frame seed and written to target/fuzz/ as a pcap file.
//! `--replay SEED` regenerates and checks one frame from a frame seed printed earlier.

use std::{path::Path, time::Instant};

use anyhow::{Context as _, Result, bail};
use checksum_common::Hook;
use checksum_testkit::differential::{
    Disagreement, Runner, Stats, TC_EVERY, generate, tc_accepts, write_pcap,
};
use checksum_user::kernel::testrun::FrameAuditor;

use crate::{sandbox::require_root, workspace::workspace_root};

/// Frames between progress lines.
const CHUNK: u64 = 100_000;
/// Disagreements printed in full and written as pcap files; the rest are only counted.
const SHOW: usize = 50;

/// Parses `0x`-prefixed hex or decimal.
pub fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s}: {e}"))
}

pub fn run(frames: u64, seed: u64, replay: Option<u64>) -> Result<()> {
    require_root("fuzz")?;
    let out = workspace_root().join("target/fuzz");
    let mut auditor = FrameAuditor::new(true).context("loading the programs")?;
    let mut runner = Runner::new(&mut auditor);
    if let Some(frame_seed) = replay {
        return replay_one(&mut runner, frame_seed, &out);
    }
    println!("fuzz: {frames} frames from seed {seed:#x}");
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut shown = 0;
    let mut start = 0;
    while start < frames {
        let end = (start + CHUNK).min(frames);
        let chunk = runner.run(seed, start..end, TC_EVERY, |d| {
            if d.known.is_none() && shown < SHOW {
                report(d, &out);
                shown += 1;
            }
        })?;
        stats.add(&chunk);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fuzz: {end} frames in {secs:.0} s ({:.0}/s): {} unexplained, {} known",
            end as f64 / secs,
            stats.disagreements,
            stats.known_total()
        );
        start = end;
    }
    println!("{stats}");
    println!("in {:.1?}", started.elapsed());
    if stats.disagreements > 0 {
        bail!(
            "{} disagreements (the first {SHOW} printed, with pcaps in {})",
            stats.disagreements,
            out.display()
        );
    }
    Ok(())
}

fn report(d: &Disagreement, out: &Path) {
    println!("{d}");
    match write_pcap(out, d) {
        Ok(path) => println!("  pcap: {}\n", path.display()),
        Err(e) => println!("  pcap not written: {e}\n"),
    }
}

fn replay_one(runner: &mut Runner, frame_seed: u64, out: &Path) -> Result<()> {
    let g = generate::generate(frame_seed);
    println!(
        "frame seed {frame_seed:#018x}: {} bytes: {}",
        g.bytes.len(),
        g.label
    );
    let mut hooks = vec![Hook::Xdp];
    if tc_accepts(&g.bytes) {
        hooks.extend([Hook::TcIngress, Hook::TcEgress]);
    }
    let mut unexplained = 0;
    for hook in hooks {
        let checked = runner.check(frame_seed, hook)?;
        match checked.disagreement {
            Some(d) => {
                unexplained += u32::from(d.known.is_none());
                report(&d, out);
            }
            None => println!("{}: agrees:\n{}", hook.name(), checked.expected),
        }
    }
    if unexplained > 0 {
        bail!("the kernel disagrees with the reference");
    }
    Ok(())
}
