//! What a soak produced (`Outcome`, also what summary.json holds) and what `cargo xtask soak`
//! reports of it: the RSS verdict, summary.json, the RSS plot and a few lines on stdout.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// One sample, taken every second.
pub struct Sample {
    pub t: f64,
    pub rss_kib: u64,
    pub events: u64,
    pub lost: u64,
    pub packets: u64,
    pub attached: u64,
    pub detached: u64,
}

/// What the run produced; also what summary.json holds.
pub struct Outcome {
    pub opts_minutes: f64,
    pub pps: u64,
    pub sent: u64,
    pub elapsed: f64,
    pub samples: Vec<Sample>,
    pub warmup: f64,
    /// Seconds between two pairs created (`CHURN_EVERY`).
    pub churn_every: f64,
    pub pairs_created: u64,
    pub pairs_deleted: u64,
    /// Seconds from creating a pair to both ends attached at both hooks, as seen in the metrics
    /// (so to within about a second).
    pub attach_latencies: Vec<f64>,
    pub exit: String,
    pub errors: Vec<String>,
    pub leftovers: Vec<String>,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn json(&self) -> serde_json::Value {
        let last = self.samples.last();
        let get = |f: fn(&Sample) -> u64| last.map_or(0, f);
        json!({
            "minutes": self.opts_minutes,
            "elapsed_s": self.elapsed,
            "pps_target": self.pps,
            "frames_sent": self.sent,
            "pps_sent": self.sent as f64 / self.elapsed.max(1e-9),
            "packets_audited": get(|s| s.packets),
            "events": get(|s| s.events),
            "events_lost": get(|s| s.lost),
            "errors": self.errors,
            "exit": self.exit,
            "churn": {
                "every_s": self.churn_every,
                "pairs_created": self.pairs_created,
                "pairs_deleted": self.pairs_deleted,
                "attach_latency_s": latency_json(&self.attach_latencies),
            },
            "attachments": get(|s| s.attached),
            "detachments": get(|s| s.detached),
            "leftovers": self.leftovers,
            "rss_kib": rss_json(self),
            "verdict": if self.failures.is_empty() { "pass" } else { "fail" },
            "failures": self.failures,
            "samples": self.samples.iter().map(|s| json!({
                "t": (s.t * 10.0).round() / 10.0,
                "rss_kib": s.rss_kib,
                "events": s.events,
                "lost": s.lost,
                "packets": s.packets,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Resident memory may grow this much past the warm-up baseline (or a quarter of it, if more):
/// tables fill up to their bounds and the allocator keeps some slack, but a leak per event or
/// per attachment would pass it within a minute.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// Resident memory figures, in KiB.
struct Rss {
    start: u64,
    /// At the end of warm-up: tables have filled, the allocator has settled.
    baseline: u64,
    /// Highest after warm-up.
    peak: u64,
    end: u64,
    /// The most it may reach after warm-up.
    bound: u64,
}

fn rss(o: &Outcome) -> Option<Rss> {
    let first = o.samples.first()?;
    let baseline = o
        .samples
        .iter()
        .take_while(|s| s.t <= o.warmup)
        .last()
        .unwrap_or(first)
        .rss_kib;
    let peak = o
        .samples
        .iter()
        .filter(|s| s.t > o.warmup)
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(baseline);
    Some(Rss {
        start: first.rss_kib,
        baseline,
        peak,
        end: o.samples.last()?.rss_kib,
        bound: baseline + RSS_SLACK_KIB.max(baseline / 4),
    })
}

/// Why the RSS fails the soak, if it does.
pub fn rss_failure(o: &Outcome) -> Option<String> {
    let r = rss(o)?;
    (r.peak > r.bound).then(|| {
        format!(
            "RSS grew to {} KiB after warm-up, past the bound of {} KiB (baseline {} KiB)",
            r.peak, r.bound, r.baseline
        )
    })
}

pub fn rss_json(o: &Outcome) -> Value {
    match rss(o) {
        Some(r) => json!({
            "start": r.start,
            "warmup_s": o.warmup,
            "baseline": r.baseline,
            "peak_after_warmup": r.peak,
            "end": r.end,
            "bound": r.bound,
        }),
        None => Value::Null,
    }
}

/// Median and max of the pairs' attach latencies (seconds, to within about one).
pub fn latency_json(latencies: &[f64]) -> Value {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "pairs": sorted.len(),
        "median": sorted.get(sorted.len() / 2).copied().map(round),
        "max": sorted.last().copied().map(round),
    })
}

/// summary.json and rss.svg in `dir`.
pub fn write(o: &Outcome, dir: &Path) -> Result<()> {
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&o.json())? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    plot(o, &dir.join("rss.svg"))
}

pub fn print(o: &Outcome, dir: &Path) {
    let j = o.json();
    let r = &j["rss_kib"];
    println!(
        "soak: {:.1} min at {:.0} frames/s sent ({} target), {} audited",
        o.elapsed / 60.0,
        j["pps_sent"].as_f64().unwrap_or(0.0),
        o.pps,
        j["packets_audited"]
    );
    println!(
        "soak: events {} received, {} lost (counted); {} error/warning lines; exit {}",
        j["events"],
        j["events_lost"],
        o.errors.len(),
        o.exit
    );
    let latency = &j["churn"]["attach_latency_s"];
    println!(
        "soak: churn {} veth pairs created, {} deleted; {} attachments, {} detachments; \
         pair attached after {}s median, {}s max",
        o.pairs_created,
        o.pairs_deleted,
        j["attachments"],
        j["detachments"],
        latency["median"],
        latency["max"]
    );
    println!(
        "soak: RSS KiB start {} baseline {} (after {}s warm-up) peak {} end {} bound {}",
        r["start"], r["baseline"], o.warmup, r["peak_after_warmup"], r["end"], r["bound"]
    );
    println!(
        "soak: {} ({}/summary.json, {}/rss.svg)",
        j["verdict"],
        dir.display(),
        dir.display()
    );
}

/// RSS in MiB over minutes, with the end of warm-up and the bound.
fn plot(o: &Outcome, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let points: Vec<(f64, f64)> = o
        .samples
        .iter()
        .map(|s| (s.t / 60.0, mib(s.rss_kib)))
        .collect();
    let bound = rss(o).map_or(0.0, |r| mib(r.bound));
    let top = points.iter().map(|p| p.1).fold(bound, f64::max) * 1.2;
    let right = (o.elapsed / 60.0).max(0.1);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "checksum-audit soak: resident memory ({} frames/s target, veth churn)",
                o.pps
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..right, 0f64..top.max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("RSS MiB")
        .draw()?;
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?
        .label("RSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    let warm = o.warmup / 60.0;
    chart
        .draw_series(LineSeries::new(
            vec![(warm, 0.0), (warm, top)],
            BLACK.mix(0.4),
        ))?
        .label("end of warm-up")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    chart
        .draw_series(LineSeries::new(
            vec![(warm, bound), (right, bound)],
            RED.stroke_width(1),
        ))?
        .label("bound")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
