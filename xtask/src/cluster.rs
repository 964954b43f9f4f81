//! The cluster test (`cargo xtask cluster`, and a step of `./x test`): a real single-node
//! Kubernetes v1.20.2 (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, dockerd and
//! the kubelet; scripts/k8s/node.sh) inside a network namespace of its own with only `lo` and two
//! test-made veths up, and no route out. It loads the image, checks the plain manifest with
//! `kubectl apply --dry-run=server`, installs the chart, waits for `rollout status`, asserts the
//! agent pod is Running with exactly the capabilities asked for, its programs attached to the
//! veths, its metrics served, and bad UDP checksums sent between the veths counted there and logged
//! as JSON in the pod's log; that a pod with its own network (a CNI bridge in the namespace) is
//! audited on its veth as it comes and detached as it goes; then deletes the `DaemonSet` and asserts nothing stays attached,
//! and tears the cluster down: no process left in the namespace, the namespace, its cgroups and
//! every mount gone. Everything is removed on failure too.
//!
//! The node runs Docker 20.10, which does not know `CAP_BPF` or `CAP_PERFMON`: the chart is
//! installed with deploy/helm/checksum-audit/ci/docker-20.10-values.yaml, which swaps those two
//! for `CAP_SYS_ADMIN` (accepted by the kernel in place of both). Production values keep them.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_user::testkit::netns::NetNs;

use crate::{image::remove_tree, workspace_root};

const BIN: &str = "/var/cache/checksum-audit/k8s/v1.20.2/bin";
const HELM: &str = "/var/cache/checksum-audit/tools/bin/helm";
/// The test's veths inside the node namespace: the node's address is on the first, and the agent
/// (`--all-interfaces`) audits both.
const VETHS: [&str; 2] = ["csa-v0", "csa-v1"];
const NODE_IP: &str = "10.199.9.1";
/// The CNI bridge of pods without hostNetwork (node.sh), and their subnet.
const BRIDGE: &str = "csa-br0";
const POD_PREFIX: &str = "10.199.10.";
const NAMESPACE: &str = "kube-system";
const SELECTOR: &str = "app.kubernetes.io/name=checksum-audit";
const METRICS_PORT: u16 = 9465;
/// `CapEff` of the agent under the Docker 20.10 override: `CAP_NET_ADMIN` (12), `CAP_SYS_PTRACE`
/// (19) and `CAP_SYS_ADMIN` (21), nothing else.
const EXPECTED_CAP_EFF: u64 = (1 << 12) | (1 << 19) | (1 << 21);

pub fn run() -> Result<()> {
    crate::require_root("cluster")?;
    sweep_stale();
    let started = Instant::now();
    // Cold: builds the cluster binaries once (minutes); warm: checks they are there (a second).
    crate::run(Command::new("bash").args(["scripts/k8s/build.sh"]))?;
    let built = started.elapsed();
    let archive = crate::image::build()?;
    let imaged = started.elapsed();
    let mut cluster = Cluster::start()?;
    let up = started.elapsed();
    let exercised = cluster.exercise(&archive);
    if exercised.is_err() {
        cluster.diagnose();
    }
    let stopped = cluster.stop();
    eprintln!(
        "xtask: cluster test took {:.0} s: binaries {:.0} s, image {:.0} s, cluster up {:.0} s, \
         chart and checks {:.0} s",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        imaged.as_secs_f64() - built.as_secs_f64(),
        up.as_secs_f64() - imaged.as_secs_f64(),
        started.elapsed().as_secs_f64() - up.as_secs_f64(),
    );
    exercised.and(stopped)
}

struct Cluster {
    ns: Option<NetNs>,
    name: String,
    dir: PathBuf,
    supervisor: Option<Child>,
}

impl Cluster {
    fn start() -> Result<Self> {
        let ns = NetNs::new("k8s");
        let name = ns.name.clone();
        let dir = PathBuf::from("/var/tmp").join(&name);
        let mut cluster = Self {
            ns: Some(ns),
            name,
            dir,
            supervisor: None,
        };
        // On failure the cluster is dropped here, which tears down whatever was started.
        cluster.boot()?;
        Ok(cluster)
    }

    fn ns(&self) -> &NetNs {
        self.ns.as_ref().expect("namespace present until stop")
    }

    fn boot(&mut self) -> Result<()> {
        let ns = self.ns();
        ns.ip(&[
            "link", "add", VETHS[0], "type", "veth", "peer", "name", VETHS[1],
        ]);
        ns.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", VETHS[0]]);
        ns.ip(&["addr", "add", "10.199.9.2/24", "dev", VETHS[1]]);
        for veth in VETHS {
            ns.ip(&["link", "set", veth, "up"]);
        }
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::File::create(self.dir.join("node.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.name))
            .args(["unshare", "--mount", "--propagation", "slave", "bash"])
            .arg(workspace_root().join("scripts/k8s/node.sh"))
            .arg(&self.dir)
            .env("NODE_IP", NODE_IP)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting scripts/k8s/node.sh")?;
        self.supervisor = Some(child);
        let started = Instant::now();
        while !self.dir.join("ready").exists() {
            if let Some(status) = self
                .supervisor
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "scripts/k8s/node.sh exited ({status}): {}",
                    self.tail("node.log")
                );
            }
            if started.elapsed() > Duration::from_secs(180) {
                bail!(
                    "the control plane did not come up in 180 s: {}",
                    self.tail("node.log")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let jsonpath = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        self.poll("node csa-node Ready", Duration::from_secs(120), || {
            Ok(self
                .kubectl(&["get", "node", "csa-node", "-o", jsonpath])
                .is_ok_and(|s| s == "True"))
        })?;
        eprintln!(
            "xtask: cluster up: node csa-node Ready after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn tail(&self, log: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A command run inside the node's network namespace.
    fn in_ns(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    fn output(mut cmd: Command) -> Result<String> {
        let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.in_ns(&format!("{BIN}/kubectl"));
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("admin.kubeconfig"))
            .args(args);
        Self::output(cmd)
    }

    fn helm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.in_ns(HELM);
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("admin.kubeconfig"))
            .args(args);
        Self::output(cmd)
    }

    fn poll(
        &self,
        what: &str,
        limit: Duration,
        mut ok: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            if ok()? {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!(
                    "{what}: not within {} s; kubelet: {}",
                    limit.as_secs(),
                    self.tail("logs/kubelet.log")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn exercise(&self, archive: &Path) -> Result<()> {
        let root = workspace_root();
        let chart = root.join("deploy/helm/checksum-audit");
        let socket = format!("unix://{}/docker.sock", self.dir.display());
        Self::output({
            let mut c = Command::new("docker");
            c.args(["-H", &socket, "load", "-i"]).arg(archive);
            c
        })?;
        let manifest = root.join("deploy/checksum-audit.yaml");
        let dry_run = self.kubectl(&[
            "apply",
            "--dry-run=server",
            "-f",
            manifest.to_str().expect("UTF-8 path"),
        ])?;
        eprintln!(
            "xtask: kubectl apply --dry-run=server -f deploy/checksum-audit.yaml:\n{dry_run}"
        );
        let values = |name: &str| chart.join("ci").join(name).display().to_string();
        self.helm(&[
            "install",
            "checksum-audit",
            chart.to_str().expect("UTF-8 path"),
            "--namespace",
            NAMESPACE,
            "--values",
            &values("docker-20.10-values.yaml"),
            "--values",
            &values("test-cluster-values.yaml"),
        ])?;
        let rollout = self.kubectl(&[
            "rollout",
            "status",
            "daemonset/checksum-audit",
            "--namespace",
            NAMESPACE,
            "--timeout=120s",
        ])?;
        eprintln!("xtask: {rollout}");
        let pods = self.kubectl(&["get", "pods", "-n", NAMESPACE, "-l", SELECTOR, "-o", "wide"])?;
        eprintln!("xtask: {pods}");
        let phase = self.kubectl(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            SELECTOR,
            "-o",
            "jsonpath={.items[*].status.phase} {.items[*].status.containerStatuses[*].ready}",
        ])?;
        if phase != "Running true" {
            bail!("the agent pod is not Running and ready: {phase:?}\n{pods}");
        }
        self.check_agent_process()?;
        self.check_service_account()?;
        self.poll("programs attached", Duration::from_secs(20), || {
            Ok(VETHS.iter().all(|v| {
                let progs = self.ns().tcx_programs(v);
                progs.contains(&"ingress:csum_tc_ingress".to_owned())
                    && progs.contains(&"egress:csum_tc_egress".to_owned())
            }))
        })?;
        for veth in VETHS {
            eprintln!("xtask: {veth}: {:?}", self.ns().tcx_programs(veth));
        }
        self.check_metrics()?;
        self.check_audit()?;
        self.check_pod_network()?;

        // Deleting the `DaemonSet` stops the agent, and with it every program it attached.
        self.kubectl(&["delete", "daemonset", "checksum-audit", "-n", NAMESPACE])?;
        self.poll("agent pod deleted", Duration::from_secs(90), || {
            Ok(self
                .kubectl(&["get", "pods", "-n", NAMESPACE, "-l", SELECTOR, "-o", "name"])?
                .is_empty()
                && self.agent_pids().is_empty())
        })?;
        self.poll("programs detached", Duration::from_secs(20), || {
            Ok(VETHS
                .iter()
                .chain(&[BRIDGE])
                .all(|v| self.ns().tcx_programs(v).is_empty()))
        })?;
        eprintln!(
            "xtask: DaemonSet deleted: no agent process, nothing attached to {VETHS:?} and {BRIDGE}"
        );
        self.helm(&["uninstall", "checksum-audit", "--namespace", NAMESPACE])?;
        Ok(())
    }

    /// What a failed step needs to be understood: pods and their states, the cluster's events.
    fn diagnose(&self) {
        for args in [
            &["get", "pods", "-A", "-o", "wide"][..],
            &["get", "events", "-A", "--sort-by=.lastTimestamp"][..],
        ] {
            match self.kubectl(args) {
                Ok(out) => eprintln!("xtask: kubectl {}:\n{out}", args.join(" ")),
                Err(e) => eprintln!("xtask: kubectl {}: {e:#}", args.join(" ")),
            }
        }
        eprintln!(
            "xtask: kubelet log (last lines):\n{}",
            self.tail("logs/kubelet.log")
        );
    }

    /// Processes named checksum-audit in the node namespace (the agent's container).
    fn agent_pids(&self) -> Vec<u32> {
        namespace_processes(&self.name)
            .into_iter()
            .filter(|(_, comm)| comm == "checksum-audit")
            .map(|(pid, _)| pid)
            .collect()
    }

    fn check_agent_process(&self) -> Result<()> {
        let pids = self.agent_pids();
        let [pid] = pids[..] else {
            bail!("expected one checksum-audit process in the node namespace, found {pids:?}");
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let cap_eff = u64::from_str_radix(&field("CapEff:"), 16)?;
        eprintln!(
            "xtask: agent pid {pid}: uid {}, CapEff {cap_eff:#x} (NET_ADMIN, SYS_PTRACE, SYS_ADMIN), \
             NoNewPrivs {}",
            field("Uid:"),
            field("NoNewPrivs:")
        );
        if cap_eff != EXPECTED_CAP_EFF {
            bail!("agent CapEff {cap_eff:#x}, expected {EXPECTED_CAP_EFF:#x}");
        }
        if field("NoNewPrivs:") != "1" {
            bail!("allowPrivilegeEscalation: false did not set no_new_privs");
        }
        Ok(())
    }

    /// An HTTP GET of the agent's metrics port, from inside the node namespace.
    fn scrape(&self, path: &'static str) -> Result<String> {
        let response = self.ns().run(move || -> std::io::Result<String> {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect((NODE_IP, METRICS_PORT))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            s.read_to_string(&mut response)?;
            Ok(response)
        })?;
        Ok(response)
    }

    /// The agent's in-cluster credentials work and grant what the `ClusterRole` says, no more: its
    /// mounted service-account token authenticates to the apiserver (which the future agent
    /// subcommand needs), and `auth can-i` answers yes to every rule and no beyond them.
    fn check_service_account(&self) -> Result<()> {
        let [pid] = self.agent_pids()[..] else {
            bail!("no single agent process");
        };
        let secrets = format!("/proc/{pid}/root/var/run/secrets/kubernetes.io/serviceaccount");
        let token = std::fs::read_to_string(format!("{secrets}/token"))
            .with_context(|| format!("the agent's service-account token in {secrets}"))?;
        let whoami = self.kubectl(&[
            &format!("--token={}", token.trim()),
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            SELECTOR,
            "-o",
            "name",
        ])?;
        if whoami.is_empty() {
            bail!("the agent's token lists no agent pod");
        }
        let user = format!("--as=system:serviceaccount:{NAMESPACE}:checksum-audit");
        let mut allowed = Vec::new();
        for (verb, resource, want) in [
            ("list", "pods", "yes"),
            ("watch", "services", "yes"),
            ("get", "endpoints", "yes"),
            ("list", "endpointslices.discovery.k8s.io", "yes"),
            ("get", "nodes", "yes"),
            ("create", "events", "yes"),
            ("patch", "events", "yes"),
            ("delete", "pods", "no"),
            ("get", "secrets", "no"),
            ("update", "nodes", "no"),
        ] {
            // `auth can-i` exits 1 for "no"; its answer is on stdout either way.
            let mut cmd = self.in_ns(&format!("{BIN}/kubectl"));
            cmd.arg("--kubeconfig")
                .arg(self.dir.join("admin.kubeconfig"))
                .args(["auth", "can-i", verb, resource, &user]);
            let out = cmd.output()?;
            let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if answer != want {
                bail!("the agent may {verb} {resource}: {answer:?}, expected {want:?}");
            }
            allowed.push(format!("{verb} {resource}: {answer}"));
        }
        eprintln!(
            "xtask: the agent's token authenticates; RBAC: {}",
            allowed.join(", ")
        );
        Ok(())
    }

    fn check_metrics(&self) -> Result<()> {
        let get = |path| self.scrape(path);
        let readyz = get("/readyz")?;
        if !readyz.starts_with("HTTP/1.1 200") {
            bail!("/readyz: {readyz}");
        }
        let metrics = get("/metrics")?;
        let attached: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("checksum_audit_attached{"))
            .collect();
        eprintln!(
            "xtask: scraped http://{NODE_IP}:{METRICS_PORT}/metrics in the node namespace:\n{}",
            attached.join("\n")
        );
        for veth in VETHS {
            for hook in ["tc-ingress", "tc-egress"] {
                let series = format!(
                    "checksum_audit_attached{{iface=\"{veth}\",hook=\"{hook}\",mode=\"tcx\"}} 1"
                );
                if !attached.contains(&series.as_str()) {
                    bail!("{series} missing from /metrics:\n{metrics}");
                }
            }
        }
        Ok(())
    }

    /// Bad UDP checksums sent from one veth to the other are counted at the receiver's ingress
    /// (metrics) and logged as JSON on the pod's stdout (the kubelet's pod log).
    fn check_audit(&self) -> Result<()> {
        use checksum_user::testkit::{
            frames::{UDP, segment, v4_frame},
            netns::send_raw_frames,
        };
        const SENT: u64 = 3;
        let mut frame = v4_frame(&[], UDP, segment(UDP, 64), &[]);
        let want = frame.checksum;
        frame.set_field(want ^ 0x1111);
        let frames = vec![frame.bytes; usize::try_from(SENT).expect("small")];
        self.ns().run(move || send_raw_frames(VETHS[0], &frames));
        let prefix = format!(
            "checksum_audit_mismatches_total{{iface=\"{}\",hook=\"tc-ingress\",layer=\"udp\",kind=\"corrupt\"}} ",
            VETHS[1]
        );
        let mut seen = String::new();
        self.poll(
            "mismatches counted in /metrics",
            Duration::from_secs(10),
            || {
                let metrics = self.scrape("/metrics")?;
                seen.clear();
                seen.push_str(
                    metrics
                        .lines()
                        .find(|l| l.starts_with(&prefix))
                        .unwrap_or_default(),
                );
                Ok(seen
                    .strip_prefix(&prefix)
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .is_some_and(|v| v >= 3.0))
            },
        )?;
        eprintln!(
            "xtask: after {SENT} bad UDP checksums {} -> {}: {seen}",
            VETHS[0], VETHS[1]
        );
        let mut line = String::new();
        self.poll(
            "the mismatch in the pod's JSON log",
            Duration::from_secs(10),
            || {
                line = self
                    .pod_log_objects()
                    .into_iter()
                    .find(|o| {
                        o["iface"] == VETHS[1] && o["layer"] == "udp" && o["kind"] == "corrupt"
                    })
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                Ok(!line.is_empty())
            },
        )?;
        eprintln!("xtask: pod log: {line}");
        Ok(())
    }

    /// A pod with a network of its own (CNI bridge): it gets an address of the pod subnet, the agent
    /// attaches to its host-side veth as it appears, and detaches when the pod is deleted.
    fn check_pod_network(&self) -> Result<()> {
        let pod = ["--namespace", "default", "csa-pod"];
        self.kubectl(&[
            "run",
            pod[2],
            pod[0],
            pod[1],
            "--image=csa-pause:1",
            "--image-pull-policy=Never",
            "--restart=Never",
        ])?;
        let created = Instant::now();
        let mut ip = String::new();
        self.poll("the pod Running", Duration::from_secs(60), || {
            let out = self.kubectl(&[
                "get",
                "pod",
                pod[2],
                pod[0],
                pod[1],
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ])?;
            out.strip_prefix("Running ")
                .unwrap_or_default()
                .clone_into(&mut ip);
            Ok(!ip.is_empty())
        })?;
        if !ip.starts_with(POD_PREFIX) {
            bail!("pod IP {ip} is not in {POD_PREFIX}0/24");
        }
        let veths = Self::output({
            let mut c = Command::new("ip");
            c.args(["-n", &self.name, "-o", "link", "show", "master", BRIDGE]);
            c
        })?;
        let Some(veth) = veths
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .next()
        else {
            bail!("no veth on {BRIDGE}: {veths:?}");
        };
        let series = |hook: &str| {
            format!("checksum_audit_attached{{iface=\"{veth}\",hook=\"{hook}\",mode=\"tcx\"}} 1")
        };
        let running = created.elapsed();
        self.poll("the pod's veth audited", Duration::from_secs(10), || {
            let metrics = self.scrape("/metrics")?;
            Ok(metrics.contains(&series("tc-ingress")) && metrics.contains(&series("tc-egress")))
        })?;
        eprintln!(
            "xtask: pod default/csa-pod ({ip}) Running after {:.1} s; its veth {veth} audited at \
             both hooks {:.1} s later",
            running.as_secs_f64(),
            (created.elapsed().as_secs_f64() - running.as_secs_f64())
        );
        let deleted = Instant::now();
        self.kubectl(&["delete", "pod", pod[2], pod[0], pod[1], "--grace-period=1"])?;
        self.poll("the pod's veth detached", Duration::from_secs(60), || {
            let metrics = self.scrape("/metrics")?;
            Ok(!metrics.contains(&format!("iface=\"{veth}\"")))
        })?;
        eprintln!(
            "xtask: pod deleted: {veth} detached and gone from the metrics {:.1} s after \
             `kubectl delete pod`",
            deleted.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The JSON objects the agent wrote to stdout, from the kubelet's pod logs (docker's
    /// json-file lines, one `log` string each).
    fn pod_log_objects(&self) -> Vec<serde_json::Value> {
        let mut objects = Vec::new();
        let Ok(pods) = std::fs::read_dir(self.dir.join("varlog/pods")) else {
            return objects;
        };
        for pod in pods.flatten() {
            let Ok(text) = std::fs::read_to_string(pod.path().join("checksum-audit/0.log")) else {
                continue;
            };
            for record in text.lines() {
                let Ok(record) = serde_json::from_str::<serde_json::Value>(record) else {
                    continue;
                };
                if record["stream"] != "stdout" {
                    continue;
                }
                if let Some(Ok(object)) = record["log"].as_str().map(serde_json::from_str) {
                    objects.push(object);
                }
            }
        }
        objects
    }

    /// Stops the node (containers first), then removes the namespace, the cgroups and the state
    /// directory; fails if anything had to be killed or is still there. Idempotent.
    fn stop(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        if let Some(mut child) = self.supervisor.take() {
            // SAFETY: kill(2) on our own child's pid; no memory is passed.
            unsafe {
                libc::kill(
                    libc::pid_t::try_from(child.id()).expect("pid fits"),
                    libc::SIGTERM,
                );
            }
            let started = Instant::now();
            while child.try_wait()?.is_none() {
                if started.elapsed() > Duration::from_secs(90) {
                    problems.push("node.sh did not stop in 90 s".to_owned());
                    child.kill().ok();
                    child.wait().ok();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let Some(ns) = self.ns.take() else {
            return Ok(());
        };
        let left = kill_namespace_processes(&self.name);
        if !left.is_empty() {
            problems.push(format!("processes still running, killed: {left:?}"));
        }
        drop(ns);
        remove_cgroups(&self.name);
        remove_tree(&self.dir);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let stale: Vec<&str> = mounts.lines().filter(|l| l.contains(&self.name)).collect();
        if !stale.is_empty() {
            problems.push(format!("mounts left: {stale:?}"));
        }
        if Path::new("/run/netns").join(&self.name).exists() {
            problems.push(format!("namespace {} left", self.name));
        }
        if !problems.is_empty() {
            bail!("cluster teardown: {}", problems.join("; "));
        }
        eprintln!(
            "xtask: cluster torn down: no process left, namespace {} and {} removed",
            self.name,
            self.dir.display()
        );
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("xtask: {e:#}");
        }
    }
}

/// Clusters and image builds left by an xtask that was killed (Ctrl-C, SIGKILL) before it could
/// tear them down: `csa-k8s-PID-N` and `csa-image-PID-N` namespaces whose PID is gone. Those of
/// a live xtask (another run at the same time) are left alone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("csa-k8s-")
            .or_else(|| name.strip_prefix("csa-image-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let killed = kill_namespace_processes(&name);
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        remove_cgroups(&name);
        remove_tree(&Path::new("/var/tmp").join(&name));
        eprintln!("xtask: removed the stale {name} of an earlier run (killed {killed:?})");
    }
}

/// (pid, comm) of every process whose network namespace is /run/netns/NAME.
fn namespace_processes(name: &str) -> Vec<(u32, String)> {
    let Ok(target) = std::fs::metadata(format!("/run/netns/{name}")) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
            (ns.ino() == target.ino() && ns.dev() == target.dev()).then(|| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, comm.trim().to_owned())
            })
        })
        .collect()
}

/// SIGKILLs every process in the namespace and returns what it found ("comm[pid]").
pub fn kill_namespace_processes(name: &str) -> Vec<String> {
    let found = namespace_processes(name);
    for (pid, _) in &found {
        if let Ok(pid) = libc::pid_t::try_from(*pid) {
            // SAFETY: kill(2) with a pid read from /proc; no memory is passed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if !found.is_empty() {
        // Give the kernel a moment to reap them before the namespace is deleted.
        std::thread::sleep(Duration::from_millis(500));
    }
    found
        .into_iter()
        .map(|(pid, comm)| format!("{comm}[{pid}]"))
        .collect()
}

/// The cgroups dockerd made for the cluster's containers (`--cgroup-parent=/NAME`), in every
/// hierarchy, children first.
pub fn remove_cgroups(name: &str) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
        }
        std::fs::remove_dir(dir).ok();
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path().join(name);
        if dir.is_dir() {
            remove(&dir);
        }
    }
}
