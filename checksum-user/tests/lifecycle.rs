//! Faults and lifecycle: SIGINT, SIGTERM and SIGKILL at every moment of a run, and interfaces and
//! namespaces deleted under a running auditor. The real binary, in namespaces the test creates,
//! next to other tools' programs it must never touch. Nothing here touches the host's interfaces.

mod common;

use std::{
    fmt::Write as _,
    os::unix::process::ExitStatusExt,
    process::{Command, ExitStatus},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use checksum_testkit::{
    frames::*,
    netns::{NetNs, VETH_A, VETH_B, VethPair, send_raw_frames},
};
use common::{
    auditor::{BIN, Finished, Running},
    http_get,
    leftovers::{Held, Hooks, Others, held_by, hooks, settle, still_loaded},
};

/// SplitMix64: the moments are random but seeded, and the seed is printed, so a failing cell
/// can be replayed with `CSA_SEED=<seed>`.
struct Rng(u64);

impl Rng {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "without CSA_SEED, the seed is the clock's low 64 bits"
    )]
    fn from_env() -> Self {
        let seed = std::env::var("CSA_SEED")
            .ok()
            .and_then(|s| match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            })
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration in [0, max).
    fn below(&mut self, max: Duration) -> Duration {
        Duration::from_micros(
            self.next() % u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1),
        )
    }
}

/// Audited: veth-b and every `csx*` interface, at all three hooks (9 programs to start with).
const ARGS: [&str; 10] = [
    "--iface",
    VETH_B,
    "--iface",
    "csx*",
    "--hook",
    "xdp",
    "--hook",
    "tc-ingress",
    "--hook",
    "tc-egress",
];
const HOOKS_PER_IFACE: usize = 3;

/// `csxN` (audited) with its peer `peerN` (not audited) in `ns`, up.
fn add_veth(ns: &NetNs, n: usize) -> [String; 2] {
    let (dev, peer) = (format!("csx{n}"), format!("peer{n}"));
    ns.ip(&["link", "add", &dev, "type", "veth", "peer", "name", &peer]);
    ns.ip(&["link", "set", &dev, "up"]);
    ns.ip(&["link", "set", &peer, "up"]);
    [dev, peer]
}

/// A fresh pair of namespaces: `b` holds veth-b, csx0 and csx1, each with another tool's
/// programs, and their peers; `baseline` is what was on each interface before the auditor.
struct Lab {
    pair: VethPair,
    baseline: Vec<(String, Hooks)>,
    _others: Others,
    next_veth: usize,
}

impl Lab {
    fn new(tag: &str) -> Self {
        let pair = VethPair::new(tag);
        let mut all = vec![VETH_B.to_owned()];
        for n in 0..2 {
            all.extend(add_veth(&pair.b, n));
        }
        let others = Others::attach(&pair.b, &[VETH_B, "csx0", "csx1"]);
        let baseline: Vec<_> = all
            .into_iter()
            .map(|i| {
                let h = hooks(&pair.b, &i);
                (i, h)
            })
            .collect();
        assert!(baseline.iter().all(|(_, h)| !h.has_ours()), "{baseline:#?}");
        Self {
            pair,
            baseline,
            _others: others,
            next_veth: 2,
        }
    }

    fn launch(&self) -> Running {
        let mut cmd = self.pair.b.exec();
        cmd.arg(BIN);
        Running::launch(cmd, &self.pair.b.name, &ARGS)
    }

    /// A new matching veth while the auditor runs; nothing was on it before.
    fn add_veth(&mut self) -> String {
        let names = add_veth(&self.pair.b, self.next_veth);
        self.next_veth += 1;
        for name in &names {
            self.baseline.push((name.clone(), Hooks::empty()));
        }
        names[0].clone()
    }

    /// Interfaces whose hooks differ from before the auditor ran (ours left, theirs touched).
    fn changed(&self) -> Option<String> {
        let diffs: Vec<String> = self
            .baseline
            .iter()
            .filter_map(|(iface, before)| {
                let now = hooks(&self.pair.b, iface);
                (now != *before).then(|| format!("{iface}: before {before:?}\nnow {now:?}"))
            })
            .collect();
        (!diffs.is_empty()).then(|| diffs.join("\n"))
    }

    fn ours_on(&self, iface: &str) -> usize {
        hooks(&self.pair.b, iface).ours()
    }
}

/// Frames from veth-a to veth-b until dropped: mostly good, one bad in ten, so that the run
/// has traffic and a few events without filling the output pipe.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(pair: &VethPair) -> Self {
        let mut frames = Vec::new();
        for i in 0..10 {
            let mut f = v4_frame(&[], UDP, segment(UDP, 32 + i), &[]);
            if i == 0 {
                let c = f.checksum;
                f.set_field(c ^ 0x0f0f);
            }
            frames.push(f.bytes);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = pair.a.spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                send_raw_frames(VETH_A, &frames);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Moment {
    /// Right after spawn, while the first programs are loaded and attached.
    Attach,
    /// Attached, traffic flowing.
    Steady,
    /// While a newly created matching veth is being attached.
    AutoAttach,
}

impl Moment {
    fn name(self) -> &'static str {
        match self {
            Self::Attach => "attach",
            Self::Steady => "steady",
            Self::AutoAttach => "auto-attach",
        }
    }
}

/// How long a run takes to attach everything at startup, and a new veth while running.
struct Timing {
    startup: Duration,
    one_iface: Duration,
}

/// One plain run: start, add a veth, SIGTERM. Measures the windows the signals aim into.
fn calibrate() -> Timing {
    let mut lab = Lab::new("cal");
    let started = Instant::now();
    let mut run = lab.launch();
    run.wait_ready();
    let startup = started.elapsed();
    let added = Instant::now();
    let dev = lab.add_veth();
    while lab.ours_on(&dev) < HOOKS_PER_IFACE {
        assert!(
            added.elapsed() < Duration::from_secs(5),
            "{dev} not attached"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let one_iface = added.elapsed();
    let done = run.stop(libc::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    Timing { startup, one_iface }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        _ => "?",
    }
}

fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed ({})", signal_name(sig)),
        _ => status.to_string(),
    }
}

/// One cell of the matrix, as printed.
struct Cell {
    signal: i32,
    moment: Moment,
    delay: Duration,
    /// BPF links the process held when signalled (each attachment is one).
    links: usize,
    ready: bool,
    exit: String,
    exit_after: Duration,
    leftovers: String,
    failure: Option<String>,
}

fn run_cell(tag: &str, signal: i32, moment: Moment, rng: &mut Rng, timing: &Timing) -> Cell {
    let mut lab = Lab::new(tag);
    let mut run = lab.launch();
    let mut traffic = None;
    let delay = match moment {
        Moment::Attach => {
            let d = rng.below(timing.startup);
            std::thread::sleep(d);
            d
        }
        Moment::Steady => {
            run.wait_ready();
            traffic = Some(Traffic::start(&lab.pair));
            let d = Duration::from_millis(200) + rng.below(Duration::from_millis(500));
            std::thread::sleep(d);
            d
        }
        Moment::AutoAttach => {
            run.wait_ready();
            let d = rng.below(timing.one_iface);
            lab.add_veth();
            std::thread::sleep(d);
            d
        }
    };
    let ready = run.is_ready();
    let held: Held = held_by(run.pid());
    // SAFETY: plain syscall; no memory is passed.
    unsafe { libc::kill(run.pid(), signal) };
    let signalled = Instant::now();
    let done: Finished = run.finish(Duration::from_secs(20));
    let exit_after = signalled.elapsed();
    drop(traffic);
    let mut failure = None;
    let mut fail = |why: String| {
        failure.get_or_insert(why);
    };
    // SIGINT and SIGTERM: a clean exit with a final summary. Only before the handlers exist (the
    // first instants) may the default action kill it, and then nothing can have been attached.
    match signal {
        libc::SIGKILL => {
            if done.status.signal() != Some(libc::SIGKILL) {
                fail(format!("expected death by SIGKILL: {}", done.status));
            }
        }
        _ if done.status.success() => {
            if !done
                .lines
                .iter()
                .any(|l| l["type"] == "summary" && l["final"] == true)
            {
                fail("no final summary".into());
            }
        }
        _ if done.status.signal() == Some(signal) && held.links.is_empty() => {}
        _ => fail(format!("{}: {}", done.status, done.stderr)),
    }
    if moment == Moment::Steady {
        // One link per interface and hook, and the kernel-drop program's tracepoint link.
        let expected = 3 * HOOKS_PER_IFACE + 1;
        if held.links.len() != expected {
            fail(format!(
                "at steady state every attachment (and the drop tracer) is a BPF link: {expected} expected, held {:?}",
                held.links
            ));
        }
    }
    // Nothing of ours left on any interface, theirs untouched, and every program, link and map
    // the process held freed by the kernel.
    let left = settle(Duration::from_secs(5), || {
        let mut complaints: Vec<String> = lab.changed().into_iter().collect();
        let loaded = still_loaded(&held);
        if !loaded.is_empty() {
            complaints.push(format!("still loaded: {}", loaded.join(", ")));
        }
        (!complaints.is_empty()).then(|| complaints.join("\n"))
    });
    let leftovers = match &left {
        None => "none".to_owned(),
        Some(_) => "LEFT".to_owned(),
    };
    if let Some(left) = left {
        fail(format!("left behind or touched:\n{left}"));
    }
    if !done.stderr.is_empty() && done.stderr.contains("error") {
        fail(format!("errors: {}", done.stderr));
    }
    Cell {
        signal,
        moment,
        delay,
        links: held.links.len(),
        ready,
        exit: exit_text(done.status),
        exit_after,
        leftovers,
        failure,
    }
}

/// SIGINT, SIGTERM and SIGKILL while attaching, at steady state with traffic, and while a new
/// interface is being attached: afterwards nothing of ours is on any interface (XDP, TCX, clsact
/// filters), every program, link and map the process held is freed, and another tool's TCX
/// program, `cls_bpf` filter and u32 filters are exactly as before.
#[test]
fn signals_at_any_moment_leave_nothing_behind() {
    root_only!();
    let mut rng = Rng::from_env();
    let seed = rng.0;
    let timing = calibrate();
    let mut cells = Vec::new();
    for (i, signal) in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL]
        .into_iter()
        .enumerate()
    {
        for (j, moment) in [Moment::Attach, Moment::Steady, Moment::AutoAttach]
            .into_iter()
            .enumerate()
        {
            cells.push(run_cell(
                &format!("sig{i}{j}"),
                signal,
                moment,
                &mut rng,
                &timing,
            ));
        }
    }
    let mut table = format!(
        "signal matrix (CSA_SEED={seed}; startup attach {:?}, one interface {:?}):\n\
         {:<8} {:<12} {:>9} {:>6} {:>6} {:<17} {:>10}  {}\n",
        timing.startup,
        timing.one_iface,
        "signal",
        "moment",
        "delay",
        "ready",
        "links",
        "exit",
        "exit after",
        "leftovers"
    );
    for c in &cells {
        let _ = writeln!(
            table,
            "{:<8} {:<12} {:>7}ms {:>6} {:>6} {:<17} {:>8}ms  {}",
            signal_name(c.signal),
            c.moment.name(),
            c.delay.as_millis(),
            if c.ready { "yes" } else { "no" },
            c.links,
            c.exit,
            c.exit_after.as_millis(),
            c.leftovers
        );
    }
    println!("{table}");
    let failures: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            c.failure
                .as_ref()
                .map(|f| format!("{} {}: {f}", signal_name(c.signal), c.moment.name()))
        })
        .collect();
    assert!(failures.is_empty(), "{table}\n{}", failures.join("\n\n"));
}

/// Five TCP frames with a corrupted checksum from veth-a.
fn send_bad_frames(ns: &NetNs) {
    let mut frames = Vec::new();
    for i in 0..5 {
        let mut f = v4_frame(&[], TCP, segment(TCP, 40 + i), &[]);
        let c = f.checksum;
        f.set_field(c ^ 0x1111);
        frames.push(f.bytes);
    }
    ns.run(move || send_raw_frames(VETH_A, &frames));
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn attachments(done: &Finished) -> serde_json::Value {
    done.final_summary()["attachments"].clone()
}

/// An audited interface is deleted, then one of the same name created: the first is detached,
/// reported and counted, the second attached (by its new index), and the auditor keeps auditing
/// the other interfaces without an error.
#[test]
fn interfaces_deleted_while_attached_are_detached_and_the_rest_keeps_working() {
    root_only!();
    let pair = VethPair::new("ifdel");
    add_veth(&pair.b, 0);
    let mut run = Running::start(
        &pair.b,
        &[
            "--iface",
            VETH_B,
            "--iface",
            "csx*",
            "--metrics-addr",
            "9466",
        ],
    );
    let ours = |iface: &str| hooks(&pair.b, iface).ours();
    assert_eq!(ours("csx0"), 2);
    pair.b.ip(&["link", "del", "csx0"]);
    let metrics = || http_get(&pair.b, "127.0.0.1:9466", "/metrics");
    wait_for(
        "the detach counted in the metrics",
        Duration::from_secs(5),
        || metrics().contains(r#"checksum_audit_detachments_total{reason="interface-deleted"} 2"#),
    );
    // A gone interface's series are dropped (the detach is counted above); the rest stay.
    let scrape = metrics();
    assert!(!scrape.contains(r#"iface="csx0""#), "{scrape}");
    assert!(
        scrape
            .contains(r#"checksum_audit_attached{iface="veth-b",hook="tc-ingress",mode="tcx"} 1"#),
        "{scrape}"
    );
    assert!(run.alive(), "the auditor survived the deletion");
    // Same name, new interface: attached again.
    add_veth(&pair.b, 0);
    wait_for("csx0 re-attached", Duration::from_secs(5), || {
        ours("csx0") == 2
    });
    send_bad_frames(&pair.a);
    std::thread::sleep(Duration::from_millis(300));
    assert!(run.alive());
    let done = run.stop(libc::SIGTERM);
    done.assert_clean();
    assert!(
        done.stderr
            .contains("checksum-audit: csx0 disappeared; detached"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("error"), "{}", done.stderr);
    assert!(!done.stderr.contains("warning"), "{}", done.stderr);
    let a = attachments(&done);
    assert_eq!(a["attached"], 6, "{a}");
    assert_eq!(a["detached_interface_gone"], 2, "{a}");
    assert_eq!(
        done.counter(VETH_B, "tc-ingress", &["mismatches", "corrupt"]),
        5
    );
    assert_eq!(
        done.verdicts()
            .iter()
            .filter(|v| v["iface"] == VETH_B && v["hook"] == "tc-ingress")
            .count(),
        5
    );
    assert_eq!(ours("csx0"), 0, "nothing left on the new csx0");
}

fn link_exists(ns: &NetNs, iface: &str) -> bool {
    Command::new("ip")
        .args(["-n", &ns.name, "link", "show", iface])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Two of three audited namespaces are deleted while audited: one by name (`ip netns del`), one
/// given as `pid:PID` whose process exits. The auditor lets go of both, so that the kernel frees
/// them (their veth peers in other namespaces disappear with them), reports and counts it, and
/// keeps auditing the third.
#[test]
fn namespaces_deleted_while_audited_are_let_go() {
    root_only!();
    let by_name = VethPair::new("nsdel1");
    let kept = VethPair::new("nsdel2");
    let by_pid = VethPair::new("nsdel3");
    // The only process in by_pid.a once its name is deleted.
    let mut holder = by_pid
        .a
        .exec()
        .args(["sleep", "600"])
        .spawn()
        .expect("sleep in a namespace");
    let pid_spec = format!("pid:{}", holder.id());
    // Once `sleep` runs in the namespace, /proc/PID/ns/net is no longer the host's.
    let host_ns = std::fs::metadata("/proc/self/ns/net").unwrap();
    wait_for("sleep inside the namespace", Duration::from_secs(5), || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{}/ns/net", holder.id()))
            .is_ok_and(|m| m.ino() != host_ns.ino())
    });
    let run = Running::start_with_netns(
        &kept.b.name,
        &[
            "--netns",
            &by_name.a.name,
            "--netns",
            &kept.b.name,
            "--netns",
            &pid_spec,
            "--iface",
            "veth-*",
        ],
    );
    let mut run = run;
    Command::new("ip")
        .args(["netns", "del", &by_name.a.name])
        .status()
        .unwrap();
    wait_for(
        "the namespace deleted by name freed (its veth peer gone)",
        Duration::from_secs(5),
        || !link_exists(&by_name.b, VETH_B),
    );
    Command::new("ip")
        .args(["netns", "del", &by_pid.a.name])
        .status()
        .unwrap();
    assert!(
        link_exists(&by_pid.b, VETH_B),
        "still held by the sleep process"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    wait_for(
        "the namespace of the exited process freed",
        Duration::from_secs(5),
        || !link_exists(&by_pid.b, VETH_B),
    );
    assert!(run.alive(), "the auditor survived");
    send_bad_frames(&kept.a);
    std::thread::sleep(Duration::from_millis(300));
    let done = run.stop(libc::SIGTERM);
    done.assert_clean();
    for label in [&by_name.a.name, &pid_spec] {
        assert!(
            done.stderr.contains(&format!(
                "network namespace {label} was deleted; detached its 2 programs"
            )),
            "{}",
            done.stderr
        );
    }
    assert!(!done.stderr.contains("error"), "{}", done.stderr);
    let a = attachments(&done);
    assert_eq!(a["attached"], 6, "{a}");
    assert_eq!(a["namespaces_gone"], 2, "{a}");
    assert_eq!(a["detached_namespace_gone"], 4, "{a}");
    let kept_if = format!("{}/{VETH_B}", kept.b.name);
    assert_eq!(
        done.counter(&kept_if, "tc-ingress", &["mismatches", "corrupt"]),
        5
    );
}
