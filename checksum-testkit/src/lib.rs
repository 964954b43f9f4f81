//! checksum-audit's test kit, used by the integration tests (checksum-user/tests), the demo, the
//! benchmarks and the differential fuzzer (xtask) and the cargo-fuzz targets (fuzz/); never by the
//! binary. Network namespaces, veth pairs, ordinary traffic and crafted frames; public captures
//! with expected verdicts; the faulty DNAT (its own eBPF object, checksum-testkit-ebpf); a real
//! Kubernetes control plane (etcd and kube-apiserver) in a test's namespace; the differential
//! reference verifier and frame generator; and the fuzz target bodies. Nothing here touches the
//! host's own interfaces: every interface lives in a namespace created here and removed on drop.
#![expect(
    clippy::missing_panics_doc,
    reason = "test code: a helper that cannot do its job panics, and its message says why"
)]

pub mod corpus;
pub mod differential;
pub mod dnat;
pub mod frames;
pub mod fuzzing;
pub mod kube;
pub mod netns;
