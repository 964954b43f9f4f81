//! The node of the cluster test: scripts/k8s/node.sh supervised inside a network namespace of its
//! own, the tools run against it (kubectl, helm, its dockerd), what its agent logs and serves,
//! and its teardown, also of what an earlier, killed run left.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::netns::NetNs;

use crate::{
    sandbox::{kill_namespace_processes, namespace_processes, remove_cgroups, remove_tree},
    workspace::workspace_root,
};

const BIN: &str = "/var/cache/checksum-audit/k8s/v1.20.2/bin";
const HELM: &str = "/var/cache/checksum-audit/tools/bin/helm";
/// The test's veths inside the node namespace: the node's address is on the first, and the agent
/// (`--all-interfaces`) audits both.
pub(super) const VETHS: [&str; 2] = ["csa-v0", "csa-v1"];
pub(super) const NODE_IP: &str = "10.199.9.1";
/// The CNI bridge of pods without hostNetwork (node.sh), and their subnet.
pub(super) const BRIDGE: &str = "csa-br0";
const POD_PREFIX: &str = "10.199.10.";
pub(super) const NAMESPACE: &str = "kube-system";
pub(super) const SELECTOR: &str = "app.kubernetes.io/name=checksum-audit";
pub(super) const METRICS_PORT: u16 = 9465;

pub(super) struct Cluster {
    ns: Option<NetNs>,
    /// The namespace's name, also that of the state directory and of the containers' cgroups.
    pub(super) name: String,
    /// The state directory node.sh keeps everything in (kubeconfigs, logs, the ready file).
    pub(super) dir: PathBuf,
    supervisor: Option<Child>,
}

impl Cluster {
    pub(super) fn start() -> Result<Self> {
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

    pub(super) fn ns(&self) -> &NetNs {
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

    pub(super) fn tail(&self, log: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A command run inside the node's network namespace.
    pub(super) fn in_ns(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    pub(super) fn output(mut cmd: Command) -> Result<String> {
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

    pub(super) fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.in_ns(&format!("{BIN}/kubectl"));
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("admin.kubeconfig"))
            .args(args);
        Self::output(cmd)
    }

    /// The node's dockerd (its socket in the state directory), from the host.
    pub(super) fn docker(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("docker");
        cmd.args(["-H", &format!("unix://{}/docker.sock", self.dir.display())])
            .args(args);
        Self::output(cmd)
    }

    /// `kubectl auth can-i VERB RESOURCE` for the agent's service account: "yes" or "no".
    pub(super) fn agent_can_i(&self, verb: &str, resource: &str) -> Result<String> {
        // `auth can-i` exits 1 for "no"; its answer is on stdout either way.
        let mut cmd = self.in_ns(&format!("{BIN}/kubectl"));
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("admin.kubeconfig"))
            .args(["auth", "can-i", verb, resource])
            .arg(format!(
                "--as=system:serviceaccount:{NAMESPACE}:checksum-audit"
            ));
        Ok(String::from_utf8_lossy(&cmd.output()?.stdout)
            .trim()
            .to_owned())
    }

    pub(super) fn helm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.in_ns(HELM);
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("admin.kubeconfig"))
            .args(args);
        Self::output(cmd)
    }

    pub(super) fn poll(
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

    /// What a failed step needs to be understood: pods and their states, the cluster's events.
    pub(super) fn diagnose(&self) {
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
        let objects = self.pod_log_objects();
        let last: Vec<String> = objects[objects.len().saturating_sub(15)..]
            .iter()
            .map(|o| o.to_string().chars().take(400).collect())
            .collect();
        eprintln!(
            "xtask: the agent's log (last objects):\n{}",
            last.join("\n")
        );
        if let Ok(metrics) = self.scrape("/metrics") {
            // Series with a value, of interfaces and pods (not the many zeros).
            let counted: Vec<&str> = metrics
                .lines()
                .filter(|l| {
                    (l.contains("iface=\"") || l.contains("pod=\""))
                        && !l.ends_with(" 0")
                        && !l.starts_with("checksum_audit_attached")
                })
                .collect();
            eprintln!("xtask: /metrics (non-zero):\n{}", counted.join("\n"));
        }
        for args in [&["route"][..], &["-s", "link"][..]] {
            let mut c = Command::new("ip");
            c.args(["-n", &self.name]).args(args);
            match Self::output(c) {
                Ok(out) => eprintln!("xtask: ip {}:\n{out}", args.join(" ")),
                Err(e) => eprintln!("xtask: ip {}: {e:#}", args.join(" ")),
            }
        }
    }

    /// Processes named checksum-audit in the node namespace (the agent's container).
    pub(super) fn agent_pids(&self) -> Vec<u32> {
        namespace_processes(&self.name)
            .into_iter()
            .filter(|(_, comm)| comm == "checksum-audit")
            .map(|(pid, _)| pid)
            .collect()
    }

    /// An HTTP GET of the agent's metrics port, from inside the node namespace.
    pub(super) fn scrape(&self, path: &'static str) -> Result<String> {
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

    /// The first JSON object of the agent's log that `matches`, waited for.
    pub(super) fn wait_log(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let mut found = None;
        self.poll(what, Duration::from_secs(20), || {
            found = self.pod_log_objects().into_iter().find(|o| matches(o));
            Ok(found.is_some())
        })?;
        Ok(found.expect("polled until found"))
    }

    /// The IP of pod `default/NAME` once it is Running.
    pub(super) fn pod_ip(&self, name: &str) -> Result<String> {
        let mut ip = String::new();
        self.poll(
            &format!("pod default/{name} Running"),
            Duration::from_secs(60),
            || {
                let out = self.kubectl(&[
                    "get",
                    "pod",
                    name,
                    "-n",
                    "default",
                    "-o",
                    "jsonpath={.status.phase} {.status.podIP}",
                ])?;
                out.strip_prefix("Running ")
                    .unwrap_or_default()
                    .clone_into(&mut ip);
                Ok(!ip.is_empty())
            },
        )?;
        if !ip.starts_with(POD_PREFIX) {
            bail!("pod IP {ip} is not in {POD_PREFIX}0/24");
        }
        Ok(ip)
    }

    /// The pid of pod `default/NAME`'s sandbox (pause) process, which holds its network namespace.
    pub(super) fn sandbox_pid(&self, name: &str) -> Result<u32> {
        let id = self.docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=io.kubernetes.pod.name={name}"),
            "--filter",
            "label=io.kubernetes.pod.namespace=default",
            "--filter",
            "label=io.kubernetes.docker.type=podsandbox",
        ])?;
        let pid = self.docker(&["inspect", "-f", "{{.State.Pid}}", id.trim()])?;
        pid.parse()
            .with_context(|| format!("the sandbox pid of {name}: {pid:?}"))
    }

    /// The JSON objects the agent wrote to stdout, from the kubelet's pod logs (docker's
    /// json-file lines, one `log` string each).
    pub(super) fn pod_log_objects(&self) -> Vec<serde_json::Value> {
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
    pub(super) fn stop(&mut self) -> Result<()> {
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
pub(super) fn sweep_stale() {
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
