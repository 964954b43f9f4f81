//! `cargo xtask bench --attach`: what auditing many interfaces costs. For each N of `--sizes`, a
//! namespace this command owns holds N veth pairs and the release binary audits one end of each
//! at TC ingress and egress. Measured: seconds until it is ready, seconds until an interface
//! created afterwards is audited, and its memory (user RSS plus the kernel memory of its BPF maps
//! and programs). Prints a table against the targets and writes bench/attach.json. A benchmark
//! reports: a missed target is shown, not failed on. Then, unless `--pods 0`, the agent case
//! (`bench_pods`), which shares this module's auditor guard and memory accounting.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_user::{
    kernel::loader::{AUDIT_TC_EGRESS, AUDIT_TC_INGRESS},
    testkit::netns::NetNs,
};
use serde_json::{Value, json};

use crate::{
    bench::pods,
    release_binary, require_root,
    soak::run::{ip, rss_kib, wait_timeout},
    workspace_root,
};

pub struct Options {
    /// Interface counts (veth pairs) to measure, in order.
    pub sizes: Vec<u32>,
    /// How long the auditor may take to be ready at one size (and the agent with its pods).
    pub max_wait: Duration,
    /// Pods on the node of the agent case; 0 skips it.
    pub pods: u32,
}

/// How often readiness and new attachments are checked.
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// Interfaces created once the auditor is ready, one after another.
const NEW_IFACES: usize = 3;
const NEW_IFACE_TIMEOUT: Duration = Duration::from_secs(60);
/// Stopping detaches every link and frees every object: generous, for N=500 on a busy machine.
const STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// While waiting for ready, how often to say how far the auditor got.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Matches one end of every pair (`ba0`, `ba-new0`), never a peer (`bb0`).
const PATTERN: &str = "ba*";
/// The targets each row is reported against.
const TARGET_N: u32 = 500;
pub(crate) const TARGET_READY_S: f64 = 5.0;
const TARGET_NEW_IFACE_S: f64 = 1.0;
pub(crate) const TARGET_TOTAL_MIB: f64 = 64.0;
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

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
    let mut auditor = Auditor::start(bin, &ns, n)?;
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

/// `ip -n NS -batch -` with `script` (one `ip` command a line) on its stdin.
pub(crate) fn ip_batch(ns: &NetNs, script: &str) -> Result<()> {
    let mut batch = Command::new("ip")
        .args(["-n", &ns.name, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("ip -batch")?;
    // Dropping stdin after the write ends the batch.
    batch
        .stdin
        .take()
        .context("ip -batch stdin")?
        .write_all(script.as_bytes())?;
    let out = batch.wait_with_output()?;
    if !out.status.success() {
        bail!("ip -batch: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The auditor under test and its files. Dropping it kills a still-running auditor, so no
/// program stays attached when the bench fails.
pub(crate) struct Auditor {
    child: Child,
    started: Instant,
    /// What the progress messages call this run (`N=100`, `100 pods`).
    label: String,
    /// Interfaces it is to audit, at two hooks each.
    n: u32,
    ready: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    keep_logs: bool,
}

impl Auditor {
    fn start(bin: &Path, ns: &NetNs, n: u32) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["--netns", &ns.name, "--iface", PATTERN]).args([
            "--hook",
            "tc-ingress",
            "--hook",
            "tc-egress",
            "--format",
            "json",
        ]);
        Self::spawn(cmd, format!("N={n}"), n, &format!("bench-attach-{n}"))
    }

    /// Runs `cmd` (checksum-audit, directly or through `ip netns exec`, which execs it: the child
    /// is the auditor) with `--ready-file` added, stdout and stderr to files named after `name`
    /// in the temporary directory. `n`: the interfaces it is to audit.
    pub(crate) fn spawn(mut cmd: Command, label: String, n: u32, name: &str) -> Result<Self> {
        let base = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let (ready, stdout, stderr) = (
            base.with_extension("ready"),
            base.with_extension("stdout"),
            base.with_extension("stderr"),
        );
        let _ = fs::remove_file(&ready);
        cmd.arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?);
        let started = Instant::now();
        let child = cmd.spawn().context("starting checksum-audit")?;
        Ok(Self {
            child,
            started,
            label,
            n,
            ready,
            stdout,
            stderr,
            keep_logs: true,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Seconds from spawn until the ready file exists, or None when `max_wait` passed first.
    pub(crate) fn wait_ready(&mut self, max_wait: Duration) -> Result<Option<f64>> {
        let mut next_progress = PROGRESS_EVERY;
        loop {
            if self.ready.exists() {
                return Ok(Some(self.started.elapsed().as_secs_f64()));
            }
            self.check_running()?;
            let waited = self.started.elapsed();
            if waited >= max_wait {
                eprintln!(
                    "bench --attach: {}: checksum-audit was not ready within --max-wait {} s \
                     ({} of {} attachments made); recording that and stopping it",
                    self.label,
                    max_wait.as_secs(),
                    self.links(),
                    2 * self.n
                );
                return Ok(None);
            }
            if waited >= next_progress {
                eprintln!(
                    "bench --attach: {}: not ready after {} s ({} of {} attachments made)",
                    self.label,
                    waited.as_secs(),
                    self.links(),
                    2 * self.n
                );
                next_progress += PROGRESS_EVERY;
            }
            check_interrupted()?;
            std::thread::sleep(POLL);
        }
    }

    /// BPF links the auditor holds so far (one per interface and hook), for progress messages.
    fn links(&self) -> usize {
        BpfObjects::scan(self.pid()).map_or(0, |o| o.links)
    }

    /// Fails, with the end of its stderr, when the auditor has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let stderr = fs::read_to_string(&self.stderr).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            bail!(
                "checksum-audit exited early ({status}); its stderr ({}) ends with:\n{}",
                self.stderr.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// SIGTERM, as a service manager stops it, and its exit status.
    pub(crate) fn stop(&mut self) -> Result<ExitStatus> {
        // SAFETY: plain syscall; no memory is passed.
        unsafe { libc::kill(self.pid().cast_signed(), libc::SIGTERM) };
        wait_timeout(&mut self.child, STOP_TIMEOUT)
    }

    pub(crate) fn keep_logs(&mut self, keep: bool) {
        self.keep_logs = keep;
    }

    /// When it was spawned, by the wall clock (what its lines' `ts` count).
    pub(crate) fn spawned_at(&self) -> std::time::SystemTime {
        std::time::SystemTime::now() - self.started.elapsed()
    }

    /// The file its stdout goes to.
    pub(crate) fn stdout(&self) -> &Path {
        &self.stdout
    }
}

impl Drop for Auditor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_file(&self.ready);
        if self.keep_logs {
            eprintln!(
                "bench --attach: {}: the auditor's output is in {} and {}",
                self.label,
                self.stdout.display(),
                self.stderr.display()
            );
        } else {
            let _ = fs::remove_file(&self.stdout);
            let _ = fs::remove_file(&self.stderr);
        }
    }
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

/// Whether our programs are on `iface`'s TCX ingress and egress. Asked with `BPF_PROG_QUERY` from
/// a thread in the namespace rather than bpftool: forking every 5 ms would take CPU from the
/// auditor being timed, and bpftool 7.1 does not list TCX attachments.
pub(crate) fn audited(ns: &NetNs, iface: &str) -> bool {
    let progs = ns.tcx_programs(iface);
    progs.contains(&format!("ingress:{AUDIT_TC_INGRESS}"))
        && progs.contains(&format!("egress:{AUDIT_TC_EGRESS}"))
}

/// The auditor's BPF objects by kernel id, with their `memlock` bytes (None while unknown).
#[derive(Default)]
pub(crate) struct BpfObjects {
    pub(crate) progs: BTreeMap<u64, Option<u64>>,
    pub(crate) maps: BTreeMap<u64, Option<u64>>,
    pub(crate) links: usize,
}

impl BpfObjects {
    /// Everything the process holds, completed with what only bpftool knows.
    pub(crate) fn held_by(pid: u32) -> Result<Self> {
        let mut objects = Self::scan(pid)?;
        objects.complete()?;
        Ok(objects)
    }

    /// The process's map, program and link fds. A program attached through a link may be held
    /// by the link alone, so links count for its program too.
    fn scan(pid: u32) -> Result<Self> {
        let mut objects = Self::default();
        let dir = format!("/proc/{pid}/fd");
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            let fd = entry?.file_name();
            let fd = fd.to_string_lossy();
            // An fd closed between the listing and these reads is skipped.
            let Ok(target) = fs::read_link(format!("{dir}/{fd}")) else {
                continue;
            };
            let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
                continue;
            };
            objects.add(&target.to_string_lossy(), &info);
        }
        Ok(objects)
    }

    fn add(&mut self, target: &str, info: &str) {
        let memlock = fdinfo_field(info, "memlock");
        match target {
            "anon_inode:bpf-map" => {
                if let Some(id) = fdinfo_field(info, "map_id") {
                    self.maps.insert(id, memlock);
                }
            }
            "anon_inode:bpf-prog" => {
                if let Some(id) = fdinfo_field(info, "prog_id") {
                    self.progs.insert(id, memlock);
                }
            }
            "anon_inode:bpf_link" => {
                self.links += 1;
                if let Some(id) = fdinfo_field(info, "prog_id") {
                    self.progs.entry(id).or_insert(None);
                }
            }
            _ => {}
        }
    }

    /// Memlock of programs held only through links, and the maps our programs use that the
    /// process holds no fd of: one `bpftool prog show` (and `map show` if needed) for all.
    fn complete(&mut self) -> Result<()> {
        for prog in bpftool(&["prog", "show"])? {
            let Some(slot) = prog["id"].as_u64().and_then(|id| self.progs.get_mut(&id)) else {
                continue;
            };
            slot.get_or_insert(prog["bytes_memlock"].as_u64().unwrap_or(0));
            for map in prog["map_ids"].as_array().into_iter().flatten() {
                if let Some(id) = map.as_u64() {
                    self.maps.entry(id).or_insert(None);
                }
            }
        }
        if self.maps.values().any(Option::is_none) {
            for map in bpftool(&["map", "show"])? {
                if let Some(slot) = map["id"].as_u64().and_then(|id| self.maps.get_mut(&id)) {
                    slot.get_or_insert(map["bytes_memlock"].as_u64().unwrap_or(0));
                }
            }
        }
        Ok(())
    }

    /// Kernel memory of the maps and programs, MiB.
    pub(crate) fn mib(&self) -> f64 {
        (self.map_bytes() + self.prog_bytes()) as f64 / MIB
    }

    /// With the process's resident `rss` bytes: all it costs, MiB.
    pub(crate) fn total_mib(&self, rss: u64) -> f64 {
        rss as f64 / MIB + self.mib()
    }

    pub(crate) fn prog_bytes(&self) -> u64 {
        self.progs.values().flatten().sum()
    }

    pub(crate) fn map_bytes(&self) -> u64 {
        self.maps.values().flatten().sum()
    }
}

/// A numeric `name:\tvalue` line of an fdinfo file.
fn fdinfo_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// `bpftool --json ARGS`, as the array it prints.
fn bpftool(args: &[&str]) -> Result<Vec<Value>> {
    let out = Command::new("bpftool")
        .arg("--json")
        .args(args)
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!("bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    match serde_json::from_slice(&out.stdout).context("bpftool --json output")? {
        Value::Array(items) => Ok(items),
        _ => bail!("bpftool {args:?} did not print an array"),
    }
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

pub(crate) fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target { "PASS" } else { "over" }
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

/// Set on SIGINT or SIGTERM, so that a long wait ends through the guards (auditor stopped,
/// namespace deleted) instead of the process dying with them in place.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

pub(crate) fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_interrupt` is an extern "C" fn(c_int) that only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(signal, on_interrupt as *const () as libc::sighandler_t) };
    }
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

pub(crate) fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}
