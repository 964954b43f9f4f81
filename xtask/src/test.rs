//! The full test suite, as CI runs it: checks, every cargo test, a one-minute soak, and nothing
//! left behind.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{
    sandbox::require_root,
    workspace::{cargo, run},
};

const EBPF_TOOLCHAIN: &str = include_str!("../../checksum-ebpf/TOOLCHAIN");

pub fn run_suite() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "checksum-ebpf",
        "--exclude",
        "checksum-testkit-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel side only builds for BPF, with the pinned nightly; the build for kernels before
    // 5.18 (docs/kernels.md) has code of its own.
    run(&mut ebpf_clippy(&[
        "--package",
        "checksum-ebpf",
        "--package",
        "checksum-testkit-ebpf",
    ]))?;
    run(&mut ebpf_clippy(&[
        "--package",
        "checksum-ebpf",
        "--features",
        "legacy-kernels",
    ]))?;
    // Tests that need the kernel fail instead of skipping when CI=true; say so up front.
    require_root("test")?;
    // The agent's tests (tests/kube_agent.rs) start a real etcd and kube-apiserver, and the
    // cluster step below a whole node: build or find them first (cached, seconds when warm).
    run(Command::new("bash").args(["scripts/k8s/build.sh"]))?;
    // The eBPF crates only build for bpfel-unknown-none (the build.rs of checksum-user and
    // checksum-testkit do that).
    let totals = run_tests(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "checksum-ebpf",
        "--exclude",
        "checksum-testkit-ebpf",
        "--no-fail-fast",
    ]));
    // The kernel matrix: the kernel suite on the host and in a QEMU guest of each Debian kernel
    // (scripts/kernels/matrix), and the README's table checked against what it found.
    let kernels = crate::kernels::run_matrix(false);
    if let Err(e) = &kernels {
        eprintln!("xtask: kernel matrix failed: {e:#}");
    }
    // A minute of the release binary under load with interfaces coming and going: memory
    // growth, a dying agent, errors or wrong attach/detach counts fail it (`cargo xtask soak`).
    let soak = crate::soak::run::run(&crate::soak::run::Options {
        minutes: 1.0,
        pps: 200_000,
        out: "target/soak".into(),
    });
    // A real single-node cluster in a namespace of its own: the image, the chart rolled out, the
    // agent's programs attached and gone with the DaemonSet (`cargo xtask cluster`).
    let cluster = crate::cluster::run();
    if let Err(e) = &cluster {
        eprintln!("xtask: cluster test failed: {e:#}");
    }
    let left = check_nothing_left_behind();
    let (passed, failed) = totals?;
    let verdict = |r: &Result<()>| if r.is_ok() { "passed" } else { "failed" };
    // One closing line for the whole suite, whatever cargo printed last.
    println!(
        "tests: {passed} passed, {failed} failed; kernels: {}; soak (1 min): {}; cluster: {}",
        verdict(&kernels),
        verdict(&soak),
        verdict(&cluster)
    );
    left?;
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    kernels.and(soak).and(cluster)
}

/// clippy with `-D warnings` for the BPF target, on what `args` selects.
fn ebpf_clippy(args: &[&str]) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", EBPF_TOOLCHAIN.trim(), "cargo", "clippy"])
        .args(args)
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--",
            "-D",
            "warnings",
        ]);
    cmd
}

/// Runs `cargo test`, passing its output through, and adds up its `test result:` lines.
fn run_tests(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: $ {}", format!("{cmd:?}").replace('"', ""));
    let mut child = cmd
        .current_dir(crate::workspace::workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)
                            .and_then(|n| n.trim().rsplit(' ').next()?.parse::<u64>().ok())
                    })
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed: {status}");
    }
    Ok((passed, failed))
}

/// How long the kernel may take to free the programs of processes that just exited: a tracing
/// program (the kernel-drop tracer) is freed only after an RCU tasks-trace grace period, which
/// can take seconds, so a program of the soak's last run can still be listed at first.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(20);

/// Every test namespace is gone and none of our programs is still loaded (once the kernel has
/// had `SETTLE` to free them).
fn check_nothing_left_behind() -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        let netns = Command::new("ip").args(["netns", "list"]).output()?;
        let leftover: Vec<_> = String::from_utf8_lossy(&netns.stdout)
            .lines()
            .filter(|l| l.starts_with("csa-"))
            .map(str::to_owned)
            .collect();
        let programs: Vec<_> = checksum_user_programs_loaded();
        if leftover.is_empty() && programs.is_empty() {
            eprintln!(
                "xtask: no namespaces or programs left behind (checked after {:.1} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > SETTLE {
            bail!("tests left things behind: namespaces {leftover:?}, programs {programs:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Every program name our objects define (the kernel shows at most 15 characters).
const OUR_PROGRAMS: [&str; 8] = [
    "sum_floor_xdp",
    "csum_kfree_skb",
    "csum_audit_xdp",
    "noop_xdp",
    "csum_tc_ingress",
    "csum_tc_egress",
    "noop_tc",
    "stale_dnat",
];

fn checksum_user_programs_loaded() -> Vec<String> {
    let Ok(out) = Command::new("bpftool").args(["prog", "show"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            OUR_PROGRAMS
                .iter()
                .any(|name| l.contains(&format!("name {name} ")))
        })
        .map(str::to_owned)
        .collect()
}
