//! What a diagnosis says: the rewrite signature a flow shows and the rewrite that evidence names,
//! or the per-packet kind; with one sentence on what the checksums show and one on what to check.

use checksum_common::{
    csum::ones_eq,
    signature::{Rewritten, Signature},
};

use super::value::Side;
use crate::model::{Flow, hex};

/// The most chance matches expected over a flow's hypotheses for a run-wide value to be named.
pub const CHANCE_LIMIT: f64 = 0.01;

/// The chance that one wrong value has a given one's-complement sum (0x0000 and 0xffff are one).
const CHANCE_PER_HYPOTHESIS: f64 = 1.0 / 65535.0;

/// Which header field a rewrite changed.
///
/// Declared from the most to the least likely explanation; when several values fit the
/// arithmetic equally well this order picks one. Addresses come first (DNAT of a Service VIP is
/// the common case), ports last: they are a dense space, so a chance fit is likely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RewrittenField {
    DstAddr,
    SrcAddr,
    /// Address and port together (a Service whose port differs from its targetPort, a NodePort).
    DstAddrPort,
    SrcAddrPort,
    DstPort,
    SrcPort,
}

impl RewrittenField {
    pub fn name(self) -> &'static str {
        match self {
            Self::DstAddr => "dst-addr",
            Self::SrcAddr => "src-addr",
            Self::DstAddrPort => "dst-addr-port",
            Self::SrcAddrPort => "src-addr-port",
            Self::DstPort => "dst-port",
            Self::SrcPort => "src-port",
        }
    }

    /// For sentences: "destination address 10.96.0.10 -> 10.244.1.7".
    pub fn label(self) -> &'static str {
        match self {
            Self::DstAddr => "destination address",
            Self::SrcAddr => "source address",
            Self::DstAddrPort => "destination",
            Self::SrcAddrPort => "source",
            Self::DstPort => "destination port",
            Self::SrcPort => "source port",
        }
    }
}

/// What a named rewrite rests on, strongest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// The flow as it was before the rewrite was itself seen in this run.
    Seen,
    /// The original is a NAT candidate the user or the cluster supplied, and chance cannot
    /// account for the match: `hypotheses` candidates were tried for the flow.
    Candidate {
        /// The Service ("namespace/name") or the label of the candidate's line.
        name: Option<String>,
        /// Which field it came from: cluster-ip, external-ip, load-balancer, node-port, file.
        origin: &'static str,
        hypotheses: u64,
    },
    /// The original was seen elsewhere in the run, and chance cannot account for the match:
    /// `hypotheses` values were tried for the flow.
    RunWide { hypotheses: u64 },
}

impl Evidence {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Candidate { .. } => "candidate",
            Self::RunWide { .. } => "run-wide",
        }
    }

    /// For sentences, after "evidence: ".
    pub fn describe(&self) -> String {
        match self {
            Self::Seen => "the flow before the rewrite was seen in this run".into(),
            Self::Candidate {
                name: Some(name),
                origin,
                ..
            } => format!("a NAT candidate, {origin} of {name}"),
            Self::Candidate { origin, .. } => format!("a NAT candidate ({origin})"),
            Self::RunWide { hypotheses } => format!(
                "a value seen elsewhere in this run; {hypotheses} tried, {:.2}% expected by chance",
                expected_chance(*hypotheses) * 100.0
            ),
        }
    }

    /// The Service (or candidate label) the original belongs to.
    pub fn service(&self) -> Option<&str> {
        match self {
            Self::Candidate { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "hypothesis counts are far below 2^52"
)]
pub(super) fn expected_chance(hypotheses: u64) -> f64 {
    hypotheses as f64 * CHANCE_PER_HYPOTHESIS
}

/// A rewrite that explains a flow's checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub field: RewrittenField,
    /// The value before the rewrite: an address, a port, or address:port.
    pub original: String,
    /// The value now in the packet, in the same form.
    pub current: String,
    pub evidence: Evidence,
    /// How many other values fit the arithmetic with evidence as strong (0: unambiguous).
    pub alternatives: usize,
    /// With `Evidence::Seen`: the hook that saw this very packet before the rewrite, where its
    /// path shows it (`Analysis::diagnoses`).
    pub seen_at: Option<String>,
    /// The Service (or candidate label) whose address the original is, whatever evidence named
    /// the rewrite: a rewrite seen hop by hop from a Service address is still that Service's.
    pub service: Option<String>,
}

impl Rewrite {
    /// Whether `flow` carries the original value where this rewrite changed it: the flow as it
    /// was before the rewrite.
    pub fn original_in(&self, flow: &Flow) -> bool {
        let (side, what) = match self.field {
            RewrittenField::DstAddr => (Side::Dst, Rewritten::Addr),
            RewrittenField::SrcAddr => (Side::Src, Rewritten::Addr),
            RewrittenField::DstAddrPort => (Side::Dst, Rewritten::AddrPort),
            RewrittenField::SrcAddrPort => (Side::Src, Rewritten::AddrPort),
            RewrittenField::DstPort => (Side::Dst, Rewritten::Port),
            RewrittenField::SrcPort => (Side::Src, Rewritten::Port),
        };
        side.value(flow, what)
            .is_some_and(|v| v.to_string() == self.original)
    }

    /// What the rewrite rests on, for sentences.
    pub fn evidence_text(&self) -> String {
        match (&self.evidence, &self.seen_at) {
            (Evidence::Seen, Some(at)) => {
                format!("the same packet was seen before the rewrite, at {at}")
            }
            (evidence, _) => evidence.describe(),
        }
    }
    /// "destination address 10.96.0.10 -> 10.244.1.7".
    pub fn describe(&self) -> String {
        format!(
            "{} {} -> {}",
            self.field.label(),
            self.original,
            self.current
        )
    }
}

/// A flow's rewrite signature, and the rewrite when evidence names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteFinding {
    pub signature: Signature,
    /// What every mismatch of the flow shows (`Signature::observed`): got - want, got - pseudo,
    /// or the field.
    pub constant: u16,
    pub rewrite: Option<Rewrite>,
    /// Without a named rewrite: a run-wide value that fits, but that chance could explain.
    pub consistent_with: Option<(Rewrite, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// Boxed: the other variants carry nothing, and flows are mostly not rewritten.
    Rewrite(Box<RewriteFinding>),
    OffloadPending,
    /// Offload-pending in a tunnel's inner packet: the overlay's checksum offload bug (flannel#1279,
    /// calico#3145), with the tunnel's own next step.
    TunnelOffloadPending,
    ByteSwapped,
    Zero,
    Corrupt,
}

impl Diagnosis {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rewrite(r) => r.signature.name(),
            Self::OffloadPending => "offload-pending",
            Self::TunnelOffloadPending => "tunnel-offload-pending",
            Self::ByteSwapped => "byte-swapped",
            Self::Zero => "zero",
            Self::Corrupt => "corrupt",
        }
    }

    /// The rewrite named with evidence.
    pub fn likely_original(&self) -> Option<&Rewrite> {
        match self {
            Self::Rewrite(r) => r.rewrite.as_ref(),
            _ => None,
        }
    }

    /// A rewrite that fits but is not conclusive, with the hypotheses tried.
    pub fn consistent_with(&self) -> Option<&(Rewrite, u64)> {
        match self {
            Self::Rewrite(r) => r.consistent_with.as_ref(),
            _ => None,
        }
    }

    /// One sentence: what the checksums show.
    pub fn explanation(&self) -> String {
        match self {
            Self::Rewrite(r) => r.explanation(),
            Self::OffloadPending => "The field holds only the pseudo-header sum: the checksum was \
                 left to TX offload (CHECKSUM_PARTIAL) and not completed before this point."
                .into(),
            Self::TunnelOffloadPending => "The tunnelled (inner) packet's checksum holds only the \
                 pseudo-header sum: it was left to the tunnel device's TX checksum offload and the \
                 encapsulated packet was sent without it being completed."
                .into(),
            Self::ByteSwapped => {
                "The field is the correct checksum with its two bytes swapped.".into()
            }
            Self::Zero => {
                "The field is zero where a checksum is mandatory (TCP, ICMP, UDP over IPv6).".into()
            }
            Self::Corrupt => "The field fits no known signature: the packet changed after its \
                 checksum was computed, or the checksum was computed wrongly."
                .into(),
        }
    }

    /// One actionable sentence: where to look.
    pub fn next_step(&self) -> String {
        match self {
            Self::Rewrite(r) => r.next_step(),
            Self::OffloadPending => "Normal at egress and on veth/tap; if seen on ingress at a \
                 physical NIC, check TX checksum offload on the sender (ethtool -k, \
                 tx-checksumming) and any userspace dataplane or AF_PACKET path that forwarded the \
                 packet without completing it."
                .into(),
            Self::TunnelOffloadPending => "Normal at the sender's TC hooks and on veth; seen after \
                 the wire, turn TX checksum offload off on the sending node's tunnel device (ethtool \
                 -K flannel.1 tx-checksum-ip-generic off, or the VXLAN/Geneve device's name) or fix \
                 the NIC's tunnel offload (tx-udp_tnl-csum-segmentation), as in flannel#1279 and \
                 calico#3145."
                .into(),
            Self::ByteSwapped => "Look for an endianness bug in whatever writes this checksum (a \
                 missing or extra htons in a userspace stack, NAT, tunnel or packet generator): \
                 audit upstream to find the last writer."
                .into(),
            Self::Zero => {
                "Find who clears the checksum (sender, tunnel or rewriter); for UDP over \
                 IPv6, check tunnel settings that allow zero checksums (RFC 6935, e.g. \
                 udp6zerocsumtx) and whether the receiver accepts them."
                    .into()
            }
            Self::Corrupt => "Compare captures upstream and downstream to find where the bytes \
                 change; check NIC and driver errors (ethtool -S), RX checksum offload (try \
                 ethtool -K <iface> rx off) and veth paths that mark packets as already verified."
                .into(),
        }
    }
}

impl RewriteFinding {
    fn explanation(&self) -> String {
        let c = hex(self.constant);
        let what = match (&self.rewrite, self.signature) {
            (Some(r), Signature::StaleAfterRewrite) => format!(
                "Every mismatch is off by the same {c} while the payload varies: the checksum was \
                 computed before the {} rewrite and never updated.",
                r.describe()
            ),
            (None, Signature::StaleAfterRewrite) => format!(
                "Every mismatch is off by the same {c} while the payload varies: a field covered by \
                 the checksum was rewritten after it was computed (no address or port with \
                 evidence accounts for the difference)."
            ),
            (Some(r), Signature::PartialLeftAlone) => format!(
                "The field holds a partial (pseudo-header only) checksum still computed for the \
                 addresses before the {} rewrite.",
                r.describe()
            ),
            (Some(r), Signature::PartialUpdatedAsComplete) => format!(
                "The field holds a partial (pseudo-header only) checksum that the {} rewrite \
                 updated as if it were a complete checksum.",
                r.describe()
            ),
            (Some(r), Signature::CompletedAfterPartialUpdatedAsComplete) => format!(
                "Every mismatch is off by the same {c} while the payload varies: the {} rewrite \
                 updated a partial (pseudo-header only) checksum as if it were complete, and it \
                 was completed downstream, so the address change counts twice and the port \
                 change once.",
                r.describe()
            ),
            (Some(r), Signature::AbsentChecksumUpdated) => format!(
                "The UDP checksum is the same {c} whatever the payload: the sender sent none \
                 (zero) and the {} rewrite updated the zero as if it were a checksum.",
                r.describe()
            ),
            (None, _) => format!(
                "The UDP checksum is the same {c} whatever the payload: the sender sent none \
                 (zero) and a rewrite on the path updated the zero as if it were a checksum."
            ),
        };
        let evidence = self
            .rewrite
            .as_ref()
            .map(|r| format!(" (evidence: {})", r.evidence_text()));
        let consistent = self.consistent_with.as_ref().map(|(r, hypotheses)| {
            format!(
                " Consistent with a rewrite of the {}; not conclusive: {hypotheses} values were \
                 tried and {:.1} chance matches expected.",
                r.describe(),
                expected_chance(*hypotheses)
            )
        });
        what + &evidence.unwrap_or_default() + &consistent.unwrap_or_default()
    }

    fn next_step(&self) -> String {
        let ovs = |r: &Rewrite| {
            format!(
                "Check the NAT that rewrites the {} (a virtual switch such as Open vSwitch on \
                 Windows, or a userspace dataplane): with checksum offload it must update a \
                 partial checksum as a pseudo-header sum, not as a complete checksum. To confirm, \
                 disable TX checksum offload on the sending node's interface or vNIC and the \
                 errors stop; the fix is a datapath that updates partial checksums as \
                 pseudo-header sums (openvswitch/ovs-issues#231).",
                r.describe()
            )
        };
        match (&self.rewrite, self.signature) {
            (Some(r), Signature::StaleAfterRewrite) => format!(
                "Check the NAT or service rule that rewrites the {}: it does not update the \
                 checksum (look for a tc/XDP program, an IPVS/iptables/nftables or OVS ct(nat) rule, \
                 or a userspace dataplane on the path).",
                r.describe()
            ),
            (None, Signature::StaleAfterRewrite)
                if ones_eq(self.constant, 1) || ones_eq(self.constant, !1) =>
            {
                "Find the incremental checksum update on the path: an offset of exactly 1 is the \
                 signature of two's-complement arithmetic (RFC 1141) where RFC 1624 is needed."
                    .into()
            }
            (None, Signature::StaleAfterRewrite) => "Follow the flow hop by hop (audit every hop \
                 at once), or pass the cluster's Services with --nat-candidates, to find the \
                 rewrite that leaves the checksum unchanged; capture before and after each NAT, \
                 load balancer, tunnel endpoint or tc/XDP program on the path."
                .into(),
            (Some(r), Signature::PartialLeftAlone) => format!(
                "Check the NAT that rewrites the {}: with checksum offload it must update the \
                 pseudo-header sum in the field (it left it alone); to confirm, disable TX \
                 checksum offload on the sending interface.",
                r.describe()
            ),
            (
                Some(r),
                Signature::PartialUpdatedAsComplete
                | Signature::CompletedAfterPartialUpdatedAsComplete,
            ) => ovs(r),
            (Some(r), Signature::AbsentChecksumUpdated) => format!(
                "Fix the NAT that rewrites the {} to leave a zero UDP checksum alone (RFC 768), or \
                 make the sender compute UDP checksums (e.g. a tunnel's udp-csum option).",
                r.describe()
            ),
            (None, _) => "Find the NAT on the path that updates zero UDP checksums (it must leave \
                 them alone, RFC 768), or make the sender compute UDP checksums (e.g. a tunnel's \
                 udp-csum option)."
                .into(),
        }
    }
}

impl Evidence {
    /// The values of its kind tried for the flow (none for seen evidence).
    pub(super) fn hypotheses(&self) -> u64 {
        match self {
            Self::Seen => 0,
            Self::Candidate { hypotheses, .. } | Self::RunWide { hypotheses } => *hypotheses,
        }
    }

    /// Seen evidence stands; a candidate or run-wide match only when the expected number of
    /// chance matches among the values of its kind tried for the flow is below `CHANCE_LIMIT`.
    pub(super) fn is_significant(&self) -> bool {
        matches!(self, Self::Seen) || expected_chance(self.hypotheses()) < CHANCE_LIMIT
    }

    pub(super) fn rank(&self) -> u8 {
        match self {
            Self::Seen => 0,
            Self::Candidate { .. } => 1,
            Self::RunWide { .. } => 2,
        }
    }
}
