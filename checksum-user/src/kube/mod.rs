//! Kubernetes awareness (`--kubeconfig FILE`, or `checksum-audit agent` in a pod): the agent
//! list+watches the Pods on its own node (`spec.nodeName`), and the Services and Endpoints of the
//! whole cluster, through kube's runtime watcher. The live loop takes from it:
//!
//! * `namespace/pod` for every flow end whose address is a pod's (`EndpointNames`);
//! * the Services' addresses and ports as NAT candidates, so a rewrite diagnosis names the
//!   Service (`Candidates`, the same table `--nat-candidates` fills);
//! * in agent mode, Kubernetes Events on the receiving Pod of a problem diagnosis (`events`).
//!
//! None of it can stop the audit: an API server that is unreachable, a watch that breaks, an
//! RBAC refusal or a node name that matches no node are each said once and retried or done
//! without. Only core/v1 is used (Pods, Services, Endpoints, Nodes, Events), which every API
//! server since 1.19 serves as it is here.
//!
//! One file per job: `client` (connect), `watch` (list+watch into the state), `convert` (API
//! objects to what is kept), `state` (the bounded tables), `events` (aggregate and post Events),
//! `errors` (what a failure means, in one line).

mod client;
pub mod convert;
pub mod errors;
pub mod events;
pub mod netns;
pub mod state;
mod watch;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::{Api, runtime::watcher};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    analysis::{
        Analysis, EndpointNames, candidates::Candidates, diagnosis::Diagnosis, severity::Severity,
    },
    report::{metrics::ClusterMetrics, notice, output},
};
use errors::{ApiFailure, forbidden_line};
use events::{PodRef, Report};
use state::{ClusterState, Resource};

/// The state the watchers fill and the live loop reads.
pub type Shared = Arc<Mutex<ClusterState>>;

/// The state, even if a task panicked while holding it (its tables stay usable).
pub fn lock(shared: &Shared) -> MutexGuard<'_, ClusterState> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the command line asks of the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None`: in-cluster (the pod's service account).
    pub kubeconfig: Option<PathBuf>,
    /// This node: `--node-name`, `NODE_NAME`, or the host name.
    pub node: String,
    /// Post Events, at most one write per Event this often; `None`: no Events.
    pub events: Option<Duration>,
}

impl Options {
    /// The node name: given, else `NODE_NAME` (the downward API), else the host name.
    pub fn node_name(given: Option<&str>) -> Option<String> {
        given
            .map(str::to_owned)
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
    }
}

/// The running watchers and Event poster.
pub struct Cluster {
    pub shared: Shared,
    pub node: String,
    events: Option<mpsc::Sender<Report>>,
    tasks: Vec<JoinHandle<()>>,
    /// The state's generation the live loop last took, and the interfaces it named then.
    taken: u64,
    interfaces: Vec<(u32, String)>,
    /// Interface -> pod, as last said.
    named: std::collections::HashMap<String, String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    /// Starts following the cluster. Fails only when there is no way to talk to it at all (a bad
    /// kubeconfig, or in-cluster without a service account); everything later is retried.
    pub async fn start(opts: &Options) -> Result<Self> {
        let client = client::connect(opts.kubeconfig.as_deref()).await?;
        let shared = Shared::default();
        let node = opts.node.clone();
        notice::info(
            "api-connecting",
            &format!(
                "following the Kubernetes API ({}) for pods on node {node} and Services: pod names pending until the first list",
                opts.kubeconfig
                    .as_ref()
                    .map_or_else(|| "in-cluster".to_owned(), |p| p.display().to_string())
            ),
        );
        let pods_config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let mut tasks = vec![
            tokio::spawn(watch::follow(
                Api::<Pod>::all(client.clone()),
                pods_config,
                format!("on node {node}"),
                shared.clone(),
            )),
            tokio::spawn(watch::follow(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
                "cluster-wide".to_owned(),
                shared.clone(),
            )),
            tokio::spawn(watch::follow(
                Api::<Endpoints>::all(client.clone()),
                watcher::Config::default(),
                "cluster-wide".to_owned(),
                shared.clone(),
            )),
            tokio::spawn(check_node(Api::<Node>::all(client.clone()), node.clone())),
        ];
        let events = opts.events.map(|interval| {
            let (tx, rx) = mpsc::channel(1024);
            tasks.push(tokio::spawn(events::post(
                client.clone(),
                node.clone(),
                interval,
                rx,
                shared.clone(),
            )));
            tx
        });
        Ok(Self {
            shared,
            node,
            events,
            tasks,
            taken: 0,
            interfaces: Vec::new(),
            named: std::collections::HashMap::new(),
        })
    }

    /// When the cluster or the audited interfaces (`interfaces`: ifindex and name, in this
    /// namespace) changed since the last call: the NAT candidates (the file's, then the
    /// Services') and the pod names to use from now on.
    pub fn changed(
        &mut self,
        file: Option<&Candidates>,
        interfaces: &[(u32, String)],
    ) -> Option<(Candidates, EndpointNames)> {
        let (candidates, names, pods) = {
            let mut state = lock(&self.shared);
            if state.generation == self.taken && interfaces == self.interfaces.as_slice() {
                return None;
            }
            self.taken = state.generation;
            (
                state.merged_candidates(file),
                state.endpoint_names(),
                state.pods(),
            )
        };
        self.interfaces = interfaces.to_vec();
        let by_iface = netns::interface_pods(interfaces, &pods);
        for (iface, pod) in &by_iface {
            if self.named.get(iface) != Some(pod) {
                notice::info(
                    "interface-pod",
                    &format!(
                        "{iface} is the interface of pod {pod} (its peer is in the pod's network namespace)"
                    ),
                );
            }
        }
        self.named.clone_from(&by_iface);
        Some((candidates, names.with_interfaces(by_iface)))
    }

    /// Hands the problem diagnoses of flows that a pod on this node receives to the Event
    /// poster (agent mode; a no-op otherwise): one Event per receiving pod, flow and finding,
    /// naming every hop where the agent saw it broken (one broken packet crosses several).
    pub fn report(&self, analysis: &Analysis) {
        let Some(tx) = &self.events else {
            return;
        };
        let state = lock(&self.shared);
        // One per Event, in the order of the diagnoses, so the first hop stays first. The
        // message is made once every hop is known.
        let mut reports: Vec<(Report, String, Vec<String>, String)> = Vec::new();
        for d in analysis.diagnoses() {
            // A flow's diagnosis settles once it has enough packets (before, a rewrite still
            // looks corrupt): an Event says what the run would say at its end.
            if d.severity != Severity::Problem
                || d.count < crate::analysis::diagnosis::MIN_PACKETS as u64
            {
                continue;
            }
            let Some(pod) = state.pod_by_ip(d.flow.dst) else {
                continue;
            };
            let source = analysis.source(d.source);
            let hop = match analysis.endpoint_names().interface(&source.name) {
                Some(pod) => format!("{} (pod {pod}) at {}", source.name, source.hook.name()),
                None => format!("{} at {}", source.name, source.hook.name()),
            };
            let key = Report::key_of(&(
                &pod.uid,
                d.layer.name(),
                d.flow.to_string(),
                d.diagnosis.name(),
            ));
            if let Some((report, _, hops, _)) = reports.iter_mut().find(|(r, ..)| r.key == key) {
                report.mismatches = report.mismatches.max(d.count);
                hops.push(hop);
                continue;
            }
            let finding = format!(
                "{}: {}. Flow: {} {}",
                d.diagnosis.name(),
                output::diagnosis_sentence(analysis, &d),
                d.layer.name(),
                d.flow,
            );
            let report = Report {
                pod: PodRef {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                },
                key,
                reason: reason(&d.diagnosis),
                message: String::new(),
                mismatches: d.count,
            };
            reports.push((report, finding, vec![hop], d.diagnosis.next_step()));
        }
        drop(state);
        for (mut report, finding, hops, next) in reports {
            report.message = format!(
                "{finding}. Seen broken at: {}. Next: {next}",
                hops.join(", ")
            );
            // Full: the poster is behind; this report comes again at the next summary.
            let _ = tx.try_send(report);
        }
    }

    /// Every watch has listed once.
    pub fn synced(&self) -> bool {
        lock(&self.shared).synced()
    }

    /// For the metrics and `/readyz`.
    pub fn metrics(&self) -> ClusterMetrics {
        let state = lock(&self.shared);
        ClusterMetrics {
            synced: state.synced(),
            watches: Resource::ALL
                .iter()
                .map(|r| {
                    let w = state.watches.get(r).copied().unwrap_or_default();
                    (r.name(), w.synced, w.gaps, w.errors, w.overflow)
                })
                .collect(),
            pods: state.pod_count() as u64,
            services: state.service_count() as u64,
            events_created: state.events.created,
            events_updated: state.events.updated,
            events_failed: state.events.failed,
            events_deferred: state.events.deferred,
        }
    }
}

/// The Event reason of a diagnosis.
pub fn reason(d: &Diagnosis) -> &'static str {
    match d {
        Diagnosis::Rewrite(_) => "ChecksumBrokenByRewrite",
        Diagnosis::Zero => "ChecksumZero",
        Diagnosis::ByteSwapped => "ChecksumByteSwapped",
        Diagnosis::Corrupt => "ChecksumCorrupt",
        Diagnosis::OffloadPending | Diagnosis::TunnelOffloadPending => "ChecksumMismatch",
    }
}

/// Says whether the node exists: a name that matches no node is an error (the pods of "this
/// node" would silently be none), said once; the audit goes on.
async fn check_node(api: Api<Node>, node: String) {
    let mut said_unreachable = false;
    let mut said_forbidden = false;
    loop {
        match api.get_opt(&node).await {
            Ok(Some(_)) => return,
            Ok(None) => {
                notice::error(
                    "node-unknown",
                    &format!(
                        "the node name {node:?} (--node-name, NODE_NAME or the host name) matches no node in the \
                         cluster: no pod is on it, so flow ends and Events are not named by pod; the audit goes on"
                    ),
                );
                return;
            }
            Err(e) => match ApiFailure::of_client(&e) {
                // Said once; RBAC is often granted after the agent starts, so ask again.
                ApiFailure::Forbidden { message } => {
                    if !said_forbidden {
                        said_forbidden = true;
                        notice::error(
                            "rbac-forbidden",
                            &format!(
                                "{} ({message})",
                                forbidden_line(
                                    "get",
                                    "nodes",
                                    "cluster-wide",
                                    "the node name is not checked until it is granted"
                                )
                            ),
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                // The watches say it; keep trying quietly.
                ApiFailure::Unreachable(_) | ApiFailure::Other(_) => {
                    if !said_unreachable {
                        said_unreachable = true;
                        log::debug!("checking node {node}: {e}");
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            },
        }
    }
}
