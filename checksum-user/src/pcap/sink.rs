//! The live capture sink of `--pcap-out`: mismatching frames from the kernel, written to a pcapng
//! file with one interface per audited interface and hook, each packet commented with its verdict.

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{kernel::event::Captured, pcap::write::PcapngWriter, report::output::Clock};

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
        let snaplen = crate::kernel::loader::effective_snaplen(snaplen);
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
