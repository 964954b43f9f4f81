//! What the benches that run the auditor share: the auditor under test and its BPF objects, the
//! targets its figures are reported against, and Ctrl-C ending a long wait through the guards.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::netns::NetNs;
use checksum_user::kernel::loader::{AUDIT_TC_EGRESS, AUDIT_TC_INGRESS};
use serde_json::Value;

use crate::sandbox::wait_timeout;

/// How often readiness and new attachments are checked.
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// While waiting for ready, how often to say how far the auditor got.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Stopping detaches every link and frees every object: generous, for N=500 on a busy machine.
const STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// Ready and memory targets, the same for the attach and the agent case.
pub(crate) const TARGET_READY_S: f64 = 5.0;
pub(crate) const TARGET_TOTAL_MIB: f64 = 64.0;
/// Bytes in a MiB.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// The auditor under test and its files. Dropping it kills a still-running auditor, so no
/// program stays attached when the bench fails.
pub(crate) struct Auditor {
    child: Child,
    started: Instant,
    /// What the progress messages call this run (`N=100`, `100 pods`).
    pub(crate) label: String,
    /// Interfaces it is to audit, at two hooks each.
    n: u32,
    ready: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    keep_logs: bool,
}

impl Auditor {
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

/// Waits until `auditor` has written its `--ready-file` `ready` (every program attached); kills it
/// and fails if it exits first or takes over 20 s.
pub fn wait_ready(auditor: &mut std::process::Child, ready: &std::path::Path) -> Result<()> {
    let started = Instant::now();
    while !ready.exists() {
        if started.elapsed() > Duration::from_secs(20) || auditor.try_wait()?.is_some() {
            let _ = auditor.kill();
            bail!("checksum-audit did not attach");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
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

pub(crate) fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target { "PASS" } else { "over" }
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
