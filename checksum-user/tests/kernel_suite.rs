//! What this kernel can do, feature by feature: the suite of the kernel matrix (`cargo xtask
//! kernels`, docs/kernels.md), which runs it inside a QEMU guest of each Debian kernel, and of
//! every `cargo test` on the host. Each feature prints one line,
//!
//!     CSA-FEATURE <name> <ok|degraded|failed> <tag> <detail>
//!
//! `degraded`: the kernel lacks a mechanism, and the detail says what the run does instead (the
//! rest goes on); `failed` fails the test. The tag is one stable word (the build loaded, how the
//! programs attached), for the matrix's table; the detail has figures and timings. Under QEMU without KVM the verifier runs about 50
//! times slower, so each program is loaded as few times as it can be, and the frame sample is
//! `CSA_SUITE_FRAMES` long (default 10,000).

mod common;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use checksum_common::Hook;
use checksum_testkit::{
    differential::Runner,
    netns::{
        ADDR_A, ADDR_B, ADDR6_A, ADDR6_B, VETH_A, VETH_B, VethPair, ordinary_traffic,
        send_raw_frames,
    },
};
use checksum_user::{
    kernel::{
        drops,
        loader::{AUDIT_TC_INGRESS, AUDIT_XDP, LoadOptions, Loaded},
        object::Object,
        testrun::FrameAuditor,
    },
    model::SkbStateUse,
};
use common::{
    auditor::{Running, xdp_state},
    bad_frames,
};

/// Instructions the verifier may process per audit program (as `tests/verifier_cost.rs`).
const BUDGET: u32 = 500_000;

/// The differential test's seed, another range of it.
const SEED: u64 = 0x6b65_726e_656c_7321;

/// A feature's status, its tag and its detail.
enum Outcome {
    Ok(&'static str, String),
    Degraded(&'static str, String),
}

/// Runs one feature's check and prints its line; a panic is a failure (with its message).
fn feature(failures: &mut Vec<String>, name: &str, check: impl FnOnce() -> Outcome) {
    let started = Instant::now();
    let (status, tag, detail) = match catch_unwind(AssertUnwindSafe(check)) {
        Ok(Outcome::Ok(t, d)) => ("ok", t, d),
        Ok(Outcome::Degraded(t, d)) => ("degraded", t, d),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".into());
            failures.push(format!("{name}: {why}"));
            ("failed", "-", why.replace('\n', " | "))
        }
    };
    println!(
        "CSA-FEATURE {name} {status} {tag} {detail} [{:.1} s]",
        started.elapsed().as_secs_f64()
    );
}

fn frames() -> u64 {
    std::env::var("CSA_SUITE_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn every_feature_on_this_kernel() {
    root_only!();
    println!(
        "CSA-KERNEL-RELEASE {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let mut failures = Vec::new();
    let mut auditor = None;
    feature(&mut failures, "load", || {
        let object = Object::for_running_kernel();
        let mut a = FrameAuditor::new(true).expect("load the object");
        let mut counts = Vec::new();
        for hook in [Hook::Xdp, Hook::TcIngress] {
            let started = Instant::now();
            let insns = a.verified_instructions(hook).expect("verify");
            // tests/verifier_cost.rs's budget, on every kernel that counts (5.16 on).
            assert!(
                insns.is_none_or(|n| n <= BUDGET),
                "{}: {insns:?} instructions, over the budget of {BUDGET}",
                hook.name()
            );
            counts.push(format!(
                "{}={} ({:.1} s)",
                hook.name(),
                insns.map_or("?".into(), |n| n.to_string()),
                started.elapsed().as_secs_f64()
            ));
        }
        auditor = Some(a);
        Outcome::Ok(
            object.name(),
            format!("verified instructions {}", counts.join(" ")),
        )
    });
    if let Some(a) = auditor.as_mut() {
        feature(&mut failures, "test-run", || differential(a));
    }
    // The loaded programs' settings, asked of a load of their own (nothing is verified for it).
    feature(&mut failures, "skb-state", || {
        let loaded = Loaded::load(&LoadOptions::default()).expect("load the object");
        match loaded.skb_state() {
            SkbStateUse::On => Outcome::Ok("on", "checksum state read at TC, partial-ok".into()),
            SkbStateUse::Unavailable(why) => Outcome::Degraded("unavailable", why.clone()),
            SkbStateUse::Off => panic!("off by default"),
        }
    });
    feature(&mut failures, "kernel-drops", kernel_drops);
    feature(&mut failures, "several-netns", several_namespaces);
    feature(&mut failures, "live-xdp", || live("xdp"));
    feature(&mut failures, "live-tc", || live("tc-ingress"));
    assert!(failures.is_empty(), "features failed: {failures:#?}");
}

/// A fixed sample of generated frames through the XDP program (and every 4th through a TC one),
/// each verdict and counter checked against the reference verifier.
fn differential(auditor: &mut FrameAuditor) -> Outcome {
    let n = frames();
    let mut runner = Runner::new(auditor);
    if Object::for_running_kernel() == Object::Legacy {
        runner = runner.linear_only();
    }
    let mut first = None;
    let stats = runner
        .run(SEED, 0..n, 4, |d| {
            if d.known.is_none() && first.is_none() {
                first = Some(d.to_string());
            }
        })
        .expect("test runs");
    assert_eq!(
        stats.disagreements,
        0,
        "{} disagreements with the reference, the first: {}",
        stats.disagreements,
        first.unwrap_or_default()
    );
    assert!(stats.tc_runs > n / 10, "{} TC runs", stats.tc_runs);
    Outcome::Ok(
        "agrees",
        format!(
            "{} frames agree with the reference ({} runs at TC, {} tunnelled, {} longer than a page left out)",
            stats.frames, stats.tc_runs, stats.encapsulated, stats.left_out
        ),
    )
}

/// The kernel's own checksum drops: traced with their reasons where `kfree_skb` has them.
fn kernel_drops() -> Outcome {
    let mut loaded = Loaded::load(&LoadOptions {
        kernel_drops: true,
        ..LoadOptions::default()
    })
    .expect("load the object");
    match loaded.drop_config().cloned().expect("asked for") {
        Err(why) => Outcome::Degraded(
            "no-reasons",
            format!("{why}; the summary's InCsumErrors counters still count them"),
        ),
        Ok(config) => {
            drops::attach(&mut loaded).expect("attach the drop program");
            Outcome::Ok(
                "traced",
                format!(
                    "kfree_skb traced, {} checksum reasons",
                    config.reasons.len()
                ),
            )
        }
    }
}

/// The programs as the node agent and `--netns` runs load them, several namespaces at once:
/// each packet's namespace read from its device at offsets from BTF, with flow tracking on.
fn several_namespaces() -> Outcome {
    let mut loaded = Loaded::load(&LoadOptions {
        netns_by_device: true,
        track_reports: checksum_common::track::DEFAULT_TRACK_REPORTS,
        ..LoadOptions::default()
    })
    .expect("load with the namespace offsets");
    loaded.xdp(AUDIT_XDP).expect("verify the XDP program");
    loaded.tc(AUDIT_TC_INGRESS).expect("verify the TC program");
    Outcome::Ok(
        "verified",
        "namespace offsets resolved, XDP and TC verified with flow tracking".into(),
    )
}

/// The real binary attached at `hook` to a veth in namespaces of the test's own, crafted frames
/// with bad checksums sent from the peer: each must arrive as its event, and nothing may stay
/// attached after the run.
fn live(hook: &str) -> Outcome {
    let pair = VethPair::new(&format!("ks{}", &hook[..2]));
    let started = Instant::now();
    let run = Running::start(&pair.b, &["--iface", VETH_B, "--hook", hook]);
    let ready = started.elapsed();
    let frames = bad_frames();
    let raw: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    pair.a.run(move || send_raw_frames(VETH_A, &raw));
    // Real TCP, UDP and ping beside them: none of it may be called a problem.
    ordinary_traffic(&pair, 9100, 64 * 1024);
    std::thread::sleep(Duration::from_millis(500));
    let done = run.stop(libc::SIGTERM);
    done.assert_clean();
    let verdicts = done.verdicts();
    let false_problems: Vec<_> = verdicts
        .iter()
        .filter(|v| {
            v["severity"] != "expected"
                && [ADDR_A, ADDR_B, ADDR6_A, ADDR6_B].contains(&v["src"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(
        false_problems.is_empty(),
        "false problems on real traffic: {false_problems:?}"
    );
    // Exactly the injected frames are counted, nothing else.
    for (kind, n) in [("corrupt", 2), ("byte-swapped", 1), ("zero", 1)] {
        assert_eq!(
            done.counter(VETH_B, hook, &["mismatches", kind]),
            n,
            "{kind}"
        );
    }
    if hook != "xdp" {
        // The skb state: real TCP from the veth peer carries a partial checksum, settled as such.
        assert!(
            done.counter(VETH_B, hook, &["checks", "tcp", "partial-ok"]) > 0,
            "no partial-ok TCP at {hook}"
        );
    }
    for (_, layer, kind, got, _) in &frames {
        // Offload-pending fields are expected on veth and listed only with --show-offload.
        if *kind == "offload-pending" {
            continue;
        }
        assert!(
            verdicts.iter().any(|v| v["hook"] == hook
                && v["layer"] == *layer
                && v["kind"] == *kind
                && v["got"] == format!("{got:#06x}")),
            "no {layer} {kind} event at {hook}: {verdicts:?}"
        );
    }
    assert_eq!(done.counter(VETH_B, hook, &["events_lost"]), 0);
    assert_eq!(xdp_state(&pair.b, VETH_B), "", "XDP left attached");
    let mode = done
        .stderr
        .lines()
        .find_map(|l| {
            let at = l.find(&format!("at {hook} ("))?;
            let rest = &l[at + hook.len() + 5..];
            Some(rest[..rest.find(')')?].to_owned())
        })
        .unwrap_or_else(|| panic!("no attach line: {}", done.stderr));
    if hook != "xdp" {
        assert!(tc_filters(&pair.b.name).is_empty(), "TC filter left behind");
    }
    let detail = format!(
        "{} bad frames reported at {mode}, exactly counted, no false problem on real TCP, UDP and \
         ping, nothing left attached (ready in {:.1} s)",
        frames.len() - 1,
        ready.as_secs_f64()
    );
    match mode.as_str() {
        "clsact" => {
            // What the README says of clsact: a SIGKILL leaves the filter (removing the pair's
            // namespaces takes it away here).
            let run = Running::start(&pair.b, &["--iface", VETH_B, "--hook", hook]);
            drop(run.stop(libc::SIGKILL));
            assert!(
                !tc_filters(&pair.b.name).is_empty(),
                "a SIGKILL left no clsact filter, unlike what the README says"
            );
            Outcome::Degraded(
                "clsact",
                format!(
                    "{detail}; no TCX (Linux < 6.6): a clsact filter, which a SIGKILL left behind"
                ),
            )
        }
        "tcx" => Outcome::Ok("tcx", detail),
        "native" => Outcome::Ok("native", detail),
        other => panic!("attached as {other}: {detail}"),
    }
}

/// The BPF filters on `veth-b`'s clsact hooks (`tc filter show`), empty without clsact.
fn tc_filters(netns: &str) -> String {
    let mut all = String::new();
    for dir in ["ingress", "egress"] {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", netns, "tc", "filter", "show", "dev", VETH_B, dir,
            ])
            .output()
            .expect("tc filter show");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all.trim().to_owned()
}

#[test]
fn the_legacy_build_loads_here_too() {
    // The host runs the build for kernels before 5.18 as well, so both stay verifiable between
    // matrix runs (tests/differential.rs checks that it audits alike).
    root_only!();
    let mut loaded = Loaded::load(&LoadOptions {
        object: Some(Object::Legacy),
        ..LoadOptions::default()
    })
    .expect("load the legacy build");
    assert_eq!(loaded.object(), Object::Legacy);
    loaded.xdp(AUDIT_XDP).expect("verify its XDP program");
    loaded.tc(AUDIT_TC_INGRESS).expect("verify its TC program");
}
