//! `--pcap-out` building blocks: the frame bytes mismatch events carry (`BPF_PROG_TEST_RUN` at XDP
//! and TC, capture on and off), and the pcapng writer, read back by tshark.

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use checksum_common::{
    Hook, Kind, Layer, Status,
    event::{CAPTURE_HEADER_LEN, MAX_SNAP},
};
use checksum_testkit::frames::*;
use checksum_user::{
    kernel::loader::{LoadOptions, capture_record_bytes},
    kernel::testrun::{FrameAuditor, SkbMeta},
    model::{Captured, Verdict, effective_snaplen},
    pcap::write::PcapngWriter,
};

const HOOKS: [Hook; 3] = Hook::ALL;

fn auditor(snaplen: u32, report_all: bool) -> FrameAuditor {
    FrameAuditor::with_options(&LoadOptions {
        snaplen,
        report_all,
        ..LoadOptions::default()
    })
    .expect("load with capture")
}

fn run(a: &mut FrameAuditor, hook: Hook, frame: &[u8]) -> Vec<(Verdict, Option<Captured>)> {
    a.audit_captured(hook, frame, &SkbMeta::default())
        .expect("test run")
}

/// Bad frames of every layer, with what their mismatch must be.
fn bad_frames() -> Vec<(&'static str, Vec<u8>, Layer, Kind)> {
    let mut out = Vec::new();
    let mut f = v4_frame(&[], TCP, segment(TCP, 100), &[]);
    let c = f.checksum;
    f.set_field(c ^ 0x4242);
    out.push(("v4-tcp-corrupt", f.bytes, Layer::Tcp, Kind::Corrupt));
    let mut f = v4_frame(&[], UDP, segment(UDP, 300), &[]);
    let c = f.checksum;
    f.set_field(c.swap_bytes());
    out.push(("v4-udp-swapped", f.bytes, Layer::Udp, Kind::ByteSwapped));
    let mut f = v6_frame(UDP, segment(UDP, 20));
    f.set_field(0);
    out.push(("v6-udp-zero", f.bytes, Layer::Udp, Kind::Zero));
    let mut f = v6_frame(TCP, segment(TCP, 1400));
    let p = f.pseudo;
    f.set_field(p);
    out.push((
        "v6-tcp-offload-pending",
        f.bytes,
        Layer::Tcp,
        Kind::OffloadPending,
    ));
    let mut f = v4_frame(&[0x8100], ICMP, segment(ICMP, 40), &[]);
    f.corrupt_payload();
    out.push(("vlan-v4-icmp-corrupt", f.bytes, Layer::Icmp, Kind::Corrupt));
    let mut f = v4_frame(&[], UDP, segment(UDP, 20), &[]);
    f.bytes[f.l3_off + 8] = 1; // TTL changed, header checksum not updated
    out.push(("v4-header-ttl", f.bytes, Layer::Ipv4, Kind::Corrupt));
    out
}

fn max_snap() -> u32 {
    u32::try_from(MAX_SNAP).unwrap()
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "a few VLAN tags into a test frame"
)]
fn l3_off_of(frame: &[u8]) -> u16 {
    let mut off = 14;
    while off + 4 <= frame.len() && matches!(&frame[off - 2..off], [0x81, 0x00] | [0x88, 0xa8]) {
        off += 4;
    }
    off as u16
}

#[test]
fn mismatches_carry_the_frame_prefix_at_every_hook() {
    root_only!();
    for snaplen in [64u32, 256] {
        // REPORT_OFFLOAD so offload-pending mismatches are sent (and captured) too.
        let mut a = FrameAuditor::with_options(&LoadOptions {
            snaplen,
            report_offload: true,
            ..LoadOptions::default()
        })
        .expect("load");
        for (name, frame, layer, kind) in bad_frames() {
            for hook in HOOKS {
                let reports = run(&mut a, hook, &frame);
                assert_eq!(reports.len(), 1, "{name} at {hook:?}: {reports:#?}");
                let (v, cap) = &reports[0];
                assert_eq!((v.layer, v.status, v.kind), (layer, Status::Bad, kind));
                let cap = cap.as_ref().unwrap_or_else(|| panic!("{name}: no capture"));
                let want = frame.len().min(snaplen as usize);
                assert_eq!(cap.frame_len as usize, frame.len(), "{name} at {hook:?}");
                assert_eq!(cap.data.len(), want, "{name} at {hook:?}");
                assert_eq!(cap.data, frame[..want], "{name} at {hook:?}");
                assert_eq!(cap.l3_off, l3_off_of(&frame), "{name} at {hook:?}");
            }
        }
        assert_eq!(a.counters().events_lost, 0);
    }
}

#[test]
fn good_frames_send_nothing_and_capture_off_sends_plain_events() {
    root_only!();
    let mut on = auditor(256, false);
    for (v6, proto) in [(false, TCP), (false, UDP), (false, ICMP), (true, TCP)] {
        let f = if v6 {
            v6_frame(proto, segment(proto, 200))
        } else {
            v4_frame(&[], proto, segment(proto, 200), &[])
        };
        for hook in HOOKS {
            assert!(run(&mut on, hook, &f.bytes).is_empty(), "{hook:?}");
        }
    }
    let mut off = auditor(0, false);
    for (name, frame, layer, _) in bad_frames() {
        if name.contains("offload") {
            continue; // only counted without REPORT_OFFLOAD
        }
        for hook in HOOKS {
            let reports = run(&mut off, hook, &frame);
            assert_eq!(reports.len(), 1, "{name} at {hook:?}");
            assert_eq!(reports[0].0.layer, layer);
            assert!(reports[0].1.is_none(), "{name}: capture while off");
        }
    }
}

/// Capture changes nothing but the bytes: over the whole catalogue (good, bad, partial, zero,
/// swapped, truncated, VLAN, options, padding), every hook reports the same verdicts with capture
/// on and off, and every mismatch carries its frame's prefix.
#[test]
fn capture_on_and_off_agree_on_every_catalogued_frame() {
    root_only!();
    let opts = |snaplen| LoadOptions {
        snaplen,
        report_all: true,
        report_offload: true,
        ..LoadOptions::default()
    };
    let mut off = FrameAuditor::with_options(&opts(0)).expect("load");
    let mut on = FrameAuditor::with_options(&opts(200)).expect("load");
    let mut captured = 0;
    for (name, frame) in catalogue() {
        for hook in HOOKS {
            let plain = run(&mut off, hook, &frame);
            let with = run(&mut on, hook, &frame);
            let strip = |r: &[(Verdict, Option<Captured>)]| {
                r.iter()
                    .map(|(v, _)| (v.layer, v.status, v.kind, v.got, v.want, v.l4_len))
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(&with), strip(&plain), "{name} at {hook:?}");
            for ((v, cap), (_, none)) in with.iter().zip(&plain) {
                assert!(none.is_none());
                if v.status == Status::Bad {
                    let cap = cap.as_ref().expect("capture of a mismatch");
                    assert_eq!(
                        cap.data,
                        frame[..frame.len().min(200)],
                        "{name} at {hook:?}"
                    );
                    assert_eq!(cap.frame_len as usize, frame.len());
                    captured += 1;
                } else {
                    assert!(cap.is_none(), "{name}: capture of a {:?} verdict", v.status);
                }
            }
        }
    }
    assert!(captured > 300, "{captured}");
    assert_eq!(on.counters().events_lost, 0);
}

#[test]
fn report_all_captures_only_mismatches() {
    root_only!();
    let mut a = auditor(128, true);
    let mut f = v4_frame(&[], TCP, segment(TCP, 500), &[]);
    let c = f.checksum;
    f.set_field(c ^ 1);
    for hook in HOOKS {
        let reports = run(&mut a, hook, &f.bytes);
        assert_eq!(reports.len(), 2, "{reports:#?}");
        for (v, cap) in &reports {
            if v.layer == Layer::Ipv4 {
                assert_eq!(v.status, Status::Ok);
                assert!(cap.is_none());
            } else {
                assert_eq!(v.status, Status::Bad);
                assert_eq!(cap.as_ref().expect("capture").data, f.bytes[..128]);
            }
        }
    }
}

#[test]
fn snaplen_beyond_the_frame_or_the_maximum() {
    root_only!();
    // Longer than the frame: the whole frame. Beyond MAX_SNAP: clamped.
    assert_eq!(effective_snaplen(u32::MAX), max_snap());
    let mut a = auditor(u32::MAX, false);
    let mut f = v4_frame(&[], UDP, segment(UDP, 1000), &[]);
    let c = f.checksum;
    f.set_field(c ^ 0x0101);
    for hook in HOOKS {
        let reports = run(&mut a, hook, &f.bytes);
        let cap = reports[0].1.as_ref().expect("capture");
        assert_eq!(cap.data, f.bytes);
    }
    // Ethernet padding is captured as it is on the wire.
    let mut short = v4_frame(&[], UDP, segment(UDP, 1), &[]);
    short.pad_to(60, 0xa5);
    let c = short.checksum;
    short.set_field(c ^ 0x0101);
    let reports = run(&mut a, Hook::Xdp, &short.bytes);
    assert_eq!(reports[0].1.as_ref().expect("capture").data, short.bytes);
}

/// A jumbo frame spans the linear part and the fragments of a multi-buffer XDP test run.
#[test]
fn jumbo_frames_capture_from_fragments() {
    root_only!();
    let mut f = v4_frame(&[], TCP, segment(TCP, 9000 - 20 - 20), &[]);
    let c = f.checksum;
    f.set_field(c ^ 0x8000);
    assert_eq!(f.bytes.len(), 9014);
    for snaplen in [64u32, 256, 5000, max_snap()] {
        let mut a = auditor(snaplen, false);
        let reports = run(&mut a, Hook::Xdp, &f.bytes);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].0.layer, Layer::Tcp);
        let cap = reports[0].1.as_ref().expect("capture");
        let want = f.bytes.len().min(snaplen as usize);
        assert_eq!(cap.frame_len, 9014);
        assert_eq!(cap.data.len(), want, "snaplen {snaplen}");
        assert!(
            cap.data == f.bytes[..want],
            "snaplen {snaplen}: bytes differ"
        );
    }
}

/// A record the ring buffer has no room for is counted in `events_lost`, not dropped silently.
#[test]
fn capture_records_that_do_not_fit_are_counted_lost() {
    root_only!();
    let mut a = FrameAuditor::with_options(&LoadOptions {
        snaplen: max_snap(),
        ring_bytes: 4096,
        ..LoadOptions::default()
    })
    .expect("load");
    assert!(capture_record_bytes(max_snap()) > 4096);
    let mut f = v4_frame(&[], TCP, segment(TCP, 9000 - 20 - 20), &[]);
    let c = f.checksum;
    f.set_field(c ^ 0x8000);
    let before = a.counters();
    let sent = run(&mut a, Hook::Xdp, &f.bytes);
    assert!(sent.is_empty(), "{sent:?}");
    let lost = a.counters().since(&before);
    assert_eq!(lost.events_lost, 1);
    assert_eq!(
        lost.mismatches[Layer::Tcp as usize][Kind::Corrupt as usize],
        1
    );
    // A small frame still fits the same ring.
    let mut small = v4_frame(&[], TCP, segment(TCP, 10), &[]);
    let c = small.checksum;
    small.set_field(c ^ 0x8000);
    let reports = run(&mut a, Hook::Xdp, &small.bytes);
    assert_eq!(reports[0].1.as_ref().expect("capture").data, small.bytes);
}

// ---------------------------------------------------------------------------------------------
// The writer, end to end: captures from the kernel into a pcapng file that tshark reads back.

fn tshark() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tshark"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !common::in_ci(),
            "tshark not found; CI=true forbids skipping (scripts/bootstrap.sh installs it)"
        );
        eprintln!("SKIPPED tshark round trip: tshark not found (apt-get install tshark)");
    }
    found
}

fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("csa-pcapng-{tag}-{}.pcapng", std::process::id()))
}

/// Removes the file when the test ends, however it ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
        .try_into()
        .expect("before 2554")
}

fn comment(v: &Verdict) -> String {
    format!(
        "layer={} got={:#06x} want={:#06x} kind={}",
        v.layer.name(),
        v.got,
        v.want,
        v.kind.name()
    )
}

/// One packet as tshark reads it.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    len: usize,
    cap_len: usize,
    /// `frame.time_epoch`: seconds with nine decimals.
    time: String,
    /// `frame.protocols`, e.g. `eth:ethertype:ip:tcp`.
    protocols: String,
    comment: String,
}

fn tshark_read(tshark: &Path, file: &Path) -> Vec<Read> {
    let fields = [
        "frame.len",
        "frame.cap_len",
        "frame.time_epoch",
        "frame.protocols",
        "frame.comment",
    ];
    let out = Command::new(tshark)
        .args(["-n", "-r"])
        .arg(file)
        .args(["-T", "fields", "-E", "separator=|"])
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            eprintln!("tshark: {line}");
            let f: Vec<&str> = line.splitn(fields.len(), '|').collect();
            assert_eq!(f.len(), fields.len(), "{line}");
            Read {
                len: f[0].parse().expect("frame.len"),
                cap_len: f[1].parse().expect("frame.cap_len"),
                time: f[2].to_string(),
                protocols: f[3].to_string(),
                comment: f[4].to_string(),
            }
        })
        .collect()
}

fn epoch_text(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

#[test]
fn captures_round_trip_through_tshark() {
    root_only!();
    let path = temp_path("roundtrip");
    let _cleanup = TempFile(path.clone());
    let snaplen = 96;
    let mut a = auditor(snaplen, false);
    let mut w = PcapngWriter::create(&path, None).expect("create");
    let xdp = w.add_interface("veth-b/xdp", snaplen).expect("idb");
    let tc = w.add_interface("veth-b/tc-ingress", snaplen).expect("idb");
    let mut expected = Vec::new();
    for (name, frame, _, _) in bad_frames() {
        if name.contains("offload") {
            continue;
        }
        for (hook, iface) in [(Hook::Xdp, xdp), (Hook::TcIngress, tc)] {
            for (v, cap) in run(&mut a, hook, &frame) {
                let cap = cap.expect("capture");
                let text = format!("{} diagnosis=test {name}", comment(&v));
                let ts = now_ns();
                assert!(
                    w.write_packet(iface, ts, cap.frame_len, &cap.data, &text)
                        .expect("write")
                );
                let ip = if v.flow.src.is_ipv4() { "ip" } else { "ipv6" };
                expected.push((frame.len(), cap.data.len(), epoch_text(ts), ip, text));
            }
        }
    }
    assert_eq!(expected.len(), 10);
    w.flush().expect("flush");
    assert_eq!(w.packets_written(), expected.len() as u64);
    assert_eq!(w.packets_dropped_by_size(), 0);
    drop(w);
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let Some(tshark) = tshark() else {
        return;
    };
    let read = tshark_read(&tshark, &path);
    assert_eq!(read.len(), expected.len());
    for (r, (len, cap_len, time, ip, text)) in read.iter().zip(&expected) {
        assert_eq!((r.len, r.cap_len), (*len, *cap_len), "{r:?}");
        assert_eq!(r.cap_len, r.len.min(snaplen as usize));
        assert_eq!(&r.time, time, "nanosecond timestamps (if_tsresol=9)");
        assert_eq!(&r.comment, text);
        // Decoded as Ethernet, VLAN tag included.
        assert!(r.protocols.starts_with("eth:ethertype:"), "{r:?}");
        assert!(r.protocols.split(':').any(|p| p == *ip), "{r:?}");
    }
}

#[test]
fn max_bytes_stops_writing_and_counts_drops() {
    root_only!();
    let path = temp_path("bounded");
    let _cleanup = TempFile(path.clone());
    // An existing world-readable file is truncated and made private.
    std::fs::write(&path, b"old contents").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let snaplen = 256;
    let mut a = auditor(snaplen, false);
    let mut f = v4_frame(&[], UDP, segment(UDP, 400), &[]);
    let c = f.checksum;
    f.set_field(c ^ 0x0f0f);
    let (v, cap) = run(&mut a, Hook::Xdp, &f.bytes).remove(0);
    let cap = cap.expect("capture");
    let text = comment(&v);
    let max_bytes = 2000;
    let mut writer = PcapngWriter::create(&path, Some(max_bytes)).expect("create");
    let iface = writer.add_interface("eth0", snaplen).expect("idb");
    let mut accepted = 0;
    for _ in 0..20 {
        if writer
            .write_packet(iface, now_ns(), cap.frame_len, &cap.data, &text)
            .expect("write")
        {
            accepted += 1;
        }
    }
    // Each block: 28-byte EPB header and trailer + 256 bytes + the comment option.
    assert!((3..10).contains(&accepted), "{accepted} packets accepted");
    assert_eq!(writer.packets_written(), accepted);
    assert_eq!(writer.packets_dropped_by_size(), 20 - accepted);
    // Once full, even a packet that would fit is refused: the file stays a prefix in time.
    assert!(
        !writer
            .write_packet(iface, now_ns(), 60, &[0; 14], "")
            .expect("write")
    );
    assert_eq!(writer.packets_dropped_by_size(), 21 - accepted);
    writer.flush().expect("flush");
    assert!(writer.bytes_written() <= max_bytes);
    drop(writer);
    let meta = std::fs::metadata(&path).expect("stat");
    assert!(meta.len() <= max_bytes, "{} bytes", meta.len());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let Some(tshark) = tshark() else {
        return;
    };
    let packets = tshark_read(&tshark, &path);
    assert_eq!(packets.len() as u64, accepted);
    assert!(
        packets
            .iter()
            .all(|p| (p.len, p.cap_len, &p.comment) == (442, 256, &text))
    );
}

#[test]
fn capture_header_layout() {
    // Not root: layout facts the decoder relies on.
    assert_eq!(CAPTURE_HEADER_LEN, 144);
    assert_eq!(capture_record_bytes(256), 8 + 144 + 256);
    assert_eq!(capture_record_bytes(1), 8 + 144 + 8, "padded to 8 bytes");
}
