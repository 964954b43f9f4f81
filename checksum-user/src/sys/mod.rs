//! The bottom layer: what the operating system answers, with no knowledge of checksums. rtnetlink
//! (links and their notifications), the capabilities a run needs, and the clocks.

pub mod clock;
pub mod netlink;
pub mod privileges;
