//! Everything that talks to the kernel's BPF side: loading the one object of a run, attaching it,
//! the XDP slot check, BTF offsets, test runs, and decoding the events it sends.

pub mod attach;
pub mod btf;
pub mod drops;
pub mod event;
pub mod loader;
pub mod object;
pub mod refusal;
pub mod ring;
pub mod testrun;
pub mod xdp_slot;
