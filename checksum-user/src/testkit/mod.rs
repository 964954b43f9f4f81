//! Network namespaces, veth pairs, ordinary traffic and crafted frames, shared by the integration
//! tests, the demo and the benchmarks (xtask). Nothing here touches the host's own interfaces:
//! every interface lives in a namespace created here and removed on drop.

pub mod differential;
pub mod dnat;
pub mod frames;
pub mod netns;
