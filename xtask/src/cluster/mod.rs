//! The cluster test (`cargo xtask cluster`, and a step of `./x test`): a real single-node
//! Kubernetes v1.20.2 (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, dockerd and
//! the kubelet; scripts/k8s/node.sh) inside a network namespace of its own with only `lo`, two
//! test-made veths and a CNI bridge for pods up, and no route out. It loads the image, checks the
//! plain manifest with `kubectl apply --dry-run=server`, installs the chart (the agent,
//! in-cluster through its service account), waits for `rollout status`, and asserts:
//! - the agent pod Running with exactly the capabilities asked for, its token granted what the
//!   `ClusterRole` says and no more, its programs attached, `/readyz` and `/metrics` served, bad
//!   UDP checksums between the veths counted and logged as JSON in the pod's log;
//! - a new pod's veth audited within 2 s of its appearance, and detached when the pod goes;
//! - two pods, a `ClusterIP` Service and a faulty DNAT of the Service address (the fault
//!   injector): the agent's JSON log names both pods and the Service in a rewrite diagnosis and
//!   the receiving pod's kernel drop, `kubectl get events` shows the Event on that pod, the
//!   metrics carry its `namespace`/`pod` labels;
//! - with `create events` taken from its `ClusterRole`, the agent goes on diagnosing and says the
//!   missing permission once;
//! - deleting the `DaemonSet` leaves nothing attached.
//!
//! Then it tears the cluster down: no process left in the namespace, the namespace, its cgroups
//! and every mount gone. Everything is removed on failure too.
//!
//! The node runs Docker 20.10, which does not know `CAP_BPF` or `CAP_PERFMON`: the chart is
//! installed with deploy/helm/checksum-audit/ci/docker-20.10-values.yaml, which swaps those two
//! for `CAP_SYS_ADMIN` (accepted by the kernel in place of both). Production values keep them.
//!
//! `node` is the node and the tools run against it; `checks` is what is asserted on it.

mod checks;
mod node;

use std::{process::Command, time::Instant};

use anyhow::Result;

use crate::{image, sandbox::require_root, workspace::run as run_cmd};
use node::{Cluster, sweep_stale};

pub fn run() -> Result<()> {
    require_root("cluster")?;
    sweep_stale();
    let started = Instant::now();
    // Cold: builds the cluster binaries once (minutes); warm: checks they are there (a second).
    run_cmd(Command::new("bash").args(["scripts/k8s/build.sh"]))?;
    let built = started.elapsed();
    let archive = image::build()?;
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
