//! `cargo xtask soak --minutes M`: the release binary audits a veth pair under a sustained, paced
//! `AF_PACKET` flood while matching veths are created and deleted every few seconds (auto-attach
//! churn), for M minutes. Its resident memory and metrics are sampled every second. Fails if RSS
//! grows past a bound after warm-up, the agent dies or exits badly, it prints an error or warning,
//! its attach/detach counts do not match the churn, or it leaves a program attached. Writes
//! SUMMARY.json and rss.svg to the output directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::{
    frames::{UDP, udp_datagram, v4_frame},
    netns::{NetNs, VETH_A, VETH_B, VethPair},
};

use super::report::{self, Outcome, Sample};
use crate::{
    sandbox::{ip, require_root, rss_kib, scrape, wait_timeout},
    workspace::{release_binary, workspace_root},
};

pub struct Options {
    pub minutes: f64,
    /// Target frames per second of the flood.
    pub pps: u64,
    /// Where summary.json and rss.svg go (relative to the workspace root).
    pub out: PathBuf,
}

/// A matching veth pair is created this often (and the oldest deleted beyond `CHURN_ALIVE`).
/// Each pair means four programs to load and verify, about 0.4 s each on a busy 2-core machine:
/// every 2 s the auditor fell behind under the flood; every 5 s it keeps up.
const CHURN_EVERY: Duration = Duration::from_secs(5);
const CHURN_ALIVE: usize = 3;
/// Hooks the auditor attaches per interface (its defaults, tc-ingress and tc-egress).
const HOOKS: u64 = 2;
/// Metrics port, on the loopback of the auditor's own namespace.
const METRICS_PORT: u16 = 9467;

pub fn run(opts: &Options) -> Result<()> {
    require_root("soak")?;
    if !opts.minutes.is_finite() || opts.minutes <= 0.0 || opts.pps == 0 {
        bail!(
            "--minutes and --pps must be positive, got {} and {}",
            opts.minutes,
            opts.pps
        );
    }
    let bin = release_binary()?;
    let out_dir = workspace_root().join(&opts.out);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let pair = VethPair::new("soak");
    let outcome = soak(&bin, &pair, opts)?;
    report::write(&outcome, &out_dir)?;
    report::print(&outcome, &out_dir);
    if !outcome.failures.is_empty() {
        bail!("soak failed: {}", outcome.failures.join("; "));
    }
    Ok(())
}

/// The flood: 256 flows of 64-byte UDP frames from veth-a, every other one with a bad checksum.
fn frames() -> Vec<Vec<u8>> {
    (0..256u16)
        .map(|i| {
            let mut f = v4_frame(
                &[],
                UDP,
                udp_datagram(10_000 + i, 5353, &[u8::try_from(i).expect("i < 256"); 18]),
                &[],
            );
            if i % 2 == 1 {
                let c = f.checksum;
                f.set_field(c ^ 0x00ff);
            }
            f.bytes
        })
        .collect()
}

#[expect(
    clippy::too_many_lines,
    reason = "one soak from start to verdict: load, churn, samples and checks read in order"
)]
fn soak(bin: &Path, pair: &VethPair, opts: &Options) -> Result<Outcome> {
    let duration = Duration::from_secs_f64(opts.minutes * 60.0);
    // Memory climbs for the first 20-30 s (flow tables, first attachments), then plateaus.
    let warmup = (duration / 2).min(Duration::from_secs(30));
    let logs = std::env::temp_dir().join(format!("{}.soak", pair.b.name));
    let ready = logs.with_extension("ready");
    let _ = std::fs::remove_file(&ready);
    let mut auditor = pair
        .b
        .exec()
        .arg(bin)
        .args(["--iface", VETH_B, "--iface", "churn*", "--interval", "1h"])
        .args(["--metrics-addr", &METRICS_PORT.to_string(), "--ready-file"])
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.with_extension("stderr"))?)
        .spawn()
        .context("starting checksum-audit")?;
    let guard = KillOnDrop(&mut auditor);
    let started = Instant::now();
    while !ready.exists() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("checksum-audit did not attach within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = guard.0.id();

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let frames = frames();
    let pps = opts.pps;
    let flood = pair.a.spawn(move || {
        crate::flood::flood(VETH_A, &frames, Some(pps), || flag.load(Ordering::Relaxed))
    });

    let mut samples = Vec::new();
    let mut churn = Churn::default();
    let mut failures = Vec::new();
    let t0 = Instant::now();
    let mut next_churn = t0 + CHURN_EVERY;
    let mut died = None;
    while t0.elapsed() < duration {
        // On the second, so samples are evenly spaced.
        let into = t0.elapsed().as_millis() % 1000;
        std::thread::sleep(Duration::from_millis(
            1000 - u64::try_from(into).expect("below 1000"),
        ));
        if let Some(status) = guard.0.try_wait()? {
            died = Some(status);
            break;
        }
        if Instant::now() >= next_churn {
            churn.step(&pair.b)?;
            next_churn += CHURN_EVERY;
        }
        let (s, metrics) = sample(t0, pid, &pair.b)?;
        churn.observe(&metrics);
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    let elapsed = t0.elapsed().as_secs_f64();
    // Check the counts against the churn: every interface created was attached at both hooks,
    // every one deleted detached. The metrics are refreshed once a second: give them a few.
    if died.is_none() {
        let expected_attached = HOOKS * (1 + 2 * churn.created);
        let expected_detached = HOOKS * 2 * churn.deleted;
        let settle = Instant::now();
        loop {
            let (s, metrics) = sample(t0, pid, &pair.b)?;
            churn.observe(&metrics);
            let done = (s.attached, s.detached) == (expected_attached, expected_detached);
            samples.push(s);
            if done || settle.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("soak: counts settled after {:?}", settle.elapsed());
        let last = samples.last().expect("a sample");
        if last.attached != expected_attached || last.detached != expected_detached {
            failures.push(format!(
                "attachments {} (expected {expected_attached}), detachments {} (expected {expected_detached})",
                last.attached, last.detached
            ));
        }
    }
    let exit = if let Some(status) = died {
        failures.push(format!("checksum-audit died during the soak: {status}"));
        status.to_string()
    } else {
        // SAFETY: plain syscall; no memory is passed.
        unsafe { libc::kill(pid.cast_signed(), libc::SIGINT) };
        let status = wait_timeout(&mut *guard.0, Duration::from_secs(30))?;
        if !status.success() {
            failures.push(format!("checksum-audit exited with {status}"));
        }
        status.to_string()
    };
    drop(guard);
    let stderr_path = logs.with_extension("stderr");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&ready);
    let errors: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("error") || l.contains("warning") || l.contains("WARN"))
        .map(str::to_owned)
        .collect();
    if !errors.is_empty() {
        failures.push(format!("{} error or warning lines on stderr", errors.len()));
    }
    let mut leftovers = Vec::new();
    for iface in std::iter::once(VETH_B.to_owned()).chain(churn.alive_ifaces()) {
        let progs = pair.b.tcx_programs(&iface);
        if !progs.is_empty() {
            leftovers.push(format!("{iface}: {progs:?}"));
        }
    }
    if !leftovers.is_empty() {
        failures.push(format!("left attached: {}", leftovers.join(", ")));
    }
    let mut outcome = Outcome {
        opts_minutes: opts.minutes,
        pps: opts.pps,
        sent,
        elapsed,
        samples,
        warmup: warmup.as_secs_f64(),
        churn_every: CHURN_EVERY.as_secs_f64(),
        pairs_created: churn.created,
        pairs_deleted: churn.deleted,
        attach_latencies: churn.latencies,
        exit,
        errors,
        leftovers,
        failures,
    };
    if let Some(why) = report::rss_failure(&outcome) {
        outcome.failures.push(why);
    }
    // Keep the auditor's stderr when something went wrong.
    if outcome.failures.is_empty() {
        let _ = std::fs::remove_file(&stderr_path);
    } else {
        eprintln!("soak: the auditor's stderr is in {}", stderr_path.display());
    }
    Ok(outcome)
}

/// A sample, and the metrics text it came from.
fn sample(t0: Instant, pid: u32, ns: &NetNs) -> Result<(Sample, String)> {
    let metrics = scrape(ns, METRICS_PORT)?;
    let sum = |name: &str| metric_sum(&metrics, name);
    let sample = Sample {
        t: t0.elapsed().as_secs_f64(),
        rss_kib: rss_kib(pid)?,
        events: sum("checksum_audit_mismatch_events_total"),
        lost: sum("checksum_audit_events_lost_total"),
        packets: sum("checksum_audit_packets_total"),
        attached: sum("checksum_audit_attachments_total"),
        detached: sum("checksum_audit_detachments_total"),
    };
    Ok((sample, metrics))
}

/// The sum of every sample of `name` (all label sets) in the text exposition.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the samples are counters: non-negative whole numbers far below 2^53"
)]
fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Matching veth pairs (`churnN` and `churnpN`, both audited) created and deleted in turn.
#[derive(Default)]
struct Churn {
    created: u64,
    deleted: u64,
    alive: std::collections::VecDeque<u64>,
    /// Pairs not yet seen fully attached, with when they were created.
    pending: Vec<(u64, Instant)>,
    latencies: Vec<f64>,
}

impl Churn {
    fn step(&mut self, ns: &NetNs) -> Result<()> {
        let n = self.created;
        let (dev, peer) = (format!("churn{n}"), format!("churnp{n}"));
        ip(
            ns,
            &["link", "add", &dev, "type", "veth", "peer", "name", &peer],
        )?;
        ip(ns, &["link", "set", &dev, "up"])?;
        ip(ns, &["link", "set", &peer, "up"])?;
        self.created += 1;
        self.alive.push_back(n);
        self.pending.push((n, Instant::now()));
        if self.alive.len() > CHURN_ALIVE {
            let old = self.alive.pop_front().expect("alive");
            ip(ns, &["link", "del", &format!("churn{old}")])?;
            self.deleted += 1;
        }
        Ok(())
    }

    /// Notes the pairs whose four programs the metrics now show attached.
    fn observe(&mut self, metrics: &str) {
        let latencies = &mut self.latencies;
        self.pending.retain(|(n, created)| {
            let attached = [format!("churn{n}"), format!("churnp{n}")].iter().all(|iface| {
                ["tc-ingress", "tc-egress"].iter().all(|hook| {
                    metrics.contains(&format!(
                        "checksum_audit_attached{{iface=\"{iface}\",hook=\"{hook}\",mode=\"tcx\"}} 1"
                    ))
                })
            });
            if attached {
                latencies.push(created.elapsed().as_secs_f64());
            }
            !attached
        });
    }

    fn alive_ifaces(&self) -> Vec<String> {
        self.alive
            .iter()
            .flat_map(|n| [format!("churn{n}"), format!("churnp{n}")])
            .collect()
    }
}

/// Never leave the auditor running (and attached) when the soak itself fails.
struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
