//! Shared by the integration tests: privilege gate, frame construction, namespaces.
#![allow(dead_code)]

pub mod auditor;

#[allow(unused_imports)]
pub use checksum_user::testkit::{frames, netns};

/// True when the test may touch the kernel. Unprivileged runs skip with a message, except in CI
/// (`CI=true`), where a skip would hide a missing capability and is a failure.
pub fn require_root(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "{test}: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); CI=true forbids skipping"
        );
    }
    eprintln!("SKIPPED {test}: needs root");
    false
}
