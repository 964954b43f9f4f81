//! A real Kubernetes control plane for tests: etcd and kube-apiserver (v1.20, built from Debian's
//! source package; see `docs/kubernetes.md` of the shared notes) started inside a network
//! namespace the test owns, bound to its 127.0.0.1 only, so nothing they do can leave it. No
//! kubelet: tests create Pods with `spec.nodeName` set and patch their status as the admin.
//!
//! Auth is by static tokens (`ADMIN_TOKEN` in `system:masters`; `AGENT_TOKEN` as user
//! `csa-agent`, with no rights until a test binds some), TLS by a CA and serving certificate made
//! with openssl, and `--authorization-mode=Node,RBAC` as in a real cluster. Everything is killed
//! and removed on drop, even when the test panics.
//!
//! The binaries come from `CSA_K8S_BIN` (a directory holding `kube-apiserver`), else
//! `/var/cache/checksum-audit/k8s/v1.20.2/bin`; etcd from `PATH` (Debian's `etcd-server`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::netns::NetNs;

/// Where the cluster build caches its binaries.
pub const DEFAULT_BIN_DIR: &str = "/var/cache/checksum-audit/k8s/v1.20.2/bin";
/// The apiserver's address inside the namespace.
pub const API_PORT: u16 = 6443;
pub const ADMIN_TOKEN: &str = "csa-admin-token";
pub const AGENT_TOKEN: &str = "csa-agent-token";
/// The user `AGENT_TOKEN` authenticates as.
pub const AGENT_USER: &str = "csa-agent";
/// Services get addresses from here (the DNAT lab's service address, 10.96.0.10, is in it).
pub const SERVICE_RANGE: &str = "10.96.0.0/24";

/// The programs a control plane needs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub apiserver: PathBuf,
    pub etcd: PathBuf,
}

impl Binaries {
    /// The binaries, or why they are not there (the caller skips or fails with it).
    pub fn find() -> Result<Self, String> {
        let dir = std::env::var_os("CSA_K8S_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_BIN_DIR), PathBuf::from);
        let apiserver = dir.join("kube-apiserver");
        if !apiserver.is_file() {
            return Err(format!(
                "no {} (build the cluster binaries first, or set CSA_K8S_BIN)",
                apiserver.display()
            ));
        }
        let etcd = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
            .ok_or_else(|| "no etcd in PATH (apt-get install etcd-server)".to_owned())?;
        Ok(Self { apiserver, etcd })
    }
}

/// etcd and kube-apiserver running in a test's namespace.
pub struct ControlPlane {
    netns: String,
    pub dir: PathBuf,
    bins: Binaries,
    etcd: Option<Child>,
    apiserver: Option<Child>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The whole log beside, for the reader of a failed run.
            let keep = std::env::temp_dir().join(format!("{}.apiserver.log", self.netns));
            let _ = std::fs::copy(self.dir.join("apiserver.log"), &keep);
            eprintln!(
                "kube-apiserver log (last lines; all of it in {}):\n{}",
                keep.display(),
                self.log_tail("apiserver.log")
            );
        }
        stop(self.apiserver.take());
        stop(self.etcd.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGTERM, then SIGKILL after 5 s.
fn stop(child: Option<Child>) {
    let Some(mut child) = child else {
        return;
    };
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: a signal to our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

impl ControlPlane {
    /// Starts etcd and the apiserver inside `ns` and waits until the apiserver is ready.
    pub fn start(ns: &NetNs, bins: Binaries) -> Self {
        let mut cp = Self::prepare(ns, bins);
        cp.start_apiserver();
        cp
    }

    /// Certificates, tokens, kubeconfigs and etcd, but no apiserver yet (`start_apiserver`):
    /// for clients that must start while it is unreachable.
    pub fn prepare(ns: &NetNs, bins: Binaries) -> Self {
        let dir = std::env::temp_dir().join(format!("csa-k8s-{}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("control plane dir");
        make_pki(&dir);
        std::fs::write(
            dir.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},csa-admin,csa-admin-uid,\"system:masters\"\n{AGENT_TOKEN},{AGENT_USER},csa-agent-uid\n"
            ),
        )
        .expect("tokens");
        for (name, token) in [("admin", ADMIN_TOKEN), ("agent", AGENT_TOKEN)] {
            std::fs::write(
                dir.join(format!("{name}.kubeconfig")),
                kubeconfig(&dir, token),
            )
            .expect("kubeconfig");
        }
        let mut cp = Self {
            netns: ns.name.clone(),
            dir,
            bins,
            etcd: None,
            apiserver: None,
        };
        cp.start_etcd();
        cp
    }

    pub fn kubeconfig(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.kubeconfig"))
    }

    fn spawn(&self, log: &str, program: &Path, args: &[String]) -> Child {
        let log = std::fs::File::create(self.dir.join(log)).expect("log file");
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn in the namespace")
    }

    fn start_etcd(&mut self) {
        let data = self.dir.join("etcd");
        let args = [
            "--name=csa".to_owned(),
            format!("--data-dir={}", data.display()),
            "--listen-client-urls=http://127.0.0.1:2379".to_owned(),
            "--advertise-client-urls=http://127.0.0.1:2379".to_owned(),
            "--listen-peer-urls=http://127.0.0.1:2380".to_owned(),
            "--initial-advertise-peer-urls=http://127.0.0.1:2380".to_owned(),
            "--initial-cluster=csa=http://127.0.0.1:2380".to_owned(),
            "--listen-metrics-urls=http://127.0.0.1:2381".to_owned(),
        ];
        self.etcd = Some(self.spawn("etcd.log", &self.bins.etcd.clone(), &args));
    }

    /// Starts the apiserver (again, after `stop_apiserver`) and waits for `/readyz`.
    pub fn start_apiserver(&mut self) {
        let d = |f: &str| self.dir.join(f).display().to_string();
        let args = vec![
            "--etcd-servers=http://127.0.0.1:2379".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={API_PORT}"),
            "--insecure-port=0".to_owned(),
            format!("--tls-cert-file={}", d("server.crt")),
            format!("--tls-private-key-file={}", d("server.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--authorization-mode=Node,RBAC".to_owned(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!("--service-cluster-ip-range={SERVICE_RANGE}"),
            "--endpoint-reconciler-type=none".to_owned(),
            "--allow-privileged=true".to_owned(),
            // No controller-manager makes default service accounts: pods go without one.
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            "--profiling=false".to_owned(),
        ];
        let program = self.bins.apiserver.clone();
        let log = "apiserver.log";
        let mut child = self.spawn(log, &program, &args);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if self.get("/readyz").is_some_and(|body| body.trim() == "ok") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("kube-apiserver exited ({status}): {}", self.log_tail(log));
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready in 90 s: {}",
                self.log_tail(log)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        self.apiserver = Some(child);
        self.check_json_decoding();
    }

    /// A v1.20 apiserver built with Go >= 1.18 from the vendored modern-go/reflect2 v1.0.1
    /// panics decoding any JSON object with a map (labels, `ConfigMap` data, RBAC rules): every
    /// create fails with an empty reply. Say so once, plainly, instead of failing later.
    fn check_json_decoding(&self) {
        if self
            .get("/api/v1/namespaces/default/configmaps/csa-probe")
            .is_some()
        {
            return; // made by an earlier start of this one
        }
        // A 404 right after start is the `default` namespace not made yet (the apiserver's own
        // bootstrap controller creates it a moment after /readyz): wait for it, not blame reflect2.
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            let code = self.post_probe();
            if code != "404" || Instant::now() >= deadline {
                break code;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        // 409: an earlier start of this one made it between the check above and the post.
        let code = if code == "409" {
            "201".to_owned()
        } else {
            code
        };
        assert!(
            code.starts_with('2'),
            "kube-apiserver {} cannot decode JSON objects with maps (HTTP {code}): it was built \
             with the vendored github.com/modern-go/reflect2 v1.0.1, which panics under Go >= \
             1.18; rebuild it with reflect2 v1.0.2 (Debian's golang-github-modern-go-reflect2-dev) \
             in vendor/. {}",
            self.bins.apiserver.display(),
            self.log_tail("apiserver.log")
        );
    }

    /// POSTs the probe `ConfigMap` (labels and data: two maps) and returns the HTTP status code.
    fn post_probe(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "curl", "-s", "--http1.1"])
            .args([
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
            ])
            .arg(self.dir.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "csa-probe", "labels": {"a": "b"}}, "data": {"k": "v"}})
                .to_string(),
            )
            .arg(format!(
                "https://127.0.0.1:{API_PORT}/api/v1/namespaces/default/configmaps"
            ))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the apiserver (etcd keeps the data): clients see the connection drop.
    pub fn stop_apiserver(&mut self) {
        stop(self.apiserver.take());
    }

    /// The last lines of a component's log.
    pub fn log_tail(&self, log: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET `path` as the admin with curl inside the namespace; `None` on any failure.
    pub fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "curl",
                "-sf",
                "--http1.1",
                "--max-time",
                "2",
                "--cacert",
            ])
            .arg(self.dir.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .arg(format!("https://127.0.0.1:{API_PORT}{path}"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends `body` (JSON) with `method` to `path` as the admin; panics on an HTTP error. A
    /// request that got no answer at all is tried again (up to 3 times).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = Command::new("ip")
                .args(["netns", "exec", &self.netns, "curl", "-sS", "--http1.1"])
                .args(["--max-time", "10", "-X", method, "--cacert"])
                .arg(self.dir.join("ca.crt"))
                .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
                .args(["-H", &format!("Content-Type: {content_type}")])
                .args(["-w", "\n%{http_code}", "--data-binary", &body.to_string()])
                .arg(format!("https://127.0.0.1:{API_PORT}{path}"))
                .output()
                .expect("curl");
            let text = String::from_utf8_lossy(&out.stdout);
            let (json, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
            if code == "000" && attempt < 3 {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            assert!(
                code.starts_with('2'),
                "{method} {path}: HTTP {code}: {json} {}\napiserver log: {}",
                String::from_utf8_lossy(&out.stderr),
                self.log_tail("apiserver.log")
            );
            return serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
        }
    }

    /// Creates an object (POST to its collection).
    pub fn create(&self, collection: &str, object: &serde_json::Value) -> serde_json::Value {
        self.send("POST", collection, "application/json", object)
    }

    /// Creates the Node object `name` (no kubelet registers one).
    pub fn create_node(&self, name: &str) {
        self.create(
            "/api/v1/nodes",
            &serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
        );
    }

    /// Creates a Pod on `node` and sets its IP through the status subresource, as a kubelet
    /// would.
    pub fn create_pod(&self, namespace: &str, name: &str, node: &str, ip: &str) {
        self.create(
            &format!("/api/v1/namespaces/{namespace}/pods"),
            &serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "csa-none"}]},
            }),
        );
        self.send(
            "PATCH",
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
            "application/merge-patch+json",
            &serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}),
        );
    }

    /// Gives `AGENT_USER` the verbs on core/v1 resources: `rules` as (resources, verbs).
    pub fn grant_agent(&self, rules: &[(&[&str], &[&str])]) {
        let rules: Vec<serde_json::Value> = rules
            .iter()
            .map(|(resources, verbs)| serde_json::json!({"apiGroups": [""], "resources": resources, "verbs": verbs}))
            .collect();
        self.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "csa-agent"}, "rules": rules}),
        );
        self.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            &serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "csa-agent"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "csa-agent"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AGENT_USER}]}),
        );
    }

    /// The agent's rights as the chart grants them.
    pub fn grant_agent_all(&self) {
        self.grant_agent(&[
            (
                &["pods", "services", "endpoints", "nodes"],
                &["get", "list", "watch"],
            ),
            (&["events"], &["create", "patch"]),
        ]);
    }
}

/// A pod's pause process, as the agent finds pods (`/proc/*/ns/net` with hostPID): a `sleep` in
/// the pod's namespace, killed on drop. It ends by itself after `lifetime`, so that a run killed
/// before it could clean up leaves nothing behind for long.
pub struct Pause(Child);

impl Pause {
    pub fn start(ns: &NetNs, lifetime: Duration) -> Self {
        Self(
            ns.exec()
                .args(["sleep", &lifetime.as_secs().max(1).to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("sleep in the namespace"),
        )
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kubeconfig for `token` against the namespace's apiserver.
fn kubeconfig(dir: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: csa\n  cluster:\n    server: https://127.0.0.1:{API_PORT}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: csa\n    user: u\ncurrent-context: c\n",
        dir.join("ca.crt").display()
    )
}

/// A CA, the apiserver's serving certificate for 127.0.0.1, and the service-account key pair.
fn make_pki(dir: &Path) {
    openssl(dir, &["genrsa", "-out", "ca.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=csa-test-ca",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.crt",
        ],
    );
    openssl(dir, &["genrsa", "-out", "server.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"]);
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}
