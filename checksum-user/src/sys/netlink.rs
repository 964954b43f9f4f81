//! Minimal rtnetlink queries about links (interfaces). A socket belongs to the network namespace
//! of the thread that creates it, so calling these from a thread inside another namespace asks
//! about that namespace.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn request(socket: &Socket, link: LinkMessage, flags: u16) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(link)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    Ok(())
}

fn connect() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Message types `parse_datagram` decodes (linux/netlink.h, linux/rtnetlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const NLMSG_HDRLEN: usize = 16;

/// Link attributes kept for decoding (`linux/if_link.h`), each with the one nested attribute kept
/// of it if it is a nest: all that `link_name`, `link_kind` and `xdp_slot.rs` read (`is_loopback`
/// reads the fixed header).
const KEPT_LINK_ATTRIBUTES: [(u16, Option<u16>); 4] = [
    (3, None),     // IFLA_IFNAME
    (18, Some(1)), // IFLA_LINKINFO: IFLA_INFO_KIND
    (43, Some(4)), // IFLA_XDP: IFLA_XDP_PROG_ID
    (37, None),    // IFLA_LINK_NETNSID: where a veth's peer is (pod identity)
];
/// struct ifinfomsg, after the netlink header of a link message.
const IFINFOMSG_LEN: usize = 16;
/// Attribute type bits, without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The link messages in one datagram, and whether it ended a dump (`NLMSG_DONE`).
///
/// netlink-packet-route 0.25 panics on some malformed messages (a short route realm attribute, a
/// short SR-IOV VF MAC, ...), so it is given as little as possible: only link messages, errors
/// and the end of a dump, what these sockets ask for, are decoded (any other message is skipped by
/// its header's length), and of a link message only `KEPT_LINK_ATTRIBUTES`.
pub fn parse_datagram(buf: &[u8]) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let Some(header) = rest.get(..NLMSG_HDRLEN) else {
            return Err(invalid("netlink datagram ends inside a message header"));
        };
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(invalid(format!(
                "netlink message length {len} with {} bytes left",
                rest.len()
            )));
        }
        let message = match kind {
            RTM_NEWLINK | RTM_DELLINK => Some(kept_link_attributes(&rest[..len])),
            NLMSG_ERROR | NLMSG_DONE => Some(rest[..len].to_vec()),
            _ => None,
        };
        if let Some(message) = message {
            let msg =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&message).map_err(invalid)?;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => messages.push(m),
                NetlinkPayload::Done(_) => return Ok((messages, true)),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(errno(e.raw_code())),
                _ => {}
            }
        }
        // Messages start 4-byte aligned (NLMSG_ALIGN).
        offset += len.next_multiple_of(4);
    }
    Ok((messages, false))
}

/// A copy of the link message `msg` (its length checked) with only `KEPT_LINK_ATTRIBUTES`. A
/// malformed attribute ends the list, as the kernel's own parser would stop there.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the filtered message is no longer than the original, whose lengths fit their fields"
)]
fn kept_link_attributes(msg: &[u8]) -> Vec<u8> {
    let Some(fixed) = msg.get(..NLMSG_HDRLEN + IFINFOMSG_LEN) else {
        return msg.to_vec(); // too short for a link message: the decoder says so
    };
    let mut out = fixed.to_vec();
    for attr in attributes(&msg[fixed.len()..]) {
        match KEPT_LINK_ATTRIBUTES.iter().find(|k| k.0 == attr_type(attr)) {
            None => {}
            Some((_, None)) => push_attribute(&mut out, attr),
            Some((_, Some(inner))) => {
                let start = out.len();
                out.extend_from_slice(&attr[..4]);
                for nested in attributes(&attr[4..]).filter(|a| attr_type(a) == *inner) {
                    push_attribute(&mut out, nested);
                }
                if out.len() == start + 4 {
                    // Nothing kept (IFLA_XDP without a program holds only IFLA_XDP_ATTACHED):
                    // no nest at all, as the decoder refuses an empty one.
                    out.truncate(start);
                    continue;
                }
                // No longer than the original nest: fits its 16-bit length.
                let len = (out.len() - start) as u16;
                out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
            }
        }
    }
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
    out
}

/// The attributes (header and value, without padding) in `b`, up to the first malformed one.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        if len < 4 || len > b.len() {
            return None;
        }
        let attr = &b[..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some(attr)
    })
}

fn attr_type(attr: &[u8]) -> u16 {
    u16::from_ne_bytes([attr[2], attr[3]]) & NLA_TYPE_MASK
}

/// Appends an attribute and its padding to 4 bytes.
fn push_attribute(out: &mut Vec<u8>, attr: &[u8]) {
    out.extend_from_slice(attr);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The error of an `NLMSG_ERROR` message, which carries a negative errno. (`ErrorMessage::to_io`
/// takes its absolute value with `abs`, which overflows on `i32::MIN`.)
fn errno(code: i32) -> io::Error {
    code.checked_abs().map_or_else(
        || invalid(format!("netlink error code {code}")),
        io::Error::from_raw_os_error,
    )
}

/// Reads replies until the kernel says done; returns the links in them.
fn collect_links(socket: &Socket, multipart: bool) -> io::Result<Vec<LinkMessage>> {
    let mut links = Vec::new();
    loop {
        let (buf, _) = socket.recv_from_full()?;
        let (messages, done) = parse_datagram(&buf)?;
        links.extend(messages.into_iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        }));
        if done || !multipart {
            return Ok(links);
        }
    }
}

/// The id, in this namespace's numbering, of the namespace a link's peer lives in (a veth whose
/// other end was moved into a pod's namespace); `None` for a link without one.
pub fn link_netnsid(link: &LinkMessage) -> Option<i32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkNetNsId(id) if *id >= 0 => Some(*id),
        _ => None,
    })
}

/// The id this namespace gives the namespace `fd` refers to (`RTM_GETNSID` with
/// `NETNSA_FD`), or `None` when it has none. Built by hand: the decoder is kept to link messages.
pub fn nsid_of(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Option<i32>> {
    use std::os::fd::AsRawFd as _;
    const RTM_GETNSID: u16 = 90;
    const RTM_NEWNSID: u16 = 88;
    const NLMSG_ERROR: u16 = 2;
    const NETNSA_NSID: u16 = 1;
    const NETNSA_FD: u16 = 3;
    let socket = connect()?;
    let raw = u32::try_from(fd.as_raw_fd()).map_err(invalid)?;
    // nlmsghdr (16), rtgenmsg padded (4), NETNSA_FD (8).
    let mut msg = Vec::with_capacity(28);
    msg.extend_from_slice(&28u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_GETNSID.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[0; 4]);
    msg.extend_from_slice(&8u16.to_ne_bytes());
    msg.extend_from_slice(&NETNSA_FD.to_ne_bytes());
    msg.extend_from_slice(&raw.to_ne_bytes());
    socket.send(&msg, 0)?;
    let (buf, _) = socket.recv_from_full()?;
    let kind = buf
        .get(4..6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or_else(|| invalid("short netlink reply"))?;
    match kind {
        NLMSG_ERROR => {
            let code = buf
                .get(16..20)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| invalid("short netlink error"))?;
            Err(errno(code))
        }
        RTM_NEWNSID => Ok(attributes(buf.get(NLMSG_HDRLEN + 4..).unwrap_or_default())
            .find(|a| attr_type(a) == NETNSA_NSID && a.len() >= 8)
            .map(|a| i32::from_ne_bytes([a[4], a[5], a[6], a[7]]))
            .filter(|id| *id >= 0)),
        other => Err(invalid(format!("unexpected netlink reply type {other}"))),
    }
}

/// The link with `ifindex`.
pub fn get_link(ifindex: u32) -> io::Result<LinkMessage> {
    let socket = connect()?;
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    request(&socket, link, NLM_F_REQUEST)?;
    collect_links(&socket, false)?
        .pop()
        .ok_or_else(|| invalid("no link in the reply"))
}

/// Every link in this network namespace.
pub fn list_links() -> io::Result<Vec<LinkMessage>> {
    let socket = connect()?;
    request(&socket, LinkMessage::default(), NLM_F_REQUEST | NLM_F_DUMP)?;
    collect_links(&socket, true)
}

pub fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// The link kind (`veth`, `bond`, `vlan`, ...); `None` for physical devices and loopback.
pub fn link_kind(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

pub fn is_loopback(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Loopback)
}

/// A link appearing (or changing) and a link going away.
#[derive(Debug)]
pub enum LinkEvent {
    New(LinkMessage),
    Del(LinkMessage),
}

/// Link notifications (`RTNLGRP_LINK`) for the namespace the socket was created in.
pub struct LinkMonitor {
    socket: Socket,
}

/// `RTMGRP_LINK` from linux/rtnetlink.h.
const RTMGRP_LINK: u32 = 1;

impl LinkMonitor {
    /// Subscribes; create it before listing links so that no change falls between the two.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the size of a timeval, as C passes it"
    )]
    pub fn new(poll: std::time::Duration) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        let tv = libc::timeval {
            tv_sec: poll.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(poll.subsec_micros()),
        };
        // SAFETY: a valid socket fd and a timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { socket })
    }

    /// Waits up to the poll interval; returns the events received (none on timeout).
    pub fn next_events(&self) -> io::Result<Vec<LinkEvent>> {
        let buf = match self.socket.recv_from_full() {
            Ok((buf, _)) => buf,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Vec::new());
            }
            // Includes ENOBUFS (the kernel dropped notifications): the caller rescans.
            Err(e) => return Err(e),
        };
        let (messages, _) = parse_datagram(&buf)?;
        let events = messages
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(LinkEvent::New(link)),
                RouteNetlinkMessage::DelLink(link) => Some(LinkEvent::Del(link)),
                _ => None,
            })
            .collect();
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message: header (length, type, flags, sequence, port) and payload.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(
            &u32::try_from(NLMSG_HDRLEN + payload.len())
                .unwrap()
                .to_ne_bytes(),
        );
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(payload);
        m
    }

    /// An attribute: length, type, value, padding.
    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    /// `RTM_NEWLINK` for `lo` (index 1, `IFF_UP` | `IFF_LOOPBACK`) with these attributes after its name.
    fn lo_with(attributes: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 0, 4, 3]; // family, pad, ARPHRD_LOOPBACK
        p.extend_from_slice(&1i32.to_ne_bytes());
        p.extend_from_slice(&9u32.to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        p.extend_from_slice(&attr(3, b"lo\0")); // IFLA_IFNAME
        p.extend_from_slice(attributes);
        message(RTM_NEWLINK, &p)
    }

    fn lo() -> Vec<u8> {
        lo_with(&[])
    }

    #[test]
    fn link_messages_and_the_end_of_a_dump() {
        let datagram = [lo(), message(NLMSG_DONE, &0i32.to_ne_bytes())].concat();
        let (links, done) = parse_datagram(&datagram).unwrap();
        assert!(done);
        let [RouteNetlinkMessage::NewLink(link)] = &links[..] else {
            panic!("{links:?}");
        };
        assert_eq!(link_name(link), Some("lo"));
        assert!(is_loopback(link));
        // Truncated: an error, not a panic.
        assert!(parse_datagram(&datagram[..datagram.len() - 1]).is_err());
        assert!(parse_datagram(&datagram[..10]).is_err());
    }

    #[test]
    fn errors() {
        // An error carries a negative errno and the header of the request it answers.
        let error = |code: i32| message(NLMSG_ERROR, &[&code.to_ne_bytes()[..], &[0; 16]].concat());
        let e = parse_datagram(&error(-libc::ENODEV)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        // Found by the netlink_datagram fuzz target: error code i32::MIN overflowed in
        // netlink-packet-core's ErrorMessage::to_io (`abs`).
        let e = parse_datagram(&error(i32::MIN)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // An acknowledgement (code 0) is not an error.
        let (links, _) = parse_datagram(&error(0)).unwrap();
        assert!(links.is_empty(), "{links:?}");
    }

    #[test]
    fn other_messages_are_skipped_undecoded() {
        // Found by the netlink_datagram fuzz target: an RTM_NEWROUTE whose RTA_FLOW attribute
        // holds 3 bytes made netlink-packet-route 0.25.1 index past them (route/realm.rs).
        let route = [
            0x37, 0x00, 0x00, 0x00, 0x19, 0x00, 0x00, 0x10, 0x00, 0x40, 0x00, 0x00, 0x00, 0x69,
            0x70, 0x69, 0x70, 0x40, 0x00, 0x00, 0x67, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
            0x07, 0x00, 0x0b, 0x00, 0x00, 0x6d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x00,
            0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x64, 0x35, 0x00,
        ];
        let (links, done) = parse_datagram(&route).unwrap();
        assert!(links.is_empty() && !done);
        // Skipped by its length, aligned: the link message after it is still read.
        let datagram = [&route[..], &[0], &lo()].concat();
        assert_eq!(parse_datagram(&datagram).unwrap().0.len(), 1);
    }

    #[test]
    fn link_attributes_we_do_not_read_are_not_decoded() {
        const NESTED: u16 = 0x8000;
        const IFLA_LINKINFO: u16 = 18;
        const IFLA_VFINFO_LIST: u16 = 22;
        const IFLA_XDP: u16 = 43;
        const IFLA_VF_INFO: u16 = 1;
        // Found by the netlink_datagram fuzz target: an IFLA_VFINFO_LIST whose IFLA_VF_MAC holds
        // 3 bytes, not 36, made netlink-packet-route 0.25.1 slice past them (link/sriov/mac.rs).
        let vf_list = attr(
            IFLA_VFINFO_LIST | NESTED,
            &attr(IFLA_VF_INFO | NESTED, &attr(1, &[0xaa; 3])),
        );
        let (links, _) = parse_datagram(&lo_with(&vf_list)).unwrap();
        let [RouteNetlinkMessage::NewLink(link)] = &links[..] else {
            panic!("{links:?}");
        };
        assert_eq!(link_name(link), Some("lo"));
        // What we read survives the filter: the kind in IFLA_LINKINFO, the program id in
        // IFLA_XDP; their neighbours (IFLA_INFO_DATA, IFLA_XDP_ATTACHED, IFLA_MTU) do not.
        let info = [attr(1, b"veth\0"), attr(2 | NESTED, &attr(1, &[0; 4]))].concat();
        let xdp = [attr(2, &[1]), attr(4, &42u32.to_ne_bytes())].concat();
        let all = [
            attr(IFLA_LINKINFO | NESTED, &info),
            attr(IFLA_XDP | NESTED, &xdp),
            attr(4, &1500u32.to_ne_bytes()),
        ]
        .concat();
        let (links, _) = parse_datagram(&lo_with(&all)).unwrap();
        let RouteNetlinkMessage::NewLink(link) = &links[0] else {
            panic!("{links:?}");
        };
        assert_eq!(link_kind(link).as_deref(), Some("veth"));
        let attributes = format!("{:?}", link.attributes);
        assert!(attributes.contains("ProgId(42)"), "{attributes}");
        assert!(
            !attributes.contains("Attached") && !attributes.contains("Mtu"),
            "{attributes}"
        );
        // The kernel's IFLA_XDP of a link without a program: nothing of it is kept.
        let no_program = attr(IFLA_XDP | NESTED, &attr(2, &[0]));
        let (links, _) = parse_datagram(&lo_with(&no_program)).unwrap();
        let RouteNetlinkMessage::NewLink(link) = &links[0] else {
            panic!("{links:?}");
        };
        assert_eq!(link.attributes.len(), 1, "{:?}", link.attributes);
    }
}
