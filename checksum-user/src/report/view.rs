//! The live view when stdout is a terminal: a table redrawn in place every second, with a header
//! of rates and counters. When stdout is not a terminal, plain periodic summaries are printed
//! instead (see live.rs), which is what logs and pipes want.

use std::{collections::HashMap, fmt::Write as _, io::Write, time::Instant};

use checksum_common::{Kind, Layer};

use crate::{
    analysis::{Analysis, SourceId, diagnosis::Diagnosis, severity::Severity},
    model::Flow,
    sys::clock::Clock,
};

/// Whether stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    // SAFETY: isatty on a valid fd number only reads.
    unsafe { libc::isatty(libc::STDOUT_FILENO) == 1 }
}

/// Terminal width in columns (80 when unknown).
fn width() -> usize {
    // SAFETY: winsize is a plain C struct of integers; all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize; on failure we keep the default.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 20 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// One line of the table.
pub struct Row {
    pub iface: String,
    pub hook: &'static str,
    pub severity: &'static str,
    pub layer: &'static str,
    /// The diagnosis (or the per-packet kind).
    pub diagnosis: String,
    pub flow: String,
    pub count: u64,
    pub last_seen: String,
    pub explanation: String,
    /// Where its packets broke, when a path was followed (tracked flows).
    pub hop: Option<String>,
}

/// The header figures.
pub struct Header {
    pub packets: u64,
    pub problems: u64,
    pub expected: u64,
    pub lost: u64,
    pub hooks: Vec<String>,
}

impl Header {
    /// The figures over every source: packets, mismatches by severity, events lost, and the
    /// hooks attached now (with `mode`, how).
    pub fn of(analysis: &Analysis) -> Self {
        let mut header = Self {
            packets: 0,
            problems: 0,
            expected: 0,
            lost: 0,
            hooks: Vec::new(),
        };
        for (id, facts, status) in analysis.sources() {
            let c = &status.counters;
            header.packets += c.packets;
            header.lost += c.events_lost;
            for kind in Kind::MISMATCHES {
                match analysis.severity(id, kind) {
                    Severity::Problem => header.problems += c.mismatch(kind),
                    Severity::Expected => header.expected += c.mismatch(kind),
                }
            }
            if status.attached {
                header.hooks.push(format!(
                    "{} {} ({})",
                    facts.name,
                    facts.hook.name(),
                    facts.mode
                ));
            }
        }
        header
    }
}

/// The table's rows: one per flow and diagnosis, problems first, at most `limit`; flows whose
/// only finding is an expected partial checksum only with `show_offload`.
pub fn rows(analysis: &Analysis, clock: &Clock, show_offload: bool, limit: usize) -> Vec<Row> {
    // Last seen per flow, from the flow table (the diagnoser keeps no timestamps).
    let mut last_seen: HashMap<(SourceId, Layer, Flow), u64> = HashMap::new();
    // And the tunnel a flow came in, for its row.
    let mut encap: HashMap<(SourceId, Layer, Flow), &'static str> = HashMap::new();
    for (k, e) in analysis.flows().rows() {
        if e.encap != "none" {
            encap.insert((k.source, k.layer, k.flow), e.encap);
        }
        let t = last_seen.entry((k.source, k.layer, k.flow)).or_default();
        *t = (*t).max(e.last_ns);
    }
    let mut diagnoses: Vec<_> = analysis
        .diagnoses()
        .into_iter()
        .filter(|d| {
            show_offload
                || d.severity == Severity::Problem
                || !matches!(
                    d.diagnosis,
                    Diagnosis::OffloadPending | Diagnosis::TunnelOffloadPending
                )
        })
        .collect();
    diagnoses.sort_by_key(|d| (std::cmp::Reverse(d.severity), std::cmp::Reverse(d.count)));
    let paths = analysis.paths();
    diagnoses
        .into_iter()
        .take(limit)
        .map(|d| {
            let source = analysis.source(d.source);
            Row {
                iface: source.name.clone(),
                hook: source.hook.name(),
                severity: d.severity.name(),
                layer: d.layer.name(),
                diagnosis: d.diagnosis.name().into(),
                flow: match encap.get(&(d.source, d.layer, d.flow)) {
                    Some(tunnel) => format!("{} [{tunnel}]", d.flow),
                    None => d.flow.to_string(),
                },
                count: d.count,
                last_seen: last_seen
                    .get(&(d.source, d.layer, d.flow))
                    .map_or_else(String::new, |t| clock.rfc3339(*t)),
                explanation: d.diagnosis.explanation(),
                hop: paths
                    .iter()
                    .find(|p| p.broke_at(d.source, &d.flow))
                    .map(|p| super::path::short(analysis, p)),
            }
        })
        .collect()
}

/// What the previous frame showed, for rates.
struct Shown {
    at: Instant,
    packets: u64,
    /// Row key -> count.
    counts: Vec<(String, u64)>,
}

/// Redraws the screen; keeps what it needs to show rates.
pub struct LiveView {
    last: Option<Shown>,
}

impl Default for LiveView {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveView {
    pub fn new() -> Self {
        Self { last: None }
    }

    pub fn draw(
        &mut self,
        header: &Header,
        rows: &[Row],
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let now = Instant::now();
        let width = width();
        #[expect(
            clippy::cast_precision_loss,
            reason = "rates on screen: packet counts beyond 2^52 need no exact digits"
        )]
        let (pps, previous) = match &self.last {
            Some(shown) => {
                let secs = now.duration_since(shown.at).as_secs_f64().max(1e-3);
                (
                    header.packets.saturating_sub(shown.packets) as f64 / secs,
                    Some((secs, &shown.counts)),
                )
            }
            None => (0.0, None),
        };
        #[expect(
            clippy::cast_precision_loss,
            reason = "rates on screen: packet counts beyond 2^52 need no exact digits"
        )]
        let rate = |key: &str, count: u64| -> f64 {
            match previous {
                Some((secs, prev)) => {
                    let before = prev.iter().find(|(k, _)| k == key).map_or(0, |(_, c)| *c);
                    count.saturating_sub(before) as f64 / secs
                }
                None => 0.0,
            }
        };
        let mut screen = String::new();
        // Home and clear, then the frame: one write, so the terminal never shows half a table.
        screen.push_str("\x1b[H\x1b[2J");
        let _ = writeln!(
            screen,
            "checksum-audit  {:>10.0} packets/s audited  {} packets  {} problems  {} expected  {} events lost",
            pps, header.packets, header.problems, header.expected, header.lost
        );
        let _ = writeln!(screen, "hooks: {}", header.hooks.join(", "));
        let _ = writeln!(screen, "{}", "-".repeat(width.min(160)));
        let _ = writeln!(
            screen,
            "{:<14} {:<10} {:<8} {:<6} {:>8} {:>8} {:<8}  DIAGNOSIS / FLOW, WHY",
            "IFACE", "HOOK", "SEVERITY", "LAYER", "COUNT", "RATE/s", "LAST"
        );
        if rows.is_empty() {
            let _ = writeln!(screen, "(no mismatches yet)");
        }
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            let key = format!(
                "{}|{}|{}|{}|{}",
                r.iface, r.hook, r.layer, r.diagnosis, r.flow
            );
            // Two lines a row: the figures, then the flow and the explanation, so that a narrow
            // terminal cuts only prose.
            let line = format!(
                "{:<14} {:<10} {:<8} {:<6} {:>8} {:>8.1} {:<8}  {}",
                r.iface,
                r.hook,
                r.severity,
                r.layer,
                r.count,
                rate(&key, r.count),
                r.last_seen.get(11..19).unwrap_or(&r.last_seen),
                r.diagnosis,
            );
            let _ = writeln!(screen, "{}", truncate(&line, width));
            let _ = writeln!(
                screen,
                "{}",
                truncate(&format!("    {}: {}", r.flow, r.explanation), width)
            );
            if let Some(hop) = &r.hop {
                let _ = writeln!(screen, "{}", truncate(&format!("    {hop}"), width));
            }
            keys.push((key, r.count));
        }
        out.write_all(screen.as_bytes())?;
        out.flush()?;
        self.last = Some(Shown {
            at: now,
            packets: header.packets,
            counts: keys,
        });
        Ok(())
    }
}

fn truncate(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        line.to_owned()
    } else {
        line.chars()
            .take(width.saturating_sub(1))
            .chain(std::iter::once('…'))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_header_rows_and_rates() {
        let mut view = LiveView::new();
        let row = |count| Row {
            iface: "veth-b".into(),
            hook: "tc-ingress",
            severity: "problem",
            layer: "tcp",
            diagnosis: "corrupt".into(),
            flow: "10.0.0.1:1 -> 10.0.0.2:2".into(),
            count,
            last_seen: "2026-11-26T10:00:00.000000Z".into(),
            explanation: "The checksum is wrong.".into(),
            hop: Some(
                "broke between a tc-egress and b tc-ingress: no address or port changed".into(),
            ),
        };
        let header = |packets| Header {
            packets,
            problems: 1,
            expected: 0,
            lost: 0,
            hooks: vec!["veth-b tc-ingress".into()],
        };
        let mut out = Vec::new();
        view.draw(&header(10), &[row(1)], &mut out).unwrap();
        let first = String::from_utf8(out).unwrap();
        assert!(first.starts_with("\x1b[H\x1b[2J"));
        assert!(first.contains("veth-b tc-ingress"));
        assert!(first.contains("The checksum is wrong."));
        assert!(first.contains("    broke between a tc-egress and b tc-ingress"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut out = Vec::new();
        view.draw(&header(110), &[row(3)], &mut out).unwrap();
        let second = String::from_utf8(out).unwrap();
        assert!(!second.contains(" 0 packets/s"), "{second}");
        assert!(second.contains("10:00:00  corrupt"), "{second}");
        assert!(second.contains("       3 "), "{second}");
    }

    #[test]
    fn long_lines_are_cut_to_the_terminal() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
