//! Conformance against tcpdump: replays the real-world captures of tcpdump's own test suite through
//! `checksum-audit replay FILE --all --format json` and compares every checksum verdict with the
//! one tcpdump's expected output prints for the same packet.
//!
//! The corpus (default `../shared/corpus/tcpdump` beside the repository, or `$CONFORMANCE_CORPUS`) is described in its
//! README.txt: `pcap/` captures, `out/` outputs of `tcpdump -# -n -tttt -r PCAP FLAGS`, and
//! `index.csv`, one row per test.
//!
//! # Selection
//! Rows of index.csv with category `real-world` and a link type replay converts: Ethernet (1),
//! BSD loopback (0, 108), raw IP (101, 228, 229), Linux SLL (113) and SLL2 (276). Several tests
//! share a pcap with different flags: every output is parsed and the verdicts are merged per
//! (packet, layer), so the most verbose output fills in what a less verbose one omits (UDP over
//! IPv4 is only checked with -vv). Two outputs giving one (packet, layer) different verdicts fail
//! the test: that would be a parser bug.
//!
//! # What counts as tcpdump's verdict for the OUTER packet
//! Our program parses the outer headers and, for VXLAN and Geneve, the inner packet: those two
//! levels are compared, the inner one as `inner-ipv4`, `inner-tcp`, ... (see "Tunnels" below).
//! * Packets: a line that starts with the next packet number right-aligned in 5 columns and two
//!   spaces (tcpdump's `-#` format, `%5u  `) starts a packet; every other line continues it. The
//!   count must equal index.csv's `out_packets`.
//! * The outer network header is the first verbose IP header printed for the packet: `(tos 0x` for
//!   IPv4, `(class 0x` / `(flowlabel 0x` / `(hlim ` for IPv6 (the `IP ` / `IP6 ` prefix is not
//!   used, `-e` drops it). The outer packet's text ends where the NEXT such header starts: the
//!   headers of tunnelled packets (GRE, IP-in-IP, 4in6/6in4, VXLAN, Geneve, ...) and of the
//!   datagram an ICMP error quotes are all printed with the same verbose header, so their
//!   verdicts are never attributed to the outer packet.
//! * That header must be the packet's outermost protocol: only the link layer may be printed
//!   before it, on the first line (`<time> IP ` / `IP6 `, or with -e `ethertype IPv4 (0x0800),
//!   length N: `). Packets that start with NSH, MPLS, PPPoE... are skipped whole, since our
//!   program does not parse those (the summary counts them).
//! * IPv4 header: `bad cksum X (->Y)!` inside the outer header's parentheses is `bad` (want Y). A
//!   complete header (closing parenthesis printed) without it is `ok`: with -v tcpdump checks
//!   every IPv4 header it has in full and prints only failures.
//! * Transport: the FIRST transport verdict in the outer text, kept only if its layer is the outer
//!   header's protocol (IPv4 `proto`, IPv6 `next-header`; behind IPv6 extension headers any of
//!   tcp/udp/icmpv6). TCP `Flags [..], cksum 0xX (correct)` / `(incorrect -> 0xY)` (the `Flags`
//!   anchor keeps out the `cksum` strings of PIM, DCCP and the like), UDP `[udp sum ok]` /
//!   `[bad udp cksum 0xX -> 0xY!]` / `[no cksum]`, ICMPv4 `(wrong icmp cksum X (->Y)!)`, ICMPv6
//!   `[icmp6 sum ok]` / `[bad icmp6 cksum 0xX -> 0xY!]`. Later transport verdicts are ignored.
//! * ICMPv4 implied ok: tcpdump prints nothing for a correct ICMP checksum, so an outer IPv4
//!   packet with proto 1 that is not a fragment (offset 0, no `+` flag), was captured whole (the
//!   pcap record's captured length equals its wire length), shows no truncation (`[|`,
//!   `truncated`) in the outer text, no IP length inconsistency (`(invalid)` before the header)
//!   and no `wrong icmp cksum` is `ok`. (No selected pcap has an outer ICMPv4 packet today; the
//!   unit tests below check the rule on real tcpdump output.)
//! * Anything else tcpdump is silent about (UDP over IPv4 below -vv, transport of fragments or of
//!   short captures) is not compared.
//!
//! # Tunnels
//! When the outer text says `VXLAN, ` or `Geneve, ` (and no NSH), the next verbose IP header is
//! the inner packet's: its text, up to the header after it, is read by the same rules as the
//! outer packet's and compared with our verdicts whose `encap.level` is `inner`. Anything
//! further in (a quoted datagram, a nested tunnel) is not compared.
//!
//! # Comparison
//! For every (packet, layer) with a tcpdump verdict: `ok` must be our `ok`, `bad` our `bad` with
//! the same want value (the `-> Y` tcpdump prints), `[no cksum]` our `none`. Verdicts are written
//! as `ok`, `bad->0xYYYY`, `none`, `unverifiable`, or `-` when we report nothing for that layer.
//! Every difference must be listed in `tests/conformance/known-disagreements.txt` as
//! `pcap packet layer ours tcpdump  # explanation`; unlisted differences and stale entries (no
//! longer differing) both fail the test. As a check on the matching itself, the checksum field
//! value tcpdump prints must equal our `got` wherever both exist.
//!
//! Run with `cargo test -p checksum-user --test conformance -- --nocapture` to see the figures.

mod common;

use common::require_root;
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

/// `../shared` beside the repository, as on the developers' machines and in CI.
const DEFAULT_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/tcpdump");
const KNOWN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance/known-disagreements.txt"
);
/// Link types `replay` converts to Ethernet.
const LINKTYPES: &[u32] = &[0, 1, 101, 108, 113, 228, 229, 276];
/// IPv6 extension headers tcpdump walks before the transport header.
const IP6_EXT_HEADERS: &[u32] = &[0, 43, 44, 51, 60, 135, 139, 140];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Ipv4,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// The same checksums of a tunnel's inner packet (VXLAN, Geneve).
    InnerIpv4,
    InnerTcp,
    InnerUdp,
    InnerIcmp,
    InnerIcmpv6,
}

impl Layer {
    const ALL: [Layer; 10] = [
        Layer::Ipv4,
        Layer::Tcp,
        Layer::Udp,
        Layer::Icmp,
        Layer::Icmpv6,
        Layer::InnerIpv4,
        Layer::InnerTcp,
        Layer::InnerUdp,
        Layer::InnerIcmp,
        Layer::InnerIcmpv6,
    ];

    fn name(self) -> &'static str {
        match self {
            Layer::Ipv4 => "ipv4",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
            Layer::Icmpv6 => "icmpv6",
            Layer::InnerIpv4 => "inner-ipv4",
            Layer::InnerTcp => "inner-tcp",
            Layer::InnerUdp => "inner-udp",
            Layer::InnerIcmp => "inner-icmp",
            Layer::InnerIcmpv6 => "inner-icmpv6",
        }
    }

    /// The same layer of a tunnel's inner packet.
    fn inner(self) -> Layer {
        match self {
            Layer::Ipv4 => Layer::InnerIpv4,
            Layer::Tcp => Layer::InnerTcp,
            Layer::Udp => Layer::InnerUdp,
            Layer::Icmp => Layer::InnerIcmp,
            Layer::Icmpv6 => Layer::InnerIcmpv6,
            inner => inner,
        }
    }

    fn parse(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.name() == s)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    Bad,
    /// UDP over IPv4 with a zero checksum field: tcpdump `[no cksum]`, ours `none`.
    NoCksum,
    Unverifiable,
    /// We reported nothing for this layer.
    Absent,
}

/// One verdict, from either side. `got` is the checksum field as found, `want` what it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdict {
    status: Status,
    got: Option<u16>,
    want: Option<u16>,
}

impl Verdict {
    const ABSENT: Verdict = Verdict {
        status: Status::Absent,
        got: None,
        want: None,
    };

    fn new(status: Status, got: Option<u16>, want: Option<u16>) -> Verdict {
        Verdict { status, got, want }
    }
}

/// The form used in known-disagreements.txt: `ok`, `bad->0xYYYY`, `none`, `unverifiable`, `-`.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.want) {
            (Status::Ok, _) => f.write_str("ok"),
            (Status::Bad, Some(w)) => write!(f, "bad->{w:#06x}"),
            (Status::Bad, None) => f.write_str("bad"),
            (Status::NoCksum, _) => f.write_str("none"),
            (Status::Unverifiable, _) => f.write_str("unverifiable"),
            (Status::Absent, _) => f.write_str("-"),
        }
    }
}

type Verdicts = BTreeMap<(u64, Layer), Verdict>;

/// A row of index.csv.
#[derive(Debug, Clone)]
struct Test {
    name: String,
    pcap: String,
    out: String,
    flags: String,
    /// Packets tcpdump printed, as index.csv counts them: checks the packet splitter.
    out_packets: usize,
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The selected tests of index.csv, grouped by pcap.
fn selected_tests(corpus: &Path) -> BTreeMap<String, Vec<Test>> {
    let path = corpus.join("index.csv");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut lines = text.lines();
    let header = split_csv_line(lines.next().expect("index.csv header"));
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("index.csv has no column {name}"))
    };
    let (c_test, c_pcap, c_out, c_flags, c_link, c_cat, c_packets) = (
        col("test"),
        col("pcap"),
        col("out"),
        col("flags"),
        col("linktype"),
        col("category"),
        col("out_packets"),
    );
    let mut by_pcap: BTreeMap<String, Vec<Test>> = BTreeMap::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f = split_csv_line(line);
        assert_eq!(
            f.len(),
            header.len(),
            "index.csv line {}: field count",
            i + 2
        );
        let linktype: u32 = f[c_link]
            .parse()
            .unwrap_or_else(|_| panic!("index.csv line {}: linktype", i + 2));
        if f[c_cat] != "real-world" || !LINKTYPES.contains(&linktype) {
            continue;
        }
        by_pcap.entry(f[c_pcap].clone()).or_default().push(Test {
            name: f[c_test].clone(),
            pcap: f[c_pcap].clone(),
            out: f[c_out].clone(),
            flags: f[c_flags].clone(),
            out_packets: f[c_packets]
                .parse()
                .unwrap_or_else(|_| panic!("index.csv line {}: out_packets", i + 2)),
        });
    }
    by_pcap
}

/// `-v` count of a tcpdump command line (`-vv`, `-v -v`, `-ev` ...).
fn verbosity(flags: &str) -> usize {
    flags
        .split_whitespace()
        .filter(|t| t.starts_with('-') && !t.starts_with("--"))
        .map(|t| t.matches('v').count())
        .sum()
}

/// Splits tcpdump `-#` output into (packet number, text) pairs.
fn split_packets(text: &str) -> Vec<(u64, String)> {
    let mut packets: Vec<(u64, String)> = Vec::new();
    for line in text.lines() {
        let next = packets.last().map_or(1, |(n, _)| n + 1);
        if line.starts_with(&format!("{next:>5}  ")) {
            packets.push((next, line.to_string()));
        } else if let Some((_, body)) = packets.last_mut() {
            body.push('\n');
            body.push_str(line);
        }
    }
    packets
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Earliest verbose IP header at or after `from`: (offset of its '(', family).
fn find_ip_header(text: &str, from: usize) -> Option<(usize, Family)> {
    let rest = &text[from..];
    [
        ("(tos 0x", Family::V4),
        ("(class 0x", Family::V6),
        ("(flowlabel 0x", Family::V6),
        ("(hlim ", Family::V6),
    ]
    .into_iter()
    .filter_map(|(pat, fam)| rest.find(pat).map(|i| (from + i, fam)))
    .min_by_key(|(i, _)| *i)
}

/// Is the IP header whose '(' is at `open` the packet's outermost protocol? Only the link layer may
/// be printed before it, on the packet's first line: the timestamp and `IP ` / `IP6 `, or with -e
/// `..., ethertype IPv4 (0x0800), length N: ` (`IPv6 (0x86dd)`; BSD loopback `AF IPv4 (2)`). NSH,
/// MPLS, PPPoE and other encapsulations our program does not parse fail this test.
fn is_outermost(text: &str, open: usize) -> bool {
    let before = &text[..open];
    if before.contains('\n') {
        return false;
    }
    if let Some(rest) = before
        .strip_suffix("IP ")
        .or_else(|| before.strip_suffix("IP6 "))
    {
        // `    1  2017-04-01 23:13:40.394208 IP (tos ...`: the word before is the time of day.
        return rest.trim_end().rsplit(' ').next().is_some_and(|t| {
            t.contains(':')
                && t.chars()
                    .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
        });
    }
    let Some(i) = [
        "ethertype IPv4 (0x0800)",
        "ethertype IPv6 (0x86dd)",
        "AF IPv4 (",
        "AF IPv6 (",
    ]
    .iter()
    .filter_map(|p| before.rfind(p))
    .max() else {
        return false;
    };
    let Some((_, after)) = before[i..].split_once("), ") else {
        return false;
    };
    after.is_empty()
        || after
            .strip_prefix("length ")
            .and_then(|a| a.strip_suffix(": "))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Offset of the ')' closing the '(' at `open`, on the same line (a header tcpdump could not
/// finish printing has none).
fn closing_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate().skip(open) {
        match b {
            b'\n' => return None,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Leading hex digits of `s` (an optional `0x` is skipped).
fn hex(s: &str) -> Option<u16> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let end = s.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(s.len());
    u16::from_str_radix(&s[..end], 16).ok()
}

/// Leading decimal digits of `s`.
fn dec(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// The number in `KEY NAME (N)` (IPv4 `proto`, IPv6 `next-header`).
fn protocol_number(header: &str, key: &str) -> Option<u32> {
    let after = &header[header.find(key)? + key.len()..];
    dec(&after[after.find('(')? + 1..])
}

/// `X -> 0xY` (UDP, ICMPv6) or `X (->Y)` (IPv4, ICMP): the field value and the wanted value.
fn got_want(s: &str) -> (Option<u16>, Option<u16>) {
    let got = hex(s);
    let want = s.find("->").and_then(|i| hex(s[i + 2..].trim_start()));
    (got, want)
}

/// Every transport-layer verdict in `text`, in order: (offset, layer, verdict).
fn transport_verdicts(text: &str) -> Vec<(usize, Layer, Verdict)> {
    let mut found: Vec<(usize, Layer, Verdict)> = Vec::new();
    let mut each = |pat: &str, layer: Layer, make: &dyn Fn(&str) -> Verdict| {
        for (i, _) in text.match_indices(pat) {
            found.push((i, layer, make(&text[i + pat.len()..])));
        }
    };
    let bad = |s: &str| {
        let (g, w) = got_want(s);
        Verdict::new(Status::Bad, g, w)
    };
    each("[udp sum ok]", Layer::Udp, &|_| {
        Verdict::new(Status::Ok, None, None)
    });
    each("[no cksum]", Layer::Udp, &|_| {
        Verdict::new(Status::NoCksum, Some(0), None)
    });
    each("[bad udp cksum ", Layer::Udp, &bad);
    each("[icmp6 sum ok]", Layer::Icmpv6, &|_| {
        Verdict::new(Status::Ok, None, None)
    });
    each("[bad icmp6 cksum ", Layer::Icmpv6, &bad);
    each("(wrong icmp cksum ", Layer::Icmp, &bad);
    // TCP: `Flags [S.], cksum 0x1234 (correct)` / `(incorrect -> 0x5678)`.
    for (i, _) in text.match_indices("Flags [") {
        let Some(close) = text[i..].find(']').map(|j| i + j) else {
            continue;
        };
        let Some(rest) = text[close + 1..].strip_prefix(", cksum 0x") else {
            continue;
        };
        let got = hex(rest);
        let tail = rest.get(4..).unwrap_or("");
        let verdict = if tail.starts_with(" (correct)") {
            Verdict::new(Status::Ok, got, got)
        } else if let Some(w) = tail.strip_prefix(" (incorrect -> ") {
            Verdict::new(Status::Bad, got, hex(w))
        } else {
            continue;
        };
        found.push((i, Layer::Tcp, verdict));
    }
    found.sort_by_key(|(i, _, _)| *i);
    found
}

/// Why tcpdump verdicts were not attributed to the outer packet (for the summary line).
#[derive(Default, Debug)]
struct Ignored {
    /// Verdict strings after an inner IP header, and transport verdicts after the first.
    inner: usize,
    /// First transport verdict whose layer is not the outer header's protocol.
    wrong_layer: usize,
    /// Packets whose outermost protocol is not IP (NSH, MPLS, PPPoE...): all their verdicts.
    not_ip: usize,
}

/// tcpdump's verdicts about the outer headers of one packet's text.
fn packet_verdicts(text: &str, whole: bool, ignored: &mut Ignored) -> Vec<(Layer, Verdict)> {
    let Some((open, family)) = find_ip_header(text, 0) else {
        return Vec::new();
    };
    if !is_outermost(text, open) {
        ignored.not_ip += 1;
        return Vec::new();
    }
    let Some((mut out, region_end)) = level_verdicts(text, open, family, whole, ignored) else {
        return Vec::new();
    };
    // A VXLAN or Geneve datagram: its inner packet is the next verbose IP header, compared as the
    // inner layers (our programs follow one level of these two, not NSH, GRE or IP-in-IP).
    let outer = &text[..region_end];
    let tunnel =
        (outer.contains(" VXLAN, ") || outer.contains(" Geneve, ")) && !outer.contains("NSH");
    let mut rest = region_end;
    if tunnel
        && let Some((inner_open, inner_family)) = find_ip_header(text, region_end)
        && let Some((inner, end)) = level_verdicts(text, inner_open, inner_family, whole, ignored)
    {
        out.extend(inner.into_iter().map(|(l, v)| (l.inner(), v)));
        rest = end;
    }
    let beyond = &text[rest..];
    ignored.inner += transport_verdicts(beyond).len() + beyond.matches(", bad cksum ").count();
    out
}

/// The verdicts of the IP header whose '(' is at `open` and of its transport, and where the text
/// about them ends (the next verbose IP header, or the end).
fn level_verdicts(
    text: &str,
    open: usize,
    family: Family,
    whole: bool,
    ignored: &mut Ignored,
) -> Option<(Vec<(Layer, Verdict)>, usize)> {
    let mut out = Vec::new();
    let close = closing_paren(text, open)?;
    let header = &text[open..=close];
    let region_end = find_ip_header(text, close).map_or(text.len(), |(i, _)| i);
    let region = &text[close..region_end];

    let allowed: &[Layer] = match family {
        Family::V4 => {
            let v = match header.find(", bad cksum ") {
                Some(i) => {
                    let (g, w) = got_want(&header[i + ", bad cksum ".len()..]);
                    Verdict::new(Status::Bad, g, w)
                }
                None => Verdict::new(Status::Ok, None, None),
            };
            out.push((Layer::Ipv4, v));
            match protocol_number(header, "proto ") {
                Some(6) => &[Layer::Tcp],
                Some(17) => &[Layer::Udp],
                Some(1) => &[Layer::Icmp],
                _ => &[],
            }
        }
        Family::V6 => match protocol_number(header, "next-header ") {
            Some(6) => &[Layer::Tcp],
            Some(17) => &[Layer::Udp],
            Some(58) => &[Layer::Icmpv6],
            Some(n) if IP6_EXT_HEADERS.contains(&n) => &[Layer::Tcp, Layer::Udp, Layer::Icmpv6],
            _ => &[],
        },
    };

    let transport = transport_verdicts(region);
    ignored.inner += transport.len().saturating_sub(1);
    let transport = transport.first().copied();
    if let Some((_, layer, v)) = transport {
        if allowed.contains(&layer) {
            out.push((layer, v));
        } else {
            ignored.wrong_layer += 1;
        }
    }
    // ICMPv4 implied ok (see the module doc).
    let offset = header.split_once("offset ").and_then(|(_, s)| dec(s));
    let more_fragments = header
        .split_once("flags [")
        .and_then(|(_, s)| s.split_once(']'))
        .is_some_and(|(flags, _)| flags.contains('+'));
    let upto = &text[..region_end];
    if allowed == [Layer::Icmp]
        && transport.is_none()
        && offset == Some(0)
        && !more_fragments
        && whole
        && region.contains(": ICMP ")
        && !upto.contains("[|")
        && !upto.contains("truncated")
        && !text[..open].contains("(invalid)")
    {
        out.push((Layer::Icmp, Verdict::new(Status::Ok, None, None)));
    }
    Some((out, region_end))
}

/// For every record of a capture: was it captured whole (captured length == wire length)?
fn records_whole(path: &Path) -> Vec<bool> {
    let mut reader = checksum_user::replay::open_capture(path).unwrap_or_else(|e| panic!("{e:#}"));
    let mut whole = Vec::new();
    while let Some(record) = reader
        .next_record()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        whole.push(record.data.len() as u64 >= u64::from(record.orig_len));
    }
    whole
}

/// tcpdump's verdicts for one pcap, merged over all its tests.
fn tcpdump_verdicts(corpus: &Path, tests: &[Test], ignored: &mut Ignored) -> Verdicts {
    let whole = records_whole(&corpus.join("pcap").join(&tests[0].pcap));
    let mut merged: Verdicts = BTreeMap::new();
    let mut source: BTreeMap<(u64, Layer), &str> = BTreeMap::new();
    for test in tests {
        let path = corpus.join("out").join(&test.out);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            verbosity(&test.flags) >= 1,
            "{}: flags {:?} do not make tcpdump check checksums",
            test.name,
            test.flags
        );
        let packets = split_packets(&text);
        assert_eq!(
            packets.len(),
            test.out_packets,
            "{}: packets found in {} vs index.csv out_packets",
            test.name,
            test.out
        );
        for (packet, body) in packets {
            let is_whole = usize::try_from(packet - 1)
                .ok()
                .and_then(|i| whole.get(i).copied())
                .unwrap_or(false);
            for (layer, v) in packet_verdicts(&body, is_whole, ignored) {
                match merged.get(&(packet, layer)) {
                    None => {
                        merged.insert((packet, layer), v);
                        source.insert((packet, layer), &test.name);
                    }
                    Some(old) => assert_eq!(
                        *old,
                        v,
                        "{} packet {packet} {layer}: test {} and test {} disagree",
                        test.pcap,
                        source[&(packet, layer)],
                        test.name
                    ),
                }
            }
        }
    }
    merged
}

/// What one `replay` run reported.
struct Replayed {
    verdicts: Verdicts,
    /// Frames `BPF_PROG_TEST_RUN` refused (summary `not_run`): no verdicts at all for them.
    not_run: u64,
}

/// Our replay's verdicts for one pcap.
fn our_verdicts(bin: &Path, pcap: &Path) -> Result<Replayed, String> {
    let out = Command::new(bin)
        .args(["replay", "--all", "--format", "json"])
        .arg(pcap)
        .output()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A capture of frames no test run takes (BIG TCP's 80 KB frames) is an error of replay,
        // without a summary; for the comparison, frames not run.
        if let Some(not_run) = none_audited(&stderr) {
            return Ok(Replayed {
                verdicts: BTreeMap::new(),
                not_run,
            });
        }
        return Err(format!(
            "replay {} failed ({}): {}",
            pcap.display(),
            out.status,
            stderr.trim()
        ));
    }
    let mut verdicts = BTreeMap::new();
    let mut summary = None;
    let word = |v: &serde_json::Value| v.as_str().and_then(hex);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{}: bad JSON {line:?}: {e}", pcap.display()))?;
        match v["type"].as_str() {
            Some("verdict") => {
                let packet = v["packet"]
                    .as_u64()
                    .ok_or_else(|| format!("no packet in {line}"))?;
                let mut layer = v["layer"]
                    .as_str()
                    .and_then(Layer::parse)
                    .ok_or_else(|| format!("bad layer in {line}"))?;
                if v["encap"]["level"] == "inner" {
                    layer = layer.inner();
                }
                let status = match v["status"].as_str() {
                    Some("ok") => Status::Ok,
                    Some("bad") => Status::Bad,
                    Some("none") => Status::NoCksum,
                    Some("unverifiable") => Status::Unverifiable,
                    _ => return Err(format!("bad status in {line}")),
                };
                let verdict = Verdict::new(status, word(&v["got"]), word(&v["want"]));
                if verdicts.insert((packet, layer), verdict).is_some() {
                    return Err(format!(
                        "{}: two {layer} verdicts for packet {packet}",
                        pcap.display()
                    ));
                }
            }
            Some("summary") => summary = Some(v),
            // Flow diagnoses are checked elsewhere (tests/replay.rs); here only verdicts count.
            Some("diagnosis") => {}
            _ => return Err(format!("{}: unexpected line {line}", pcap.display())),
        }
    }
    let summary = summary.ok_or_else(|| format!("{}: no summary line", pcap.display()))?;
    let not_run = summary["not_run"]
        .as_u64()
        .ok_or_else(|| format!("{}: no not_run in the summary", pcap.display()))?;
    Ok(Replayed { verdicts, not_run })
}

/// The frames replay ran, from its error when the kernel's test run failed for every one.
fn none_audited(stderr: &str) -> Option<u64> {
    let rest = stderr
        .split("no frame was audited: the kernel's test run failed for all ")
        .nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// known-disagreements.txt: `pcap packet layer ours tcpdump  # explanation` -> (line, explanation).
fn known_disagreements() -> BTreeMap<String, (usize, String)> {
    let text = std::fs::read_to_string(KNOWN).unwrap_or_else(|e| panic!("read {KNOWN}: {e}"));
    let mut known = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (entry, explanation) = trimmed.split_once('#').unwrap_or((trimmed, ""));
        let fields: Vec<&str> = entry.split_whitespace().collect();
        assert!(
            fields.len() == 5
                && fields[1].parse::<u64>().is_ok()
                && Layer::parse(fields[2]).is_some(),
            "{KNOWN}:{line_no}: want `pcap packet layer ours tcpdump  # explanation`, got {line:?}"
        );
        assert!(
            !explanation.trim().is_empty(),
            "{KNOWN}:{line_no}: every known disagreement needs an explanation"
        );
        let key = fields.join(" ");
        let dup = known.insert(key.clone(), (line_no, explanation.trim().to_string()));
        assert!(dup.is_none(), "{KNOWN}:{line_no}: duplicate entry {key}");
    }
    known
}

#[derive(Default)]
struct Tally {
    compared: usize,
    agreed: usize,
    want_compared: usize,
    want_agreed: usize,
    /// Checksum field values tcpdump printed and we reported (they must all match).
    got_compared: usize,
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one pass over the corpus and its report, read top to bottom"
)]
fn tcpdump_conformance() {
    if !require_root("tcpdump_conformance") {
        return;
    }
    let corpus = PathBuf::from(
        std::env::var("CONFORMANCE_CORPUS").unwrap_or_else(|_| DEFAULT_CORPUS.into()),
    );
    if !corpus.join("index.csv").is_file() {
        assert!(
            !common::in_ci(),
            "tcpdump_conformance: no corpus at {}; CI=true forbids skipping",
            corpus.display()
        );
        eprintln!(
            "SKIPPED tcpdump_conformance: no corpus at {} (set CONFORMANCE_CORPUS)",
            corpus.display()
        );
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_checksum-audit"));
    let known = known_disagreements();
    let by_pcap: Vec<(String, Vec<Test>)> = selected_tests(&corpus).into_iter().collect();
    assert!(
        !by_pcap.is_empty(),
        "no tests selected from {}",
        corpus.display()
    );

    // Replay every pcap, a few processes at a time.
    let next = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<String, Result<Replayed, String>>> = Mutex::default();
    let workers = std::thread::available_parallelism().map_or(4, |n| n.get().min(8));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pcap, _)) = by_pcap.get(i) else {
                        break;
                    };
                    let r = our_verdicts(&bin, &corpus.join("pcap").join(pcap));
                    results.lock().unwrap().insert(pcap.clone(), r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();

    let mut ignored = Ignored::default();
    let mut not_run = 0;
    let mut tally = Tally::default();
    let mut per_layer: BTreeMap<Layer, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut field_mismatches = Vec::new();
    let mut seen = BTreeSet::new();
    let mut unexplained = Vec::new();
    for (pcap, tests) in &by_pcap {
        let expected = tcpdump_verdicts(&corpus, tests, &mut ignored);
        let ours = match &results[pcap] {
            Ok(r) => {
                not_run += r.not_run;
                &r.verdicts
            }
            Err(e) => {
                failures.push(e.clone());
                continue;
            }
        };
        for (&(packet, layer), theirs) in &expected {
            let mine = ours
                .get(&(packet, layer))
                .copied()
                .unwrap_or(Verdict::ABSENT);
            let lt = per_layer.entry(layer).or_default();
            tally.compared += 1;
            lt.compared += 1;
            if mine.status == theirs.status {
                tally.agreed += 1;
                lt.agreed += 1;
            }
            if mine.status == Status::Bad && theirs.status == Status::Bad && theirs.want.is_some() {
                tally.want_compared += 1;
                lt.want_compared += 1;
                if mine.want == theirs.want {
                    tally.want_agreed += 1;
                    lt.want_agreed += 1;
                }
            }
            if let (Some(a), Some(b)) = (mine.got, theirs.got) {
                tally.got_compared += 1;
                if a != b {
                    field_mismatches.push(format!(
                        "{pcap} {packet} {layer}: checksum field {b:#06x} for tcpdump, {a:#06x} for us"
                    ));
                }
            }
            if mine.to_string() != theirs.to_string() {
                let key = format!("{pcap} {packet} {layer} {mine} {theirs}");
                if known.contains_key(&key) {
                    seen.insert(key);
                } else {
                    unexplained.push(key);
                }
            }
        }
    }
    let stale: Vec<String> = known
        .iter()
        .filter(|(k, _)| !seen.contains(*k))
        .map(|(k, (line, why))| format!("{KNOWN}:{line}: {k}  # {why}"))
        .collect();

    #[expect(clippy::cast_precision_loss, reason = "packet counts, far below 2^52")]
    let pct = |a: usize, b: usize| {
        if b == 0 {
            100.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    let bugs = known
        .iter()
        .filter(|(k, (_, why))| seen.contains(*k) && why.starts_with("BUG:"))
        .count();
    eprintln!(
        "conformance: {}/{} verdicts agree ({:.1}%) over {} pcaps ({} tests)",
        tally.agreed,
        tally.compared,
        pct(tally.agreed, tally.compared),
        by_pcap.len(),
        by_pcap.iter().map(|(_, t)| t.len()).sum::<usize>(),
    );
    eprintln!(
        "conformance:   want values {}/{} agree; {} checksum field values compared; \
         {} known disagreements ({bugs} marked BUG); {not_run} frames refused by \
         BPF_PROG_TEST_RUN",
        tally.want_agreed,
        tally.want_compared,
        tally.got_compared,
        seen.len(),
    );
    for (layer, t) in &per_layer {
        eprintln!(
            "conformance:   {layer:<6} {}/{} agree, want values {}/{}",
            t.agreed, t.compared, t.want_agreed, t.want_compared
        );
    }
    eprintln!(
        "conformance:   not compared (summed over all outputs): {} tcpdump verdicts about inner (tunnelled or \
         ICMP-quoted) packets, {} transport verdicts not of the outer protocol, {} packets \
         whose outermost protocol is not IP",
        ignored.inner, ignored.wrong_layer, ignored.not_ip
    );

    let mut problems = String::new();
    if !failures.is_empty() {
        let _ = write!(
            problems,
            "\nreplay failures:\n  {}\n",
            failures.join("\n  ")
        );
    }
    if !field_mismatches.is_empty() {
        let _ = write!(
            problems,
            "\nchecksum field values differ (packet or layer matched wrongly?):\n  {}\n",
            field_mismatches.join("\n  ")
        );
    }
    if !unexplained.is_empty() {
        let _ = write!(
            problems,
            "\n{} disagreements not in {KNOWN}\n(pcap packet layer ours tcpdump; find the cause, \
             then add the line with `  # explanation`):\n{}\n",
            unexplained.len(),
            unexplained.join("\n")
        );
    }
    if !stale.is_empty() {
        let _ = write!(
            problems,
            "\n{} stale entries in the known list (they agree now or no longer exist; \
             remove them):\n  {}\n",
            stale.len(),
            stale.join("\n  ")
        );
    }
    assert!(problems.is_empty(), "{problems}");
}

/// The parser on real tcpdump output (no root needed).
mod parser {
    use super::*;

    fn parse(out: &str) -> Vec<(u64, Vec<(Layer, String)>)> {
        let mut ignored = Ignored::default();
        split_packets(out)
            .into_iter()
            .map(|(n, text)| {
                let v = packet_verdicts(&text, true, &mut ignored);
                (n, v.into_iter().map(|(l, v)| (l, v.to_string())).collect())
            })
            .collect()
    }

    fn v(list: &[(Layer, &str)]) -> Vec<(Layer, String)> {
        list.iter().map(|(l, s)| (*l, s.to_string())).collect()
    }

    /// tcpdump 4.99.3 `-# -n -tttt -v` on crafted ICMP frames: an echo, a corrupt echo, an
    /// unreachable quoting a datagram whose header checksum is bad, a first fragment, and UDP.
    const ICMP_V: &str = "    1  1970-01-01 00:00:00.000000 IP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 40)
    10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 20
    2  1970-01-01 00:00:00.000000 IP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 40)
    10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 2, length 20 (wrong icmp cksum 1234 (->660d)!)
    3  1970-01-01 00:00:00.000000 IP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 64)
    10.0.0.1 > 10.0.0.2: ICMP 10.0.0.1 udp port 53 unreachable, length 44
\tIP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto UDP (17), length 36, bad cksum dead (->66c0)!)
    10.0.0.2.1000 > 10.0.0.1.53: domain [length 8 < 12] (invalid)
    4  1970-01-01 00:00:00.000000 IP (tos 0x0, ttl 64, id 7, offset 0, flags [+], proto ICMP (1), length 40)
    10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 3, length 20
    5  1970-01-01 00:00:00.000000 IP (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto UDP (17), length 36)
    10.0.0.1.1000 > 10.0.0.2.53: domain [length 8 < 12] (invalid)
";

    #[test]
    fn icmp_implied_ok_and_quoted_headers() {
        assert_eq!(
            parse(ICMP_V),
            vec![
                (1, v(&[(Layer::Ipv4, "ok"), (Layer::Icmp, "ok")])),
                (2, v(&[(Layer::Ipv4, "ok"), (Layer::Icmp, "bad->0x660d")])),
                (3, v(&[(Layer::Ipv4, "ok"), (Layer::Icmp, "ok")])),
                (4, v(&[(Layer::Ipv4, "ok")])),
                (5, v(&[(Layer::Ipv4, "ok")])),
            ]
        );
    }

    #[test]
    fn icmp_not_implied_when_cut_short() {
        let mut ignored = Ignored::default();
        let (_, first) = &split_packets(ICMP_V)[0];
        assert_eq!(
            packet_verdicts(first, false, &mut ignored),
            vec![(Layer::Ipv4, Verdict::new(Status::Ok, None, None))]
        );
    }

    /// The same with -vv -e (no `IP ` prefix, a VLAN tag, UDP checked) and an ICMP-quoted UDP
    /// verdict that belongs to the inner datagram.
    #[test]
    fn link_layer_prefix_and_quoted_transport() {
        let out = "    1  1970-01-01 00:00:00.000000 04:04:04:04:04:04 > 02:02:02:02:02:02, ethertype 802.1Q (0x8100), length 58: vlan 100, p 0, ethertype IPv4 (0x0800), (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 40)
    10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 4, length 20
    2  1970-01-01 00:00:00.000000 04:04:04:04:04:04 > 02:02:02:02:02:02, ethertype IPv4 (0x0800), length 78: (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto ICMP (1), length 64)
    10.0.0.1 > 10.0.0.2: ICMP 10.0.0.1 udp port 53 unreachable, length 44
\t(tos 0x0, ttl 64, id 7, offset 0, flags [none], proto UDP (17), length 36, bad cksum dead (->66c0)!)
    10.0.0.2.1000 > 10.0.0.1.53: [udp sum ok] domain [length 8 < 12] (invalid)
    3  1970-01-01 00:00:00.000000 04:04:04:04:04:04 > 02:02:02:02:02:02, ethertype IPv4 (0x0800), length 50: (tos 0x0, ttl 64, id 7, offset 0, flags [none], proto UDP (17), length 36)
    10.0.0.1.1000 > 10.0.0.2.53: [udp sum ok] domain [length 8 < 12] (invalid)
";
        assert_eq!(
            parse(out),
            vec![
                (1, v(&[(Layer::Ipv4, "ok"), (Layer::Icmp, "ok")])),
                (2, v(&[(Layer::Ipv4, "ok"), (Layer::Icmp, "ok")])),
                (3, v(&[(Layer::Ipv4, "ok"), (Layer::Udp, "ok")])),
            ]
        );
    }

    /// Corpus lines: TSO (bad IPv4 header, TCP), a tunnel (outer UDP bad, inner TCP ignored), NSH
    /// (outermost protocol not IP), IPv6 with a Hop-by-Hop header, `[no cksum]`, and continuation
    /// lines that start with digits.
    #[test]
    fn corpus_shapes() {
        let out = "    1  2012-09-19 19:50:14.587897 IP (tos 0x0, ttl 128, id 17097, offset 0, flags [DF], proto TCP (6), length 2016 [was 0, presumed TSO], bad cksum 0 (->d8df)!)
    30.7.181.121.39556 > 199.43.68.163.8080: Flags [P.], cksum 0xdf55 (incorrect -> 0x9cf2), seq 1891338696:1891340672, ack 727404759, win 256, length 1976: HTTP, length: 1976
    2  2025-10-03 14:05:41.755329 IP6 (hlim 61, next-header UDP (17), payload length 0) [real length 80122, presumed BIG TCP] 2604:1380:4091:ce00::b.55411 > 2604:1380:4091:ce00::d.6081: [bad udp cksum 0xc928 -> 0xb00c!] Geneve, Flags [none], vni 0x1389
\tIP (tos 0x0, ttl 64, id 14015, offset 0, flags [DF], proto TCP (6), length 80052 [was 0, presumed BIG TCP])
    192.168.1.2.43959 > 192.168.1.1.39887: Flags [P.], cksum 0xbbfb (incorrect -> 0x0e24), seq 3918632444:3918712444, length 80000
    3  2017-04-01 23:13:40.394208 NSH, ver 0, flags [none], TTL 0, length 6, md type 1, next-protocol IPv4, service-path-id 0x000309, service-index 0x7
        Context[00]: 0x00000001
    IP (tos 0x0, ttl 64, id 10308, offset 0, flags [DF], proto UDP (17), length 34)
    10.0.8.3.52229 > 10.13.13.13.8000: [no cksum] UDP, length 6
    4  2022-08-01 09:09:55.627421 00:12:3f:ae:22:f7 > 00:13:c4:c7:84:f0, ethertype IPv6 (0x86dd), length 65590: (hlim 227, next-header HBH (0), payload length 0) 2200::244:212:3fff:feae:22f7 > 2200::240:2:0:0:4: HBH (jumbo: 65536)  [icmp6 sum ok] ICMP6, echo request, id 4576, seq 51486
    5  2017-04-01 23:13:40.394208 IP (tos 0x0, ttl 64, id 10308, offset 0, flags [DF], proto UDP (17), length 34)
    10.0.8.3.52229 > 10.13.13.13.8000: [no cksum] UDP, length 6
    6  2020-06-10 09:21:03.720289 IP (tos 0x0, ttl 64, id 39720, offset 0, flags [DF], proto TCP (6), length 60)
    192.168.1.11.33779 > 209.87.249.18.53: Flags [S], cksum 0x0c41 (correct), seq 603899916, win 64240, length 0
    7  2020-06-10 09:21:03.720289 IP (tos 0x0, ttl 64, id 39720, offset 0, flags [DF], proto TCP (6), length 60)
    8  2020-06-10 09:21:03.720289 IP (tos 0x0, ttl 64, id 39720, offset 0, flags [DF], proto TCP (6), length 60)
    9  2020-06-10 09:21:03.720289 IP (tos 0x0, ttl 64, id 39720, offset 0, flags [DF], proto TCP (6), length 60)
   10  2020-06-10 09:21:03.720289 IP (tos 0x0, ttl 64, id 39720, offset 0, flags [DF], proto TCP (6), length 60)
    10.0.0.1.33779 > 10.0.0.2.53: Flags [S], cksum 0x0c41 (incorrect -> 0x1234), seq 603899916, win 64240, length 0
";
        let parsed = parse(out);
        assert_eq!(parsed.len(), 10);
        assert_eq!(
            parsed[..6],
            vec![
                (
                    1,
                    v(&[(Layer::Ipv4, "bad->0xd8df"), (Layer::Tcp, "bad->0x9cf2")])
                ),
                // A Geneve datagram: its inner packet's verdicts too.
                (
                    2,
                    v(&[
                        (Layer::Udp, "bad->0xb00c"),
                        (Layer::InnerIpv4, "ok"),
                        (Layer::InnerTcp, "bad->0x0e24")
                    ])
                ),
                (3, vec![]),
                (4, v(&[(Layer::Icmpv6, "ok")])),
                (5, v(&[(Layer::Ipv4, "ok"), (Layer::Udp, "none")])),
                (6, v(&[(Layer::Ipv4, "ok"), (Layer::Tcp, "ok")])),
            ]
        );
        assert_eq!(
            parsed[9],
            (10, v(&[(Layer::Ipv4, "ok"), (Layer::Tcp, "bad->0x1234")]))
        );
    }

    #[test]
    fn verbosity_counts_v_flags() {
        assert_eq!(verbosity("-v"), 1);
        assert_eq!(verbosity("-vvv -e"), 3);
        assert_eq!(verbosity("-v -v -v -v -E 'file ${testsdir}/x'"), 4);
        assert_eq!(verbosity("--lengths -vv"), 2);
        assert_eq!(verbosity("-ev"), 1);
    }
}
