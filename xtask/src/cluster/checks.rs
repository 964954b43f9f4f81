//! What the cluster test checks on the running node: the agent pod, its privileges and token, its
//! programs and metrics, its audit of a bad checksum, a new pod's veth, and the faulty Service
//! rewrite with and without permission to create Events.

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::{
    dnat::{Injector, L4Update, StaleDnat, TcAttachType, attach_stale_dnat},
    netns::spawn_in,
};

use super::node::{BRIDGE, Cluster, METRICS_PORT, NAMESPACE, NODE_IP, SELECTOR, VETHS};
use crate::workspace::workspace_root;

/// `CapEff` of the agent under the Docker 20.10 override: `CAP_NET_ADMIN` (12), `CAP_SYS_PTRACE`
/// (19) and `CAP_SYS_ADMIN` (21), nothing else.
const EXPECTED_CAP_EFF: u64 = (1 << 12) | (1 << 19) | (1 << 21);

impl Cluster {
    pub(super) fn exercise(&self, archive: &Path) -> Result<()> {
        let root = workspace_root();
        let chart = root.join("deploy/helm/checksum-audit");
        self.docker(&["load", "-i", archive.to_str().expect("UTF-8 path")])?;
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
        let lab = self.start_service_lab()?;
        self.check_service_rewrite(&lab)?;
        self.check_rbac_reduced(&lab)?;
        drop(lab);
        for pod in ["web", "client"] {
            self.kubectl(&["delete", "pod", pod, "-n", "default", "--grace-period=1"])?;
        }

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
            let answer = self.agent_can_i(verb, resource)?;
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
    /// (metrics) and diagnosed in the agent's JSON log on the pod's stdout (the kubelet's pod log).
    fn check_audit(&self) -> Result<()> {
        use checksum_testkit::{
            frames::{UDP, segment, v4_frame},
            netns::send_raw_frames,
        };
        const SENT: u64 = 3;
        // Payloads of different sizes: a diagnosis needs mismatches that are not one packet
        // repeated.
        let frames: Vec<Vec<u8>> = (0..SENT)
            .map(|i| {
                let len = 64 + 7 * usize::try_from(i).expect("small");
                let mut frame = v4_frame(&[], UDP, segment(UDP, len), &[]);
                let want = frame.checksum;
                frame.set_field(want ^ 0x1111);
                frame.bytes
            })
            .collect();
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
        let line = self.wait_log("the diagnosis in the pod's JSON log", |o| {
            o["type"] == "diagnosis" && o["iface"] == VETHS[1] && o["layer"] == "udp"
        })?;
        eprintln!("xtask: pod log: {line}");
        Ok(())
    }

    /// A pod with a network of its own (CNI bridge): it gets an address of the pod subnet, the agent
    /// attaches to its host-side veth within 2 s of the veth's appearance, and detaches when the
    /// pod is deleted.
    fn check_pod_network(&self) -> Result<()> {
        self.kubectl(&[
            "run",
            "csa-pod",
            "--namespace=default",
            "--image=csa-pause:1",
            "--image-pull-policy=Never",
            "--restart=Never",
        ])?;
        let created = Instant::now();
        let mut veth = String::new();
        let mut appeared = created;
        self.poll(
            "the pod's veth on the bridge",
            Duration::from_secs(60),
            || {
                // The CNI plugin makes the bridge with the first pod: until then, no veth.
                let out = Self::output({
                    let mut c = Command::new("ip");
                    c.args(["-n", &self.name, "-o", "link", "show", "master", BRIDGE]);
                    c
                })
                .unwrap_or_default();
                out.lines()
                    .filter_map(|l| l.split(": ").nth(1))
                    .map(|name| name.split('@').next().unwrap_or(name))
                    .next()
                    .unwrap_or_default()
                    .clone_into(&mut veth);
                appeared = Instant::now();
                Ok(!veth.is_empty())
            },
        )?;
        let series = |hook: &str| {
            format!("checksum_audit_attached{{iface=\"{veth}\",hook=\"{hook}\",mode=\"tcx\"}} 1")
        };
        self.poll("the new pod's veth audited", Duration::from_secs(2), || {
            let metrics = self.scrape("/metrics")?;
            Ok(metrics.contains(&series("tc-ingress")) && metrics.contains(&series("tc-egress")))
        })?;
        let audited = appeared.elapsed();
        let ip = self.pod_ip("csa-pod")?;
        eprintln!(
            "xtask: pod default/csa-pod ({ip}): its veth {veth} on {BRIDGE} {:.1} s after \
             `kubectl run`, audited at both hooks {:.2} s after that",
            (appeared - created).as_secs_f64(),
            audited.as_secs_f64()
        );
        let deleted = Instant::now();
        self.kubectl(&[
            "delete",
            "pod",
            "csa-pod",
            "-n",
            "default",
            "--grace-period=1",
        ])?;
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

    /// The case this project was started for, in a real cluster: a client pod reaches the
    /// `ClusterIP` Service `default/web` (80 -> 8080) in front of the pod `default/web`, through a
    /// faulty DNAT (the fault injector, after the agent at the client's host-side veth ingress)
    /// that rewrites the Service address and port but leaves the TCP checksum stale. The web
    /// pod's kernel drops the SYNs (`TCP_CSUM`). This sets it up; the checks follow. The injector
    /// stays attached until the lab is dropped.
    fn start_service_lab(&self) -> Result<ServiceLab> {
        self.kubectl(&[
            "create",
            "service",
            "clusterip",
            "web",
            "-n",
            "default",
            "--tcp=80:8080",
        ])?;
        for (pod, labels) in [("web", "app=web"), ("client", "app=client")] {
            self.kubectl(&[
                "run",
                pod,
                "--namespace=default",
                "--image=csa-pause:1",
                "--image-pull-policy=Never",
                "--restart=Never",
                &format!("--labels={labels}"),
            ])?;
        }
        let web_ip = self.pod_ip("web")?;
        let client_ip = self.pod_ip("client")?;
        let cluster_ip = self.kubectl(&[
            "get",
            "service",
            "web",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])?;
        // The agent names both host-side veths by pod and knows the Service before traffic.
        let mut ifaces = (String::new(), String::new());
        self.poll(
            "both pods' veths named and the Service known",
            Duration::from_secs(30),
            || {
                let metrics = self.scrape("/metrics")?;
                ifaces = (
                    interface_of(&metrics, "client").unwrap_or_default(),
                    interface_of(&metrics, "web").unwrap_or_default(),
                );
                Ok(!ifaces.0.is_empty()
                    && !ifaces.1.is_empty()
                    && metrics.lines().any(|l| {
                        l.strip_prefix("checksum_audit_kube_services ")
                            .and_then(|v| v.trim().parse::<f64>().ok())
                            .is_some_and(|v| v >= 2.0)
                    }))
            },
        )?;
        let (client_veth, web_veth) = ifaces;
        eprintln!(
            "xtask: pods default/client ({client_ip}, host veth {client_veth}) and default/web \
             ({web_ip}, host veth {web_veth}); Service default/web {cluster_ip}:80 -> 8080"
        );
        let client_ns = format!("/proc/{}/ns/net", self.sandbox_pid("client")?);
        // Complete checksums from the client (no TX offload), so that the stale one the NAT
        // leaves is what the web pod's kernel checks.
        Self::output({
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={client_ns}"))
                .args(["ethtool", "-K", "eth0", "tx", "off"]);
            c
        })?;
        let addr = |s: &str| -> Result<[u8; 4]> {
            Ok(s.parse::<std::net::Ipv4Addr>()
                .with_context(|| format!("address {s:?}"))?
                .octets())
        };
        let injector = attach_stale_dnat(
            self.ns(),
            &client_veth,
            TcAttachType::Ingress,
            StaleDnat {
                from: addr(&cluster_ip)?,
                to: addr(&web_ip)?,
                port: Some((80, 8080)),
                l4: L4Update::LeftAlone,
                first: false,
            },
        );
        Ok(ServiceLab {
            client_ns,
            cluster_ip,
            _injector: injector,
        })
    }

    /// The agent says one broken flow in Kubernetes terms: a rewrite diagnosis naming both pods
    /// and the Service in its JSON log, the web pod's kernel drop, an Event on the receiving pod,
    /// and pod-labelled metrics.
    fn check_service_rewrite(&self, lab: &ServiceLab) -> Result<()> {
        let sport = lab.connect();
        // Until the flow has enough packets its diagnosis is still `corrupt`: wait for the
        // settled one, and say what was seen instead if it never comes.
        let ours = |o: &serde_json::Value| o["type"] == "diagnosis" && o["sport"] == sport;
        let diagnosis = self
            .wait_log("the rewrite diagnosis in the agent's log", |o| {
                ours(o) && o["diagnosis"] == "stale-after-rewrite"
            })
            .map_err(|e| {
                let seen: Vec<String> = self
                    .pod_log_objects()
                    .iter()
                    .filter(|o| ours(o))
                    .map(ToString::to_string)
                    .collect();
                e.context(format!("diagnoses of the flow: {seen:?}"))
            })?;
        eprintln!("xtask: agent log: {diagnosis}");
        for (field, want) in [
            ("service", "default/web"),
            ("src_pod", "default/client"),
            ("dst_pod", "default/web"),
        ] {
            if diagnosis[field] != want {
                bail!(
                    "the diagnosis has {field} {}, expected {want:?}: {diagnosis}",
                    diagnosis[field]
                );
            }
        }
        let drop = self.wait_log("the web pod's kernel drop in the agent's log", |o| {
            o["type"] == "kernel_drop" && o["sport"] == sport
        })?;
        eprintln!("xtask: agent log: {drop}");
        if drop["reason"] != "TCP_CSUM" {
            bail!(
                "the kernel dropped for {}, expected TCP_CSUM",
                drop["reason"]
            );
        }
        let mut event = String::new();
        self.poll("the Event on default/web", Duration::from_secs(20), || {
            let events = self.kubectl(&[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector=involvedObject.kind=Pod,involvedObject.name=web",
            ])?;
            event = events
                .lines()
                .filter(|l| l.starts_with("LAST SEEN") || l.contains("ChecksumBrokenByRewrite"))
                .collect::<Vec<_>>()
                .join("\n");
            Ok(event.lines().count() > 1)
        })?;
        // One broken packet crosses three audited hops: one Event names them all.
        let ours = event.lines().skip(1).count();
        let hops = [
            "Seen broken at: ",
            "csa-br0 at tc-ingress",
            "(pod default/web) at tc-egress",
        ];
        if ours != 1 || !hops.iter().all(|h| event.contains(h)) {
            bail!("expected one Event for the flow, naming its hops:\n{event}");
        }
        eprintln!("xtask: kubectl get events -n default:\n{event}");
        let metrics = self.scrape("/metrics")?;
        let pod_series: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains(r#"namespace="default",pod="#) && !l.starts_with('#'))
            .collect();
        eprintln!("xtask: pod-labelled series:\n{}", pod_series.join("\n"));
        // One flow so far, however many hops saw it.
        let problem = r#"checksum_audit_pod_problem_flows{namespace="default",pod="web",diagnosis="stale-after-rewrite"} 1"#;
        if !pod_series.contains(&problem) {
            bail!("{problem} missing from /metrics");
        }
        Ok(())
    }

    /// With `create events` taken out of the agent's `ClusterRole`, the agent goes on auditing
    /// (a new broken flow is diagnosed) and says once which permission it lacks.
    fn check_rbac_reduced(&self, lab: &ServiceLab) -> Result<()> {
        let role = self.kubectl(&["get", "clusterrole", "checksum-audit", "-o", "json"])?;
        let mut role: serde_json::Value = serde_json::from_str(&role)?;
        let Some(rules) = role["rules"].as_array_mut() else {
            bail!("the ClusterRole has no rules: {role}");
        };
        let before = rules.len();
        rules.retain(|r| !r["resources"].to_string().contains("\"events\""));
        if rules.len() == before {
            bail!("the ClusterRole grants nothing on events: {role}");
        }
        let file = self.dir.join("clusterrole-no-events.json");
        std::fs::write(&file, role.to_string())?;
        self.kubectl(&["replace", "-f", file.to_str().expect("UTF-8 path")])?;
        self.poll("create events revoked", Duration::from_secs(10), || {
            Ok(self.agent_can_i("create", "events")? == "no")
        })?;
        let forbidden = |o: &serde_json::Value| o["event"] == "rbac-forbidden";
        let mut sports = Vec::new();
        for _ in 0..2 {
            let sport = lab.connect();
            sports.push(sport);
            self.wait_log("a diagnosis with events forbidden", |o| {
                o["type"] == "diagnosis"
                    && o["sport"] == sport
                    && o["diagnosis"] == "stale-after-rewrite"
            })?;
        }
        let line = self.wait_log("the missing permission in the agent's log", forbidden)?;
        eprintln!("xtask: agent log: {line}");
        let message = line["message"].as_str().unwrap_or_default();
        if !(message.contains("create") && message.contains("events")) {
            bail!("the forbidden line does not name create events: {line}");
        }
        let said = self
            .pod_log_objects()
            .iter()
            .filter(|o| forbidden(o))
            .count();
        if said != 1 {
            bail!("the missing permission was said {said} times, expected once");
        }
        eprintln!(
            "xtask: without create events: flows from ports {sports:?} still diagnosed, the \
             missing permission said once"
        );
        Ok(())
    }
}

/// The client end of the Service scenario: the client pod's network namespace, the Service
/// address, and the faulty DNAT, attached while this lives.
struct ServiceLab {
    client_ns: String,
    cluster_ip: String,
    _injector: Injector,
}

impl ServiceLab {
    /// One TCP connection attempt from the client pod to the Service, from a port of its own (a
    /// flow of its own): its SYN and the two retransmissions (at 1 and 3 s; their timestamps
    /// differ) are broken by the NAT and dropped. Returns the source port.
    fn connect(&self) -> u16 {
        static NEXT: AtomicU16 = AtomicU16::new(41000);
        let sport = NEXT.fetch_add(1, Ordering::Relaxed);
        let dst: std::net::Ipv4Addr = self.cluster_ip.parse().expect("the ClusterIP");
        spawn_in(self.client_ns.clone(), move || {
            syn_for(sport, dst, 80, Duration::from_millis(3500));
        })
        .join()
        .expect("the client thread");
        sport
    }
}

/// Sends SYNs from `sport` to `dst:dport` for `lasting` (a non-blocking connect, then close).
fn syn_for(sport: u16, dst: std::net::Ipv4Addr, dport: u16, lasting: Duration) {
    let sin = |addr: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).expect("AF_INET fits"),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).expect("fits");
    // SAFETY: plain socket calls on a descriptor this function owns and closes; the addresses
    // passed are local values of the size given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let local = sin(std::net::Ipv4Addr::UNSPECIFIED, sport);
        let rc = libc::bind(fd, std::ptr::from_ref(&local).cast(), len);
        assert_eq!(rc, 0, "bind :{sport}: {}", std::io::Error::last_os_error());
        let remote = sin(dst, dport);
        let rc = libc::connect(fd, std::ptr::from_ref(&remote).cast(), len);
        let error = std::io::Error::last_os_error();
        assert!(
            rc == 0 || error.raw_os_error() == Some(libc::EINPROGRESS),
            "connect {dst}:{dport}: {error}"
        );
        std::thread::sleep(lasting);
        libc::close(fd);
    }
}

/// The host-side interface the agent names as pod `default/POD`, from its metrics.
fn interface_of(metrics: &str, pod: &str) -> Option<String> {
    let tail = format!("\",namespace=\"default\",pod=\"{pod}\"}} 1");
    metrics.lines().find_map(|l| {
        l.strip_prefix("checksum_audit_interface_pod{iface=\"")?
            .strip_suffix(&tail)
            .map(str::to_owned)
    })
}
