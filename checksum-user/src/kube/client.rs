//! The API client: from `--kubeconfig FILE`, or in-cluster (the pod's service account token and
//! CA, and `KUBERNETES_SERVICE_HOST`/`_PORT`). Building it contacts nothing: an unreachable API
//! server shows up in the watches, which go on retrying while the audit runs.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// How long a connection attempt may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => Config::incluster().context(
            "not running in a Kubernetes pod (no service account token, or no \
             KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT); pass --kubeconfig FILE",
        )?,
    };
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    Client::try_from(config).context("building the Kubernetes API client")
}
