//! What the live run prints and serves: a line per mismatch (text or JSON), the terminal view,
//! periodic and final summaries, and the metrics snapshot. Everything is read from the run's
//! `Analysis`, which the registry brings up to date (`Run::refresh`) before each of them.

use std::{fmt::Write as _, io::Write, time::Instant};

use anyhow::Result;
use checksum_common::{Kind, Status};
use serde_json::{Value, json};

use crate::{
    analysis::{Analysis, SourceFacts, SourceId, drops::DropSeen, severity::Severity},
    cli::{Format, LiveArgs},
    lifecycle::Lifecycle,
    model::{Flow, SkbStateUse, hex},
    pcap::sink::CaptureSink,
    report::{
        json, metrics,
        output::{self, Source},
        view::{self, LiveView},
    },
    sys::clock::Clock,
};

use super::{Received, sources::SourceInfo};

/// How many lines text output prints per flow and kind; the rest are counted in the summary.
const TEXT_LINES_PER_FLOW: u64 = 3;
const SUMMARY_FLOWS: usize = 20;

/// How many interfaces (at one hook each) that went away summaries still list, the most recent
/// first: a node agent sees pods come and go for months, and summaries must not grow with them.
/// Metrics drop a gone interface's series at once (`detachments_total` counts it).
const LISTED_GONE: u64 = 64;

pub(super) struct Printer<'a> {
    pub(super) args: &'a LiveArgs,
    pub(super) clock: Clock,
    /// Aggregation, diagnosis, severity and the sources' state: the same pipeline replay uses.
    pub(super) analysis: Analysis,
    pub(super) started: Instant,
    /// The refreshing table, when stdout is a terminal (text format only).
    pub(super) view: Option<LiveView>,
    /// `--pcap-out`.
    pub(super) capture: Option<CaptureSink>,
    /// Text lines printed per flow of `partial-ok` verdicts (listed with --show-offload, as
    /// offload-pending ones were, the first few per flow); bounded, past it they are only counted.
    partial_ok_lines: std::collections::HashMap<(SourceId, checksum_common::Layer, Flow), u64>,
    /// Agent mode: no line per verdict, and a diagnosis line only when it is new or changed
    /// (its mismatch count when last printed, by flow; bounded like the diagnoser).
    agent: Option<Printed>,
}

/// What the agent last printed of each flow's diagnosis: its mismatches and name.
type Printed =
    std::collections::HashMap<(SourceId, checksum_common::Layer, Flow), (u64, &'static str)>;

/// Most flows whose diagnosis lines the agent remembers having printed.
const AGENT_PRINTED_FLOWS: usize = 100_000;

/// Most flows whose `partial-ok` text lines are counted for `TEXT_LINES_PER_FLOW`.
const PARTIAL_OK_FLOWS: usize = 10_000;

impl<'a> Printer<'a> {
    /// Before any source: `skb_state` says whether severity at TC follows the skb's state.
    pub(super) fn new(
        args: &'a LiveArgs,
        view: Option<LiveView>,
        capture: Option<CaptureSink>,
        skb_state: SkbStateUse,
    ) -> Self {
        let mut analysis = Analysis::default();
        analysis.set_skb_state(skb_state);
        Self {
            args,
            clock: Clock::new(),
            analysis,
            started: Instant::now(),
            view,
            capture,
            partial_ok_lines: std::collections::HashMap::new(),
            agent: None,
        }
    }

    /// The node agent's stream: diagnoses as they appear or change, kernel drops, lifecycle.
    pub(super) fn agent_mode(&mut self) {
        self.agent = Some(std::collections::HashMap::new());
    }

    /// Registers every new source with the analysis and, with `--pcap-out`, gives it its pcapng
    /// interface (`iface@hook`). Their ids are their places in `sources`.
    pub(super) fn register_sources(&mut self, sources: &[SourceInfo]) {
        for s in &sources[self.analysis.source_count()..] {
            self.analysis.add_source(SourceFacts {
                name: s.name.clone(),
                hook: s.hook,
                class: s.class.clone(),
                mode: s.mode,
                namespace: s.ns,
            });
            if let Some(capture) = &mut self.capture {
                capture.add_source(&format!("{}@{}", s.name, s.hook.name()));
            }
        }
    }

    pub(super) fn on_verdict(
        &mut self,
        (source, v, captured): &Received,
        out: &mut impl Write,
    ) -> Result<()> {
        let (source, v) = (*source, v);
        let observed = self.analysis.observe(source, v);
        let sev = observed.severity;
        let facts = self.analysis.source(source);
        if let (Some(capture), Some(captured)) = (&mut self.capture, captured) {
            let diagnosis = self
                .analysis
                .diagnosis_of(source, v)
                .map_or("-", |d| d.name());
            let mut comment = format!(
                "layer={} got={} want={} kind={} severity={} diagnosis={diagnosis} iface={} hook={}",
                v.layer.name(),
                hex(v.got),
                hex(v.want),
                v.kind.name(),
                sev.name(),
                facts.name,
                facts.hook.name(),
            );
            if let Some(t) = v.encap {
                // Which packet of the frame the verdict is about: the capture holds the outer one.
                let _ = write!(
                    comment,
                    " encap={} vni={} level={}",
                    t.kind.name(),
                    t.vni,
                    t.level()
                );
            }
            capture.write(source, &self.clock, v.timestamp_ns, captured, &comment);
        }
        if self.view.is_some() || self.agent.is_some() {
            return Ok(()); // the table shows it; the agent logs diagnoses, not packets
        }
        // Partial checksums where they are normal are counted, and listed only on request.
        if v.kind == Kind::OffloadPending && sev == Severity::Expected && !self.args.show_offload {
            return Ok(());
        }
        // A tracked flow's good packets make its path (printed under its diagnosis); as lines of
        // their own they are for machines.
        if v.tracked && v.status != Status::Bad && self.args.format == Format::Text {
            return Ok(());
        }
        match self.args.format {
            Format::Json => {
                let seen = json::Seen::Live {
                    iface: &facts.name,
                    ts: self.clock.rfc3339(v.timestamp_ns),
                    severity: sev,
                    basis: self.analysis.basis(source),
                };
                writeln!(out, "{}", json::verdict_line(v, seen))?;
            }
            Format::Text => {
                let seen = if v.status == Status::PartialOk {
                    let key = (source, v.layer, v.flow);
                    let known = self.partial_ok_lines.len() < PARTIAL_OK_FLOWS
                        || self.partial_ok_lines.contains_key(&key);
                    if !known {
                        return Ok(());
                    }
                    let n = self.partial_ok_lines.entry(key).or_default();
                    *n += 1;
                    *n
                } else {
                    observed.seen
                };
                if seen <= TEXT_LINES_PER_FLOW {
                    writeln!(
                        out,
                        "{} {:<12} {:<10} {:<8} {}{}",
                        self.clock.rfc3339(v.timestamp_ns),
                        facts.name,
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

    /// One of the kernel's checksum drops: into the analysis, and onto the stream (every one in
    /// JSON; the first few of each flow and reason in text, as for verdicts).
    pub(super) fn on_drop(&mut self, d: &DropSeen, out: &mut impl Write) -> Result<()> {
        let seen = self.analysis.observe_drop(d);
        if self.view.is_some() {
            return Ok(());
        }
        match self.args.format {
            Format::Json => writeln!(out, "{}", output::kernel_drop_json(d, &self.clock))?,
            Format::Text if seen <= TEXT_LINES_PER_FLOW => writeln!(
                out,
                "{}{}",
                output::kernel_drop_text(d, &self.clock),
                if seen == TEXT_LINES_PER_FLOW {
                    "  (more of this flow are counted in the summary)"
                } else {
                    ""
                }
            )?,
            Format::Text => {}
        }
        Ok(())
    }

    /// Redraws the terminal view: rates and counters on top, one row per flow and diagnosis.
    pub(super) fn draw(&mut self, out: &mut impl Write) -> Result<()> {
        let header = view::Header::of(&self.analysis);
        let rows = view::rows(
            &self.analysis,
            &self.clock,
            self.args.show_offload,
            SUMMARY_FLOWS,
        );
        if let Some(view) = &mut self.view {
            view.draw(&header, &rows, out)?;
        }
        Ok(())
    }

    /// What `--metrics-addr` serves.
    pub(super) fn metrics_snapshot(&self, lifecycle: &Lifecycle) -> metrics::Snapshot {
        metrics::Snapshot::of(&self.analysis, lifecycle)
    }

    /// Agent mode: a diagnosis line for each flow whose diagnosis is new or changed.
    fn agent_diagnoses(&mut self, out: &mut impl Write) -> Result<()> {
        let Some(printed) = &mut self.agent else {
            return Ok(());
        };
        for d in &self.analysis.diagnoses() {
            let key = (d.source, d.layer, d.flow);
            let now = (d.count, d.diagnosis.name());
            let known = printed.contains_key(&key) || printed.len() < AGENT_PRINTED_FLOWS;
            if known && printed.get(&key) != Some(&now) {
                printed.insert(key, now);
                writeln!(out, "{}", output::diagnosis_json(&self.analysis, d))?;
            }
        }
        Ok(())
    }

    /// The periodic (`last` false) or final summary; the agent prints what changed of the
    /// diagnoses instead of a periodic summary.
    pub(super) fn summary(
        &mut self,
        lifecycle: &Lifecycle,
        last: bool,
        out: &mut impl Write,
    ) -> Result<()> {
        if self.agent.is_some() {
            self.agent_diagnoses(out)?;
            if !last {
                out.flush()?;
                return Ok(());
            }
        }
        self.full_summary(lifecycle, last, out)
    }

    fn full_summary(
        &mut self,
        lifecycle: &Lifecycle,
        last: bool,
        out: &mut impl Write,
    ) -> Result<()> {
        let elapsed = self.started.elapsed();
        let analysis = &self.analysis;
        let gone = lifecycle.detached();
        let listed: Vec<SourceId> = analysis
            .sources()
            .filter(|(_, _, status)| status.gone.is_none_or(|n| n + LISTED_GONE > gone))
            .map(|(id, _, _)| id)
            .collect();
        let active = analysis.sources().filter(|(_, _, s)| s.attached).count();
        let unlisted = gone.saturating_sub(LISTED_GONE);
        match self.args.format {
            Format::Json => {
                let diagnoses = if self.agent.is_some() {
                    Vec::new() // printed above as they changed
                } else {
                    analysis.diagnoses()
                };
                for d in &diagnoses {
                    writeln!(out, "{}", output::diagnosis_json(analysis, d))?;
                }
                for p in &analysis.paths() {
                    writeln!(out, "{}", crate::report::path::json(analysis, p))?;
                }
                if let Some(capture) = &mut self.capture {
                    capture.flush();
                }
                let interfaces: Vec<Value> = listed
                    .iter()
                    .map(|&id| output::source_json(&Source::of(analysis, id)))
                    .collect();
                let summary = json!({
                    "type": "summary",
                    "pcap": self.capture.as_ref().map(CaptureSink::summary_json),
                    "final": last,
                    "elapsed_s": elapsed.as_secs_f64(),
                    "interfaces": interfaces,
                    "flows": output::flows_json(analysis, &self.clock),
                    "evicted": {
                        "flows": analysis.flows().evicted.rows,
                        "mismatches": analysis.flows().evicted.mismatches,
                    },
                    "attachments": lifecycle.json(active, unlisted),
                    "kernel_drops": output::kernel_drops_json(analysis),
                    "skb_state": output::skb_state_json(analysis.skb_state()),
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
                if listed.is_empty() {
                    writeln!(out, "no interface attached (yet)")?;
                }
                for &id in &listed {
                    write!(out, "{}", output::source_text(&Source::of(analysis, id)))?;
                }
                if let SkbStateUse::Unavailable(why) = analysis.skb_state() {
                    writeln!(
                        out,
                        "skb checksum state: not read ({why}); severity of partial checksums follows the interface class"
                    )?;
                }
                if let Some(line) = lifecycle.text(active, unlisted) {
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
                        analysis,
                        &self.clock,
                        SUMMARY_FLOWS,
                        self.args.show_offload
                    )
                )?;
                write!(
                    out,
                    "{}",
                    output::diagnoses_text(analysis, &analysis.diagnoses(), true, SUMMARY_FLOWS)
                )?;
                write!(
                    out,
                    "{}",
                    output::kernel_drops_text(analysis, SUMMARY_FLOWS)
                )?;
            }
        }
        out.flush()?;
        Ok(())
    }
}
