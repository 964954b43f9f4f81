//! `cargo xtask bench`: `BPF_PROG_TEST_RUN` cost per frame of the audit programs against no-op
//! programs of the same type, all measured in one run (these machines are noisy: compare ratios
//! within a run only). Prints a table, writes `bench/results.json` and `bench/ns_per_frame.svg`.

use std::{fs, path::Path};

use anyhow::{Context as _, Result};
use checksum_common::{Hook, encap::EncapKind};
use checksum_testkit::frames::{
    TCP, UDP, segment, tunnel_frame, tunnel_header, v4_frame, v6_frame,
};
use checksum_user::{
    kernel::loader::{NOOP_TC, NOOP_XDP, SUM_FLOOR_XDP},
    kernel::{
        loader::LoadOptions,
        object::Object,
        testrun::{FrameAuditor, audit_program},
    },
};
use serde_json::{Value, json};

use crate::{sandbox::require_root, workspace::workspace_root};

const FRAME_SIZES: [usize; 6] = [64, 128, 512, 1514, 4096, 9014];
/// Measurements per row; the best is kept.
const ROUNDS: usize = 5;
/// A TC test run takes one page of linear data at most.
const TC_MAX_FRAME: usize = 3500;

/// One measured row.
struct Row {
    hook: Hook,
    v6: bool,
    proto: u8,
    frame_bytes: usize,
    good: bool,
    ns: f64,
    noop_ns: f64,
    /// `sum_floor_xdp` on the same frame: summing its L4 bytes and nothing else (XDP, IPv4).
    floor_ns: Option<f64>,
}

impl Row {
    fn family(&self) -> &'static str {
        if self.v6 { "ipv6" } else { "ipv4" }
    }

    fn proto(&self) -> &'static str {
        if self.proto == TCP { "tcp" } else { "udp" }
    }

    fn ratio(&self) -> f64 {
        self.ns / self.noop_ns.max(0.1)
    }

    fn gbps(&self) -> f64 {
        self.frame_bytes as f64 / self.ns.max(0.1)
    }

    fn json(&self) -> Value {
        json!({
            "hook": self.hook.name(),
            "family": self.family(),
            "proto": self.proto(),
            "frame_bytes": self.frame_bytes,
            "checksum": if self.good { "good" } else { "bad" },
            "ns_per_frame": self.ns,
            "noop_ns_per_frame": self.noop_ns,
            "ratio": self.ratio(),
            "sum_floor_ns_per_frame": self.floor_ns,
            "gbps": self.gbps(),
        })
    }
}

/// The auditor of the build measured (`--legacy-kernels`, or the current one).
fn auditor_of(legacy_kernels: bool) -> Result<FrameAuditor> {
    let object = if legacy_kernels {
        Object::Legacy
    } else {
        Object::Current
    };
    println!("the {} build of the programs", object.name());
    Ok(FrameAuditor::with_options(&LoadOptions {
        object: Some(object),
        ..LoadOptions::default()
    })?)
}

fn write_json(path: &Path, json: &Value) -> Result<()> {
    fs::write(path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

pub fn run(repeat: u32, legacy_kernels: bool) -> Result<()> {
    require_root("bench")?;
    let mut auditor = auditor_of(legacy_kernels)?;
    let mut rows = Vec::new();
    println!(
        "{:<10} {:<6} {:<5} {:>6} {:>6} {:>10} {:>10} {:>7} {:>8} {:>9} {:>7}",
        "hook",
        "family",
        "proto",
        "bytes",
        "cksum",
        "audit ns",
        "no-op ns",
        "ratio",
        "GB/s",
        "floor ns",
        "÷floor"
    );
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let noop_program = if hook == Hook::Xdp { NOOP_XDP } else { NOOP_TC };
        for (v6, proto) in [(false, TCP), (false, UDP), (true, TCP), (true, UDP)] {
            for size in FRAME_SIZES {
                // The legacy build's XDP program sees only linear frames, as on its kernels.
                if (hook != Hook::Xdp || legacy_kernels) && size > TC_MAX_FRAME {
                    continue;
                }
                for good in [true, false] {
                    let frame = frame_of_size(v6, proto, size, good);
                    // Larger frames take longer per run; keep each measurement a similar length.
                    let reps = u32::try_from((repeat as usize * 64 / size.max(64)).max(2_000))
                        .unwrap_or(u32::MAX);
                    // Alternate the two programs and keep each one's best of ROUNDS: the minimum is
                    // the least disturbed by the rest of this noisy machine.
                    let (mut noop_ns, mut ns) = (f64::MAX, f64::MAX);
                    let with_floor = hook == Hook::Xdp && !v6;
                    let mut floor_ns = f64::MAX;
                    for _ in 0..ROUNDS {
                        noop_ns = noop_ns
                            .min(auditor.time(noop_program, &frame, reps)?.as_nanos() as f64);
                        ns =
                            ns.min(
                                auditor.time(audit_program(hook), &frame, reps)?.as_nanos() as f64
                            );
                        if with_floor {
                            floor_ns = floor_ns
                                .min(auditor.time(SUM_FLOOR_XDP, &frame, reps)?.as_nanos() as f64);
                        }
                    }
                    let row = Row {
                        hook,
                        v6,
                        proto,
                        frame_bytes: frame.len(),
                        good,
                        ns,
                        noop_ns,
                        floor_ns: with_floor.then_some(floor_ns),
                    };
                    let (floor, over_floor) = row.floor_ns.map_or_else(
                        || (String::new(), String::new()),
                        |f| (format!("{f:.1}"), format!("{:.2}", row.ns / f.max(0.1))),
                    );
                    println!(
                        "{:<10} {:<6} {:<5} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>8.2} {:>9} {:>7}",
                        hook.name(),
                        row.family(),
                        row.proto(),
                        row.frame_bytes,
                        if good { "good" } else { "bad" },
                        row.ns,
                        row.noop_ns,
                        row.ratio(),
                        row.gbps(),
                        floor,
                        over_floor,
                    );
                    rows.push(row);
                }
            }
        }
    }
    let dir = workspace_root().join("bench");
    fs::create_dir_all(&dir)?;
    let json = Value::Array(rows.iter().map(Row::json).collect());
    if legacy_kernels {
        // The figures of the other build only: the plots and tunnels stay the current build's.
        return write_json(&dir.join("results-legacy-kernels.json"), &json);
    }
    fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )
    .context("writing bench/results.json")?;
    plot(&rows, &dir.join("ns_per_frame.svg"))?;
    let tunnels = tunnel_rows(&mut auditor, repeat)?;
    fs::write(
        dir.join("tunnels.json"),
        serde_json::to_string_pretty(&Value::Array(tunnels))? + "\n",
    )
    .context("writing bench/tunnels.json")?;
    println!("wrote bench/results.json, bench/tunnels.json and bench/ns_per_frame.svg");
    Ok(())
}

/// ns/frame against frame size, one line per hook, family and protocol (good checksums).
fn plot(rows: &[Row], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_ns = rows.iter().map(|r| r.ns).fold(0.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "checksum-audit: BPF_PROG_TEST_RUN ns per frame (good checksums)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..9200usize, 0f64..max_ns.max(10.0))?;
    chart
        .configure_mesh()
        .x_desc("frame bytes")
        .y_desc("ns per frame")
        .draw()?;
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    let mut series = 0;
    for hook in [Hook::Xdp, Hook::TcIngress] {
        for (v6, proto) in [(false, TCP), (false, UDP), (true, TCP)] {
            let points: Vec<(usize, f64)> = rows
                .iter()
                .filter(|r| r.hook == hook && r.v6 == v6 && r.proto == proto && r.good)
                .map(|r| (r.frame_bytes, r.ns))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = palette[series % palette.len()];
            series += 1;
            let label = format!(
                "{} {} {}",
                hook.name(),
                if v6 { "ipv6" } else { "ipv4" },
                if proto == TCP { "tcp" } else { "udp" }
            );
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
    }
    // The no-op baseline, for scale.
    let noop: Vec<(usize, f64)> = rows
        .iter()
        .filter(|r| r.hook == Hook::Xdp && !r.v6 && r.proto == TCP && r.good)
        .map(|r| (r.frame_bytes, r.noop_ns))
        .collect();
    chart
        .draw_series(LineSeries::new(noop, BLACK.mix(0.4).stroke_width(1)))?
        .label("no-op XDP")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A frame of exactly `size` bytes (Ethernet header included, FCS excluded), or the smallest
/// possible when the headers alone are larger.
/// VXLAN rows: a 1514-byte inner TCP frame in VXLAN over IPv4 (outer and inner both checked,
/// two passes), against a plain UDP frame of the same outer size in the same run. Target: at
/// most 1.3 times the plain frame's cost.
fn tunnel_rows(auditor: &mut FrameAuditor, repeat: u32) -> Result<Vec<Value>> {
    let inner = frame_of_size(false, TCP, 1514, true);
    let header = tunnel_header(EncapKind::Vxlan, 42, &[], None);
    let tunnelled = tunnel_frame(false, 4789, &header, &inner).bytes;
    let plain = frame_of_size(false, UDP, tunnelled.len(), true);
    let reps =
        u32::try_from((repeat as usize * 64 / tunnelled.len()).max(2_000)).unwrap_or(u32::MAX);
    println!(
        "\n{:<10} {:>6} {:>12} {:>10} {:>7}",
        "hook", "bytes", "vxlan ns", "plain ns", "ratio"
    );
    let mut out = Vec::new();
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let (mut vxlan_ns, mut plain_ns) = (f64::MAX, f64::MAX);
        for _ in 0..ROUNDS {
            vxlan_ns = vxlan_ns.min(
                auditor
                    .time(audit_program(hook), &tunnelled, reps)?
                    .as_nanos() as f64,
            );
            plain_ns =
                plain_ns.min(auditor.time(audit_program(hook), &plain, reps)?.as_nanos() as f64);
        }
        let ratio = vxlan_ns / plain_ns.max(0.1);
        println!(
            "{:<10} {:>6} {:>12.1} {:>10.1} {:>7.2}",
            hook.name(),
            tunnelled.len(),
            vxlan_ns,
            plain_ns,
            ratio
        );
        out.push(json!({
            "hook": hook.name(),
            "encap": "vxlan",
            "inner_frame_bytes": inner.len(),
            "frame_bytes": tunnelled.len(),
            "ns_per_frame": vxlan_ns,
            "plain_ns_per_frame": plain_ns,
            "ratio_to_plain": ratio,
        }));
    }
    Ok(out)
}

fn frame_of_size(v6: bool, proto: u8, size: usize, good: bool) -> Vec<u8> {
    let headers = 14 + if v6 { 40 } else { 20 } + if proto == TCP { 20 } else { 8 };
    let payload = size.saturating_sub(headers);
    let mut f = if v6 {
        v6_frame(proto, segment(proto, payload))
    } else {
        v4_frame(&[], proto, segment(proto, payload), &[])
    };
    if !good {
        let c = f.checksum;
        f.set_field(c ^ 0x5555);
    }
    f.bytes
}
