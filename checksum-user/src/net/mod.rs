//! Which interfaces to audit, in which network namespaces, and keeping up with them: rtnetlink,
//! namespaces, the interface selector, and the workers that follow links as they come and go.

pub mod follow;
pub mod netlink;
pub mod snmp;
