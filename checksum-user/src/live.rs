//! Live auditing: the programs are loaded once; namespace workers attach them to interfaces as
//! they match; this task drains the one ring buffer, aggregates, prints, and detaches everything
//! on the way out.

use std::{
    collections::HashMap,
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use checksum_common::{Counters, Hook, Kind};
use serde_json::{Value, json};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    analysis::aggregate::Key,
    analysis::diagnosis::FlowDiagnosis,
    analysis::severity::{IfaceClass, Severity},
    analysis::{Analysis, SourceFacts, SourceId},
    cli::{Format, LiveArgs},
    kernel::attach::{AttachError, Attachment, SharedKernel},
    kernel::event::{Captured, Verdict, hex},
    kernel::loader::{self, LoadOptions, Loaded},
    kernel::ring,
    lifecycle::Lifecycle,
    net::follow::{Namespace, Selector, Update, WorkerConfig, is_pattern, spawn_worker},
    pcap::sink::CaptureSink,
    report::metrics,
    report::output::{self, Clock, Source},
    report::view::{self, LiveView},
};

/// A verdict as the ring-buffer reader hands it over.
type Raw = ring::Received;

/// A verdict with the source it was seen at.
type Received = (SourceId, Verdict, Option<Captured>);

/// One interface at one hook, attached now or earlier.
struct SourceInfo {
    ns: usize,
    ifindex: u32,
    iface: String,
    /// `iface` or `netns/iface`.
    name: String,
    hook: Hook,
    mode: &'static str,
    class: IfaceClass,
    /// `None` once detached (interface gone, or shutting down).
    attachment: Option<Attachment>,
    /// Counters read when it was detached.
    last_counters: Counters,
    /// When its interface or namespace went away: the how-many-th detach of that kind it was.
    gone: Option<u64>,
}

impl SourceInfo {
    fn counters(&self) -> Counters {
        self.attachment
            .as_ref()
            .map_or(self.last_counters, Attachment::counters)
    }

    fn detach(&mut self) {
        if let Some(mut att) = self.attachment.take() {
            self.last_counters = att.detach();
        }
    }
}

/// How many interfaces (at one hook each) that went away summaries still list, the most recent
/// first: a node agent sees pods come and go for months, and summaries must not grow with them.
/// Metrics drop a gone interface's series at once (`detachments_total` counts it).
const LISTED_GONE: u64 = 64;

/// How many lines text output prints per flow and kind; the rest are counted in the summary.
const TEXT_LINES_PER_FLOW: u64 = 3;
const SUMMARY_FLOWS: usize = 20;

struct Printer<'a> {
    args: &'a LiveArgs,
    clock: Clock,
    /// Aggregation, diagnosis and severity: the same pipeline replay uses.
    analysis: Analysis,
    started: Instant,
    /// The refreshing table, when stdout is a terminal (text format only).
    view: Option<LiveView>,
    /// `--pcap-out`.
    capture: Option<CaptureSink>,
}

impl Printer<'_> {
    /// Registers every new source with the analysis and, with `--pcap-out`, gives it its pcapng
    /// interface (`iface@hook`). Their ids are their places in `sources`.
    fn register_sources(&mut self, sources: &[SourceInfo]) {
        for s in &sources[self.analysis.sources()..] {
            self.analysis.add_source(SourceFacts {
                name: s.name.clone(),
                hook: s.hook,
                class: s.class.clone(),
            });
            if let Some(capture) = &mut self.capture {
                capture.add_source(&format!("{}@{}", s.name, s.hook.name()));
            }
        }
    }

    fn on_verdict(
        &mut self,
        sources: &[SourceInfo],
        (source, v, captured): &Received,
        out: &mut impl Write,
    ) -> Result<()> {
        let (source, v) = (*source, v);
        let observed = self.analysis.observe(source, v);
        let sev = observed.severity;
        if let (Some(capture), Some(captured)) = (&mut self.capture, captured) {
            let s = &sources[source as usize];
            let diagnosis = self
                .analysis
                .diagnosis_of(source, v)
                .map_or("-", |d| d.name());
            let comment = format!(
                "layer={} got={} want={} kind={} severity={} diagnosis={diagnosis} iface={} hook={}",
                v.layer.name(),
                hex(v.got),
                hex(v.want),
                v.kind.name(),
                sev.name(),
                s.name,
                s.hook.name(),
            );
            capture.write(source, &self.clock, v.timestamp_ns, captured, &comment);
        }
        if self.view.is_some() {
            return Ok(()); // the table shows it
        }
        let info = &sources[source as usize];
        // Partial checksums where they are normal are counted, and listed only on request.
        if v.kind == Kind::OffloadPending && sev == Severity::Expected && !self.args.show_offload {
            return Ok(());
        }
        match self.args.format {
            Format::Json => {
                let mut m = v.json_fields();
                m.insert("iface".into(), json!(info.name));
                m.insert("hook".into(), json!(v.hook.name()));
                m.insert("ts".into(), json!(self.clock.rfc3339(v.timestamp_ns)));
                m.insert("severity".into(), json!(sev.name()));
                m.insert("direction".into(), json!(v.direction.name()));
                m.insert("ip_id".into(), json!(v.ip_id));
                m.insert("tcp_seq".into(), json!(v.tcp_seq));
                m.insert("pseudo".into(), json!(hex(v.pseudo)));
                m.insert("len".into(), json!(v.l4_len));
                writeln!(out, "{}", Value::Object(m))?;
            }
            Format::Text => {
                let seen = observed.seen;
                if seen <= TEXT_LINES_PER_FLOW {
                    writeln!(
                        out,
                        "{} {:<12} {:<10} {:<8} {}{}",
                        self.clock.rfc3339(v.timestamp_ns),
                        info.name,
                        v.hook.name(),
                        sev.name(),
                        output::verdict_text(v),
                        if seen == TEXT_LINES_PER_FLOW {
                            "  (more of this flow are counted in the summary)"
                        } else {
                            ""
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Redraws the terminal view: rates and counters on top, one row per flow and diagnosis.
    fn draw(&mut self, sources: &[SourceInfo], out: &mut impl Write) -> Result<()> {
        let mut header = view::Header {
            packets: 0,
            problems: 0,
            expected: 0,
            lost: 0,
            hooks: Vec::new(),
        };
        for (id, s) in sources.iter().enumerate() {
            let c = s.counters();
            header.packets += c.packets;
            header.lost += c.events_lost;
            for kind in Kind::MISMATCHES {
                match self.analysis.severity(id as SourceId, kind) {
                    Severity::Problem => header.problems += c.mismatch(kind),
                    Severity::Expected => header.expected += c.mismatch(kind),
                }
            }
            if s.attachment.is_some() {
                header
                    .hooks
                    .push(format!("{} {} ({})", s.name, s.hook.name(), s.mode));
            }
        }
        // Last seen per flow, from the aggregator (the diagnoser keeps no timestamps).
        let mut last_seen: std::collections::HashMap<
            (u32, checksum_common::Layer, crate::kernel::event::Flow),
            u64,
        > = Default::default();
        for (k, e) in self.analysis.flows().rows() {
            let t = last_seen.entry((k.source, k.layer, k.flow)).or_default();
            *t = (*t).max(e.last_ns);
        }
        let mut diagnoses: Vec<_> = self
            .analysis
            .diagnoses()
            .into_iter()
            .map(|d| (self.analysis.diagnosis_severity(&d), d))
            .filter(|(sev, d)| {
                self.args.show_offload
                    || *sev == Severity::Problem
                    || d.diagnosis.name() != "offload-pending"
            })
            .collect();
        diagnoses.sort_by_key(|(sev, d)| (std::cmp::Reverse(*sev), std::cmp::Reverse(d.count)));
        let rows: Vec<view::Row> = diagnoses
            .into_iter()
            .take(SUMMARY_FLOWS)
            .map(|(sev, d)| view::Row {
                iface: sources[d.source as usize].name.clone(),
                hook: sources[d.source as usize].hook.name(),
                severity: sev.name(),
                layer: d.layer.name(),
                diagnosis: d.diagnosis.name().into(),
                flow: d.flow.to_string(),
                count: d.count,
                last_seen: last_seen
                    .get(&(d.source, d.layer, d.flow))
                    .map_or_else(String::new, |t| self.clock.rfc3339(*t)),
                explanation: d.diagnosis.explanation(),
            })
            .collect();
        if let Some(view) = &mut self.view {
            view.draw(&header, &rows, out)?;
        }
        Ok(())
    }

    /// What `--metrics-addr` serves: kernel counters per source, events by kind and severity.
    fn metrics_snapshot(&self, sources: &[SourceInfo], lifecycle: &Lifecycle) -> metrics::Snapshot {
        let mut events: std::collections::BTreeMap<(u32, Kind), u64> = Default::default();
        for (key, entry) in self.analysis.flows().rows() {
            *events.entry((key.source, key.kind)).or_default() += entry.count;
        }
        metrics::Snapshot {
            sources: sources
                .iter()
                .filter(|s| s.gone.is_none())
                .map(|s| metrics::SourceMetrics {
                    iface: s.name.clone(),
                    hook: s.hook.name(),
                    mode: s.mode,
                    attached: s.attachment.is_some(),
                    counters: s.counters(),
                })
                .collect(),
            events: events
                .into_iter()
                .filter(|((source, _), _)| sources[*source as usize].gone.is_none())
                .map(|((source, kind), count)| {
                    let s = &sources[source as usize];
                    metrics::EventCount {
                        iface: s.name.clone(),
                        hook: s.hook.name(),
                        kind: kind.name(),
                        severity: self.analysis.severity(source, kind).name(),
                        count,
                    }
                })
                .collect(),
            diagnoses: {
                let mut by: std::collections::BTreeMap<(u32, &'static str), (u64, u64)> =
                    Default::default();
                for d in self.analysis.diagnoses() {
                    if sources[d.source as usize].gone.is_some() {
                        continue;
                    }
                    let e = by.entry((d.source, d.diagnosis.name())).or_default();
                    e.0 += d.count;
                    e.1 += 1;
                }
                by.into_iter()
                    .map(|((source, diagnosis), (mismatches, flows))| {
                        let s = &sources[source as usize];
                        let severity = if diagnosis == "offload-pending" {
                            self.analysis.severity(source, Kind::OffloadPending)
                        } else {
                            Severity::Problem
                        };
                        metrics::DiagnosisCount {
                            iface: s.name.clone(),
                            hook: s.hook.name(),
                            diagnosis,
                            severity: severity.name(),
                            mismatches,
                            flows,
                        }
                    })
                    .collect()
            },
            evicted: self.analysis.flows().evicted,
            lifecycle: *lifecycle,
        }
    }

    fn summary(
        &mut self,
        sources: &[SourceInfo],
        lifecycle: &Lifecycle,
        last: bool,
        out: &mut impl Write,
    ) -> Result<()> {
        let elapsed = self.started.elapsed();
        let analysis = &self.analysis;
        let names = |i: u32| analysis.name(i);
        let sev = |k: &Key| analysis.key_severity(k);
        let gone = lifecycle.detached();
        let listed = |s: &&SourceInfo| s.gone.is_none_or(|n| n + LISTED_GONE > gone);
        let summaries: Vec<_> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| listed(s))
            .map(|(id, s)| Source {
                name: &s.name,
                hook: s.hook.name(),
                mode: s.mode,
                class: s.class.name(),
                offload: analysis.severity(id as SourceId, Kind::OffloadPending),
                counters: s.counters(),
            })
            .collect();
        let diagnoses = analysis.diagnoses();
        let diagnosis_severity = |d: &FlowDiagnosis| analysis.diagnosis_severity(d);
        match self.args.format {
            Format::Json => {
                for d in &diagnoses {
                    let mut obj = output::diagnosis_json(d, diagnosis_severity(d));
                    obj["iface"] = json!(sources[d.source as usize].name);
                    obj["hook"] = json!(sources[d.source as usize].hook.name());
                    writeln!(out, "{obj}")?;
                }
                if let Some(capture) = &mut self.capture {
                    capture.flush();
                }
                let summary = json!({
                    "type": "summary",
                    "pcap": self.capture.as_ref().map(CaptureSink::summary_json),
                    "final": last,
                    "elapsed_s": elapsed.as_secs_f64(),
                    "interfaces": summaries.iter().map(output::source_json).collect::<Vec<_>>(),
                    "flows": output::flows_json(analysis.flows(), &names, &sev, &self.clock),
                    "evicted": {
                        "flows": analysis.flows().evicted.rows,
                        "mismatches": analysis.flows().evicted.mismatches,
                    },
                    "attachments": lifecycle.json(active(sources), unlisted(gone)),
                });
                writeln!(out, "{summary}")?;
            }
            Format::Text => {
                writeln!(
                    out,
                    "--- {} summary after {} ---",
                    if last { "final" } else { "checksum-audit" },
                    output::elapsed_text(elapsed)
                )?;
                if summaries.is_empty() {
                    writeln!(out, "no interface attached (yet)")?;
                }
                for s in &summaries {
                    write!(out, "{}", output::source_text(s))?;
                }
                if let Some(line) = lifecycle.text(active(sources), unlisted(gone)) {
                    write!(out, "{line}")?;
                }
                if let Some(capture) = &mut self.capture {
                    capture.flush();
                    write!(out, "{}", capture.summary_text())?;
                }
                write!(
                    out,
                    "{}",
                    output::flows_text(
                        analysis.flows(),
                        &names,
                        &sev,
                        &self.clock,
                        SUMMARY_FLOWS,
                        self.args.show_offload
                    )
                )?;
                let names_with_hook = |i: u32| {
                    format!(
                        "{} {}",
                        sources[i as usize].name,
                        sources[i as usize].hook.name()
                    )
                };
                write!(
                    out,
                    "{}",
                    output::diagnoses_text(
                        &diagnoses,
                        &names_with_hook,
                        &diagnosis_severity,
                        SUMMARY_FLOWS,
                    )
                )?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// Sources attached now.
fn active(sources: &[SourceInfo]) -> usize {
    sources.iter().filter(|s| s.attachment.is_some()).count()
}

/// Sources gone too long ago to be listed in summaries, of `gone` detached so far (each detach
/// of a gone interface or namespace is one source).
fn unlisted(gone: u64) -> u64 {
    gone.saturating_sub(LISTED_GONE)
}

/// Everything attached so far, with the plumbing to read and detach it.
struct Run {
    namespaces: Vec<Namespace>,
    sources: Vec<SourceInfo>,
    /// The source of each `STATES` slot; a slot keeps naming its last source after it is
    /// detached (slots are reused last), so that events still in the ring are attributed.
    by_slot: HashMap<u32, SourceId>,
    /// Verdicts of sources whose `Attached` update has not arrived yet (the worker attaches, then
    /// tells): resolved as it arrives.
    pending: Vec<Raw>,
    /// Verdicts whose source never became known (bounded `pending`, or left at the end).
    unattributed_events: u64,
    lifecycle: Lifecycle,
}

/// Most verdicts kept waiting for their source's `Attached` update.
const MAX_PENDING: usize = 16 * 1024;

impl Run {
    fn add(&mut self, ns: usize, att: Attachment) {
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
    fn resolve(&mut self, (v, captured): Raw) -> Option<Received> {
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
    fn resolved_pending(&mut self) -> Vec<Received> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .into_iter()
            .filter_map(|raw| self.resolve(raw))
            .collect()
    }

    /// Detaches what is attached in namespace `ns` (to `ifindex` only, if given) because it went
    /// away; returns how many.
    fn detach_in(&mut self, ns: usize, ifindex: Option<u32>) -> u64 {
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

    fn vanished(&mut self, ns: usize, ifindex: u32, iface: &str) {
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
    fn namespace_gone(&mut self, ns: usize) {
        let n = self.detach_in(ns, None);
        self.lifecycle.detached_namespace_gone += n;
        self.lifecycle.namespaces_gone += 1;
        eprintln!(
            "checksum-audit: network namespace {} was deleted; detached its {n} programs (their counters stay in the summary)",
            self.namespaces[ns].label
        );
    }

    /// An error from namespace `ns`, naming it unless it is the current one.
    fn in_namespace(&self, ns: usize, error: anyhow::Error) -> anyhow::Error {
        match self.namespaces[ns].label.as_str() {
            "" => error,
            label => error.context(format!("in network namespace {label}")),
        }
    }

    /// A warning from namespace `ns`, prefixed with its name unless it is the current one.
    fn warn(&self, ns: usize, error: &anyhow::Error) {
        match self.namespaces[ns].label.as_str() {
            "" => eprintln!("checksum-audit: warning: {error:#}"),
            label => eprintln!("checksum-audit: warning: in network namespace {label}: {error:#}"),
        }
    }
}

pub async fn run(args: &LiveArgs, kernel_log: bool) -> Result<()> {
    if args.ifaces.is_empty() && !args.all_interfaces {
        anyhow::bail!(
            "no interface given: pass --iface IF (names or patterns such as 'veth*'; list them with `ip link`), \
             --all-interfaces, or use `checksum-audit replay FILE`"
        );
    }
    let namespaces = if args.netns.is_empty() {
        vec![Namespace::current()]
    } else {
        args.netns
            .iter()
            .map(|spec| Namespace::parse(spec))
            .collect::<Result<Vec<_>>>()?
    };
    check_privileges(!args.netns.is_empty())?;
    let mut hooks: Vec<Hook> = Vec::new();
    for h in &args.hooks {
        if !hooks.contains(&h.hook()) {
            hooks.push(h.hook());
        }
    }
    // Open the capture file and bind the metrics port before loading anything: a bad path or a
    // busy port fails fast and cleanly.
    let capture = match &args.pcap_out {
        Some(path) => Some(CaptureSink::create(
            path,
            args.snaplen,
            args.pcap_max_bytes,
        )?),
        None => None,
    };
    let metrics = match &args.metrics_addr {
        Some(addr) => {
            let addr = metrics::parse_addr(addr)?;
            let listener = metrics::bind(addr).await?;
            let shared = metrics::Shared::default();
            let server = tokio::spawn(metrics::serve(listener, shared.clone()));
            eprintln!("checksum-audit: metrics at http://{addr}/metrics");
            Some((shared, server))
        }
        None => None,
    };
    // Signals first: a SIGTERM while loading or attaching must still run the cleanup below.
    let mut stop = StopSignals {
        int: signal(SignalKind::interrupt())?,
        term: signal(SignalKind::terminate())?,
    };
    let netns_by_device = namespaces.len() > 1;
    let Kernel {
        shared: kernel,
        ring,
        logger,
    } = load_kernel(args, &hooks, kernel_log, netns_by_device)?;
    let config = Arc::new(WorkerConfig {
        selector: Selector {
            patterns: args.ifaces.clone(),
            all: args.all_interfaces,
        },
        hooks,
        xdp_mode: args.xdp_mode.into(),
        show_offload: args.show_offload,
        kernel,
        netns_by_device,
    });

    let (events_tx, mut events_rx) = mpsc::channel::<Raw>(16 * 1024);
    let (stop_reader, stop_reader_rx) = watch::channel(false);
    let reader = tokio::spawn(ring::read_events(ring, events_tx, stop_reader_rx));
    let logger = logger.map(|l| tokio::spawn(ring::forward_kernel_log(l)));
    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel::<Update>();
    let stop_workers = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            spawn_worker(
                i,
                ns.clone(),
                config.clone(),
                updates_tx.clone(),
                stop_workers.clone(),
            )
        })
        .collect();
    drop(updates_tx);
    let mut run = Run {
        namespaces,
        sources: Vec::new(),
        by_slot: HashMap::new(),
        pending: Vec::new(),
        unattributed_events: 0,
        lifecycle: Lifecycle::default(),
    };
    let result = audit(
        args,
        &mut run,
        &mut events_rx,
        &mut updates_rx,
        &mut stop,
        metrics.as_ref().map(|(shared, _)| shared.clone()),
        capture,
    )
    .await;
    if let Some((_, server)) = metrics {
        server.abort();
    }

    // Stop following, detach everything, then drain what is left so the summary misses nothing.
    stop_workers.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    while let Ok(update) = updates_rx.try_recv() {
        if let Update::Attached { ns, attachment } = update {
            // Attached just before the stop: it is detached below with the rest, and its
            // verdicts are attributed.
            run.add(ns, *attachment);
        }
    }
    for s in &mut run.sources {
        s.detach();
    }
    let _ = stop_reader.send(true);
    match reader.await {
        Ok(Err(e)) => log::warn!("event reader: {e:#}"),
        Err(e) => log::warn!("event reader: {e}"),
        Ok(Ok(())) => {}
    }
    if let Some(logger) = logger {
        logger.abort();
    }
    let mut printer = result?;
    // Sources attached just before the stop, too.
    printer.register_sources(&run.sources);
    let mut stdout = std::io::stdout().lock();
    let mut received: Vec<Received> = run.resolved_pending();
    while let Ok(raw) = events_rx.try_recv() {
        received.extend(run.resolve(raw));
    }
    received.extend(run.resolved_pending());
    run.unattributed_events += run.pending.len() as u64;
    for r in &received {
        printer.on_verdict(&run.sources, r, &mut stdout)?;
    }
    printer.summary(&run.sources, &run.lifecycle, true, &mut stdout)?;
    if run.unattributed_events > 0 {
        eprintln!(
            "checksum-audit: warning: {} events named no audited interface (counted, not shown)",
            run.unattributed_events
        );
    }
    Ok(())
}

/// The run's kernel object, with its one ring buffer and, with -v, its log.
struct Kernel {
    shared: SharedKernel,
    ring: RingBuf<MapData>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// Loads and verifies the programs once, before anything is attached.
fn load_kernel(
    args: &LiveArgs,
    hooks: &[Hook],
    kernel_log: bool,
    netns_by_device: bool,
) -> Result<Kernel> {
    let netns_offsets = if netns_by_device {
        Some(crate::kernel::btf::NetnsOffsets::of_running_kernel()?)
    } else {
        None
    };
    let mut loaded = Loaded::load(&LoadOptions {
        ring_bytes: ring_bytes(args),
        kernel_log,
        events_per_flow: args.events_per_flow,
        snaplen: if args.pcap_out.is_some() {
            args.snaplen
        } else {
            0
        },
        netns_by_device: netns_offsets,
        ..LoadOptions::default()
    })?;
    loaded.load_audit_programs(hooks)?;
    let ring = loaded.take_events()?;
    let logger = if kernel_log {
        loaded.start_kernel_log()
    } else {
        None
    };
    Ok(Kernel {
        shared: Arc::new(std::sync::Mutex::new(loaded)),
        ring,
        logger,
    })
}

/// Before anything is attached: name the missing capability in one line rather than fail on
/// some syscall later (or, with a pattern that matches nothing yet, only when an interface
/// appears).
fn check_privileges(netns: bool) -> Result<()> {
    loader::check_privileges()?;
    if netns
        && crate::kernel::privileges::effective()
            .is_some_and(|e| !crate::kernel::privileges::can_join_netns(e))
    {
        anyhow::bail!(
            "missing privileges: CAP_SYS_ADMIN is not in the effective capability set; --netns needs it to join \
             another network namespace (setns). Without --netns, start checksum-audit inside that namespace"
        );
    }
    Ok(())
}

/// Until the end: attach what the workers found, print events and summaries.
async fn audit<'a>(
    args: &'a LiveArgs,
    run: &mut Run,
    events_rx: &mut mpsc::Receiver<Raw>,
    updates_rx: &mut mpsc::UnboundedReceiver<Update>,
    stop: &mut StopSignals,
    metrics: Option<metrics::Shared>,
    capture: Option<CaptureSink>,
) -> Result<Printer<'a>> {
    let view = (args.format == Format::Text && view::stdout_is_terminal()).then(LiveView::new);
    let mut printer = Printer {
        args,
        clock: Clock::new(),
        analysis: Analysis::default(),
        started: Instant::now(),
        view,
        capture,
    };
    let mut stdout = std::io::stdout().lock();
    // Phase 1: every namespace's first scan, so that errors stop the run before it is "ready".
    let mut pending = run.namespaces.len();
    while pending > 0 {
        tokio::select! {
            update = updates_rx.recv() => match update {
                Some(Update::Attached { ns, attachment }) => {
                    run.add(ns, *attachment);
                    printer.register_sources(&run.sources);
                },
                Some(Update::Ready { .. }) => pending -= 1,
                Some(Update::Failed { ns, error, .. }) => return Err(run.in_namespace(ns, error)),
                Some(Update::Vanished { ns, ifindex, iface }) => run.vanished(ns, ifindex, &iface),
                Some(Update::NamespaceGone { ns }) => run.namespace_gone(ns),
                None => anyhow::bail!("interface workers stopped unexpectedly"),
            },
            _ = stop.recv() => return Ok(printer),
        }
    }
    // A name without wildcards is a promise that the interface exists (in some namespace).
    for literal in args.ifaces.iter().filter(|p| !is_pattern(p)) {
        if !run.sources.iter().any(|s| &s.iface == literal) {
            let err = AttachError::UnknownInterface(literal.clone());
            return Err(match args.netns.is_empty() {
                true => err.into(),
                false => anyhow::Error::new(err)
                    .context(format!("in network namespaces {}", args.netns.join(", "))),
            });
        }
    }
    if run.sources.is_empty() {
        eprintln!("checksum-audit: no interface matches yet; waiting for one to appear");
    }
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    // Phase 2: steady state.
    let deadline = tokio::time::sleep(
        args.duration
            .unwrap_or(Duration::from_secs(100 * 365 * 86_400)),
    );
    tokio::pin!(deadline);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    // Metrics are refreshed once a second: kernel counters are read then, not per scrape.
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            Some(raw) = events_rx.recv() => {
                if let Some(received) = run.resolve(raw) {
                    printer.on_verdict(&run.sources, &received, &mut stdout)?;
                }
            }
            Some(update) = updates_rx.recv() => match update {
                Update::Attached { ns, attachment } => {
                    run.add(ns, *attachment);
                    printer.register_sources(&run.sources);
                    for received in run.resolved_pending() {
                        printer.on_verdict(&run.sources, &received, &mut stdout)?;
                    }
                },
                Update::Vanished { ns, ifindex, iface } => run.vanished(ns, ifindex, &iface),
                Update::NamespaceGone { ns } => run.namespace_gone(ns),
                // A worker that ended on an error no longer follows its namespace: nothing new
                // there would be audited, so the run stops (cleanly) rather than go on blind.
                Update::Failed { ns, error, fatal: true } => return Err(run.in_namespace(ns, error)),
                Update::Failed { ns, error, fatal: false } => run.warn(ns, &error),
                Update::Ready { .. } => {}
            },
            _ = ticker.tick(), if printer.view.is_none() => printer.summary(&run.sources, &run.lifecycle, false, &mut stdout)?,
            _ = redraw.tick(), if printer.view.is_some() => printer.draw(&run.sources, &mut stdout)?,
            _ = refresh.tick(), if metrics.is_some() => {
                if let Some(shared) = &metrics && let Ok(mut snapshot) = shared.lock() {
                    *snapshot = printer.metrics_snapshot(&run.sources, &run.lifecycle);
                }
            }
            _ = stop.recv() => break,
            _ = &mut deadline => break,
        }
    }
    Ok(printer)
}

/// Ring buffer size: as asked, but at least room for a few thousand captured frames with
/// --pcap-out (a capture record holds up to `--snaplen` bytes, not 80).
fn ring_bytes(args: &LiveArgs) -> u32 {
    if args.pcap_out.is_none() || args.ring_buffer_size != crate::kernel::loader::DEFAULT_RING_BYTES
    {
        return args.ring_buffer_size;
    }
    let wanted = crate::kernel::loader::capture_record_bytes(args.snaplen).saturating_mul(2048);
    wanted
        .next_power_of_two()
        .clamp(args.ring_buffer_size, 64 << 20)
}

/// SIGINT and SIGTERM, both meaning "detach, drain, print the final summary, exit".
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
