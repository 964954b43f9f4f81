//! Network namespaces, veth pairs, ordinary traffic and crafted frames, shared by the integration
//! tests, the demo and the benchmarks (xtask), and a real Kubernetes control plane (etcd and
//! kube-apiserver) in a test's namespace. Nothing here touches the host's own interfaces:
//! every interface lives in a namespace created here and removed on drop.
#![expect(
    clippy::missing_panics_doc,
    reason = "test code: a helper that cannot do its job panics, and its message says why"
)]

pub mod corpus;
pub mod differential;
pub mod dnat;
pub mod frames;
pub mod kube;
pub mod netns;
