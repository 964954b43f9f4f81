//! Runs the real `checksum-audit` binary inside a test namespace and collects its JSON output.

use std::{
    io::Read,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use checksum_testkit::netns::NetNs;

pub const BIN: &str = env!("CARGO_BIN_EXE_checksum-audit");

/// How long a run may take to attach: 20 s, or `CSA_READY_TIMEOUT_S` seconds. The kernel matrix
/// sets it, since its guests (QEMU without KVM) verify a program about 50 times slower.
pub fn ready_timeout() -> Duration {
    let secs = std::env::var("CSA_READY_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

pub struct Running {
    /// `None` once stopped.
    child: Option<Child>,
    ready: PathBuf,
}

/// A test that panics before `stop` must not leave the auditor running (and its programs
/// attached): kill it.
impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.ready);
    }
}

/// Output of a finished run.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl Finished {
    /// The run exited 0 and every line it wrote matches the JSON schema.
    pub fn assert_clean(&self) {
        assert!(
            self.status.success(),
            "exit {}: {}",
            self.status,
            self.stderr
        );
        super::assert_matches_schema(&self.lines);
    }

    pub fn verdicts(&self) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] == "verdict")
            .collect()
    }

    pub fn final_summary(&self) -> &Value {
        self.lines
            .iter()
            .rev()
            .find(|l| l["type"] == "summary" && l["final"] == true)
            .unwrap_or_else(|| panic!("no final summary; stderr: {}", self.stderr))
    }

    /// A counter of `iface` at `hook` in the final summary, e.g. `&["mismatches", "corrupt"]`.
    pub fn counter(&self, iface: &str, hook: &str, path: &[&str]) -> u64 {
        let summary = self.final_summary();
        let mut v = summary["interfaces"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["iface"] == iface && i["hook"] == hook))
            .unwrap_or_else(|| panic!("no {iface} at {hook} in {summary}"));
        for p in path {
            v = &v[*p];
        }
        v.as_u64()
            .unwrap_or_else(|| panic!("no counter {path:?} in {summary}"))
    }
}

impl Running {
    /// Starts `checksum-audit ARGS --format json` in `ns` and waits until it has attached.
    pub fn start(ns: &NetNs, args: &[&str]) -> Self {
        let mut cmd = ns.exec();
        cmd.arg(BIN);
        Self::spawn(cmd, &ns.name, args)
    }

    /// Starts it in the test's own (host) network namespace: only for `--netns` runs, which
    /// attach inside namespaces the test created.
    pub fn start_with_netns(tag: &str, args: &[&str]) -> Self {
        assert!(
            args.contains(&"--netns"),
            "never audit the host's own interfaces"
        );
        Self::spawn(Command::new(BIN), tag, args)
    }

    /// Starts `cmd` (which ends in the binary, e.g. `ip netns exec NS BIN` or a capsh wrapper)
    /// with `ARGS --format json` and waits until it has attached.
    pub fn spawn(cmd: Command, tag: &str, args: &[&str]) -> Self {
        let mut running = Self::launch(cmd, tag, args);
        running.wait_ready();
        running
    }

    /// Like `spawn`, without waiting: for signals sent while it attaches.
    pub fn launch(mut cmd: Command, tag: &str, args: &[&str]) -> Self {
        let ready = std::env::temp_dir().join(format!("{tag}.ready"));
        let _ = std::fs::remove_file(&ready);
        let child = cmd
            .args(args)
            .args(["--format", "json", "--interval", "1h", "--ready-file"])
            .arg(&ready)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn checksum-audit");
        Self {
            child: Some(child),
            ready,
        }
    }

    /// Whether it has written its ready file (every program of the first scan attached).
    pub fn is_ready(&self) -> bool {
        self.ready.exists()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        child.try_wait().expect("try_wait").is_none()
    }

    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        while !self.ready.exists() {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("checksum-audit exited early ({status}): {err}");
            }
            assert!(
                start.elapsed() < ready_timeout(),
                "checksum-audit did not become ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id().cast_signed()
    }

    /// Sends `signal` (to `ip netns exec`, which execs the binary: same process) and collects.
    pub fn stop(self, signal: i32) -> Finished {
        // SAFETY: plain syscall; no memory is passed.
        unsafe { libc::kill(self.pid(), signal) };
        self.finish(ready_timeout())
    }

    /// Waits for it to exit on its own (killing it and failing after `timeout`) and collects.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let child = self.child.take().expect("running");
        let pid = child.id().cast_signed();
        // Read its output while waiting, or a full pipe would block it forever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output().expect("wait")));
        let out = rx.recv_timeout(timeout).unwrap_or_else(|_| {
            // SAFETY: plain syscall; no memory is passed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().expect("wait");
            panic!(
                "checksum-audit did not exit within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        Finished {
            status: out.status,
            lines: stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))
                })
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs the binary to completion (for error paths) with extra environment-free arguments.
pub fn run_to_end(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run checksum-audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The programs attached to `iface`'s TCX hooks in `ns`, as `ingress:name` / `egress:name`.
pub fn tcx_programs(ns: &NetNs, iface: &str) -> Vec<String> {
    ns.tcx_programs(iface)
}

/// The XDP program attached to `iface` in `ns`, as `ip -d link` reports it ("" if none).
pub fn xdp_state(ns: &NetNs, iface: &str) -> String {
    ns.xdp_state(iface)
}
