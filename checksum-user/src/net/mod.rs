//! Which interfaces to audit, in which network namespaces, and what they are: namespaces and
//! joining them, the interface selector, interface classes, and the kernel's own checksum error
//! counters. Below the kernel layer: the workers that attach as links come and go are in
//! `live/follow.rs`.

pub mod iface;
pub mod namespace;
pub mod select;
pub mod snmp;
