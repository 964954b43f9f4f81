//! Which capabilities checksum-audit needs, checked before the kernel is asked so that the error
//! names the missing one instead of surfacing a bare EPERM. What each is for (measured on 6.18;
//! docs/privileges.md has the details):
//!
//! - `CAP_BPF`: creating maps (ring buffer, counters, globals), loading BTF and programs;
//! - `CAP_PERFMON`: the verifier lets only perfmon-capable loaders do the pointer arithmetic our
//!   programs do (otherwise its Spectre v1 hardening rejects them, "prohibited for !root");
//! - `CAP_NET_ADMIN`: loading XDP and TC programs (and the clsact qdisc and filter on kernels
//!   without TCX);
//! - `CAP_SYS_ADMIN`: only `--netns` (setns into another network namespace). The kernel also
//!   accepts it in place of the three above.

use std::fs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Bpf,
    NetAdmin,
    Perfmon,
    SysAdmin,
}

impl Cap {
    /// Bit numbers from linux/capability.h.
    const fn bit(self) -> u32 {
        match self {
            Self::NetAdmin => 12,
            Self::SysAdmin => 21,
            Self::Perfmon => 38,
            Self::Bpf => 39,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Bpf => "CAP_BPF",
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::Perfmon => "CAP_PERFMON",
            Self::SysAdmin => "CAP_SYS_ADMIN",
        }
    }
}

/// The capabilities checksum-audit needs to load and attach its programs.
pub const NEEDED: [Cap; 3] = [Cap::Bpf, Cap::NetAdmin, Cap::Perfmon];

/// The effective capability set of this process (`CapEff` in /proc/self/status).
pub fn effective() -> Option<u64> {
    fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    })
}

fn has(effective: u64, cap: Cap) -> bool {
    effective & (1u64 << cap.bit()) != 0
}

/// Which of [`NEEDED`] are missing from `effective`. `CAP_SYS_ADMIN` stands in for all three, as it
/// does in the kernel (`bpf_capable`, `perfmon_capable`, `bpf_net_capable`).
pub fn missing_for_bpf(effective: u64) -> Vec<Cap> {
    if has(effective, Cap::SysAdmin) {
        return Vec::new();
    }
    NEEDED.into_iter().filter(|&c| !has(effective, c)).collect()
}

/// Whether `effective` allows joining another network namespace (`--netns`).
pub fn can_join_netns(effective: u64) -> bool {
    has(effective, Cap::SysAdmin)
}

/// "`CAP_BPF`", "`CAP_BPF` and `CAP_PERFMON`", "`CAP_BPF`, `CAP_NET_ADMIN` and `CAP_PERFMON`".
pub fn names(caps: &[Cap]) -> String {
    match caps {
        [] => String::new(),
        [one] => one.name().to_owned(),
        [rest @ .., last] => format!(
            "{} and {}",
            rest.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
            last.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Cap]) -> u64 {
        caps.iter().fold(0, |s, c| s | 1 << c.bit())
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(missing_for_bpf(set(&NEEDED)), []);
        assert_eq!(
            missing_for_bpf(set(&[Cap::NetAdmin, Cap::Perfmon])),
            [Cap::Bpf]
        );
        assert_eq!(missing_for_bpf(set(&[Cap::SysAdmin])), []);
        assert_eq!(missing_for_bpf(0), NEEDED);
        assert_eq!(names(&NEEDED), "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON");
        assert_eq!(names(&[Cap::Bpf, Cap::Perfmon]), "CAP_BPF and CAP_PERFMON");
        assert_eq!(names(&[Cap::Perfmon]), "CAP_PERFMON");
        assert!(!can_join_netns(set(&NEEDED)));
        assert!(can_join_netns(set(&[Cap::SysAdmin])));
    }
}
