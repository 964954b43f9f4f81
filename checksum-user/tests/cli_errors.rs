//! Bad input gets a one-line error that says what to do, and a non-zero exit.

mod common;

use std::{io::Write, process::Command};

use checksum_testkit::frames::pcap_file;
use common::{
    auditor::{BIN, run_to_end},
    require_root,
};

fn run(args: &[&str]) -> (i32, String, String) {
    run_to_end(Command::new(BIN).args(args))
}

/// `checksum-audit ARGS` as the unprivileged user nobody; `drop_caps` also empties the
/// inheritable and bounding capability sets.
fn as_nobody(args: &[&str], drop_caps: bool) -> (i32, String, String) {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if drop_caps {
        cmd.args(["--inh-caps=-all", "--bounding-set=-all"]);
    }
    run_to_end(cmd.arg(BIN).args(args))
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_eq!(code, 1, "exit code; stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("checksum-audit: error: "), "{stderr}");
}

#[test]
fn no_interface() {
    let (code, _, err) = run(&[]);
    assert_one_line_error(code, &err, "no interface given: pass --iface IF");
}

#[test]
fn unknown_interface() {
    let (code, _, err) = run(&["--iface", "definitely-not-here0"]);
    assert_one_line_error(code, &err, "unknown interface 'definitely-not-here0'");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let (code, _, err) = run(&["--iface", "lo", "--duration", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid duration"), "{err}");
    let (code, _, err) = run(&["--iface", "lo", "--xdp-mode", "turbo"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn missing_privileges_name_the_capabilities() {
    if !require_root(module_path!()) {
        return;
    }
    // Drop to an unprivileged user with no capabilities: the error must say what is needed.
    let (code, _, err) = as_nobody(&["--iface", "lo"], true);
    assert_one_line_error(code, &err, "missing privileges");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_NET_ADMIN") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    // The same for replay, which needs to load the program too.
    let capture = write_temp("priv.pcap", &pcap_file(1, &[&[0u8; 60]]));
    std::fs::set_permissions(
        &*capture,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let (code, _, err) = as_nobody(&["replay", capture.to_str().unwrap()], true);
    assert_one_line_error(code, &err, "missing privileges");
}

/// A file in the temp dir, removed when the test ends.
struct TempFile(std::path::PathBuf);

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_temp(name: &str, bytes: &[u8]) -> TempFile {
    let path = std::env::temp_dir().join(format!("csa-{}-{name}", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    TempFile(path)
}

#[test]
fn replay_missing_file() {
    let (code, _, err) = run(&["replay", "/nonexistent/capture.pcap"]);
    assert_one_line_error(
        code,
        &err,
        "cannot open capture file /nonexistent/capture.pcap: No such file",
    );
}

#[test]
fn replay_directory() {
    let (code, _, err) = run(&["replay", "/tmp"]);
    assert_one_line_error(code, &err, "is a directory");
}

#[test]
fn replay_unreadable_file() {
    if !require_root(module_path!()) {
        return;
    }
    let path = write_temp("secret.pcap", &pcap_file(1, &[]));
    std::fs::set_permissions(&*path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (code, _, err) = as_nobody(&["replay", path.to_str().unwrap()], false);
    assert_one_line_error(code, &err, "Permission denied");
}

#[test]
fn replay_not_a_capture() {
    let path = write_temp("notes.txt", b"these are not packets\n");
    let (code, _, err) = run(&["replay", path.to_str().unwrap()]);
    assert_one_line_error(code, &err, "not a pcap or pcapng file");
}

#[test]
fn replay_unsupported_link_type() {
    // 105: IEEE 802.11.
    let path = write_temp("wifi.pcap", &pcap_file(105, &[&[0u8; 40]]));
    let (code, _, err) = run(&["replay", path.to_str().unwrap()]);
    assert_one_line_error(code, &err, "unsupported link type 105");
    assert!(err.contains("Ethernet (1)"), "{err}");
}

#[test]
fn replay_truncated_capture() {
    if !require_root(module_path!()) {
        return;
    }
    let mut bytes = pcap_file(1, &[&[0u8; 60], &[0u8; 60]]);
    bytes.truncate(bytes.len() - 10);
    let path = write_temp("cut.pcap", &bytes);
    let (code, _, err) = run(&["replay", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("corrupt capture at record 2"), "{err}");
}

#[test]
fn live_options_do_not_mix_with_replay() {
    let (code, _, err) = run(&["--iface", "lo", "replay", "x.pcap"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("do not apply to `replay`"), "{err}");
}

#[test]
fn every_live_option_is_refused_with_replay() {
    let capture = write_temp("netns-replay.pcap", &pcap_file(1, &[&[0u8; 60]]));
    let file = capture.to_str().unwrap();
    // --netns used to be ignored here, and replay ran in the current namespace.
    let (code, out, err) = run(&["--netns", "x", "replay", file]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert_eq!(
        err.trim_end(),
        "checksum-audit: error: live options (--netns) do not apply to `replay`"
    );
    assert!(out.is_empty(), "{out}");
    // So are the others that were not counted, even when given their default value.
    for args in [
        &["--all-interfaces"][..],
        &["--hook", "xdp"],
        &["--hook", "tc-ingress", "--hook", "tc-egress"],
        &["--events-per-flow", "3"],
        &["--snaplen", "256"],
        &["--ring-buffer-size", "1048576"],
        &["--interval", "1s"],
        &["--xdp-mode", "generic"],
        &["--pcap-max-bytes", "1000"],
    ] {
        let (code, _, err) = run(&[args, &["replay", file]].concat());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("live options ({}) do not apply", args[0])),
            "{args:?}: {err}"
        );
    }
    // A live --format before `replay` is not replay's: say where it goes.
    let (code, _, err) = run(&["--format", "json", "replay", file]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("put --format after `replay`"), "{err}");
}

#[test]
fn verbose_shows_the_kernel_programs_log() {
    if !require_root(module_path!()) {
        return;
    }
    // An IPv4 header whose total length is shorter than the header: malformed, logged by the
    // kernel program through aya-log at -v, silent without it.
    let mut frame = vec![2u8; 12];
    frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 10]);
    frame.resize(60, 0);
    let path = write_temp("malformed.pcap", &pcap_file(1, &[&frame]));
    let (code, out, err) = run(&["-v", "replay", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("malformed frame: 60 bytes"), "{err}");
    assert!(out.contains("1 malformed"), "{out}");
    let (_, _, quiet) = run(&["replay", path.to_str().unwrap()]);
    assert!(!quiet.contains("malformed frame"), "{quiet}");
}

#[test]
fn unknown_network_namespace() {
    let (code, _, err) = run(&["--netns", "no-such-netns", "--iface", "eth0"]);
    assert_one_line_error(code, &err, "network namespace 'no-such-netns' not found");
    assert!(err.contains("ip netns list"), "{err}");
}

#[test]
fn metrics_address_errors() {
    let (code, _, err) = run(&["--iface", "no-such-if0", "--metrics-addr", "localhost"]);
    assert_one_line_error(code, &err, "expected PORT, :PORT or ADDR:PORT");
    // A busy port fails before anything is attached (the interface does not even exist).
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, _, err) = run(&["--iface", "no-such-if0", "--metrics-addr", &port]);
    assert_one_line_error(
        code,
        &err,
        &format!("cannot serve metrics on 127.0.0.1:{port}"),
    );
}

/// `--nat-candidates` gets a one-line error for each kind of bad file, in replay and live (there
/// before anything is loaded or attached: an interface that does not exist would be the next
/// error, so nothing can be attached even if that order changed).
#[test]
fn bad_nat_candidates() {
    let capture = write_temp("empty.pcap", &pcap_file(1, &[]));
    let capture = capture.to_str().unwrap();
    let not_json = write_temp("svc.txt", b"10.96.0.10:53 kube-dns\nthis is no address\n");
    let pods = write_temp(
        "pods.json",
        br#"{"apiVersion": "v1", "kind": "PodList", "items": []}"#,
    );
    let broken = write_temp("broken.json", b"{\"kind\": \"List\", \"items\": [");
    for (path, needle) in [
        (
            not_json.to_str().unwrap(),
            ": line 2 is not ADDR or ADDR:PORT",
        ),
        (
            pods.to_str().unwrap(),
            "JSON of kind \"PodList\", not kubectl get svc -A -o json",
        ),
        (broken.to_str().unwrap(), ": not valid JSON"),
        (
            "/nonexistent/svc.json",
            "cannot read --nat-candidates /nonexistent/svc.json",
        ),
    ] {
        let (code, _, err) = run(&["replay", capture, "--nat-candidates", path]);
        assert_one_line_error(code, &err, needle);
        let (code, _, err) = run(&["--iface", "csa-nonexistent0", "--nat-candidates", path]);
        assert_one_line_error(code, &err, needle);
    }
}

#[test]
fn unreadable_nat_candidates() {
    if !require_root(module_path!()) {
        return;
    }
    let capture = write_temp("empty2.pcap", &pcap_file(1, &[]));
    let path = write_temp("secret-svc.json", b"10.96.0.10\n");
    std::fs::set_permissions(&*path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (code, _, err) = as_nobody(
        &[
            "replay",
            capture.to_str().unwrap(),
            "--nat-candidates",
            path.to_str().unwrap(),
        ],
        false,
    );
    assert_one_line_error(code, &err, "Permission denied");
}

/// The realistic `kubectl get svc -A -o json` fixture loads, and says how many candidates it gave.
#[test]
fn kubectl_services_load_as_nat_candidates() {
    let capture = write_temp("empty3.pcap", &pcap_file(1, &[]));
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kubectl-svc.json");
    let (code, _, err) = run(&[
        "replay",
        capture.to_str().unwrap(),
        "--nat-candidates",
        fixture,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(" NAT candidates from "), "{err}");
}
