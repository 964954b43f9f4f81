//! `cargo xtask bench --attach`: what auditing many interfaces costs. For each N of `--sizes`, a
//! namespace this command owns holds N veth pairs and the release binary audits one end of each
//! at TC ingress and egress. Measured: seconds until it is ready, seconds until an interface
//! created afterwards is audited, and its memory (user RSS plus the kernel memory of its BPF maps
//! and programs). Prints a table against the targets and writes bench/attach.json. A benchmark
//! reports: a missed target is shown, not failed on. Then, unless `--pods 0`, the agent case
//! (`pods`), which shares the auditor guard and memory accounting of `harness`.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::netns::NetNs;
use serde_json::{Value, json};

use super::{
    harness::{
        Auditor, BpfObjects, MIB, POLL, TARGET_READY_S, TARGET_TOTAL_MIB, audited,
        catch_interrupts, check_interrupted, verdict,
    },
    pods,
};
use crate::{
    sandbox::{ip, ip_batch, require_root, rss_kib},
    workspace::{release_binary, workspace_root},
};

pub struct Options {
    /// Interface counts (veth pairs) to measure, in order.
    pub sizes: Vec<u32>,
    /// How long the auditor may take to be ready at one size (and the agent with its pods).
    pub max_wait: Duration,
    /// Pods on the node of the agent case; 0 skips it.
    pub pods: u32,
}

/// Interfaces created once the auditor is ready, one after another.
const NEW_IFACES: usize = 3;
const NEW_IFACE_TIMEOUT: Duration = Duration::from_secs(60);
/// Matches one end of every pair (`ba0`, `ba-new0`), never a peer (`bb0`).
const PATTERN: &str = "ba*";
/// The targets each row is reported against.
const TARGET_N: u32 = 500;
const TARGET_NEW_IFACE_S: f64 = 1.0;

pub fn run(opts: &Options) -> Result<()> {
    require_root("bench --attach")?;
    let bin = release_binary()?;
    catch_interrupts();
    let mut rows = Vec::new();
    let mut failure = None;
    for &n in &opts.sizes {
        eprintln!("bench --attach: N={n}");
        match measure(&bin, n, opts.max_wait) {
            Ok(row) => rows.push(row),
            Err(e) => {
                failure = Some(e.context(format!("N={n}")));
                break;
            }
        }
    }
    // Whatever was measured before a failure is still worth printing.
    if !rows.is_empty() {
        print_table(&rows);
        write_json(&rows)?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let pods = match opts.pods {
        0 => Ok(()),
        n => pods::run(&bin, n, opts.max_wait),
    };
    let unclean: Vec<String> = rows
        .iter()
        .filter(|r| !r.clean_exit)
        .map(|r| format!("N={}: {}", r.n, r.exit))
        .collect();
    if !unclean.is_empty() {
        bail!(
            "checksum-audit did not exit cleanly: {}",
            unclean.join("; ")
        );
    }
    pods
}

/// One size, from an empty namespace to a deleted one (the guards clean up on every path out).
fn measure(bin: &Path, n: u32, max_wait: Duration) -> Result<Row> {
    let ns = namespace(n)?;
    add_pairs(&ns, n)?;
    let mut auditor = start_auditor(bin, &ns, n)?;
    let ready = auditor.wait_ready(max_wait)?;
    // Right after ready (or at the timeout): before new interfaces add to it.
    let rss = rss_kib(auditor.pid())? * 1024;
    let bpf = BpfObjects::held_by(auditor.pid())?;
    let new_iface = match ready {
        Some(_) => new_iface_latencies(&ns, &mut auditor)?,
        None => Vec::new(),
    };
    let (exit, clean_exit) = match auditor.stop() {
        Ok(status) => (status.to_string(), status.success()),
        Err(e) => (format!("{e:#}"), false),
    };
    auditor.keep_logs(!clean_exit);
    Ok(Row {
        n,
        ready,
        max_wait: max_wait.as_secs_f64(),
        new_iface,
        rss,
        bpf,
        exit,
        clean_exit,
    })
}

/// A namespace of our own, as a `NetNs`, whose drop deletes it (also on error or panic).
fn namespace(n: u32) -> Result<NetNs> {
    let name = format!("csa-bench-attach-{}-{n}", std::process::id());
    let out = Command::new("ip").args(["netns", "add", &name]).output()?;
    if !out.status.success() {
        bail!(
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ns = NetNs { name };
    ip(&ns, &["link", "set", "lo", "up"])?;
    Ok(ns)
}

/// N pairs `ba{i}`/`bb{i}`, both ends up, through one `ip -batch`: one process and one netlink
/// socket, seconds for 500 pairs instead of 1,500 `ip` runs.
fn add_pairs(ns: &NetNs, n: u32) -> Result<()> {
    let script = (0..n).fold(String::new(), |mut script, i| {
        let _ = writeln!(
            script,
            "link add ba{i} up type veth peer name bb{i}\nlink set bb{i} up"
        );
        script
    });
    ip_batch(ns, &script).with_context(|| format!("creating {n} veth pairs"))
}

/// The release binary auditing one end of every pair (`PATTERN`) in `ns`, at TC ingress and egress.
fn start_auditor(bin: &Path, ns: &NetNs, n: u32) -> Result<Auditor> {
    let mut cmd = Command::new(bin);
    cmd.args(["--netns", &ns.name, "--iface", PATTERN]).args([
        "--hook",
        "tc-ingress",
        "--hook",
        "tc-egress",
        "--format",
        "json",
    ]);
    Auditor::spawn(cmd, format!("N={n}"), n, &format!("bench-attach-{n}"))
}

/// Seconds until each of `NEW_IFACES` interfaces created one after another is audited; None
/// for one that was not within `NEW_IFACE_TIMEOUT`.
fn new_iface_latencies(ns: &NetNs, auditor: &mut Auditor) -> Result<Vec<Option<f64>>> {
    (0..NEW_IFACES)
        .map(|k| new_iface_latency(ns, auditor, k))
        .collect()
}

/// From `ip link add` returning until both our programs are on the new interface.
fn new_iface_latency(ns: &NetNs, auditor: &mut Auditor, k: usize) -> Result<Option<f64>> {
    let iface = format!("ba-new{k}");
    // Created up (what is audited), in one command; its peer, never audited, may stay down.
    let peer = format!("bb-new{k}");
    ip(
        ns,
        &[
            "link", "add", &iface, "up", "type", "veth", "peer", "name", &peer,
        ],
    )?;
    let created = Instant::now();
    while created.elapsed() < NEW_IFACE_TIMEOUT {
        if audited(ns, &iface) {
            return Ok(Some(created.elapsed().as_secs_f64()));
        }
        auditor.check_running()?;
        check_interrupted()?;
        std::thread::sleep(POLL);
    }
    eprintln!(
        "bench --attach: {}: {iface} was not audited within {} s",
        auditor.label,
        NEW_IFACE_TIMEOUT.as_secs()
    );
    Ok(None)
}

/// One size's results.
struct Row {
    n: u32,
    /// Seconds from spawn to ready; None when not ready within `max_wait`, and then the memory
    /// figures are what the auditor held at that point.
    ready: Option<f64>,
    max_wait: f64,
    /// Per new interface; None when it was not audited within `NEW_IFACE_TIMEOUT`.
    new_iface: Vec<Option<f64>>,
    rss: u64,
    bpf: BpfObjects,
    exit: String,
    clean_exit: bool,
}

impl Row {
    fn total_mib(&self) -> f64 {
        self.bpf.total_mib(self.rss)
    }

    /// Median and maximum seconds of the new interfaces, a timeout counting as infinite.
    fn new_iface_stats(&self) -> Option<(f64, f64)> {
        let mut s: Vec<f64> = self
            .new_iface
            .iter()
            .map(|t| t.unwrap_or(f64::INFINITY))
            .collect();
        s.sort_by(f64::total_cmp);
        Some((*s.get(s.len() / 2)?, *s.last()?))
    }

    /// PASS/over against the ready, new-interface and memory targets; None where a target does
    /// not apply (ready and memory are set for N=500) or nothing was measured.
    fn verdicts(&self) -> [Option<&'static str>; 3] {
        let at_target_n = self.n == TARGET_N;
        let ready = self.ready.unwrap_or(f64::INFINITY);
        // Memory short of ready is a lower bound: it can be over, but cannot pass.
        let total = (at_target_n && (self.ready.is_some() || self.total_mib() > TARGET_TOTAL_MIB))
            .then(|| verdict(self.total_mib(), TARGET_TOTAL_MIB));
        [
            at_target_n.then(|| verdict(ready, TARGET_READY_S)),
            self.new_iface_stats()
                .map(|(_, max)| verdict(max, TARGET_NEW_IFACE_S)),
            total,
        ]
    }

    fn json(&self) -> Value {
        let (median, max) = self.new_iface_stats().unzip();
        let [ready_v, new_v, total_v] = self.verdicts();
        json!({
            "n": self.n,
            "ready_s": self.ready,
            "max_wait_s": self.max_wait,
            "new_iface_s": self.new_iface,
            "new_iface_median_s": median.filter(|s| s.is_finite()),
            "new_iface_max_s": max.filter(|s| s.is_finite()),
            "user_rss_mib": self.rss as f64 / MIB,
            "bpf_maps_mib": self.bpf.map_bytes() as f64 / MIB,
            "bpf_progs_mib": self.bpf.prog_bytes() as f64 / MIB,
            "bpf_mib": self.bpf.mib(),
            "total_mib": self.total_mib(),
            "programs": self.bpf.progs.len(),
            "maps": self.bpf.maps.len(),
            "links": self.bpf.links,
            "exit": self.exit,
            "targets": {
                "ready_s_at_500": TARGET_READY_S,
                "new_iface_max_s": TARGET_NEW_IFACE_S,
                "total_mib_at_500": TARGET_TOTAL_MIB,
                "ready": ready_v,
                "new_iface": new_v,
                "total": total_v,
            },
        })
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{}",
        table_line([
            "N",
            "ready s",
            "new s med/max",
            "RSS MiB",
            "BPF MiB (maps+progs)",
            "total MiB",
            "progs",
            "maps",
            "links",
            "ready",
            "new",
            "total",
        ])
    );
    for r in rows {
        let ready = r
            .ready
            .map_or(format!(">{:.0}", r.max_wait), |s| format!("{s:.2}"));
        let new = r.new_iface_stats().map_or("-".into(), |(median, max)| {
            format!("{}/{}", secs(median), secs(max))
        });
        // Short of ready, the memory is what it held at the timeout.
        let partial = if r.ready.is_some() { "" } else { "*" };
        let bpf = format!(
            "{:.1} ({:.1}+{:.1}){partial}",
            r.bpf.mib(),
            r.bpf.map_bytes() as f64 / MIB,
            r.bpf.prog_bytes() as f64 / MIB
        );
        let [v_ready, v_new, v_total] = r.verdicts().map(|v| v.unwrap_or("-"));
        println!(
            "{}",
            table_line([
                &r.n.to_string(),
                &ready,
                &new,
                &format!("{:.1}{partial}", r.rss as f64 / MIB),
                &bpf,
                &format!("{:.1}{partial}", r.total_mib()),
                &r.bpf.progs.len().to_string(),
                &r.bpf.maps.len().to_string(),
                &r.bpf.links.to_string(),
                v_ready,
                v_new,
                v_total,
            ])
        );
    }
    println!(
        "targets: ready <= {TARGET_READY_S} s at N={TARGET_N}; new interface audited <= \
         {TARGET_NEW_IFACE_S} s (max of {NEW_IFACES}); total <= {TARGET_TOTAL_MIB} MiB at \
         N={TARGET_N}"
    );
    if rows.iter().any(|r| r.ready.is_none()) {
        println!(
            "* not ready within --max-wait: memory and counts as held at that point (a lower bound)"
        );
    }
}

/// One line of the table: nine figures right-aligned, then the three verdicts.
fn table_line(c: [&str; 12]) -> String {
    format!(
        "{:>5} {:>8} {:>15} {:>8} {:>22} {:>9} {:>6} {:>6} {:>6}  {:<6} {:<6} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
    )
}

/// Seconds with two decimals, or the timeout for one that never came.
fn secs(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2}")
    } else {
        format!(">{}", NEW_IFACE_TIMEOUT.as_secs())
    }
}

fn write_json(rows: &[Row]) -> Result<()> {
    let dir = workspace_root().join("bench");
    fs::create_dir_all(&dir)?;
    let json = Value::Array(rows.iter().map(Row::json).collect());
    fs::write(
        dir.join("attach.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )
    .context("writing bench/attach.json")?;
    println!("wrote bench/attach.json");
    Ok(())
}
