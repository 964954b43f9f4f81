//! `cargo xtask bench --userspace`: the user-space side of the event path, measured in-process on
//! one core: ring-buffer records decoded, aggregated per flow and fed to the diagnosis, as live
//! mode does for every event. Also the resident memory after a million events of one flow and of
//! a million distinct flows: both tables are bounded, so memory must stay flat.

use std::time::Instant;

use anyhow::Result;
use checksum_common::{ChecksumEvent, Hook, Kind, Layer, Status, event::FAMILY_IPV4};
use checksum_user::{
    analysis::{Analysis, SourceFacts},
    model::Verdict,
    net::iface::IfaceClass,
};

const EVENTS: u32 = 1_000_000;

/// A ring-buffer record of a corrupt TCP segment; `flow` picks the source address and port.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the port is the flow number's low 16 bits"
)]
fn record(flow: u32, seq: u32) -> [u8; size_of::<ChecksumEvent>()] {
    let e = ChecksumEvent {
        timestamp_ns: 1_000_000 + u64::from(seq),
        ifindex: 2,
        tcp_seq: seq,
        src_addr: {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&(0x0a00_0000 | (flow >> 16)).to_be_bytes());
            a
        },
        dst_addr: {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[10, 199, 0, 2]);
            a
        },
        l4_len: 60,
        slot: 0,
        ip_id: seq,
        src_port: flow as u16,
        dst_port: 8080,
        got: 0x1234,
        want: (seq % 7919) as u16,
        pseudo: 0x4321,
        hook: Hook::TcIngress as u8,
        direction: 0,
        family: FAMILY_IPV4,
        protocol: 6,
        layer: Layer::Tcp as u8,
        status: Status::Bad as u8,
        kind: Kind::Corrupt as u8,
        ip_summed: checksum_common::event::IP_SUMMED_UNKNOWN,
        csum_start: 0,
        csum_offset: 0,
        network_header: 0,
        csum_level: 0,
        skb_flags: 0,
        report: 0,
        _pad: 0,
        tcp_ack: 0,
        flow_label: 0,
        encap: checksum_common::encap::Encap::default(),
    };
    // SAFETY: ChecksumEvent is plain old data of this size; this is exactly what the kernel writes.
    unsafe { std::mem::transmute::<ChecksumEvent, [u8; size_of::<ChecksumEvent>()]>(e) }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("VmRSS:")
                        .map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

/// Decodes and aggregates `EVENTS` records with `flows` distinct flows, one record at a time as
/// they come off the ring; returns events/s and what the bounded tables kept and counted.
fn run_once(flows: u32) -> Result<(f64, u64, u64, u64)> {
    // The live pipeline: one Analysis, fed one source's events.
    let mut analysis = Analysis::default();
    let source = analysis.add_source(SourceFacts {
        name: "bench".into(),
        hook: Hook::TcIngress,
        class: IfaceClass::Virtual("veth".into()),
        mode: "tcx",
        namespace: 0,
    });
    let start = Instant::now();
    for i in 0..EVENTS {
        let r = record(i % flows, i);
        let v = Verdict::decode(&r)?;
        analysis.observe(source, &v);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((
        f64::from(EVENTS) / secs,
        analysis.flows().len() as u64,
        analysis.flows().evicted.rows,
        analysis.untracked().mismatches,
    ))
}

pub fn run() -> Result<()> {
    // Timings of a debug build say nothing: run the release build of this same command.
    if cfg!(debug_assertions) {
        return crate::workspace::run(crate::workspace::cargo().args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "xtask",
            "--",
            "bench",
            "--userspace",
        ]));
    }
    println!(
        "{:>10} {:>14} {:>10} {:>12} {:>12} {:>10}",
        "flows", "events/s", "rows", "evicted", "diag-untr.", "RSS MiB"
    );
    for flows in [1, 1000, EVENTS] {
        let (rate, rows, evicted, diag_untracked) = run_once(flows)?;
        println!(
            "{flows:>10} {rate:>14.0} {rows:>10} {evicted:>12} {diag_untracked:>12} {:>10.1}",
            rss_kib() as f64 / 1024.0
        );
    }
    println!("(one core, in-process: decode + per-flow aggregation + diagnosis of every event)");
    Ok(())
}
