//! The node agent against a real API server (etcd + kube-apiserver v1.20 in the test's own
//! namespace, `checksum_testkit::kube`): it names pods and Services in its diagnoses, posts aggregated
//! Events on the receiving pod, serves pod-labelled metrics and readiness, audits while the API
//! server is unreachable, resumes after it restarts, says a node name that matches no node is
//! an error, and names a missing RBAC verb in one line. Needs root and the control-plane
//! binaries; without them these tests skip, except in CI (`CI=true`), where they fail.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use checksum_testkit::{
    dnat::{DnatLab, SERVER_IF, SERVICE_TCP_PORT, SERVICE_UDP_PORT},
    kube::{Binaries, ControlPlane, Pause},
    netns::NetNs,
};
use serde_json::{Value, json};

use common::auditor::BIN;

const NODE: &str = "csa-node";

/// The control-plane binaries, or `None` (skip) outside CI.
fn binaries(test: &str) -> Option<Binaries> {
    if !common::require_root(test) {
        return None;
    }
    match Binaries::find() {
        Ok(b) => Some(b),
        Err(why) => {
            assert!(!common::in_ci(), "{test}: {why}; CI=true forbids skipping");
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// `checksum-audit agent` running in a namespace, its stdout lines collected as they come.
struct Agent {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<Value>>>,
    ready: PathBuf,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.ready);
    }
}

impl Agent {
    fn start(ns: &NetNs, kubeconfig: &std::path::Path, node: &str, args: &[&str]) -> Self {
        let ready = std::env::temp_dir().join(format!("{}.agent-ready", ns.name));
        let _ = std::fs::remove_file(&ready);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, BIN, "agent", "--kubeconfig"])
            .arg(kubeconfig)
            .args([
                "--node-name",
                node,
                "--interval",
                "1s",
                "--event-interval",
                "1s",
            ])
            .args(["--metrics-addr", "127.0.0.1:9465", "--ready-file"])
            .arg(&ready)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the agent");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent stdout is not JSON lines: {e}: {line}"));
                sink.lock().unwrap().push(v);
            }
        });
        Self {
            child: Some(child),
            lines,
            ready,
            reader: Some(reader),
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    fn lifecycle(&self, event: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["type"] == "lifecycle" && l["event"] == event)
            .collect()
    }

    /// Waits until `n` lifecycle lines of `event` were logged.
    fn wait_for(&self, event: &str, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.lifecycle(event).len() < n {
            assert!(
                Instant::now() < deadline,
                "no {n} {event:?} lines in {within:?}: {:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready.exists() {
            assert!(
                Instant::now() < deadline,
                "agent not ready: {:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; every line it printed.
    fn stop(mut self) -> Vec<Value> {
        let mut child = self.child.take().unwrap();
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "the agent failed: {status}");
        self.reader.take().unwrap().join().unwrap();
        self.lines()
    }
}

/// The cluster of the DNAT lab: the server is pod default/web, the client default/client, and
/// the lab's service address is the Service default/web, whose UDP port names its target.
fn populate(cp: &ControlPlane) {
    cp.create_node(NODE);
    cp.create_pod("default", "web", NODE, "10.199.2.2");
    cp.create_pod("default", "client", NODE, "10.199.1.2");
    cp.create(
        "/api/v1/namespaces/default/services",
        &json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [
                {"name": "dns", "port": SERVICE_UDP_PORT, "protocol": "UDP", "targetPort": "dns"},
                {"name": "http", "port": SERVICE_TCP_PORT, "protocol": "TCP", "targetPort": SERVICE_TCP_PORT},
            ]}}),
    );
    cp.create(
        "/api/v1/namespaces/default/endpoints",
        &json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.199.2.2"}], "ports": [
            {"name": "dns", "port": SERVICE_UDP_PORT, "protocol": "UDP"},
            {"name": "http", "port": SERVICE_TCP_PORT, "protocol": "TCP"},
        ]}]}),
    );
}

/// Datagrams from one client port to the service address in two bursts 2.5 s apart: one flow
/// whose mismatches grow between two summaries, so its Event is counted again.
fn one_flow_in_two_bursts(lab: &DnatLab) {
    lab.client.run(|| {
        let udp = std::net::UdpSocket::bind(("0.0.0.0", 40_000)).unwrap();
        for burst in 0..2usize {
            for i in 0..5usize {
                udp.send_to(
                    &vec![b'b'; 30 + 7 * i + burst],
                    ("10.96.0.10", SERVICE_UDP_PORT),
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(2500));
        }
    });
}

fn metrics(ns: &NetNs) -> String {
    common::http_get(ns, "127.0.0.1:9465", "/metrics")
}

/// A Service-rewrite diagnosis names both pods and the Service; the receiving pod gets an
/// aggregated Event; the metrics carry its namespace and pod; /readyz is ready once synced.
#[test]
fn the_agent_names_pods_and_the_service_and_posts_an_event_on_the_receiving_pod() {
    let Some(bins) = binaries(module_path!()) else {
        return;
    };
    let lab = DnatLab::new("k8s");
    let cp = ControlPlane::start(&lab.server, bins);
    cp.grant_agent_all();
    populate(&cp);
    // The middle hop as a pod too, with a process in its namespace (as a pod's pause process
    // is): the server's veth-s has its peer there, so the agent names veth-s by it.
    cp.create_pod("default", "gateway", NODE, "10.199.2.1");
    let _pause = Pause::start(&lab.middle, Duration::from_secs(120));
    let agent = Agent::start(
        &lab.server,
        &cp.kubeconfig("agent"),
        NODE,
        &["--iface", SERVER_IF],
    );
    agent.wait_ready();
    agent.wait_for("api-synced", 3, Duration::from_secs(30));
    agent.wait_for("interface-pod", 1, Duration::from_secs(10));
    // The loop takes the cluster's changes once a second.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !lab.traffic(),
        "the service answered: the fault injector did not act"
    );
    one_flow_in_two_bursts(&lab);
    // Summaries (and Event reports) every second; the poster writes once a second.
    std::thread::sleep(Duration::from_secs(3));
    let readyz = common::http_get(&lab.server, "127.0.0.1:9465", "/readyz");
    let text = metrics(&lab.server);
    let events = cp
        .get("/api/v1/namespaces/default/events")
        .expect("list events");
    let lines = agent.stop();
    common::assert_matches_schema(&lines);

    let udp = lines
        .iter()
        .rev()
        .find(|l| l["type"] == "diagnosis" && l["layer"] == "udp" && l["dport"] == SERVICE_UDP_PORT)
        .unwrap_or_else(|| panic!("no UDP diagnosis: {lines:#?}"));
    eprintln!("diagnosis line: {udp}");
    assert_eq!(udp["diagnosis"], "stale-after-rewrite", "{udp}");
    assert_eq!(udp["evidence"], "candidate", "{udp}");
    assert_eq!(udp["service"], "default/web", "{udp}");
    assert_eq!(udp["dst_pod"], "default/web", "{udp}");
    assert_eq!(udp["src_pod"], "default/client", "{udp}");
    assert_eq!(udp["iface_pod"], "default/gateway", "{udp}");
    let message = udp["message"].as_str().unwrap();
    assert!(
        message.starts_with("default/web (10.199.2.2) receives UDP from default/client (10.199.1.2) with checksums broken by the Service default/web rewrite"),
        "{message}"
    );

    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    assert!(
        text.contains(r#"checksum_audit_pod_problem_mismatches_total{namespace="default",pod="web",diagnosis="stale-after-rewrite"}"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"checksum_audit_interface_pod{iface="veth-s",namespace="default",pod="gateway"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"checksum_audit_kube_watch_synced{resource="pods"} 1"#),
        "{text}"
    );

    check_events(&events);
}

/// The Events on the receiving pod: ours, on default/web, of the rewrite, naming the hop and its
/// pod, and the flow of two bursts aggregated into one.
fn check_events(events: &str) {
    let events: Value = serde_json::from_str(events).unwrap();
    let ours: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reportingComponent"] == "checksum-audit")
        .collect();
    eprintln!("events: {ours:#?}");
    assert!(!ours.is_empty(), "no Event posted: {events}");
    for e in &ours {
        assert_eq!(e["involvedObject"]["kind"], "Pod", "{e}");
        assert_eq!(e["involvedObject"]["name"], "web", "{e}");
        assert_eq!(e["reason"], "ChecksumBrokenByRewrite", "{e}");
        assert_eq!(e["type"], "Warning", "{e}");
        assert!(e["message"].as_str().unwrap().contains("Next: "), "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("Seen broken at: veth-s (pod default/gateway) at tc-ingress"),
            "{e}"
        );
    }
    // The flow of two bursts: one Event, updated rather than repeated.
    let two_bursts: Vec<&&Value> = ours
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .contains("10.199.1.2:40000 ->")
        })
        .collect();
    assert_eq!(two_bursts.len(), 1, "{ours:#?}");
    assert!(
        two_bursts[0]["count"].as_u64() >= Some(2),
        "not aggregated: {ours:#?}"
    );
}

/// Without `create events` the agent says so once, naming the verb and resource, and goes on
/// auditing and logging diagnoses.
#[test]
fn without_create_events_the_agent_says_so_once_and_keeps_auditing() {
    let Some(bins) = binaries(module_path!()) else {
        return;
    };
    let lab = DnatLab::new("k8sr");
    let cp = ControlPlane::start(&lab.server, bins);
    cp.grant_agent(&[(
        &["pods", "services", "endpoints", "nodes"],
        &["get", "list", "watch"],
    )]);
    populate(&cp);
    let agent = Agent::start(
        &lab.server,
        &cp.kubeconfig("agent"),
        NODE,
        &["--iface", SERVER_IF],
    );
    agent.wait_ready();
    agent.wait_for("api-synced", 3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!lab.traffic());
    std::thread::sleep(Duration::from_secs(3));
    let lines = agent.stop();
    let forbidden: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "rbac-forbidden")
        .collect();
    assert_eq!(forbidden.len(), 1, "{forbidden:#?}");
    let message = forbidden[0]["message"].as_str().unwrap();
    eprintln!("rbac line: {}", forbidden[0]);
    assert!(
        message.starts_with("RBAC forbids `create events` in namespace default"),
        "{message}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "diagnosis" && l["service"] == "default/web"),
        "auditing stopped: {lines:#?}"
    );
    cli_with_a_kubeconfig_names_pods_in_text(&lab, &cp);
}

/// The CLI with `--kubeconfig` (what an engineer on a node runs): text output whose diagnosis
/// has a `who:` line naming the pods and the Service, and no Event is attempted.
fn cli_with_a_kubeconfig_names_pods_in_text(lab: &DnatLab, cp: &ControlPlane) {
    let child = lab
        .server
        .exec()
        .arg(BIN)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig("agent"))
        .args([
            "--node-name",
            NODE,
            "--iface",
            SERVER_IF,
            "--duration",
            "7s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the CLI");
    // Its watches sync and the loop takes them within a second or two.
    std::thread::sleep(Duration::from_secs(3));
    one_flow_in_two_bursts(lab);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "who: default/web (10.199.2.2) receives UDP from default/client (10.199.1.2) with checksums broken by the Service default/web rewrite"
        ),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("RBAC"),
        "the CLI posts no Events: {stderr}"
    );
}

/// The API server down at start: the audit runs, pod names pending, readiness waits; once it
/// answers the watches sync; a restart is a counted gap that resumes; a node name that matches
/// no node is an error line, and none of it stops the audit.
#[test]
fn the_agent_audits_through_an_unreachable_and_restarted_api_server() {
    let Some(bins) = binaries(module_path!()) else {
        return;
    };
    let ns = NetNs::new("k8sf");
    let mut cp = ControlPlane::prepare(&ns, bins);
    let agent = Agent::start(
        &ns,
        &cp.kubeconfig("agent"),
        "csa-missing",
        &["--iface", "lo"],
    );
    agent.wait_ready();
    agent.wait_for("api-unreachable", 1, Duration::from_secs(20));
    let readyz = common::http_get(&ns, "127.0.0.1:9465", "/readyz");
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    assert!(readyz.contains("Kubernetes API"), "{readyz}");

    cp.start_apiserver();
    cp.grant_agent_all();
    agent.wait_for("api-synced", 3, Duration::from_secs(60));
    agent.wait_for("node-unknown", 1, Duration::from_secs(30));

    cp.stop_apiserver();
    std::thread::sleep(Duration::from_secs(2));
    cp.start_apiserver();
    agent.wait_for("api-watch-resumed", 1, Duration::from_secs(60));
    cp.create(
        "/api/v1/namespaces/default/services",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "after", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = metrics(&ns);
        // `kubernetes` (made by the apiserver) and the one created after the restart.
        if text.contains("checksum_audit_kube_services 2") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted watch saw no new Service: {text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let gaps = text
        .lines()
        .find(|l| l.starts_with(r#"checksum_audit_kube_watch_gaps_total{resource="services"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(gaps >= 1, "the restart was not counted as a gap: {text}");
    let readyz = common::http_get(&ns, "127.0.0.1:9465", "/readyz");
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    let lines = agent.stop();
    common::assert_matches_schema(&lines);
    let node = lines.iter().find(|l| l["event"] == "node-unknown").unwrap();
    assert_eq!(node["level"], "error");
    assert!(
        node["message"]
            .as_str()
            .unwrap()
            .contains("\"csa-missing\""),
        "{node}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "summary" && l["final"] == true),
        "no final summary: the audit did not run to the end"
    );
}
