//! The live run's registry: every interface and hook attached so far (attached now or gone), the
//! slot each verdict names, and what happens when an interface or namespace goes away.

use std::collections::HashMap;

use checksum_common::{Counters, Hook};

use crate::{
    analysis::{Analysis, SourceId, SourceStatus, severity::IfaceClass},
    kernel::{attach::Attachment, ring},
    lifecycle::Lifecycle,
    net::follow::Namespace,
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

/// Everything attached so far, with the plumbing to read and detach it.
pub(super) struct Run {
    pub(super) namespaces: Vec<Namespace>,
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
    pub(super) fn new(namespaces: Vec<Namespace>) -> Self {
        Self {
            namespaces,
            sources: Vec::new(),
            by_slot: HashMap::new(),
            pending: Vec::new(),
            unattributed_events: 0,
            lifecycle: Lifecycle::default(),
        }
    }

    /// Brings every source's counters and attachment in `analysis` up to date (sources are
    /// registered there in the same order, so their ids agree), before anything is rendered.
    pub(super) fn refresh(&self, analysis: &mut Analysis) {
        for (id, s) in self.sources.iter().enumerate() {
            analysis.set_status(
                id as SourceId,
                SourceStatus {
                    counters: s.counters(),
                    attached: s.attachment.is_some(),
                    gone: s.gone,
                },
            );
        }
    }

    pub(super) fn add(&mut self, ns: usize, att: Attachment) {
        let id = self.sources.len() as SourceId;
        let name = self.namespaces[ns].display(&att.iface);
        eprintln!(
            "checksum-audit: auditing {name} (ifindex {}, {}) at {} ({})",
            att.ifindex,
            att.class.name(),
            att.hook.name(),
            att.mode
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
        eprintln!(
            "checksum-audit: {} disappeared; detached (its counters stay in the summary)",
            self.namespaces[ns].display(iface)
        );
    }

    /// The namespace's worker has ended; let go of everything in it so that it can be freed.
    pub(super) fn namespace_gone(&mut self, ns: usize) {
        let n = self.detach_in(ns, None);
        self.lifecycle.detached_namespace_gone += n;
        self.lifecycle.namespaces_gone += 1;
        eprintln!(
            "checksum-audit: network namespace {} was deleted; detached its {n} programs (their counters stay in the summary)",
            self.namespaces[ns].label
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
        eprintln!(
            "checksum-audit: warning: {:#}",
            self.in_namespace(ns, error)
        );
    }
}
