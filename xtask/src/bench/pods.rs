//! `cargo xtask bench --attach`, the agent case (`--pods N`, default 100): a node with N pods,
//! audited by `checksum-audit agent` against a real API server. A node namespace holds etcd and
//! kube-apiserver (`checksum_testkit::kube`) and the host ends `bp0`.. of N veths, whose peers (`eth0`,
//! holding the pod's IP) are each in a pod namespace of their own with a `sleep` standing for
//! the pod's pause process; a Pod object per pod is on the node. Measured from the agent's
//! spawn: seconds until it is ready, until its API watches are synced and until every interface
//! is named to its pod; then its memory (user RSS and BPF kernel memory) and its exit on
//! SIGTERM. Checked: every `bpI` audited at both TC hooks and named `bench/pod-I` on /metrics.
//! Prints a table against the targets and writes bench/pods.json. A missed target is shown, not
//! failed on; a wrong result or an unclean exit fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs::{self, File},
    io::{BufRead as _, BufReader},
    panic::AssertUnwindSafe,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};
use checksum_testkit::{
    kube::{Binaries, ControlPlane, Pause},
    netns::NetNs,
};
use serde_json::{Value, json};

use super::harness::{
    Auditor, BpfObjects, MIB, POLL, PROGRESS_EVERY, TARGET_READY_S, TARGET_TOTAL_MIB, audited,
    check_interrupted, interrupted, verdict,
};
use crate::{
    sandbox::{ip_batch, rss_kib, scrape, status_kib},
    workspace::workspace_root,
};

/// The node the pods are on, as the agent is told (`--node-name`).
const NODE: &str = "csa-node";
/// The Kubernetes namespace of the pods `pod-0`..
const POD_NAMESPACE: &str = "bench";
/// Matches the host end of every pod's veth (`bp0`..), nothing else in the node namespace.
const PATTERN: &str = "bp*";
/// The agent's metrics, on the node namespace's loopback.
const METRICS_PORT: u16 = 9466;
/// The watches the agent syncs (pods, Services, Endpoints), one `api-synced` line each.
const WATCHES: usize = 3;
/// Once ready, how long the agent may take to sync its watches and name every interface.
const NAMED_TIMEOUT: Duration = Duration::from_secs(120);
/// The pod count the targets are set for.
const TARGET_PODS: u32 = 100;
/// All pods named within this many seconds of ready (ready and memory share `bench_attach`'s).
const TARGET_NAMED_S: f64 = 5.0;

pub fn run(bin: &Path, n: u32, max_wait: Duration) -> Result<()> {
    eprintln!("bench --attach: {n} pods on a node, audited by the agent");
    let bins = Binaries::find().map_err(|why| {
        anyhow!(
            "the agent case (--pods {n}) needs a control plane: {why}; scripts/k8s/build.sh \
             builds it, --pods 0 skips the case"
        )
    })?;
    let row = measure_catching_interrupts(bin, n, max_wait, bins)?;
    print_table(&row);
    write_json(&row)?;
    if !row.problems.is_empty() {
        let shown: Vec<&str> = row.problems.iter().take(5).map(String::as_str).collect();
        bail!(
            "the agent audited {} pods wrongly ({} problems): {}",
            n,
            row.problems.len(),
            shown.join("; ")
        );
    }
    if !row.clean_exit {
        bail!("the agent did not exit cleanly: {}", row.exit);
    }
    Ok(())
}

/// `measure`, where a test-kit step that panics because Ctrl-C stopped the processes it waits on
/// (etcd, the apiserver, curl get the terminal's SIGINT too) ends in "interrupted", as any other
/// step does, rather than in the panic and the apiserver's log. The guards clean up either way.
fn measure_catching_interrupts(
    bin: &Path,
    n: u32,
    max_wait: Duration,
    bins: Binaries,
) -> Result<Row> {
    let default_hook = std::sync::Arc::new(std::panic::take_hook());
    let hook = default_hook.clone();
    std::panic::set_hook(Box::new(move |info| {
        if !interrupted() {
            hook(info);
        }
    }));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| measure(bin, n, max_wait, bins)));
    std::panic::set_hook(Box::new(move |info| default_hook(info)));
    match result {
        Ok(row) => row,
        Err(_) if interrupted() => bail!("interrupted"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The whole case, from an empty node to nothing left: the guards (declared in the order they
/// must go, dropped in reverse: agent, pause processes, pod namespaces, control plane, node)
/// clean up on every path out, a panic of the test kit included.
fn measure(bin: &Path, n: u32, max_wait: Duration, bins: Binaries) -> Result<Row> {
    let node = NetNs::new("bench-node");
    eprintln!(
        "bench --attach: {n} pods: starting etcd and kube-apiserver in {}",
        node.name
    );
    let cp = ControlPlane::start(&node, bins);
    check_interrupted()?;
    cp.grant_agent_all();
    cp.create_node(NODE);
    cp.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": POD_NAMESPACE}}),
    );
    eprintln!("bench --attach: {n} pods: their namespaces, veths and Pod objects");
    let pods = pod_namespaces(&node, n)?;
    for i in 0..n {
        cp.create_pod(POD_NAMESPACE, &pod_name(i), NODE, &pod_ip(i));
        check_interrupted()?;
    }
    // Long enough for the whole measurement, short enough not to linger after a killed run.
    let lifetime = max_wait + NAMED_TIMEOUT + Duration::from_secs(120);
    let _pauses: Vec<Pause> = pods.iter().map(|ns| Pause::start(ns, lifetime)).collect();

    let mut agent = start_agent(bin, &node, &cp, n)?;
    let ready = agent.wait_ready(max_wait)?;
    let progress = match ready {
        Some(_) => wait_named(&mut agent, n)?,
        None => Progress::default(),
    };
    // Right after every pod is named (or at the timeout).
    let pid = agent.pid();
    let (rss, rss_peak) = (rss_kib(pid)? * 1024, status_kib(pid, "VmHWM")? * 1024);
    let bpf = BpfObjects::held_by(pid)?;
    let check = check(&node, n);
    let stopping = Instant::now();
    let (exit, clean_exit) = match agent.stop() {
        Ok(status) => (status.to_string(), status.success()),
        Err(e) => (format!("{e:#}"), false),
    };
    let stop_s = stopping.elapsed().as_secs_f64();
    agent.keep_logs(!clean_exit || !check.problems.is_empty());
    Ok(Row {
        n,
        ready,
        max_wait: max_wait.as_secs_f64(),
        progress,
        rss,
        rss_peak,
        bpf,
        attached: check.attached,
        named_right: check.named_right,
        problems: check.problems,
        exit,
        clean_exit,
        stop_s,
    })
}

fn iface(i: u32) -> String {
    format!("bp{i}")
}

fn pod_name(i: u32) -> String {
    format!("pod-{i}")
}

/// Pod I's address in 10.201.0.0/16: 200 a /24, from .10 up.
fn pod_ip(i: u32) -> String {
    format!("10.201.{}.{}", i / 200, i % 200 + 10)
}

/// N pod namespaces, each holding `eth0` (its IP, up) whose peer `bpI` is up in the node's:
/// the veths made by one `ip -batch` in the node namespace.
fn pod_namespaces(node: &NetNs, n: u32) -> Result<Vec<NetNs>> {
    let pods: Vec<NetNs> = (0..n).map(|i| NetNs::new(&format!("bp{i}"))).collect();
    let script = pods
        .iter()
        .zip(0..)
        .fold(String::new(), |mut script, (pod, i)| {
            let _ = writeln!(
                script,
                "link add {} up type veth peer name eth0 netns {}",
                iface(i),
                pod.name
            );
            script
        });
    ip_batch(node, &script).with_context(|| format!("creating {n} pod veths"))?;
    for (pod, i) in pods.iter().zip(0..) {
        ip_batch(
            pod,
            &format!("addr add {}/16 dev eth0\nlink set eth0 up\n", pod_ip(i)),
        )
        .with_context(|| format!("addressing pod {i}'s eth0"))?;
        check_interrupted()?;
    }
    Ok(pods)
}

/// `checksum-audit agent` in the node namespace, as the `DaemonSet` runs it (with a kubeconfig
/// instead of a service account), stdout to a file.
fn start_agent(bin: &Path, node: &NetNs, cp: &ControlPlane, n: u32) -> Result<Auditor> {
    let mut cmd = node.exec();
    cmd.arg(bin)
        .args(["agent", "--kubeconfig"])
        .arg(cp.kubeconfig("agent"))
        .args(["--node-name", NODE, "--iface", PATTERN])
        .args(["--hook", "tc-ingress", "--hook", "tc-egress"])
        .args(["--format", "json", "--interval", "1s"])
        .args(["--metrics-addr", &format!("127.0.0.1:{METRICS_PORT}")]);
    Auditor::spawn(cmd, format!("{n} pods"), n, &format!("bench-pods-{n}"))
}

/// Seconds from the agent's spawn until its watches were synced and every interface named, from
/// the `ts` of the lines that said so (the watches may sync before ready, while it attaches).
#[derive(Default)]
struct Progress {
    /// When the last of the `WATCHES` `api-synced` lines came.
    synced: Option<f64>,
    /// When the last of the N interfaces was named in an `interface-pod` line.
    named: Option<f64>,
    /// Interfaces named by then (N when `named` is set).
    named_ifaces: usize,
}

/// Follows the agent's lifecycle lines until its watches are synced and all N interfaces are
/// named, or `NAMED_TIMEOUT` passed.
fn wait_named(agent: &mut Auditor, n: u32) -> Result<Progress> {
    // The wall clock at the spawn, as the lines' `ts` count.
    let spawned = unix_micros(agent.spawned_at())?;
    let since_spawn = |line: &Value| -> Result<f64> {
        let ts = line["ts"].as_str().unwrap_or_default();
        let at =
            rfc3339_micros(ts).with_context(|| format!("a line without a valid ts: {line}"))?;
        Ok((at - spawned) as f64 / 1e6)
    };
    let mut lines = JsonLines::open(agent.stdout())?;
    let wanted: BTreeSet<String> = (0..n).map(iface).collect();
    let mut named = BTreeSet::new();
    let mut synced = 0;
    let mut progress = Progress::default();
    let started = Instant::now();
    let mut next_progress = PROGRESS_EVERY;
    while progress.synced.is_none() || progress.named.is_none() {
        for line in lines.read_new()? {
            if line["type"] != "lifecycle" {
                continue;
            }
            match line["event"].as_str() {
                Some("api-synced") => {
                    synced += 1;
                    if synced == WATCHES {
                        progress.synced = Some(since_spawn(&line)?);
                    }
                }
                Some("interface-pod") => {
                    if let Some(iface) = named_iface(&line).filter(|i| wanted.contains(*i)) {
                        named.insert(iface.to_owned());
                        if progress.named.is_none() && named.len() == wanted.len() {
                            progress.named = Some(since_spawn(&line)?);
                        }
                    }
                }
                _ => {}
            }
        }
        let since_ready = started.elapsed();
        if since_ready >= NAMED_TIMEOUT {
            eprintln!(
                "bench --attach: {n} pods: {synced} of {WATCHES} watches synced and {} of {n} \
                 interfaces named {} s after ready; recording that and stopping the agent",
                named.len(),
                NAMED_TIMEOUT.as_secs()
            );
            break;
        }
        if since_ready >= next_progress {
            eprintln!(
                "bench --attach: {n} pods: {synced} of {WATCHES} watches synced, {} of {n} \
                 interfaces named, {} s after ready",
                named.len(),
                since_ready.as_secs()
            );
            next_progress += PROGRESS_EVERY;
        }
        agent.check_running()?;
        check_interrupted()?;
        std::thread::sleep(POLL);
    }
    progress.named_ifaces = named.len();
    Ok(progress)
}

/// The interface an `interface-pod` line names: "IFACE is the interface of pod NS/POD (...)".
fn named_iface(line: &Value) -> Option<&str> {
    let message = line["message"].as_str()?;
    Some(message.split_once(" is the interface of pod ")?.0)
}

fn unix_micros(t: SystemTime) -> Result<i64> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH)?;
    Ok(i64::try_from(d.as_micros())?)
}

/// Unix microseconds of an RFC 3339 UTC time as the agent writes it
/// (`2026-11-26T10:46:40.123456Z`, `sys::clock::rfc3339`), days from the civil date by
/// H. Hinnant's algorithm.
fn rfc3339_micros(ts: &str) -> Option<i64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.splitn(3, ':').map(str::parse::<i64>);
    let (h, min, sec) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    // The fraction to six digits.
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60 + sec) * 1_000_000) + micros)
}

/// The agent's stdout file read as it grows, a complete line at a time.
struct JsonLines {
    file: BufReader<File>,
    partial: String,
}

impl JsonLines {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file: BufReader::new(file),
            partial: String::new(),
        })
    }

    /// The lines completed since the last call; a line still being written waits for the next.
    fn read_new(&mut self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        while self.file.read_line(&mut self.partial)? > 0 && self.partial.ends_with('\n') {
            let line = std::mem::take(&mut self.partial);
            out.push(
                serde_json::from_str(&line)
                    .with_context(|| format!("the agent's stdout is not JSON lines: {line}"))?,
            );
        }
        Ok(out)
    }
}

/// What the agent did to the pods, as the kernel and its metrics say.
struct Check {
    /// Interfaces `bpI` with both our programs on them.
    attached: usize,
    /// Interfaces named `bench/pod-I` on /metrics.
    named_right: usize,
    /// Every way it was wrong, one sentence each.
    problems: Vec<String>,
}

fn check(node: &NetNs, n: u32) -> Check {
    let mut problems = Vec::new();
    let names = match scrape(node, METRICS_PORT) {
        Ok(text) => interface_pods(&text),
        Err(e) => {
            problems.push(format!("/metrics: {e:#}"));
            BTreeMap::new()
        }
    };
    let (mut attached, mut named_right) = (0, 0);
    for i in 0..n {
        let iface = iface(i);
        if audited(node, &iface) {
            attached += 1;
        } else {
            problems.push(format!("{iface} is not audited at TC ingress and egress"));
        }
        let want = format!("{POD_NAMESPACE}/{}", pod_name(i));
        match names.get(&iface) {
            Some(pod) if *pod == want => named_right += 1,
            Some(pod) => problems.push(format!("{iface} is named {pod}, not {want}")),
            None => problems.push(format!("{iface} is named no pod (want {want})")),
        }
    }
    Check {
        attached,
        named_right,
        problems,
    }
}

/// Interface -> `namespace/pod` from the `checksum_audit_interface_pod` series.
fn interface_pods(metrics: &str) -> BTreeMap<String, String> {
    metrics
        .lines()
        .filter_map(|l| {
            let labels = l
                .strip_prefix("checksum_audit_interface_pod{")?
                .split_once('}')?
                .0;
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\"")?.strip_suffix('"'))
            };
            Some((
                label("iface")?.to_owned(),
                format!("{}/{}", label("namespace")?, label("pod")?),
            ))
        })
        .collect()
}

/// The case's results.
struct Row {
    n: u32,
    /// Seconds from spawn to ready; None when not ready within `max_wait`.
    ready: Option<f64>,
    max_wait: f64,
    progress: Progress,
    rss: u64,
    rss_peak: u64,
    bpf: BpfObjects,
    attached: usize,
    named_right: usize,
    problems: Vec<String>,
    exit: String,
    clean_exit: bool,
    /// Seconds from SIGTERM to its exit.
    stop_s: f64,
}

impl Row {
    fn total_mib(&self) -> f64 {
        self.bpf.total_mib(self.rss)
    }

    /// Seconds from ready until every interface was named.
    fn named_after_ready(&self) -> Option<f64> {
        Some(self.progress.named? - self.ready?)
    }

    /// PASS/over against the ready, naming and memory targets (set for `TARGET_PODS`); a figure
    /// that never came counts as infinite. Memory short of all named is a lower bound: it can be
    /// over, but cannot pass.
    fn verdicts(&self) -> [Option<&'static str>; 3] {
        if self.n != TARGET_PODS {
            return [None; 3];
        }
        let total = (self.progress.named.is_some() || self.total_mib() > TARGET_TOTAL_MIB)
            .then(|| verdict(self.total_mib(), TARGET_TOTAL_MIB));
        [
            Some(verdict(self.ready.unwrap_or(f64::INFINITY), TARGET_READY_S)),
            Some(verdict(
                self.named_after_ready().unwrap_or(f64::INFINITY),
                TARGET_NAMED_S,
            )),
            total,
        ]
    }

    fn json(&self) -> Value {
        let [ready_v, named_v, total_v] = self.verdicts();
        json!({
            "pods": self.n,
            "ready_s": self.ready,
            "max_wait_s": self.max_wait,
            "api_synced_s": self.progress.synced,
            "named_s": self.progress.named,
            "named_after_ready_s": self.named_after_ready(),
            "named_ifaces": self.progress.named_ifaces,
            "user_rss_mib": self.rss as f64 / MIB,
            "user_rss_peak_mib": self.rss_peak as f64 / MIB,
            "bpf_maps_mib": self.bpf.map_bytes() as f64 / MIB,
            "bpf_progs_mib": self.bpf.prog_bytes() as f64 / MIB,
            "bpf_mib": self.bpf.mib(),
            "total_mib": self.total_mib(),
            "programs": self.bpf.progs.len(),
            "maps": self.bpf.maps.len(),
            "links": self.bpf.links,
            "attached": self.attached,
            "named_right": self.named_right,
            "problems": self.problems,
            "exit": self.exit,
            "stop_s": self.stop_s,
            "targets": {
                "pods": TARGET_PODS,
                "ready_s": TARGET_READY_S,
                "named_after_ready_s": TARGET_NAMED_S,
                "total_mib": TARGET_TOTAL_MIB,
                "ready": ready_v,
                "named": named_v,
                "total": total_v,
            },
        })
    }
}

fn print_table(r: &Row) {
    println!(
        "{}",
        table_line([
            "pods",
            "ready s",
            "synced s",
            "named s (+ready)",
            "RSS MiB (peak)",
            "BPF MiB",
            "total MiB",
            "attached",
            "named",
            "ready",
            "named",
            "total",
        ])
    );
    let secs = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s:.2}"));
    let ready = r
        .ready
        .map_or(format!(">{:.0}", r.max_wait), |s| format!("{s:.2}"));
    let named = match (r.progress.named, r.named_after_ready()) {
        (Some(at), Some(after)) => format!("{at:.2} (+{after:.2})"),
        _ => "-".into(),
    };
    // Short of every pod named, the memory is what it held at the timeout.
    let partial = if r.progress.named.is_some() { "" } else { "*" };
    let [v_ready, v_named, v_total] = r.verdicts().map(|v| v.unwrap_or("-"));
    println!(
        "{}",
        table_line([
            &r.n.to_string(),
            &ready,
            &secs(r.progress.synced),
            &named,
            &format!(
                "{:.1} ({:.1}){partial}",
                r.rss as f64 / MIB,
                r.rss_peak as f64 / MIB
            ),
            &format!("{:.1}{partial}", r.bpf.mib()),
            &format!("{:.1}{partial}", r.total_mib()),
            &format!("{}/{}", r.attached, r.n),
            &format!("{}/{}", r.named_right, r.n),
            v_ready,
            v_named,
            v_total,
        ])
    );
    println!(
        "targets at {TARGET_PODS} pods: ready <= {TARGET_READY_S} s; every pod named <= \
         {TARGET_NAMED_S} s after ready; total <= {TARGET_TOTAL_MIB} MiB. Exit on SIGTERM: {} \
         after {:.2} s",
        r.exit, r.stop_s
    );
    if partial == "*" {
        println!("* not every pod named: memory as held at that point (a lower bound)");
    }
}

/// One line of the table: nine figures right-aligned, then the three verdicts.
fn table_line(c: [&str; 12]) -> String {
    format!(
        "{:>5} {:>8} {:>9} {:>17} {:>15} {:>8} {:>9} {:>9} {:>9}  {:<6} {:<6} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
    )
}

fn write_json(row: &Row) -> Result<()> {
    let dir = workspace_root().join("bench");
    fs::create_dir_all(&dir)?;
    fs::write(
        dir.join("pods.json"),
        serde_json::to_string_pretty(&row.json())? + "\n",
    )
    .context("writing bench/pods.json")?;
    println!("wrote bench/pods.json");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_micros_inverts_the_agents_timestamps() {
        for ns in [
            0,
            951_782_400_000_000_000,
            1_795_690_000_123_456_789,
            4_107_542_399_999_999_000,
        ] {
            let ts = checksum_user::sys::clock::rfc3339(ns);
            assert_eq!(
                rfc3339_micros(&ts),
                Some(i64::try_from(ns / 1000).unwrap()),
                "{ts}"
            );
        }
        assert_eq!(
            rfc3339_micros("2026-11-26T10:46:40Z"),
            Some(1_795_690_000_000_000)
        );
        assert_eq!(rfc3339_micros("yesterday"), None);
    }

    #[test]
    fn interface_pods_from_the_metrics() {
        let text = "# TYPE checksum_audit_interface_pod gauge\n\
                    checksum_audit_interface_pod{iface=\"bp0\",namespace=\"bench\",pod=\"pod-0\"} 1\n\
                    checksum_audit_kube_pods 100\n";
        assert_eq!(
            interface_pods(text),
            BTreeMap::from([("bp0".to_owned(), "bench/pod-0".to_owned())])
        );
    }
}
