//! One list+watch per resource (kube's runtime watcher, with its backoff): it lists, then
//! watches from the list's resource version, resumes after a dropped connection or an API
//! server restart, and lists again when the version has expired. Every change goes into the
//! shared state; each break is a counted gap; errors are said once per episode, and an RBAC
//! refusal in one line naming the verb and resource.

use std::{collections::BTreeSet, pin::pin};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::{
    Api,
    runtime::{WatchStreamExt as _, watcher},
};
use serde::de::DeserializeOwned;

use super::{
    Shared, convert,
    errors::{ApiFailure, forbidden_line},
    lock,
    state::{ClusterState, Resource},
};
use crate::report::notice;

/// A resource the agent follows, and how its objects go into the state.
pub trait Watched:
    kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static
{
    const RESOURCE: Resource;
    /// What the agent does without it, for the RBAC line.
    const WITHOUT: &'static str;
    fn upsert(&self, state: &mut ClusterState, key: String);
    fn remove(state: &mut ClusterState, key: &str);
}

impl Watched for Pod {
    const RESOURCE: Resource = Resource::Pods;
    const WITHOUT: &'static str = "flow ends and Events are not named by pod";
    fn upsert(&self, state: &mut ClusterState, key: String) {
        state.upsert_pod(key, convert::pod(self));
    }
    fn remove(state: &mut ClusterState, key: &str) {
        state.remove_pod(key);
    }
}

impl Watched for Service {
    const RESOURCE: Resource = Resource::Services;
    const WITHOUT: &'static str = "rewrites are not named by Service";
    fn upsert(&self, state: &mut ClusterState, key: String) {
        state.upsert_service(key, convert::service(self));
    }
    fn remove(state: &mut ClusterState, key: &str) {
        state.remove_service(key);
    }
}

impl Watched for Endpoints {
    const RESOURCE: Resource = Resource::Endpoints;
    const WITHOUT: &'static str = "named targetPorts stay names";
    fn upsert(&self, state: &mut ClusterState, key: String) {
        state.upsert_endpoints(key, convert::endpoints(self));
    }
    fn remove(state: &mut ClusterState, key: &str) {
        state.remove_endpoints(key);
    }
}

/// Follows `K` until the task is dropped. `scope` says where, for messages ("cluster-wide",
/// "on node n1").
pub async fn follow<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    scope: String,
    shared: Shared,
) {
    let resource = K::RESOURCE.name();
    let mut stream = pin!(watcher(api, config).default_backoff());
    // Keys listed since the last `Init`: what a completed re-list did not name is gone.
    let mut listing: Option<BTreeSet<String>> = None;
    let mut broken = false;
    let mut worked = false;
    let mut said_forbidden = BTreeSet::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                if broken {
                    broken = false;
                    notice::info(
                        "api-watch-resumed",
                        &format!("the watch of {resource} {scope} resumed"),
                    );
                }
                let mut state = lock(&shared);
                apply(&mut state, &mut listing, event);
                worked |= state.watch(K::RESOURCE).synced;
            }
            Err(e) => {
                let (failure, verb) = ApiFailure::of_watcher(&e);
                let first_break = !broken;
                {
                    let mut state = lock(&shared);
                    let w = state.watch(K::RESOURCE);
                    w.errors += 1;
                    if first_break && worked {
                        w.gaps += 1;
                    }
                }
                if !first_break {
                    continue; // said once per episode; the watcher backs off and retries
                }
                broken = true;
                match failure {
                    ApiFailure::Forbidden { message } => {
                        if said_forbidden.insert(verb) {
                            notice::error(
                                "rbac-forbidden",
                                &format!(
                                    "{} ({message})",
                                    forbidden_line(verb, resource, &scope, K::WITHOUT)
                                ),
                            );
                        }
                    }
                    ApiFailure::Unreachable(why) if !worked => notice::warning(
                        "api-unreachable",
                        &format!(
                            "the Kubernetes API server is unreachable ({why}): auditing goes on, \
                             {resource} pending (pod names and Services come once it answers); retrying"
                        ),
                    ),
                    ApiFailure::Unreachable(why) | ApiFailure::Other(why) => notice::warning(
                        "api-watch-gap",
                        &format!(
                            "the watch of {resource} {scope} broke ({why}); resuming (the audit goes on)"
                        ),
                    ),
                }
            }
        }
    }
}

/// One watcher event into the state.
fn apply<K: Watched>(
    state: &mut ClusterState,
    listing: &mut Option<BTreeSet<String>>,
    event: watcher::Event<K>,
) {
    match event {
        watcher::Event::Init => *listing = Some(BTreeSet::new()),
        watcher::Event::InitApply(obj) => {
            let key = convert::key(obj.meta());
            if let Some(keys) = listing.as_mut() {
                keys.insert(key.clone());
            }
            obj.upsert(state, key);
        }
        watcher::Event::InitDone => {
            if let Some(keys) = listing.take() {
                state.retain(K::RESOURCE, &keys);
            }
            let w = state.watch(K::RESOURCE);
            if !w.synced {
                w.synced = true;
                let (pods, services) = (state.pod_count(), state.service_count());
                notice::info(
                    "api-synced",
                    &format!(
                        "{} listed and watched ({pods} pods on this node, {services} Services)",
                        K::RESOURCE.name()
                    ),
                );
            }
        }
        watcher::Event::Apply(obj) => obj.upsert(state, convert::key(obj.meta())),
        watcher::Event::Delete(obj) => K::remove(state, &convert::key(obj.meta())),
    }
}
