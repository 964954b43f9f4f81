//! Least privilege: the binary runs as the unprivileged user nobody with only `CAP_BPF`,
//! `CAP_NET_ADMIN` and `CAP_PERFMON` (as ambient capabilities, the way systemd's
//! `AmbientCapabilities=` grants them), attaches and reports a bad checksum; without one of them it
//! stops with a one-line error naming it. `--netns` needs `CAP_SYS_ADMIN` as well, for setns.
//! capsh (Debian package libcap2-bin) sets up the capabilities.

mod common;

use std::process::Command;

use checksum_testkit::{
    frames::*,
    netns::{NetNs, VETH_A, VETH_B, VethPair, send_raw_frames},
};
use common::{
    auditor::{BIN, Running, run_to_end},
    leftovers::hooks,
};

const NEEDED: [&str; 3] = ["cap_bpf", "cap_net_admin", "cap_perfmon"];

/// `[ip netns exec NS] capsh ...` running the binary as nobody with exactly `caps` (effective,
/// permitted and ambient); the binary's arguments follow. capsh needs `CAP_SETPCAP`, `CAP_SETUID`
/// and `CAP_SETGID` itself to get there; they are not ambient, so the binary does not keep them.
fn as_nobody_with(caps: &[&str], ns: Option<&NetNs>) -> Command {
    let list = caps.join(",");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = ns.exec();
            c.arg("capsh");
            c
        }
        None => Command::new("capsh"),
    };
    cmd.args([
        &format!("--caps={list}+eip cap_setpcap,cap_setuid,cap_setgid+ep"),
        "--keep=1",
        "--user=nobody",
        &format!("--addamb={list}"),
        "--",
        "-c",
        r#"exec "$@""#,
        "checksum-audit",
        BIN,
    ]);
    cmd
}

/// The Uid and `CapEff` lines of a process's status.
fn identity(pid: i32) -> (String, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let uid = field("Uid:").split_whitespace().nth(1).unwrap().to_owned();
    (uid, u64::from_str_radix(&field("CapEff:"), 16).unwrap())
}

/// Bits of `CAP_NET_ADMIN` (12), `CAP_PERFMON` (38) and `CAP_BPF` (39).
const NEEDED_BITS: u64 = 1 << 12 | 1 << 38 | 1 << 39;

#[test]
fn runs_as_nobody_with_only_bpf_net_admin_and_perfmon() {
    root_only!();
    let pair = VethPair::new("priv");
    let run = Running::spawn(
        as_nobody_with(&NEEDED, Some(&pair.b)),
        &pair.b.name,
        &["--iface", VETH_B, "--hook", "xdp", "--hook", "tc-ingress"],
    );
    // capsh and bash exec'd into the binary: the child is the auditor itself.
    let (uid, caps) = identity(run.pid());
    assert_eq!(uid, "65534", "effective uid nobody");
    assert_eq!(
        caps, NEEDED_BITS,
        "effective capabilities: exactly the three"
    );
    let mut f = v4_frame(&[], TCP, segment(TCP, 100), &[]);
    let want = f.checksum;
    f.set_field(want ^ 0x0101);
    let frame = f.bytes;
    pair.a.run(move || send_raw_frames(VETH_A, &[frame]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let done = run.stop(libc::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    for hook in ["xdp", "tc-ingress"] {
        assert!(
            done.verdicts().iter().any(|v| v["hook"] == hook
                && v["kind"] == "corrupt"
                && v["want"] == format!("{want:#06x}")),
            "{hook}: {:#?}",
            done.verdicts()
        );
    }
    assert!(!hooks(&pair.b, VETH_B).has_ours());
}

#[test]
fn without_one_of_them_it_names_the_missing_capability() {
    root_only!();
    let pair = VethPair::new("priv-");
    for missing in NEEDED {
        let caps: Vec<&str> = NEEDED.into_iter().filter(|c| *c != missing).collect();
        let mut cmd = as_nobody_with(&caps, Some(&pair.b));
        cmd.args(["--iface", VETH_B, "--duration", "2s"]);
        let (code, _, stderr) = run_to_end(&mut cmd);
        let name = missing.to_uppercase();
        assert_eq!(code, 1, "without {name}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "checksum-audit: error: missing privileges: {name} is not in the effective capability set"
            )),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        eprintln!("without {name}: {}", stderr.trim_end());
        assert!(!hooks(&pair.b, VETH_B).has_ours());
    }
}

/// Joining another network namespace (setns) is the one operation that needs `CAP_SYS_ADMIN`.
#[test]
fn netns_needs_cap_sys_admin_for_setns() {
    root_only!();
    let pair = VethPair::new("privns");
    let args = ["--netns", &pair.b.name, "--iface", VETH_B];
    let mut cmd = as_nobody_with(&NEEDED, None);
    cmd.args(args).args(["--duration", "2s"]);
    let (code, _, stderr) = run_to_end(&mut cmd);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "checksum-audit: error: missing privileges: CAP_SYS_ADMIN is not in the effective capability set; --netns needs it"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let with_sys_admin: Vec<&str> = NEEDED.into_iter().chain(["cap_sys_admin"]).collect();
    let run = Running::spawn(as_nobody_with(&with_sys_admin, None), &pair.b.name, &args);
    assert!(hooks(&pair.b, VETH_B).has_ours());
    let done = run.stop(libc::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(!hooks(&pair.b, VETH_B).has_ours());
}
