//! Shared by the integration tests: the privilege gate, the binary under test, leftovers and the
//! output schema. Frames and namespaces come from `checksum_testkit`.
#![expect(
    dead_code,
    reason = "every test crate compiles this module and uses only part of it"
)]

pub mod auditor;
pub mod leftovers;
pub mod replay;

/// Skips the calling test (returns from it) unless it may touch the kernel: see
/// [`require_root`], which also makes a skip a failure in CI.
#[macro_export]
macro_rules! root_only {
    () => {
        if !$crate::common::require_root(module_path!()) {
            return;
        }
    };
}

/// Running in CI (`CI=true`), where a skipped test is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the test may touch the kernel. Unprivileged runs skip with a message, except in CI
/// (`CI=true`), where a skip would hide a missing capability and is a failure.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); CI=true forbids skipping"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// Where `line` departs from docs/output.schema.json, the documented JSON contract.
pub fn schema_errors(line: &serde_json::Value) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/output.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the schema"))
            .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    validator
        .iter_errors(line)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Checks every JSON output line against the schema.
pub fn assert_matches_schema(lines: &[serde_json::Value]) {
    assert!(!lines.is_empty(), "no output to check");
    for line in lines {
        let errors = schema_errors(line);
        assert!(
            errors.is_empty(),
            "{line}\ndoes not match docs/output.schema.json: {errors:#?}"
        );
    }
}

/// HTTP GET inside `ns` (the auditor's loopback lives there).
pub fn http_get(
    ns: &checksum_testkit::netns::NetNs,
    addr: &'static str,
    path: &'static str,
) -> String {
    use std::io::{Read, Write};
    ns.run(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
        write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    })
}

/// Crafted frames with known-bad checksums, each with the layer, kind, got and want the auditor
/// must report.
pub fn bad_frames() -> Vec<(Vec<u8>, &'static str, &'static str, u16, u16)> {
    use checksum_testkit::frames::*;
    let mut out = Vec::new();
    let mut f = v4_frame(&[], TCP, segment(TCP, 200), &[]);
    let want = f.checksum;
    f.set_field(want ^ 0x1111);
    out.push((f.bytes.clone(), "tcp", "corrupt", want ^ 0x1111, want));
    let mut f = v4_frame(&[], UDP, segment(UDP, 64), &[]);
    let want = f.checksum;
    f.set_field(want.swap_bytes());
    out.push((
        f.bytes.clone(),
        "udp",
        "byte-swapped",
        want.swap_bytes(),
        want,
    ));
    let mut f = v6_frame(UDP, segment(UDP, 64));
    let want = f.checksum;
    f.set_field(0);
    out.push((f.bytes.clone(), "udp", "zero", 0, want));
    let mut f = v4_frame(&[0x8100], ICMP, segment(ICMP, 56), &[]);
    let want = f.checksum;
    f.set_field(want ^ 0x00f0);
    out.push((f.bytes.clone(), "icmp", "corrupt", want ^ 0x00f0, want));
    let mut f = v6_frame(TCP, segment(TCP, 1000));
    let want = f.checksum;
    let pseudo = f.pseudo;
    f.set_field(pseudo);
    out.push((f.bytes.clone(), "tcp", "offload-pending", pseudo, want));
    out
}
