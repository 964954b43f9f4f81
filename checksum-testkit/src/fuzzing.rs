//! The bodies of the `cargo fuzz` targets in fuzz/ (one function per target, same name), in the
//! library so that `tests/fuzz_corpus.rs` runs the committed corpus and every regression input
//! through exactly what the fuzzer ran, on stable and without libFuzzer.
//!
//! Each body takes arbitrary bytes and panics on a finding: a panic in the code under test, or a
//! property that does not hold (what the pcapng writer writes, the capture reader reads back;
//! reading a file in one-byte pieces gives what reading it whole gives; a decoded record obeys
//! the bounds its decoder promises). Each bounds its own work, so a slow input is a finding too.
#![expect(
    clippy::missing_panics_doc,
    reason = "a fuzz target's panic is its finding: every body panics on purpose"
)]

use std::{
    io::{self, Read},
    time::Duration,
};

use checksum_common::{
    ChecksumEvent, Hook, Kind, Layer, Status,
    event::{CAPTURE_HEADER_LEN, Direction, MAX_SNAP},
};

use checksum_user::{
    analysis::{Analysis, SourceFacts},
    cli::{MAX_DURATION, parse_duration},
    kernel::testrun::MIN_FRAME,
    model::{Flow, Verdict},
    net::{
        iface::IfaceClass,
        namespace::Namespace,
        select::{glob_match, is_pattern},
    },
    pcap::read::{
        CaptureError, CaptureReader, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL, LINKTYPE_RAW,
        MAX_RECORD, Record, supported, to_ethernet,
    },
    pcap::write::PcapngWriter,
    replay::replay_frame,
    report::{metrics, output},
    sys::netlink,
};

/// A target's body: takes any bytes, panics on a finding.
pub type Body = fn(&[u8]);

/// Every target: its name (the file `fuzz/fuzz_targets/NAME.rs` and the directories
/// fuzz/corpus/NAME and fuzz/regressions/NAME) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("capture_file", capture_file),
    ("ring_record", ring_record),
    ("verdict_stream", verdict_stream),
    ("pcapng_round_trip", pcapng_round_trip),
    ("cli_specs", cli_specs),
    ("netlink_datagram", netlink_datagram),
];

// ---------------------------------------------------------------------------------------------
// capture_file: a capture file, as `replay` reads it.

/// The bytes as a pcap or pcapng file: every record, what replay makes of it, and `to_ethernet`
/// of the whole input under every link type. Reading through a reader that returns one byte per
/// call must give the same records and the same error.
pub fn capture_file(data: &[u8]) {
    let whole = read_capture(data);
    let bytewise = read_capture(OneByte(data));
    assert_eq!(
        whole, bytewise,
        "reading the file one byte per read() changes the result"
    );
    for linktype in LINKTYPES {
        check_to_ethernet(linktype, data);
    }
}

/// Every supported link type, and one that is not.
const LINKTYPES: [u32; 9] = [
    LINKTYPE_NULL,
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    LINKTYPE_LOOP,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL2,
    105, // IEEE 802.11
];

/// A reader that hands out one byte per call: short reads must not change what is parsed.
struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// The records up to the end or the first error, and that error's message.
fn read_capture(input: impl Read) -> (Vec<Record>, Option<String>) {
    let mut reader = match CaptureReader::new(input) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut records = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(record)) => {
                check_record(&record);
                records.push(record);
            }
            Ok(None) => return (records, None),
            Err(e) => return (records, Some(e.to_string())),
        }
    }
}

fn check_record(r: &Record) {
    assert!(
        r.data.len() <= MAX_RECORD,
        "record of {} bytes",
        r.data.len()
    );
    assert!(r.orig_len as usize >= r.data.len(), "orig_len below caplen");
    check_to_ethernet(r.linktype, &r.data);
    match replay_frame(r) {
        Ok(Some(frame)) => assert!(frame.len() >= MIN_FRAME),
        Ok(None) => {}
        Err(e) => assert!(!supported(r.linktype), "supported link type refused: {e}"),
    }
}

/// Bytes of link-layer header `to_ethernet` replaces for `linktype`.
fn link_header_len(linktype: u32) -> usize {
    match linktype {
        LINKTYPE_NULL | LINKTYPE_LOOP => 4,
        LINKTYPE_LINUX_SLL => 16,
        LINKTYPE_LINUX_SLL2 => 20,
        _ => 0,
    }
}

fn check_to_ethernet(linktype: u32, data: &[u8]) {
    let header = link_header_len(linktype);
    match to_ethernet(linktype, data) {
        Err(CaptureError::UnsupportedLinkType(lt)) => {
            assert!(!supported(linktype) && lt == linktype);
        }
        Err(e) => panic!("to_ethernet({linktype}): {e}"),
        Ok(None) => assert!(supported(linktype) && data.len() < header),
        Ok(Some(frame)) if linktype == LINKTYPE_ETHERNET => assert_eq!(frame, data),
        Ok(Some(frame)) => {
            assert!(supported(linktype));
            assert_eq!(frame.len(), 14 + data.len() - header);
            assert_eq!(&frame[..12], &[0; 12], "synthesized MAC addresses");
            assert_eq!(&frame[14..], &data[header..]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ring_record: one ring-buffer record from the kernel program.

const EVENT_LEN: usize = size_of::<ChecksumEvent>();

/// The bytes as a ring-buffer record through both decoders, then what live mode does with a
/// decoded one: its text and JSON line, and with a capture, the `--pcap-out` packet, read back.
pub fn ring_record(data: &[u8]) {
    let plain = Verdict::decode(data);
    assert!(plain.is_err() || data.len() >= EVENT_LEN);
    let Ok((verdict, captured)) = Verdict::decode_with_capture(data) else {
        return;
    };
    assert_eq!(
        plain.as_ref().ok(),
        Some(&verdict),
        "the two decoders disagree"
    );
    let _ = output::verdict_text(&verdict);
    let _ = verdict.json_fields();
    let Some(cap) = captured else {
        assert_eq!(data.len(), EVENT_LEN);
        return;
    };
    assert!(cap.data.len() <= MAX_SNAP);
    assert!(cap.data.len() as u64 <= u64::from(cap.frame_len));
    assert_eq!(data.len(), CAPTURE_HEADER_LEN + cap.data.len());
    let Some((frame, orig_len)) = cap.ethernet_frame() else {
        assert!(cap.data.is_empty(), "{:?}", cap.data);
        return;
    };
    let mut writer = PcapngWriter::new(Vec::new(), None).expect("writing to memory");
    let iface = writer
        .add_interface("fuzz0", 256)
        .expect("writing to memory");
    let comment = output::verdict_text(&verdict);
    assert!(
        writer
            .write_packet(iface, verdict.timestamp_ns, orig_len, &frame, &comment)
            .expect("a captured frame is a valid packet")
    );
    let file = writer.into_inner().expect("writing to memory");
    let mut reader = CaptureReader::new(&file[..]).expect("reading our own pcapng");
    let record = reader
        .next_record()
        .expect("reading our own pcapng")
        .expect("the packet written");
    assert_eq!(record.linktype, LINKTYPE_ETHERNET);
    assert_eq!(record.data, &frame[..]);
    assert_eq!(
        record.orig_len,
        orig_len.max(u32::try_from(frame.len()).unwrap())
    );
}

// ---------------------------------------------------------------------------------------------
// verdict_stream: what the kernel reports about attacker-chosen traffic, through aggregation,
// diagnosis and every rendering.

/// A stream of verdicts built from the bytes (addresses and ports from small pools, so flows
/// repeat and rewrites can be "found") through the aggregator and the diagnoser with small
/// bounds, then every text and JSON rendering of their results. Counts must add up: what is not
/// in a row is counted as evicted or untracked.
pub fn verdict_stream(data: &[u8]) {
    let mut input = Input(data);
    let max_keys = 1 + input.u8() as usize % 16;
    let limit = input.u8() as usize % 16;
    let class = match input.u8() % 5 {
        0 => IfaceClass::Physical,
        1 => IfaceClass::Bond,
        2 => IfaceClass::Vlan,
        3 => IfaceClass::Loopback,
        _ => IfaceClass::Virtual("veth".into()),
    };
    let mut analysis = Analysis::with_bounds(max_keys, limit);
    for (i, hook) in Hook::ALL.into_iter().enumerate() {
        analysis.add_source(SourceFacts {
            name: format!("if{i}"),
            hook,
            class: class.clone(),
            mode: "tcx",
            namespace: 0,
        });
    }
    let mut mismatches = 0;
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let v = verdict(&mut input);
        let source = u32::from(input.u8() % 3);
        mismatches += u64::from(v.status == Status::Bad);
        let observed = analysis.observe(source, &v);
        assert_eq!(observed.severity, analysis.severity(source, v.kind));
        assert!(analysis.flows().len() <= max_keys);
        if let Some(d) = analysis.diagnosis_of(source, &v) {
            let _ = (d.name(), d.explanation(), d.next_step());
        }
        let _ = output::verdict_text(&v);
        let _ = v.json_fields();
    }
    let flows = analysis.flows();
    let counted: u64 = flows.rows().iter().map(|(_, e)| e.count).sum();
    assert_eq!(counted + flows.evicted.mismatches, mismatches);
    let diagnoses = analysis.diagnoses();
    assert!(diagnoses.len() <= limit);
    let in_diagnoses: u64 = diagnoses.iter().map(|d| d.count).sum();
    assert_eq!(in_diagnoses + analysis.untracked().mismatches, mismatches);

    let clock = checksum_user::sys::clock::Clock::new();
    let _ = output::flows_text(&analysis, &clock, 5, true);
    let _ = output::flows_text(&analysis, &clock, 50, false);
    let _ = output::flows_json(&analysis, &clock);
    let _ = output::diagnoses_text(&analysis, &diagnoses, true, 3);
    for d in &diagnoses {
        let _ = output::diagnosis_json(&analysis, d);
    }
    let _ = checksum_user::report::view::rows(&analysis, &clock, true, limit);
    let _ = checksum_user::report::metrics::render(&checksum_user::report::metrics::Snapshot::of(
        &analysis,
        &checksum_user::lifecycle::Lifecycle::default(),
    ));
}

/// One verdict from the input.
fn verdict(input: &mut Input) -> Verdict {
    let a = input.u8();
    let b = input.u8();
    let layer = Layer::ALL[a as usize % Layer::COUNT];
    let status = Status::ALL[(a / 8) as usize % Status::COUNT];
    let kind = Kind::from_u8(b % 5).expect("below Kind::COUNT");
    let hook = Hook::from_u8((b / 8) % 3).expect("three hooks");
    let direction = Direction::from_u8((b / 32) % 2).expect("two directions");
    let v6 = matches!(layer, Layer::Icmpv6) || (b & 0x80 != 0 && layer != Layer::Ipv4);
    let (src, dst) = (address(input, v6), address(input, v6));
    let ports = matches!(layer, Layer::Tcp | Layer::Udp).then(|| (port(input), port(input)));
    let protocol = match layer {
        Layer::Ipv4 => 0,
        Layer::Tcp => 6,
        Layer::Udp => 17,
        Layer::Icmp => 1,
        Layer::Icmpv6 => 58,
    };
    Verdict {
        timestamp_ns: input.u64(),
        slot: 0,
        ifindex: input.u8().into(),
        hook,
        direction,
        layer,
        status,
        kind,
        flow: Flow {
            src,
            dst,
            ports,
            protocol,
        },
        got: input.u16(),
        want: input.u16(),
        pseudo: input.u16(),
        l4_len: input.u16().into(),
        ip_id: input.u16().into(),
        tcp_seq: input.u32(),
        tcp_ack: 0,
        flow_label: 0,
        tracked: false,
        skb: None,
        encap: None,
    }
}

/// One of four addresses, or any (from the next bytes).
fn address(input: &mut Input, v6: bool) -> std::net::IpAddr {
    let pick = input.u8();
    let octets: [u8; 16] = if pick < 0xf0 {
        [10, 0, 0, pick % 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    } else {
        input.array()
    };
    if v6 {
        std::net::Ipv6Addr::from(octets).into()
    } else {
        std::net::Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]).into()
    }
}

fn port(input: &mut Input) -> u16 {
    match input.u8() {
        p @ 0..4 => [80, 443, 8080, 53][p as usize],
        _ => input.u16(),
    }
}

// ---------------------------------------------------------------------------------------------
// pcapng_round_trip: the `--pcap-out` writer against our reader.

/// Up to this many bytes of packet data and comments per input (long ones are generated, not
/// read from the input), to keep an execution fast.
const ROUND_TRIP_BUDGET: usize = 2 << 20;

/// Interfaces and packets from the bytes (link types beyond 16 bits, undeclared interface ids,
/// comments and packets of any length, a size bound) through the pcapng writer; what it accepts
/// must read back identically with `CaptureReader`, and its blocks must carry the timestamps and
/// comments given (comments cut at a character boundary at 65535 bytes).
pub fn pcapng_round_trip(data: &[u8]) {
    let mut input = Input(data);
    let max_bytes = match input.u8() % 4 {
        0 => Some(u64::from(input.u16()) * 4),
        _ => None,
    };
    let mut writer = PcapngWriter::new(Vec::new(), max_bytes).expect("writing to memory");
    let mut linktypes: Vec<u32> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut written: Vec<(Record, u64, String)> = Vec::new();
    let mut full = false;
    let mut budget = ROUND_TRIP_BUDGET;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        if input.u8() % 4 == 0 {
            let linktype = match input.u8() {
                0..16 => 0x1_0000 + u32::from(input.u16()),
                lt => u32::from(lt) % 8 * 37, // a few ordinary link types
            };
            let name = text(&mut input, &mut budget);
            let snaplen = input.u32();
            match writer.add_interface_with_linktype(&name, linktype, snaplen) {
                Ok(id) => {
                    assert!(linktype <= 0xffff);
                    assert_eq!(id as usize, linktypes.len());
                    linktypes.push(linktype);
                    names.push(name);
                }
                Err(_) => assert!(linktype > 0xffff, "link type {linktype} refused"),
            }
            continue;
        }
        let iface = u32::from(input.u8()) % (u32::try_from(linktypes.len()).unwrap() + 2);
        let timestamp_ns = input.u64();
        let orig_len = input.u32();
        let packet = blob(&mut input, &mut budget);
        let comment = text(&mut input, &mut budget);
        // At most the block's size: the writer may cut a few more bytes of a long comment to
        // keep whole characters.
        let block = 32
            + packet.len().div_ceil(4) * 4
            + match comment.len().min(65535) {
                0 => 0,
                n => 8 + n.div_ceil(4) * 4,
            };
        match writer.write_packet(iface, timestamp_ns, orig_len, &packet, &comment) {
            Err(e) => assert!(
                iface as usize >= linktypes.len() || block > MAX_RECORD,
                "packet refused: {e} ({} bytes, comment {} bytes)",
                packet.len(),
                comment.len()
            ),
            Ok(false) => {
                assert!(max_bytes.is_some(), "dropped without a size bound");
                full = true;
            }
            Ok(true) => {
                assert!(!full, "a packet written after one was dropped");
                assert!(max_bytes.is_none_or(|max| writer.bytes_written() <= max));
                let record = Record {
                    linktype: linktypes[iface as usize],
                    orig_len: orig_len.max(u32::try_from(packet.len()).unwrap()),
                    data: packet,
                    interface: iface,
                };
                written.push((record, timestamp_ns, comment));
            }
        }
    }
    assert_eq!(writer.packets_written(), written.len() as u64);
    let bytes_written = writer.bytes_written();
    let file = writer.into_inner().expect("writing to memory");
    assert_eq!(file.len() as u64, bytes_written);

    let mut reader = CaptureReader::new(&file[..]).expect("our own section header");
    for (i, (want, _, _)) in written.iter().enumerate() {
        match reader.next_record() {
            Ok(Some(got)) => assert!(got == *want, "packet {i} reads back differently"),
            other => panic!(
                "packet {i} of {} does not read back: {other:?}",
                written.len()
            ),
        }
    }
    assert!(
        matches!(reader.next_record(), Ok(None)),
        "more packets than written"
    );
    check_blocks(&file, &names, &written);
}

/// Walks the blocks of a file we wrote (host byte order) and checks the interface names,
/// timestamps and comments, which `CaptureReader` does not return.
fn check_blocks(file: &[u8], names: &[String], written: &[(Record, u64, String)]) {
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    let (mut names, mut packets) = (names.iter(), written.iter());
    let mut at = 0;
    while at < file.len() {
        let (kind, total) = (u32_at(file, at), u32_at(file, at + 4) as usize);
        assert_eq!(
            u32_at(file, at + total - 4) as usize,
            total,
            "trailing length"
        );
        let body = &file[at + 8..at + total - 4];
        at += total;
        let (options, value) = match kind {
            1 => (
                &body[8..],
                names.next().expect("an interface written").as_str(),
            ),
            6 => {
                let (record, ts, comment) = packets.next().expect("a packet written");
                assert_eq!(
                    u64::from(u32_at(body, 4)) << 32 | u64::from(u32_at(body, 8)),
                    *ts
                );
                let options = &body[20 + record.data.len().div_ceil(4) * 4..];
                if comment.is_empty() {
                    assert!(options.is_empty(), "options without a comment");
                    continue;
                }
                (options, comment.as_str())
            }
            _ => continue,
        };
        // The first option holds the name or comment: the longest prefix of whole characters
        // that fits 65535 bytes.
        let len = u16_at(options, 2) as usize;
        let stored = std::str::from_utf8(&options[4..4 + len]).expect("UTF-8 kept whole");
        assert!(value.starts_with(stored));
        assert!(
            stored.len() == value.len() || stored.len() > 65535 - 4,
            "cut too early"
        );
    }
    assert!(
        names.next().is_none() && packets.next().is_none(),
        "blocks missing"
    );
}

/// Bytes for a packet: from the input, or (rarely) generated up to past the largest block the
/// reader accepts.
fn blob(input: &mut Input, budget: &mut usize) -> Vec<u8> {
    let len = match input.u8() {
        0xff => input.u32() as usize % (MAX_RECORD + (64 << 10)),
        n => return input.bytes(usize::from(n) * 2).to_vec(),
    };
    let len = len.min(*budget);
    *budget -= len;
    let fill = input.u8();
    // The low byte of the index: the pattern repeats every 256 bytes.
    (0..len).map(|i| fill ^ i.to_le_bytes()[0]).collect()
}

/// A string: from the input, or (rarely) a fragment repeated up to past the 65535 bytes an
/// option holds.
fn text(input: &mut Input, budget: &mut usize) -> String {
    match input.u8() {
        0xff => {
            let fragment = String::from_utf8_lossy(input.bytes(4)).into_owned();
            let len = (input.u32() as usize % 70_000).min(*budget);
            *budget -= len;
            if fragment.is_empty() {
                return String::new();
            }
            fragment.repeat(len / fragment.len())
        }
        n => String::from_utf8_lossy(input.bytes(usize::from(n))).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// cli_specs: what the command line parses.

/// The bytes as every command-line value we parse ourselves: a duration, a `--metrics-addr`, a
/// `--netns` spec, and (split at the first NUL) an `--iface` pattern and an interface name,
/// matched by `glob_match` and by a reference matcher.
pub fn cli_specs(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(d) = parse_duration(&s) {
        assert!(d > Duration::ZERO && d <= MAX_DURATION);
    }
    let _ = metrics::parse_addr(&s);
    if let Ok(path) = Namespace::path_of(&s)
        && !s.starts_with("pid:")
        && s.contains('/')
    {
        assert_eq!(path.as_os_str(), s.as_ref());
    }
    let (pattern, name) = s.split_once('\0').unwrap_or((&s, "wlp0s20f3"));
    // Interface names are at most 15 bytes (IFNAMSIZ - 1).
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let name = &name[..end];
    let got = glob_match(pattern, name);
    assert_eq!(
        got,
        reference_glob(pattern, name),
        "{pattern:?} vs {name:?}"
    );
    if !is_pattern(pattern) {
        assert_eq!(got, pattern == name);
    }
}

/// What `glob_match` means, by dynamic programming over (pattern, name) positions: `*` any
/// run, `?` one character, `[...]` one of a set with `a-z` ranges (an unclosed `[` is literal).
fn reference_glob(pattern: &str, name: &str) -> bool {
    enum Token {
        Star,
        Any,
        Class(Vec<char>),
        Char(char),
    }
    let p: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let (token, used) = match p[i] {
            '*' => (Token::Star, 1),
            '?' => (Token::Any, 1),
            '[' => match p[i..].iter().position(|&c| c == ']') {
                Some(end) => (Token::Class(p[i + 1..i + end].to_vec()), end + 1),
                None => (Token::Char('['), 1),
            },
            c => (Token::Char(c), 1),
        };
        tokens.push(token);
        i += used;
    }
    let in_class = |set: &[char], c: char| {
        let mut j = 0;
        while j < set.len() {
            if j + 2 < set.len() && set[j + 1] == '-' {
                if set[j] <= c && c <= set[j + 2] {
                    return true;
                }
                j += 3;
            } else {
                if set[j] == c {
                    return true;
                }
                j += 1;
            }
        }
        false
    };
    let n: Vec<char> = name.chars().collect();
    // matched[j]: the tokens so far match the first j characters.
    let mut matched = vec![false; n.len() + 1];
    matched[0] = true;
    for token in &tokens {
        let mut next = vec![false; n.len() + 1];
        for j in 0..=n.len() {
            next[j] = match token {
                Token::Star => matched[j] || (j > 0 && next[j - 1]),
                _ if j == 0 => false,
                Token::Any => matched[j - 1],
                Token::Class(set) => matched[j - 1] && in_class(set, n[j - 1]),
                Token::Char(c) => matched[j - 1] && *c == n[j - 1],
            };
        }
        matched = next;
    }
    matched[n.len()]
}

// ---------------------------------------------------------------------------------------------
// netlink_datagram: an rtnetlink datagram, as interface following reads them.

/// The bytes as an rtnetlink datagram through `parse_datagram`, then what interface following
/// asks of each link: its name, kind, loopback flag and class.
pub fn netlink_datagram(data: &[u8]) {
    let Ok((messages, _done)) = netlink::parse_datagram(data) else {
        return;
    };
    for m in &messages {
        if let netlink_packet_route::RouteNetlinkMessage::NewLink(link)
        | netlink_packet_route::RouteNetlinkMessage::DelLink(link) = m
        {
            let _ = netlink::link_name(link);
            let _ = netlink::link_kind(link);
            let _ = netlink::is_loopback(link);
            let _ = IfaceClass::of(link).name().to_owned();
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The structured targets' choices, read from the front of the input; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        let b = self.bytes(N);
        a[..b.len()].copy_from_slice(b);
        a
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}
