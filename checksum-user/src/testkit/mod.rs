//! Network namespaces, veth pairs, ordinary traffic and crafted frames, shared by the integration
//! tests, the demo and the benchmarks (xtask). Nothing here touches the host's own interfaces:
//! every interface lives in a namespace created here and removed on drop.
#![expect(
    clippy::missing_panics_doc,
    reason = "test code: a helper that cannot do its job panics, and its message says why"
)]

pub mod corpus;
pub mod differential;
pub mod dnat;
pub mod frames;
pub mod netns;
