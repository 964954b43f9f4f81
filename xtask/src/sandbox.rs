//! What the commands that run the auditor for real share: root, network namespaces (`ip` in them,
//! their processes, the cgroups and trees left by what ran inside), and a process's memory, metrics
//! and exit.

use std::{
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::netns::NetNs;

/// Fails, saying how to run `what` instead, unless xtask runs as root.
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "{what} creates network namespaces and loads eBPF programs: run it as root (e.g. sudo -E ./x {what})"
        );
    }
    Ok(())
}

/// `ip -n NS ARGS`, failing with what it printed on stderr.
pub fn ip(ns: &NetNs, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .arg("-n")
        .arg(&ns.name)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `ip -n NS -batch -` with `script` (one `ip` command a line) on its stdin.
pub fn ip_batch(ns: &NetNs, script: &str) -> Result<()> {
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

/// (pid, comm) of every process whose network namespace is /run/netns/NAME.
pub fn namespace_processes(name: &str) -> Vec<(u32, String)> {
    let Ok(target) = std::fs::metadata(format!("/run/netns/{name}")) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
            (ns.ino() == target.ino() && ns.dev() == target.dev()).then(|| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, comm.trim().to_owned())
            })
        })
        .collect()
}

/// SIGKILLs every process in the namespace and returns what it found ("comm[pid]").
pub fn kill_namespace_processes(name: &str) -> Vec<String> {
    let found = namespace_processes(name);
    for (pid, _) in &found {
        if let Ok(pid) = libc::pid_t::try_from(*pid) {
            // SAFETY: kill(2) with a pid read from /proc; no memory is passed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if !found.is_empty() {
        // Give the kernel a moment to reap them before the namespace is deleted.
        std::thread::sleep(Duration::from_millis(500));
    }
    found
        .into_iter()
        .map(|(pid, comm)| format!("{comm}[{pid}]"))
        .collect()
}

/// The cgroups dockerd made for the cluster's containers (`--cgroup-parent=/NAME`), in every
/// hierarchy, children first.
pub fn remove_cgroups(name: &str) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
        }
        std::fs::remove_dir(dir).ok();
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path().join(name);
        if dir.is_dir() {
            remove(&dir);
        }
    }
}

/// `rm -rf`, quietly: a tree our own scripts made under /var/tmp.
pub fn remove_tree(dir: &Path) {
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        eprintln!("xtask: warning: removing {}: {e}", dir.display());
    }
}

/// The resident memory of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

/// A `NAME:  N kB` field of /proc/PID/status (`VmRSS`, `VmHWM`: the peak RSS).
pub fn status_kib(pid: u32, name: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {name} in /proc/{pid}/status"))
}

/// GET /metrics from 127.0.0.1:`port` inside `ns`, where the auditor's loopback is.
pub fn scrape(ns: &NetNs, port: u16) -> Result<String> {
    use std::io::{Read, Write};
    ns.run(move || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n")?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        Ok(response)
    })
    .context("scraping the metrics")
}

/// The exit status of `child`, told to stop, once it exits; fails after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if start.elapsed() > timeout {
            bail!("checksum-audit did not exit within {timeout:?} of being told to stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
