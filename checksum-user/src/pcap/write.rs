//! A small pcapng writer for `--pcap-out`: one Section Header Block, one Interface Description
//! Block per audited interface and hook, one Enhanced Packet Block per captured mismatch with a
//! comment saying what was wrong. Timestamps are nanoseconds (`if_tsresol` = 9). Written by hand
//! (pcapng, draft-ietf-opsawg-pcapng): these three block types are all it takes, in host byte
//! order, which readers detect from the byte-order magic.
//!
//! Captured packets hold the bytes of other people's traffic: the file is created with mode 0600
//! and an existing file is made private before anything is written to it.
//!
//! Write errors (a full disk) are returned, never dropped: each block goes out in one write, and
//! after a failed one nothing more is written, so the file stays a readable prefix of the capture
//! (at worst its last block cut short). The final flush is the caller's `into_inner`; a writer
//! dropped without it still flushes, and logs the error that `BufWriter`'s drop would swallow.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::pcap::read::{
    LINKTYPE_ETHERNET, MAX_RECORD, PCAPNG_BOM as BYTE_ORDER_MAGIC, PCAPNG_EPB as EPB,
    PCAPNG_IDB as IDB, PCAPNG_SHB as SHB,
};

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;

/// Options hold at most 65535 bytes; longer comments are cut at a character boundary.
const MAX_OPTION: usize = u16::MAX as usize;

/// Writes pcapng to `W` (a buffered file from `create`), optionally bounded in size.
pub struct PcapngWriter<W: Write = BufWriter<File>> {
    /// `None` only once `into_inner` took it (so that `drop` does not flush it again).
    out: Option<W>,
    max_bytes: Option<u64>,
    bytes_written: u64,
    interfaces: u32,
    packets_written: u64,
    dropped_by_size: u64,
    /// Set by the first packet that did not fit: every later one is dropped too.
    full: bool,
    /// The first failed block write: later blocks are refused with it (see `write_block`).
    failed: Option<(io::ErrorKind, String)>,
    /// What `drop` names in its log line: the path from `create`.
    name: String,
}

impl PcapngWriter<BufWriter<File>> {
    /// Creates `path` with mode 0600, or truncates an existing file (like `tcpdump -w`) after
    /// setting its mode to 0600 if it was more open (only for regular files: `/dev/null` and FIFOs
    /// keep theirs). A symbolic link as the last component is refused (`O_NOFOLLOW`), so a link
    /// planted where a privileged run writes cannot redirect the capture. `max_bytes` bounds the
    /// file (see `write_packet`); `None` is unbounded.
    pub fn create(path: &Path, max_bytes: Option<u64>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::new(
                        e.kind(),
                        format!("{}: is a symbolic link; give its target", path.display()),
                    )
                } else {
                    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                }
            })?;
        let meta = file.metadata()?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        let mut w = Self::new(BufWriter::new(file), max_bytes)?;
        w.name = path.display().to_string();
        Ok(w)
    }
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header Block to `out`.
    pub fn new(out: W, max_bytes: Option<u64>) -> io::Result<Self> {
        let mut w = Self {
            out: Some(out),
            max_bytes,
            bytes_written: 0,
            interfaces: 0,
            packets_written: 0,
            dropped_by_size: 0,
            full: false,
            failed: None,
            name: "pcapng output".to_owned(),
        };
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_ne_bytes());
        body.extend_from_slice(&1u16.to_ne_bytes()); // major version
        body.extend_from_slice(&0u16.to_ne_bytes()); // minor version
        body.extend_from_slice(&(-1i64).to_ne_bytes()); // section length: not given
        let appl = concat!("checksum-audit ", env!("CARGO_PKG_VERSION"));
        push_option(&mut body, SHB_USERAPPL, appl.as_bytes());
        push_option(&mut body, OPT_END, &[]);
        w.write_block(SHB, &body)?;
        Ok(w)
    }

    /// Declares an Ethernet interface (e.g. `veth-b` or `netns/veth-b@tc-ingress`) and returns the
    /// id packets name it by. `snaplen` is what the kernel captured
    /// (`model::effective_snaplen`).
    pub fn add_interface(&mut self, name: &str, snaplen: u32) -> io::Result<u32> {
        self.add_interface_with_linktype(name, LINKTYPE_ETHERNET, snaplen)
    }

    /// Like `add_interface`, with another link type, e.g. `capture::LINKTYPE_RAW` for frames that
    /// start at the IP header (`Captured::l3_off` 0).
    pub fn add_interface_with_linktype(
        &mut self,
        name: &str,
        linktype: u32,
        snaplen: u32,
    ) -> io::Result<u32> {
        let linktype = u16::try_from(linktype)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "link type above 65535"))?;
        let mut body = Vec::with_capacity(32 + name.len());
        body.extend_from_slice(&linktype.to_ne_bytes());
        body.extend_from_slice(&0u16.to_ne_bytes()); // reserved
        body.extend_from_slice(&snaplen.to_ne_bytes());
        push_option(
            &mut body,
            IF_NAME,
            truncate_utf8(name, MAX_OPTION).as_bytes(),
        );
        push_option(&mut body, IF_TSRESOL, &[9]); // 10^-9 s
        push_option(&mut body, OPT_END, &[]);
        // Interface blocks are written even past `max_bytes`: packets need them, and they are
        // small. The bound applies to packets.
        self.write_block(IDB, &body)?;
        let id = self.interfaces;
        self.interfaces += 1;
        Ok(id)
    }

    /// Writes one packet: `data` as captured (at most the snap length), `orig_len` its length on
    /// the wire, `timestamp_ns` nanoseconds since the Unix epoch, `comment` (empty for none) the
    /// `opt_comment` option, e.g. `layer=tcp got=0x1443 want=0x46a1 kind=offload-pending`.
    ///
    /// Returns false, and counts the packet in `packets_dropped_by_size`, when the block would
    /// take the file past `max_bytes`; from then on every packet is dropped, so the file holds a
    /// prefix in time rather than a sample with gaps. An unknown interface id is an error, and so
    /// is a packet whose block would be larger than `CaptureReader` accepts (256 KiB with its
    /// comment; `--snaplen` stays far below): what this writes, `replay` can read.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the timestamp goes out as its two 32-bit halves"
    )]
    pub fn write_packet(
        &mut self,
        iface: u32,
        timestamp_ns: u64,
        orig_len: u32,
        data: &[u8],
        comment: &str,
    ) -> io::Result<bool> {
        if iface >= self.interfaces {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pcapng: packet for undeclared interface {iface}"),
            ));
        }
        let cap_len = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet above 4 GiB"))?;
        let comment = truncate_utf8(comment, MAX_OPTION);
        let options = if comment.is_empty() {
            0
        } else {
            4 + pad4(comment.len()) + 4
        };
        let block_len = 12 + 20 + pad4(data.len()) + options;
        if block_len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "pcapng: a {}-byte packet with a {}-byte comment is a {block_len}-byte block, \
                     above the {MAX_RECORD} bytes capture files are read with",
                    data.len(),
                    comment.len()
                ),
            ));
        }
        if self.full
            || self
                .max_bytes
                .is_some_and(|max| self.bytes_written + block_len as u64 > max)
        {
            self.full = true;
            self.dropped_by_size += 1;
            return Ok(false);
        }
        let mut body = Vec::with_capacity(block_len - 12);
        body.extend_from_slice(&iface.to_ne_bytes());
        body.extend_from_slice(&((timestamp_ns >> 32) as u32).to_ne_bytes());
        body.extend_from_slice(&(timestamp_ns as u32).to_ne_bytes());
        body.extend_from_slice(&cap_len.to_ne_bytes());
        body.extend_from_slice(&orig_len.max(cap_len).to_ne_bytes());
        body.extend_from_slice(data);
        body.resize(pad4(body.len()), 0);
        if !comment.is_empty() {
            push_option(&mut body, OPT_COMMENT, comment.as_bytes());
            push_option(&mut body, OPT_END, &[]);
        }
        debug_assert_eq!(body.len() + 12, block_len);
        self.write_block(EPB, &body)?;
        self.packets_written += 1;
        Ok(true)
    }

    pub fn packets_written(&self) -> u64 {
        self.packets_written
    }

    /// Packets refused because of `max_bytes`.
    pub fn packets_dropped_by_size(&self) -> u64 {
        self.dropped_by_size
    }

    /// Bytes of the file so far (buffered ones included).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Writes out what is buffered. The caller reports an error (e.g. ENOSPC); a `BufWriter` (as
    /// from `create`) keeps what it could not write for the next flush.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out_mut().flush()
    }

    /// Flushes and returns the output: how a capture ends, with the final flush's error for the
    /// caller to report (the last packets are in the buffer until then).
    #[expect(
        clippy::missing_panics_doc,
        reason = "cannot panic: `out` is taken only here, by value"
    )]
    pub fn into_inner(mut self) -> io::Result<W> {
        // Taken first, so that `drop` does not flush again and log what the caller reports.
        let mut out = self.out.take().expect("taken only here");
        out.flush()?;
        Ok(out)
    }

    fn out_mut(&mut self) -> &mut W {
        self.out
            .as_mut()
            .expect("taken only by into_inner, which consumes the writer")
    }

    /// Block type, total length, body (a multiple of 4 bytes), total length again.
    ///
    /// One `write_all` per block: a `BufWriter` whose flush fails before a block keeps none of it,
    /// so the buffer never holds half a block. A write that fails part-way (a block larger than
    /// the buffer, written through) may leave a partial block in the file, so every write after a
    /// failure is refused: the file ends there instead of going on after a broken block.
    fn write_block(&mut self, block_type: u32, body: &[u8]) -> io::Result<()> {
        debug_assert_eq!(body.len() % 4, 0);
        if let Some((kind, first)) = &self.failed {
            return Err(io::Error::new(
                *kind,
                format!("pcapng: nothing more is written after a failed write ({first})"),
            ));
        }
        let total = u32::try_from(body.len() + 12)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pcapng block above 4 GiB"))?;
        let mut block = Vec::with_capacity(body.len() + 12);
        block.extend_from_slice(&block_type.to_ne_bytes());
        block.extend_from_slice(&total.to_ne_bytes());
        block.extend_from_slice(body);
        block.extend_from_slice(&total.to_ne_bytes());
        if let Err(e) = self.out_mut().write_all(&block) {
            self.failed = Some((e.kind(), e.to_string()));
            return Err(e);
        }
        self.bytes_written += u64::from(total);
        Ok(())
    }
}

impl<W: Write> Drop for PcapngWriter<W> {
    /// The final flush of a writer not ended with `into_inner`: its error is logged rather than
    /// lost (the packets still buffered are missing from the file).
    fn drop(&mut self) {
        if let Some(out) = &mut self.out
            && let Err(e) = out.flush()
        {
            log::warn!(
                "{}: writing the end of the capture failed ({e}): the file is incomplete",
                self.name
            );
        }
    }
}

/// Option code, length, value padded to 4 bytes. Callers keep `value` within `MAX_OPTION`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "callers keep `value` within MAX_OPTION"
)]
fn push_option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_ne_bytes());
    body.extend_from_slice(&(value.len() as u16).to_ne_bytes());
    body.extend_from_slice(value);
    body.resize(pad4(body.len()), 0);
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::read::{CaptureReader, LINKTYPE_RAW};

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes(b[at..at + 2].try_into().unwrap())
    }

    /// Every block as (type, body), checking the framing on the way.
    fn blocks(file: &[u8]) -> Vec<(u32, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let total = u32_at(file, at + 4) as usize;
            assert_eq!(total % 4, 0);
            assert_eq!(
                u32_at(file, at + total - 4) as usize,
                total,
                "trailing length"
            );
            out.push((u32_at(file, at), &file[at + 8..at + total - 4]));
            at += total;
        }
        assert_eq!(at, file.len());
        out
    }

    /// Options as (code, value) up to `opt_endofopt`.
    fn options(mut b: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        loop {
            let (code, len) = (u16_at(b, 0), u16_at(b, 2) as usize);
            if code == OPT_END {
                assert_eq!(len, 0);
                assert_eq!(b.len(), 4, "bytes after opt_endofopt");
                return out;
            }
            out.push((code, &b[4..4 + len]));
            b = &b[4 + pad4(len)..];
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = PcapngWriter::new(Vec::new(), None).unwrap();
        assert_eq!(w.add_interface("veth-b", 256).unwrap(), 0);
        assert_eq!(
            w.add_interface_with_linktype("ns1/eth0", LINKTYPE_RAW, 64)
                .unwrap(),
            1
        );
        let frame: Vec<u8> = (0..61).collect();
        let ts = 1_764_153_676_149_919_123;
        assert!(
            w.write_packet(0, ts, 1514, &frame, "layer=tcp got=0x1443 want=0x46a1")
                .unwrap()
        );
        assert!(w.write_packet(1, ts + 1, 20, &frame[..20], "").unwrap());
        assert_eq!(w.packets_written(), 2);
        let n = w.bytes_written();
        let file = w.into_inner().unwrap();
        assert_eq!(file.len() as u64, n);
        file
    }

    #[test]
    fn capture_reader_reads_the_packets_back() {
        let file = sample();
        let mut r = CaptureReader::new(&file[..]).unwrap();
        let a = r.next_record().unwrap().unwrap();
        assert_eq!(a.linktype, LINKTYPE_ETHERNET);
        assert_eq!(a.data, (0..61).collect::<Vec<u8>>());
        assert_eq!(a.orig_len, 1514);
        let b = r.next_record().unwrap().unwrap();
        assert_eq!(b.linktype, LINKTYPE_RAW);
        assert_eq!(b.data, (0..20).collect::<Vec<u8>>());
        assert_eq!(b.orig_len, 20);
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn blocks_and_options_are_as_specified() {
        let file = sample();
        let blocks = blocks(&file);
        let types: Vec<u32> = blocks.iter().map(|b| b.0).collect();
        assert_eq!(types, [SHB, IDB, IDB, EPB, EPB]);
        let shb = blocks[0].1;
        assert_eq!(u32_at(shb, 0), BYTE_ORDER_MAGIC);
        assert_eq!((u16_at(shb, 4), u16_at(shb, 6)), (1, 0));
        assert_eq!(&shb[8..16], &[0xff; 8]);
        assert!(options(&shb[16..]).iter().any(|o| o.0 == SHB_USERAPPL));
        let idb = blocks[1].1;
        assert_eq!(u32::from(u16_at(idb, 0)), LINKTYPE_ETHERNET);
        assert_eq!(u32_at(idb, 4), 256);
        assert_eq!(
            options(&idb[8..]),
            [(IF_NAME, &b"veth-b"[..]), (IF_TSRESOL, &[9][..])]
        );
        let epb = blocks[3].1;
        assert_eq!(u32_at(epb, 0), 0);
        let ts = u64::from(u32_at(epb, 4)) << 32 | u64::from(u32_at(epb, 8));
        assert_eq!(ts, 1_764_153_676_149_919_123);
        assert_eq!((u32_at(epb, 12), u32_at(epb, 16)), (61, 1514));
        assert_eq!(&epb[20..81], (0..61).collect::<Vec<u8>>());
        assert_eq!(&epb[81..84], &[0, 0, 0], "padding");
        assert_eq!(
            options(&epb[84..]),
            [(OPT_COMMENT, &b"layer=tcp got=0x1443 want=0x46a1"[..])]
        );
        // No comment: no options at all.
        assert_eq!(blocks[4].1.len(), 20 + 20);
    }

    #[test]
    fn max_bytes_bounds_packets_and_counts_drops() {
        let mut w = PcapngWriter::new(Vec::new(), Some(400)).unwrap();
        let id = w.add_interface("eth0", 100).unwrap();
        let header = w.bytes_written();
        let mut accepted = 0;
        for _ in 0..10 {
            accepted += u64::from(w.write_packet(id, 0, 100, &[7; 100], "x").unwrap());
        }
        // 32 + 100 + 12 (comment) = 144 bytes per packet.
        assert_eq!(accepted, (400 - header) / 144);
        assert_eq!(w.packets_written(), accepted);
        assert_eq!(w.packets_dropped_by_size(), 10 - accepted);
        assert!(w.bytes_written() <= 400);
        // Full stays full, even for a packet that would fit.
        assert!(!w.write_packet(id, 0, 1, &[0], "").unwrap());
        assert_eq!(w.packets_dropped_by_size(), 11 - accepted);
        let file = w.into_inner().unwrap();
        let mut r = CaptureReader::new(&file[..]).unwrap();
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, accepted);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut w = PcapngWriter::new(Vec::new(), None).unwrap();
        assert!(w.write_packet(0, 0, 1, &[0], "").is_err());
        let id = w.add_interface("eth0", 64).unwrap();
        assert!(w.write_packet(id + 1, 0, 1, &[0], "").is_err());
        assert!(w.add_interface_with_linktype("x", 70000, 64).is_err());
        // A comment longer than an option can hold is cut at a character boundary.
        let long = "é".repeat(40_000);
        assert!(w.write_packet(id, 0, 1, &[0], &long).unwrap());
        let file = w.into_inner().unwrap();
        let epb = blocks(&file)[2].1;
        let opts = options(&epb[24..]);
        assert_eq!(opts[0].1.len(), MAX_OPTION - 1);
        assert!(std::str::from_utf8(opts[0].1).is_ok());
    }

    #[test]
    fn only_packets_the_reader_accepts_are_written() {
        // Found by the pcapng_round_trip fuzz target: a 320 KiB packet made a block that
        // CaptureReader refuses, so `replay` could not read the file back.
        let mut w = PcapngWriter::new(Vec::new(), None).unwrap();
        let id = w.add_interface("eth0", u32::MAX).unwrap();
        let data = vec![0xa5; MAX_RECORD];
        assert!(w.write_packet(id, 0, 0, &data, "").is_err());
        // The largest blocks accepted: 12 + 20 bytes around the data, 12 for a 1-byte comment.
        let largest = &data[..MAX_RECORD - 32];
        assert!(w.write_packet(id, 1, 0, largest, "").unwrap());
        let commented = &data[..MAX_RECORD - 32 - 12];
        assert!(w.write_packet(id, 2, 0, commented, "x").unwrap());
        assert!(
            w.write_packet(id, 3, 0, &data[..=commented.len()], "x")
                .is_err()
        );
        assert_eq!((w.packets_written(), w.packets_dropped_by_size()), (2, 0));
        let file = w.into_inner().unwrap();
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().data, largest);
        assert_eq!(r.next_record().unwrap().unwrap().data, commented);
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn a_full_disk_is_an_error_up_to_the_final_flush() {
        // /dev/full refuses every write with ENOSPC; the first blocks wait in the buffer, so the
        // error shows at a flush or once the buffer is full, and the final one is returned too.
        let mut w = PcapngWriter::create(Path::new("/dev/full"), None).unwrap();
        let id = w.add_interface("eth0", 64).unwrap();
        assert!(w.write_packet(id, 0, 60, &[0; 60], "x").unwrap());
        let err = w.flush().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        let err = w.into_inner().expect_err("the final flush fails");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");

        let mut w = PcapngWriter::create(Path::new("/dev/full"), None).unwrap();
        let id = w.add_interface("eth0", 64).unwrap();
        let failed = (0..1000)
            .map(|i| w.write_packet(id, i, 60, &[0; 60], "x"))
            .find_map(Result::err)
            .expect("a write fails once the buffer is full");
        assert_eq!(failed.raw_os_error(), Some(libc::ENOSPC), "{failed}");
        let packets = w.packets_written();
        assert!(w.write_packet(id, 0, 60, &[0; 60], "x").is_err());
        assert_eq!(
            w.packets_written(),
            packets,
            "failed packets are not counted"
        );
        // Dropped without into_inner: the flush is retried and its failure logged, not lost.
        drop(w);
    }

    /// A disk with `room` bytes left (shared, so a test can free space): writes what fits, then
    /// fails with ENOSPC.
    #[derive(Debug)]
    struct Disk {
        data: Vec<u8>,
        room: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room.get());
            if n == 0 && !buf.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.room.set(self.room.get() - n);
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn nothing_is_written_after_a_block_cut_short() {
        let room = std::rc::Rc::new(std::cell::Cell::new(usize::MAX));
        let disk = Disk {
            data: Vec::new(),
            room: room.clone(),
        };
        // A buffer smaller than a packet's block: blocks go straight to the disk.
        let mut w = PcapngWriter::new(BufWriter::with_capacity(64, disk), None).unwrap();
        let id = w.add_interface("eth0", 256).unwrap();
        let frame = [0xa5; 200];
        assert!(w.write_packet(id, 1, 200, &frame, "first").unwrap());
        w.flush().unwrap();
        let whole = usize::try_from(w.bytes_written()).unwrap();
        // The disk fills in the middle of the second packet's block.
        room.set(100);
        let err = w.write_packet(id, 2, 200, &frame, "second").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        // Space again: appending after the broken block would make the rest unreadable.
        room.set(usize::MAX);
        let err = w.write_packet(id, 3, 200, &frame, "third").unwrap_err();
        assert!(err.to_string().contains("after a failed write"), "{err}");
        assert!(w.add_interface("eth1", 256).is_err());
        assert_eq!(w.packets_written(), 1);
        let file = w.into_inner().unwrap().into_inner().unwrap().data;
        assert_eq!(file.len(), whole + 100, "nothing after the cut block");
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().data, frame);
        assert!(
            !matches!(r.next_record(), Ok(Some(_))),
            "the cut block is no packet"
        );
    }

    #[test]
    fn create_makes_a_private_file_and_refuses_symlinks() {
        let dir = std::env::temp_dir().join(format!("csa-pcapng-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.pcapng");
        std::fs::write(&path, b"previous run, readable by all").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut w = PcapngWriter::create(&path, None).unwrap();
        w.add_interface("eth0", 64).unwrap();
        w.flush().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), w.bytes_written(), "truncated, then written");
        drop(w);
        let fresh = dir.join("fresh.pcapng");
        drop(PcapngWriter::create(&fresh, None).unwrap());
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let link = dir.join("link.pcapng");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = PcapngWriter::create(&link, None)
            .err()
            .expect("symlink refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
