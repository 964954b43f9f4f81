//! Reading capture files (pcap and pcapng) and turning every supported link type into the
//! Ethernet frames the XDP program expects. Capture files are untrusted input: every length is
//! checked, and a bad file is an error, never a panic or an unbounded allocation.

use std::io::{self, Read};

/// Link types `replay` accepts (LINKTYPE_* values from the tcpdump.org registry).
pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

pub const SUPPORTED_LINKTYPES: &str = "Ethernet (1), raw IP (101, 228, 229), Linux cooked SLL (113) and SLL2 (276), BSD loopback (0, 108)";

/// Largest record accepted: far above any real frame (jumbo, 64 KiB GSO), far below memory limits.
pub const MAX_RECORD: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    NotCapture(u32),
    #[error("corrupt capture at record {record}: {what}")]
    Corrupt { record: usize, what: String },
    #[error("unsupported link type {0}; replay supports {SUPPORTED_LINKTYPES}")]
    UnsupportedLinkType(u32),
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub linktype: u32,
    pub data: Vec<u8>,
    /// Length on the wire; larger than `data.len()` when the capture was cut at the snap length.
    pub orig_len: u32,
    /// The interface it was captured on: its place among every interface the file declared, in
    /// every section (0 for classic pcap, which has one). See [`CaptureReader::interface_name`].
    pub interface: u32,
}

enum Format {
    Pcap {
        big_endian: bool,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
        /// The section's interfaces: link type and place in the file's `interfaces`.
        linktypes: Vec<(u32, u32)>,
    },
}

pub struct CaptureReader<R: Read> {
    input: R,
    format: Format,
    records: usize,
    /// The `if_name` of every interface declared so far (`None` where it has none).
    interfaces: Vec<Option<String>>,
}

fn u32_at(b: &[u8], big_endian: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big_endian {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u16_at(b: &[u8], big_endian: bool) -> u16 {
    let a = [b[0], b[1]];
    if big_endian {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
// pcapng block types and the byte-order magic, shared with the writer (write.rs).
pub(crate) const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
pub(crate) const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
pub(crate) const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
pub(crate) const PCAPNG_EPB: u32 = 6;

impl<R: Read> CaptureReader<R> {
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        read_exact_or(
            &mut input,
            &mut magic,
            0,
            "file shorter than a capture header",
        )?;
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let format = if le == PCAP_MAGIC_US
            || le == PCAP_MAGIC_NS
            || be == PCAP_MAGIC_US
            || be == PCAP_MAGIC_NS
        {
            let big_endian = be == PCAP_MAGIC_US || be == PCAP_MAGIC_NS;
            let mut rest = [0u8; 20];
            read_exact_or(&mut input, &mut rest, 0, "truncated pcap header")?;
            // linktype: low 16 bits of the last field (the upper bits hold FCS information).
            let linktype = u32_at(&rest[16..20], big_endian) & 0xffff;
            Format::Pcap {
                big_endian,
                linktype,
            }
        } else if le == PCAPNG_SHB {
            let mut reader = Self {
                input,
                format: Format::PcapNg {
                    big_endian: false,
                    linktypes: Vec::new(),
                },
                records: 0,
                interfaces: Vec::new(),
            };
            reader.read_section_header()?;
            return Ok(reader);
        } else {
            return Err(CaptureError::NotCapture(be));
        };
        Ok(Self {
            input,
            format,
            records: 0,
            interfaces: vec![None],
        })
    }

    /// The name a pcapng file gives interface `interface` of a [`Record`] (its `if_name`), if any.
    pub fn interface_name(&self, interface: u32) -> Option<&str> {
        self.interfaces.get(interface as usize)?.as_deref()
    }

    /// Interfaces declared so far (one for classic pcap).
    pub fn interface_count(&self) -> usize {
        self.interfaces.len()
    }

    /// The link type of a classic pcap file (pcapng has one per interface).
    pub fn pcap_linktype(&self) -> Option<u32> {
        match self.format {
            Format::Pcap { linktype, .. } => Some(linktype),
            Format::PcapNg { .. } => None,
        }
    }

    fn corrupt(&self, what: impl Into<String>) -> CaptureError {
        CaptureError::Corrupt {
            record: self.records + 1,
            what: what.into(),
        }
    }

    /// Reads a section header block after its type field (already consumed).
    fn read_section_header(&mut self) -> Result<(), CaptureError> {
        let mut len = [0u8; 4];
        read_exact_or(
            &mut self.input,
            &mut len,
            self.records + 1,
            "truncated section header",
        )?;
        self.read_section_header_after_type(&len)
    }

    fn skip(&mut self, n: usize) -> Result<(), CaptureError> {
        let copied = io::copy(&mut (&mut self.input).take(n as u64), &mut io::sink())?;
        if copied != n as u64 {
            return Err(self.corrupt("file ends inside a block"));
        }
        Ok(())
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        let record = match self.format {
            Format::Pcap {
                big_endian,
                linktype,
            } => self.next_pcap(big_endian, linktype)?,
            Format::PcapNg { big_endian, .. } => self.next_pcapng(big_endian)?,
        };
        if record.is_some() {
            self.records += 1;
        }
        Ok(record)
    }

    fn next_pcap(
        &mut self,
        big_endian: bool,
        linktype: u32,
    ) -> Result<Option<Record>, CaptureError> {
        let mut head = [0u8; 16];
        if !read_exact_or_eof(&mut self.input, &mut head)? {
            return Ok(None);
        }
        let caplen_field = u32_at(&head[8..12], big_endian);
        let caplen = caplen_field as usize;
        let orig_len = u32_at(&head[12..16], big_endian);
        if caplen > MAX_RECORD {
            return Err(self.corrupt(format!("captured length {caplen} exceeds {MAX_RECORD}")));
        }
        let mut data = vec![0u8; caplen];
        read_exact_or(
            &mut self.input,
            &mut data,
            self.records + 1,
            "file ends inside a packet",
        )?;
        Ok(Some(Record {
            linktype,
            data,
            orig_len: orig_len.max(caplen_field),
            interface: 0,
        }))
    }

    fn next_pcapng(&mut self, mut big_endian: bool) -> Result<Option<Record>, CaptureError> {
        loop {
            let mut head = [0u8; 8];
            if !read_exact_or_eof(&mut self.input, &mut head)? {
                return Ok(None);
            }
            let block_type = u32_at(&head[0..4], big_endian);
            if block_type == PCAPNG_SHB {
                // A new section: byte order and interfaces start over.
                self.read_section_header_after_type(&head[4..8])?;
                big_endian = matches!(
                    self.format,
                    Format::PcapNg {
                        big_endian: true,
                        ..
                    }
                );
                continue;
            }
            let total = u32_at(&head[4..8], big_endian) as usize;
            if total < 12 || !total.is_multiple_of(4) || total > MAX_RECORD {
                return Err(self.corrupt(format!("block length {total}")));
            }
            let mut body = vec![0u8; total - 8];
            read_exact_or(
                &mut self.input,
                &mut body,
                self.records + 1,
                "file ends inside a block",
            )?;
            let body = &body[..body.len() - 4]; // trailing length copy
            let linktypes = match &mut self.format {
                Format::PcapNg { linktypes, .. } => linktypes,
                Format::Pcap { .. } => unreachable!(),
            };
            match block_type {
                PCAPNG_IDB => {
                    if body.len() < 8 {
                        return Err(self.corrupt("short interface description"));
                    }
                    // At most one per 12-byte block of a file: far below 2^32.
                    let file_iface = u32::try_from(self.interfaces.len()).unwrap_or(u32::MAX);
                    linktypes.push((u32::from(u16_at(&body[0..2], big_endian)), file_iface));
                    self.interfaces.push(if_name(&body[8..], big_endian));
                }
                PCAPNG_EPB | PCAPNG_PB => {
                    if body.len() < 20 {
                        return Err(self.corrupt("short packet block"));
                    }
                    let iface = if block_type == PCAPNG_EPB {
                        u32_at(&body[0..4], big_endian) as usize
                    } else {
                        u16_at(&body[0..2], big_endian) as usize
                    };
                    let caplen_field = u32_at(&body[12..16], big_endian);
                    let caplen = caplen_field as usize;
                    let orig_len = u32_at(&body[16..20], big_endian);
                    let Some(&(linktype, interface)) = linktypes.get(iface) else {
                        return Err(
                            self.corrupt(format!("packet names undeclared interface {iface}"))
                        );
                    };
                    let Some(data) = body.get(20..20 + caplen) else {
                        return Err(self.corrupt("captured length exceeds the block"));
                    };
                    return Ok(Some(Record {
                        linktype,
                        data: data.to_vec(),
                        orig_len: orig_len.max(caplen_field),
                        interface,
                    }));
                }
                PCAPNG_SPB => {
                    if body.len() < 4 {
                        return Err(self.corrupt("short simple packet block"));
                    }
                    let Some(&(linktype, interface)) = linktypes.first() else {
                        return Err(self.corrupt("simple packet before any interface"));
                    };
                    let orig_len = u32_at(&body[0..4], big_endian);
                    let caplen = (orig_len as usize).min(body.len() - 4);
                    return Ok(Some(Record {
                        linktype,
                        data: body[4..4 + caplen].to_vec(),
                        orig_len,
                        interface,
                    }));
                }
                _ => {} // statistics, name resolution, custom: not packets
            }
        }
    }

    /// Reads the rest of a section header block, given its (still undecoded) length field.
    fn read_section_header_after_type(&mut self, len_bytes: &[u8]) -> Result<(), CaptureError> {
        let mut bom = [0u8; 4];
        read_exact_or(
            &mut self.input,
            &mut bom,
            self.records + 1,
            "truncated section header",
        )?;
        let big_endian = match u32::from_le_bytes(bom) {
            PCAPNG_BOM => false,
            x if x.swap_bytes() == PCAPNG_BOM => true,
            _ => return Err(self.corrupt("bad pcapng byte-order magic")),
        };
        let total = u32_at(len_bytes, big_endian) as usize;
        if total < 28 || !total.is_multiple_of(4) || total > MAX_RECORD {
            return Err(self.corrupt(format!("section header length {total}")));
        }
        self.skip(total - 12)?;
        self.format = Format::PcapNg {
            big_endian,
            linktypes: Vec::new(),
        };
        Ok(())
    }
}

/// The `if_name` option (code 2) among an interface description's options, if it has one.
/// Malformed options end the search: the name is a nicety, the packets still count.
fn if_name(mut options: &[u8], big_endian: bool) -> Option<String> {
    const OPT_END: u16 = 0;
    const IF_NAME: u16 = 2;
    while options.len() >= 4 {
        let code = u16_at(&options[0..2], big_endian);
        let len = u16_at(&options[2..4], big_endian) as usize;
        let value = options.get(4..4 + len)?;
        match code {
            OPT_END => return None,
            IF_NAME => {
                let name = String::from_utf8_lossy(value);
                let name = name.trim_end_matches('\0');
                return (!name.is_empty()).then(|| name.to_owned());
            }
            _ => options = options.get(4 + len.div_ceil(4) * 4..)?,
        }
    }
    None
}

fn read_exact_or(
    r: &mut impl Read,
    buf: &mut [u8],
    record: usize,
    what: &str,
) -> Result<(), CaptureError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CaptureError::Corrupt {
            record,
            what: what.into(),
        },
        _ => CaptureError::Io(e),
    })
}

/// Fills `buf`; false on a clean end of file before the first byte.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, CaptureError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(CaptureError::Corrupt {
                    record: 0,
                    what: "file ends inside a record header".into(),
                });
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Whether `linktype` can be replayed.
pub fn supported(linktype: u32) -> bool {
    matches!(
        linktype,
        LINKTYPE_NULL
            | LINKTYPE_ETHERNET
            | LINKTYPE_RAW
            | LINKTYPE_LOOP
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
            | LINKTYPE_LINUX_SLL2
    )
}

/// Turns a captured frame into an Ethernet frame, synthesizing the Ethernet header for link types
/// without one. `None` when the frame is too short to hold its link-layer header.
pub fn to_ethernet(linktype: u32, data: &[u8]) -> Result<Option<Vec<u8>>, CaptureError> {
    let (ethertype, payload) = match linktype {
        LINKTYPE_ETHERNET => return Ok(Some(data.to_vec())),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => (ethertype_of_ip(data), data),
        LINKTYPE_NULL | LINKTYPE_LOOP => match data.get(4..) {
            // The family is in the capturing host's byte order and differs across BSDs: the IP
            // version nibble is the reliable part.
            Some(ip) => (ethertype_of_ip(ip), ip),
            None => return Ok(None),
        },
        LINKTYPE_LINUX_SLL => match data.get(16..) {
            Some(rest) => (u16::from_be_bytes([data[14], data[15]]), rest),
            None => return Ok(None),
        },
        LINKTYPE_LINUX_SLL2 => match data.get(20..) {
            Some(rest) => (u16::from_be_bytes([data[0], data[1]]), rest),
            None => return Ok(None),
        },
        other => return Err(CaptureError::UnsupportedLinkType(other)),
    };
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&[0u8; 12]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(Some(frame))
}

fn ethertype_of_ip(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(6) => 0x86dd,
        _ => 0x0800,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(linktype: u32, packets: &[&[u8]]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_MAGIC_US.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&linktype.to_le_bytes());
        for p in packets {
            f.extend_from_slice(&[0; 8]);
            let len = u32::try_from(p.len()).unwrap();
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&(len + 10).to_le_bytes());
            f.extend_from_slice(p);
        }
        f
    }

    #[test]
    fn pcapng_interfaces_are_numbered_across_sections_and_named() {
        use crate::pcap::write::PcapngWriter;
        let section = |names: &[&str]| {
            let mut w = PcapngWriter::new(Vec::new(), None).unwrap();
            for (i, name) in names.iter().enumerate() {
                let id = w.add_interface(name, 1500).unwrap();
                w.write_packet(id, 1, 3, &[u8::try_from(i).unwrap(); 3], "")
                    .unwrap();
            }
            w.into_inner().unwrap()
        };
        // Two sections: the second's interface 0 is the file's third.
        let mut file = section(&["ns/veth0@tc-egress", "eth1"]);
        file.extend(section(&["lo"]));
        let mut r = CaptureReader::new(&file[..]).unwrap();
        let ifaces: Vec<u32> = std::iter::from_fn(|| r.next_record().unwrap())
            .map(|rec| rec.interface)
            .collect();
        assert_eq!(ifaces, [0, 1, 2]);
        assert_eq!(r.interface_count(), 3);
        assert_eq!(r.interface_name(0), Some("ns/veth0@tc-egress"));
        assert_eq!(r.interface_name(2), Some("lo"));
        assert_eq!(r.interface_name(3), None);
    }

    #[test]
    fn interface_names_survive_other_options_and_malformed_ones_are_ignored() {
        let opt = |code: u16, value: &[u8]| {
            let mut o = code.to_le_bytes().to_vec();
            o.extend(u16::try_from(value.len()).unwrap().to_le_bytes());
            o.extend(value);
            o.resize(o.len().div_ceil(4) * 4, 0);
            o
        };
        let mut options = opt(1, b"a comment");
        options.extend(opt(2, b"eth7\0"));
        assert_eq!(if_name(&options, false).as_deref(), Some("eth7"));
        assert_eq!(if_name(&opt(0, b""), false), None, "opt_endofopt");
        assert_eq!(if_name(&opt(2, b""), false), None, "an empty name is none");
        // A length past the block's end: no name, no panic.
        assert_eq!(if_name(&[2, 0, 0xff, 0, b'x'], false), None);
        assert_eq!(if_name(&[], false), None);
    }

    #[test]
    fn reads_pcap_records() {
        let file = pcap(1, &[b"abcdefghijklmnop", b"xyz"]);
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert_eq!(r.pcap_linktype(), Some(1));
        let a = r.next_record().unwrap().unwrap();
        assert_eq!(a.data, b"abcdefghijklmnop");
        assert_eq!(a.orig_len, 26);
        assert_eq!(a.interface, 0);
        assert_eq!((r.interface_count(), r.interface_name(0)), (1, None));
        assert_eq!(r.next_record().unwrap().unwrap().data, b"xyz");
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(matches!(
            CaptureReader::new(&b"hello world, not a capture"[..]),
            Err(CaptureError::NotCapture(_))
        ));
        assert!(matches!(
            CaptureReader::new(&b"he"[..]),
            Err(CaptureError::Corrupt { .. })
        ));
        let mut file = pcap(1, &[b"abcdefghijklmnop"]);
        file.truncate(file.len() - 3);
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert!(matches!(r.next_record(), Err(CaptureError::Corrupt { .. })));
        // A record that claims 4 GiB is refused before any allocation.
        let mut file = pcap(1, &[b"abcd"]);
        let at = 24 + 8;
        file[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert!(matches!(r.next_record(), Err(CaptureError::Corrupt { .. })));
    }

    #[test]
    fn synthesizes_ethernet_headers() {
        let ip4 = [0x45u8, 0, 0, 20];
        let ip6 = [0x60u8, 0, 0, 0];
        assert_eq!(
            &to_ethernet(LINKTYPE_RAW, &ip4).unwrap().unwrap()[12..],
            &[0x08, 0x00, 0x45, 0, 0, 20]
        );
        assert_eq!(
            &to_ethernet(LINKTYPE_RAW, &ip6).unwrap().unwrap()[12..14],
            &[0x86, 0xdd]
        );
        let mut null = vec![30, 0, 0, 0];
        null.extend_from_slice(&ip6);
        assert_eq!(
            &to_ethernet(LINKTYPE_NULL, &null).unwrap().unwrap()[12..14],
            &[0x86, 0xdd]
        );
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip4);
        assert_eq!(
            &to_ethernet(LINKTYPE_LINUX_SLL, &sll).unwrap().unwrap()[12..],
            &[0x08, 0x00, 0x45, 0, 0, 20]
        );
        let mut sll2 = vec![0x86, 0xdd];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip6);
        assert_eq!(
            &to_ethernet(LINKTYPE_LINUX_SLL2, &sll2).unwrap().unwrap()[12..14],
            &[0x86, 0xdd]
        );
        assert!(to_ethernet(LINKTYPE_LINUX_SLL, &[0; 10]).unwrap().is_none());
        assert!(matches!(
            to_ethernet(105, &ip4),
            Err(CaptureError::UnsupportedLinkType(105))
        ));
    }
}
