//! What the live run prints and serves: a line per mismatch (text or JSON), the terminal view,
//! periodic and final summaries, and the metrics snapshot, all read from the run's `Analysis`.

use std::{io::Write, time::Instant};

use anyhow::Result;
use checksum_common::Kind;
use serde_json::{Value, json};

use crate::{
    analysis::{
        Analysis, SourceFacts, SourceId, aggregate::Key, diagnosis::FlowDiagnosis,
        severity::Severity,
    },
    cli::{Format, LiveArgs},
    kernel::event::hex,
    lifecycle::Lifecycle,
    pcap::sink::CaptureSink,
    report::{
        metrics,
        output::{self, Clock, Source},
        view::{self, LiveView},
    },
};

use super::{
    Received,
    sources::{LISTED_GONE, SourceInfo, active, unlisted},
};

/// How many lines text output prints per flow and kind; the rest are counted in the summary.
const TEXT_LINES_PER_FLOW: u64 = 3;
const SUMMARY_FLOWS: usize = 20;

pub(super) struct Printer<'a> {
    pub(super) args: &'a LiveArgs,
    pub(super) clock: Clock,
    /// Aggregation, diagnosis and severity: the same pipeline replay uses.
    pub(super) analysis: Analysis,
    pub(super) started: Instant,
    /// The refreshing table, when stdout is a terminal (text format only).
    pub(super) view: Option<LiveView>,
    /// `--pcap-out`.
    pub(super) capture: Option<CaptureSink>,
}

impl Printer<'_> {
    /// Registers every new source with the analysis and, with `--pcap-out`, gives it its pcapng
    /// interface (`iface@hook`). Their ids are their places in `sources`.
    pub(super) fn register_sources(&mut self, sources: &[SourceInfo]) {
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

    pub(super) fn on_verdict(
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
    pub(super) fn draw(&mut self, sources: &[SourceInfo], out: &mut impl Write) -> Result<()> {
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
    pub(super) fn metrics_snapshot(
        &self,
        sources: &[SourceInfo],
        lifecycle: &Lifecycle,
    ) -> metrics::Snapshot {
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
                // By source and diagnosis: mismatches, flows, and the severity (which both fix).
                let mut by: std::collections::BTreeMap<(u32, &'static str), (u64, u64, Severity)> =
                    Default::default();
                for d in self.analysis.diagnoses() {
                    if sources[d.source as usize].gone.is_some() {
                        continue;
                    }
                    let severity = self.analysis.diagnosis_severity(&d);
                    let e = by
                        .entry((d.source, d.diagnosis.name()))
                        .or_insert((0, 0, severity));
                    e.0 += d.count;
                    e.1 += 1;
                }
                by.into_iter()
                    .map(|((source, diagnosis), (mismatches, flows, severity))| {
                        let s = &sources[source as usize];
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

    pub(super) fn summary(
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
