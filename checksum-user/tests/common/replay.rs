//! Running `checksum-audit replay` on capture bytes built by a test.

use std::{io::Write, process::Command};

use serde_json::Value;

use super::auditor::BIN;

/// Replays `bytes` (a pcap or pcapng file's contents) with `args`; returns stdout and stderr.
/// Panics unless the run succeeds.
pub fn replay(bytes: &[u8], args: &[&str]) -> (String, String) {
    // Tests run in parallel, some with the same arguments: each call its own file.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "csa-replay-{}-{call}-{}.pcap",
        std::process::id(),
        args.join("_").replace('/', "_")
    ));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    let out = Command::new(BIN)
        .arg("replay")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}
