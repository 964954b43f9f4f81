//! BPF_PROG_TEST_RUN cost per frame of the audit programs against no-op programs of the same type,
//! measured in the same run (these machines are noisy: compare only within one run).

use anyhow::Result;
use checksum_common::Hook;
use checksum_user::{
    loader::{NOOP_TC, NOOP_XDP},
    testkit::frames::*,
    testrun::{FrameAuditor, audit_program},
};

use crate::require_root;

const FRAME_SIZES: [usize; 4] = [64, 512, 1514, 9014];
/// A TC test run takes one page of linear data at most.
const TC_MAX_FRAME: usize = 3500;

pub fn run(repeat: u32) -> Result<()> {
    require_root("bench")?;
    let mut auditor = FrameAuditor::new(false)?;
    println!(
        "{:<10} {:<6} {:<5} {:>6} {:>6} {:>10} {:>10} {:>7} {:>8}",
        "hook", "family", "proto", "bytes", "cksum", "audit ns", "no-op ns", "ratio", "GB/s"
    );
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let noop_program = if hook == Hook::Xdp { NOOP_XDP } else { NOOP_TC };
        for (v6, proto) in [(false, TCP), (false, UDP), (true, TCP)] {
            for size in FRAME_SIZES {
                if hook != Hook::Xdp && size > TC_MAX_FRAME {
                    continue;
                }
                for good in [true, false] {
                    let frame = frame_of_size(v6, proto, size, good);
                    // Larger frames take longer per run; keep each measurement a similar length.
                    let reps = (repeat as usize * 64 / size.max(64)).max(2_000) as u32;
                    let noop = auditor.time(noop_program, &frame, reps)?.as_nanos() as f64;
                    let audit = auditor.time(audit_program(hook), &frame, reps)?.as_nanos() as f64;
                    println!(
                        "{:<10} {:<6} {:<5} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>8.2}",
                        hook.name(),
                        if v6 { "ipv6" } else { "ipv4" },
                        if proto == TCP { "tcp" } else { "udp" },
                        frame.len(),
                        if good { "good" } else { "bad" },
                        audit,
                        noop,
                        audit / noop.max(0.1),
                        frame.len() as f64 / audit.max(0.1),
                    );
                }
            }
        }
    }
    Ok(())
}

/// A frame of exactly `size` bytes (Ethernet header included, FCS excluded), or the smallest
/// possible when the headers alone are larger.
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
