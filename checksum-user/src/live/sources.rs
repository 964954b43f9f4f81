//! The live run's registry: every interface and hook attached so far (attached now or gone), the
//! slot each verdict names, and what happens when an interface or namespace goes away.

use std::collections::HashMap;

use checksum_common::{Counters, Hook};

use crate::{
    analysis::{
        Analysis, DropTracing, NamespaceCsumErrors, SourceId, SourceStatus, drops::DropSeen,
        source_id,
    },
    kernel::{
        attach::{Attachment, SharedKernel, lock},
        btf::DropConfig,
        drops::{KernelDrop, Symbolizer},
        ring,
    },
    lifecycle::Lifecycle,
    model::SkbStateUse,
    net::{
        iface::IfaceClass,
        namespace::Namespace,
        snmp::{CsumErrors, SnmpFiles},
    },
    report::notice,
};

use super::Received;

/// A verdict as the ring-buffer reader hands it over.
pub(super) type Raw = ring::Received;

/// One interface at one hook, attached now or earlier.
pub(super) struct SourceInfo {
    pub(super) ns: usize,
    pub(super) ifindex: u32,
    pub(super) iface: String,
    /// `iface` or `netns/iface`.
    pub(super) name: String,
    pub(super) hook: Hook,
    pub(super) mode: &'static str,
    pub(super) class: IfaceClass,
    /// `None` once detached (interface gone, or shutting down).
    pub(super) attachment: Option<Attachment>,
    /// Counters read when it was detached.
    pub(super) last_counters: Counters,
    /// When its interface or namespace went away: the how-many-th detach of that kind it was.
    pub(super) gone: Option<u64>,
}

impl SourceInfo {
    pub(super) fn counters(&self) -> Counters {
        self.attachment
            .as_ref()
            .map_or(self.last_counters, Attachment::counters)
    }

    pub(super) fn detach(&mut self) {
        if let Some(mut att) = self.attachment.take() {
            self.last_counters = att.detach();
        }
    }
}

/// What the run knows of an audited namespace once its worker is ready.
#[derive(Debug, Default)]
pub(super) struct NamespaceState {
    /// Its cookie, as kernel-drop records name it.
    cookie: Option<u64>,
    /// Its checksum error counters, open while it lives.
    snmp: Option<SnmpFiles>,
    /// The counters when its worker was ready, and their change since (kept when it goes away).
    baseline: Option<CsumErrors>,
    delta: CsumErrors,
}

impl NamespaceState {
    /// Reads the counters again (a read error keeps the last change).
    fn update(&mut self) {
        if let (Some(files), Some(baseline)) = (&mut self.snmp, &self.baseline)
            && let Ok(now) = files.read()
        {
            self.delta = now.since(baseline);
        }
    }
}

/// Names the kernel's checksum drops: reasons from BTF, locations from kallsyms.
pub(super) struct DropNaming {
    pub(super) config: DropConfig,
    pub(super) symbols: Symbolizer,
}

/// Everything attached so far, with the plumbing to read and detach it.
pub(super) struct Run {
    pub(super) namespaces: Vec<Namespace>,
    ns_state: Vec<NamespaceState>,
    /// The run's kernel object (for the drop program's counters).
    kernel: SharedKernel,
    /// Set when the drop program is attached.
    drop_naming: Option<DropNaming>,
    drop_tracing: DropTracing,
    /// Whether severity at TC follows the skb's checksum state this run.
    pub(super) skb_state: SkbStateUse,
    pub(super) sources: Vec<SourceInfo>,
    /// The source of each `STATES` slot; a slot keeps naming its last source after it is
    /// detached (slots are reused last), so that events still in the ring are attributed.
    pub(super) by_slot: HashMap<u32, SourceId>,
    /// Verdicts of sources whose `Attached` update has not arrived yet (the worker attaches, then
    /// tells): resolved as it arrives.
    pub(super) pending: Vec<Raw>,
    /// Verdicts whose source never became known (bounded `pending`, or left at the end).
    pub(super) unattributed_events: u64,
    pub(super) lifecycle: Lifecycle,
}

/// Most verdicts kept waiting for their source's `Attached` update.
const MAX_PENDING: usize = 16 * 1024;

impl Run {
    pub(super) fn new(
        namespaces: Vec<Namespace>,
        kernel: SharedKernel,
        drop_naming: Option<DropNaming>,
        drop_tracing: DropTracing,
    ) -> Self {
        let skb_state = lock(&kernel).skb_state().clone();
        Self {
            ns_state: namespaces
                .iter()
                .map(|_| NamespaceState::default())
                .collect(),
            namespaces,
            kernel,
            drop_naming,
            drop_tracing,
            skb_state,
            sources: Vec::new(),
            by_slot: HashMap::new(),
            pending: Vec::new(),
            unattributed_events: 0,
            lifecycle: Lifecycle::default(),
        }
    }

    /// Namespace `ns`'s worker is ready: remember its cookie and its counters at this point.
    pub(super) fn ready(&mut self, ns: usize, cookie: u64, snmp: Option<SnmpFiles>) {
        let state = &mut self.ns_state[ns];
        state.cookie = (cookie != 0).then_some(cookie);
        state.snmp = snmp;
        state.baseline = state.snmp.as_mut().and_then(|f| f.read().ok());
    }

    /// A checksum drop as the analysis takes it: reason and location named, and the device
    /// named as the audit names it where it is audited.
    pub(super) fn describe_drop(&mut self, d: &KernelDrop) -> DropSeen {
        let (reason, location) = match &mut self.drop_naming {
            Some(n) => (
                n.config
                    .reason_name(d.reason)
                    .map_or_else(|| format!("reason {}", d.reason), str::to_owned),
                n.symbols.name(d.location),
            ),
            None => (format!("reason {}", d.reason), format!("{:#x}", d.location)),
        };
        let ns = self
            .ns_state
            .iter()
            .position(|s| s.cookie.is_some_and(|c| c == d.netns));
        let device = match ns {
            Some(ns) => self
                .sources
                .iter()
                .find(|s| s.ns == ns && s.ifindex == d.ifindex)
                .map_or_else(
                    || self.namespaces[ns].display(&format!("ifindex {}", d.ifindex)),
                    |s| s.name.clone(),
                ),
            None => format!("ifindex {} (netns cookie {})", d.ifindex, d.netns),
        };
        DropSeen {
            timestamp_ns: d.timestamp_ns,
            flow: d.flow(&reason),
            reason,
            location,
            device,
            namespace: ns,
        }
    }

    /// Brings every source's counters and attachment in `analysis` up to date (sources are
    /// registered there in the same order, so their ids agree), and the kernel's own checksum
    /// counters, before anything is rendered.
    pub(super) fn refresh(&mut self, analysis: &mut Analysis) {
        for (id, s) in self.sources.iter().enumerate() {
            analysis.set_status(
                source_id(id),
                SourceStatus {
                    counters: s.counters(),
                    attached: s.attachment.is_some(),
                    gone: s.gone,
                },
            );
        }
        let mut counters = Vec::new();
        for (ns, state) in self.ns_state.iter_mut().enumerate() {
            state.update();
            if state.baseline.is_some() {
                counters.push(NamespaceCsumErrors {
                    namespace: self.namespaces[ns].label.clone(),
                    delta: state.delta,
                });
            }
        }
        analysis.set_in_csum_errors(counters);
        if let DropTracing::On { lost } = &mut self.drop_tracing {
            *lost = lock(&self.kernel).drop_counts().1;
        }
        let (expired, live) = lock(&self.kernel).sweep_tracked();
        analysis.note_tracking(expired, live);
        analysis.set_drop_tracing(self.drop_tracing.clone());
    }

    pub(super) fn add(&mut self, ns: usize, att: Attachment) {
        let id = source_id(self.sources.len());
        let name = self.namespaces[ns].display(&att.iface);
        notice::info(
            "attached",
            &format!(
                "auditing {name} (ifindex {}, {}) at {} ({})",
                att.ifindex,
                att.class.name(),
                att.hook.name(),
                att.mode
            ),
        );
        self.lifecycle.attached += 1;
        self.by_slot.insert(att.slot, id);
        self.sources.push(SourceInfo {
            ns,
            ifindex: att.ifindex,
            iface: att.iface.clone(),
            name,
            hook: att.hook,
            mode: att.mode,
            class: att.class.clone(),
            attachment: Some(att),
            last_counters: Counters::default(),
            gone: None,
        });
    }

    /// The source of a verdict, or `None` (kept in `pending`) until its attachment is known.
    pub(super) fn resolve(&mut self, (v, captured): Raw) -> Option<Received> {
        match self.by_slot.get(&v.slot) {
            Some(&id) => Some((id, v, captured)),
            None if self.pending.len() < MAX_PENDING => {
                self.pending.push((v, captured));
                None
            }
            None => {
                self.unattributed_events += 1;
                None
            }
        }
    }

    /// Verdicts in `pending` whose source is known now.
    pub(super) fn resolved_pending(&mut self) -> Vec<Received> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .into_iter()
            .filter_map(|raw| self.resolve(raw))
            .collect()
    }

    /// Detaches what is attached in namespace `ns` (to `ifindex` only, if given) because it went
    /// away; returns how many.
    pub(super) fn detach_in(&mut self, ns: usize, ifindex: Option<u32>) -> u64 {
        let mut n = 0;
        let before = self.lifecycle.detached();
        for s in self.sources.iter_mut().filter(|s| {
            s.ns == ns && ifindex.is_none_or(|i| s.ifindex == i) && s.attachment.is_some()
        }) {
            s.detach();
            s.gone = Some(before + n);
            n += 1;
        }
        n
    }

    pub(super) fn vanished(&mut self, ns: usize, ifindex: u32, iface: &str) {
        let n = self.detach_in(ns, Some(ifindex));
        if n == 0 {
            return; // it went away before anything was attached to it
        }
        self.lifecycle.detached_interface_gone += n;
        notice::info(
            "detached",
            &format!(
                "{} disappeared; detached (its counters stay in the summary)",
                self.namespaces[ns].display(iface)
            ),
        );
    }

    /// The namespace's worker has ended; let go of everything in it so that it can be freed.
    pub(super) fn namespace_gone(&mut self, ns: usize) {
        // Its counters' last change stays; the open files would keep it alive.
        self.ns_state[ns].update();
        self.ns_state[ns].snmp = None;
        let n = self.detach_in(ns, None);
        self.lifecycle.detached_namespace_gone += n;
        self.lifecycle.namespaces_gone += 1;
        notice::info(
            "namespace-deleted",
            &format!(
                "network namespace {} was deleted; detached its {n} programs (their counters stay in the summary)",
                self.namespaces[ns].label
            ),
        );
    }

    /// An error from namespace `ns`, naming it unless it is the current one.
    pub(super) fn in_namespace(&self, ns: usize, error: anyhow::Error) -> anyhow::Error {
        match self.namespaces[ns].label.as_str() {
            "" => error,
            label => error.context(format!("in network namespace {label}")),
        }
    }

    /// A warning from namespace `ns`, prefixed with its name unless it is the current one.
    pub(super) fn warn(&self, ns: usize, error: anyhow::Error) {
        notice::warning("warning", &format!("{:#}", self.in_namespace(ns, error)));
    }
}
