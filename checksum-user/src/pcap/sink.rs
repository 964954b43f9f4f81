//! The live capture sink of `--pcap-out`: mismatching frames from the kernel, written to a pcapng
//! file with one interface per audited interface and hook, each packet commented with its verdict.

use std::borrow::Cow;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{
    model::{Captured, effective_snaplen},
    pcap::{
        read::{LINKTYPE_RAW, to_ethernet},
        write::PcapngWriter,
    },
    sys::clock::Clock,
};

impl Captured {
    /// The frame as `--pcap-out` writes it, and its length on the wire. Bytes that start at the IP
    /// header (`l3_off` 0: TC behind a generic-mode XDP program sees no MAC header) get the
    /// Ethernet header replay synthesizes for raw-IP captures, so every packet in the file is
    /// Ethernet. `None` when there is nothing to write (the kernel could not copy the bytes).
    pub fn ethernet_frame(&self) -> Option<(Cow<'_, [u8]>, u32)> {
        if self.data.is_empty() {
            return None;
        }
        if self.l3_off == 0 {
            let framed = to_ethernet(LINKTYPE_RAW, &self.data).ok()??;
            // frame_len comes from the record: saturate rather than overflow (a panic in debug
            // builds, a wrapped, tiny original length in release ones).
            Some((Cow::Owned(framed), self.frame_len.saturating_add(14)))
        } else {
            Some((Cow::Borrowed(&self.data[..]), self.frame_len))
        }
    }
}

/// `--pcap-out`: the writer, and the pcapng interface of each source.
pub struct CaptureSink {
    pub writer: PcapngWriter,
    path: std::path::PathBuf,
    snaplen: u32,
    /// pcapng interface id by source id.
    interfaces: Vec<u32>,
    write_errors: u64,
}

impl CaptureSink {
    pub fn create(path: &std::path::Path, snaplen: u32, max_bytes: Option<u64>) -> Result<Self> {
        let snaplen = effective_snaplen(snaplen);
        let writer = PcapngWriter::create(path, max_bytes)
            .with_context(|| format!("cannot write --pcap-out {}", path.display()))?;
        Ok(Self {
            writer,
            path: path.to_owned(),
            snaplen,
            interfaces: Vec::new(),
            write_errors: 0,
        })
    }

    /// Gives the next source (in the order of their ids) its pcapng interface, `NAME@HOOK`.
    pub fn add_source(&mut self, name: &str) {
        match self.writer.add_interface(name, self.snaplen) {
            Ok(id) => self.interfaces.push(id),
            Err(e) => {
                log::warn!("--pcap-out: {e}");
                self.interfaces.push(u32::MAX);
            }
        }
    }

    /// Sources with an interface so far.
    pub fn sources(&self) -> usize {
        self.interfaces.len()
    }

    pub fn write(
        &mut self,
        source: u32,
        clock: &Clock,
        mono_ns: u64,
        captured: &Captured,
        comment: &str,
    ) {
        let Some(&iface) = self.interfaces.get(source as usize) else {
            return;
        };
        // Empty when the kernel could not copy the bytes (never seen); the event still counts.
        let Some((data, orig_len)) = captured.ethernet_frame() else {
            return;
        };
        let ts = u64::try_from(clock.wall_ns(mono_ns)).unwrap_or(0);
        if let Err(e) = self
            .writer
            .write_packet(iface, ts, orig_len, &data, comment)
        {
            self.write_errors += 1;
            log::warn!("--pcap-out {}: {e}", self.path.display());
        }
    }

    /// Flushes the file; a failure is counted in `write_errors` and reported, never dropped.
    pub fn flush(&mut self) {
        if let Err(e) = self.writer.flush() {
            self.write_errors += 1;
            log::warn!("--pcap-out {}: {e}", self.path.display());
        }
    }

    pub fn summary_text(&self) -> String {
        format!(
            "  pcap: {} frames written to {}, {} dropped by --pcap-max-bytes, {} write errors\n",
            self.writer.packets_written(),
            self.path.display(),
            self.writer.packets_dropped_by_size(),
            self.write_errors
        )
    }

    pub fn summary_json(&self) -> Value {
        json!({
            "file": self.path.display().to_string(),
            "written": self.writer.packets_written(),
            "dropped_by_size": self.writer.packets_dropped_by_size(),
            "write_errors": self.write_errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_frame_of_captures() {
        let ip = vec![0x45, 0, 0, 20];
        let raw = Captured {
            frame_len: 20,
            l3_off: 0,
            data: ip.clone(),
        };
        let (frame, orig_len) = raw.ethernet_frame().unwrap();
        assert_eq!(
            (&frame[12..], orig_len),
            (&[0x08, 0x00, 0x45, 0, 0, 20][..], 34)
        );
        let eth = Captured { l3_off: 14, ..raw };
        assert_eq!(eth.ethernet_frame().unwrap(), (Cow::Borrowed(&ip[..]), 20));
        assert!(
            Captured {
                data: vec![],
                ..eth
            }
            .ethernet_frame()
            .is_none()
        );
        // Found by the ring_record fuzz target: a frame length near u32::MAX (any record may carry
        // one) overflowed when the synthesized Ethernet header was added.
        let huge = Captured {
            frame_len: u32::MAX - 3,
            l3_off: 0,
            data: ip,
        };
        assert_eq!(huge.ethernet_frame().unwrap().1, u32::MAX);
    }
}
