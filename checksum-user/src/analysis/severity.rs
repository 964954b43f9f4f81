//! Whether a mismatch is a problem depends on where it is seen. A partial checksum
//! (offload-pending) is normal where the checksum will still be completed, or never needed: at
//! egress, and on ingress at software devices (veth, tap, loopback, ...), where the sender's stack
//! left it partial on purpose. On ingress at a physical NIC, a bond or a VLAN over one, nothing
//! will complete it: the sender's offload never happened (a userspace dataplane or `AF_PACKET` path
//! forwarded it), and the receiver will drop the packet.

use checksum_common::{Hook, Kind, event::Direction};

use crate::net::iface::IfaceClass;

/// Where a received partial checksum means the sender's offload never completed.
pub fn partial_is_a_problem_on_ingress(class: &IfaceClass) -> bool {
    matches!(
        class,
        IfaceClass::Physical | IfaceClass::Bond | IfaceClass::Vlan
    )
}

/// Whether the programs send offload-pending mismatches at `hook` on an interface of `class` as
/// events, where they are a problem, or with `show_offload` (`--show-offload`); elsewhere they are
/// only counted. What a source is attached with (`SOURCE_REPORT_OFFLOAD`).
pub fn reports_offload_pending(hook: Hook, class: &IfaceClass, show_offload: bool) -> bool {
    show_offload || (hook != Hook::TcEgress && partial_is_a_problem_on_ingress(class))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Expected,
    Problem,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Expected => "expected",
            Self::Problem => "problem",
        }
    }
}

/// What decided a severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Basis {
    /// The skb's own checksum state (TC, with the partial-ok fast path): a partial checksum the
    /// skb is still to complete was settled in the kernel as `partial-ok`, so every
    /// offload-pending field left is one nothing will complete, on any interface.
    SkbState,
    /// Where it was seen (no skb state: XDP, replay, or a kernel whose layout is unknown).
    InterfaceClass,
}

impl Basis {
    pub fn name(self) -> &'static str {
        match self {
            Self::SkbState => "skb-state",
            Self::InterfaceClass => "interface-class",
        }
    }

    /// The basis at `hook` when the run's TC programs do (`skb_state`) or do not read the skb.
    pub fn at(hook: Hook, skb_state: bool) -> Self {
        if skb_state && hook != Hook::Xdp {
            Self::SkbState
        } else {
            Self::InterfaceClass
        }
    }
}

/// The severity of a mismatch of `kind` seen at `hook` on an interface of `class`, judged on
/// `basis`.
pub fn severity_on(basis: Basis, kind: Kind, hook: Hook, class: &IfaceClass) -> Severity {
    match (basis, kind) {
        (Basis::SkbState, Kind::OffloadPending) => Severity::Problem,
        _ => severity(kind, hook, class),
    }
}

/// The severity of a mismatch of `kind` seen at `hook` on an interface of `class`, by the
/// interface-class rule.
pub fn severity(kind: Kind, hook: Hook, class: &IfaceClass) -> Severity {
    match kind {
        Kind::Match => Severity::Expected,
        Kind::OffloadPending => {
            if hook.direction() == Direction::Ingress && partial_is_a_problem_on_ingress(class) {
                Severity::Problem
            } else {
                Severity::Expected
            }
        }
        Kind::Zero | Kind::ByteSwapped | Kind::Corrupt => Severity::Problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_checksums_by_place() {
        let veth = IfaceClass::Virtual("veth".into());
        for hook in Hook::ALL {
            assert_eq!(
                severity(Kind::OffloadPending, hook, &veth),
                Severity::Expected
            );
            assert_eq!(
                severity(Kind::OffloadPending, hook, &IfaceClass::Loopback),
                Severity::Expected
            );
        }
        for class in [IfaceClass::Physical, IfaceClass::Bond, IfaceClass::Vlan] {
            assert_eq!(
                severity(Kind::OffloadPending, Hook::Xdp, &class),
                Severity::Problem
            );
            assert_eq!(
                severity(Kind::OffloadPending, Hook::TcIngress, &class),
                Severity::Problem
            );
            assert_eq!(
                severity(Kind::OffloadPending, Hook::TcEgress, &class),
                Severity::Expected
            );
        }
    }

    #[test]
    fn with_the_skb_state_a_partial_checksum_left_is_a_problem_everywhere() {
        let veth = IfaceClass::Virtual("veth".into());
        for hook in [Hook::TcIngress, Hook::TcEgress] {
            let basis = Basis::at(hook, true);
            assert_eq!(basis, Basis::SkbState);
            assert_eq!(
                severity_on(basis, Kind::OffloadPending, hook, &veth),
                Severity::Problem
            );
            // Without the state, the interface decides, as before.
            let basis = Basis::at(hook, false);
            assert_eq!(basis.name(), "interface-class");
            assert_eq!(
                severity_on(basis, Kind::OffloadPending, hook, &veth),
                Severity::Expected
            );
        }
        // XDP has no skb.
        assert_eq!(Basis::at(Hook::Xdp, true), Basis::InterfaceClass);
        assert_eq!(
            severity_on(Basis::SkbState, Kind::Corrupt, Hook::TcEgress, &veth),
            Severity::Problem
        );
    }

    #[test]
    fn real_corruption_is_always_a_problem() {
        for class in [
            IfaceClass::Physical,
            IfaceClass::Loopback,
            IfaceClass::Virtual("veth".into()),
        ] {
            for hook in Hook::ALL {
                for kind in [Kind::Zero, Kind::ByteSwapped, Kind::Corrupt] {
                    assert_eq!(severity(kind, hook, &class), Severity::Problem);
                }
            }
        }
    }
}
