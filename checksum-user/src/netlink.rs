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

/// The link messages in one datagram, and whether it ended a dump (NLMSG_DONE). Only link
/// messages, errors and the end of a dump are decoded, what these sockets ask for; any other
/// message is skipped by its header's length, undecoded: netlink-packet-route 0.25 panics on some
/// malformed messages of other types (a short route realm attribute), and none is ours to read.
pub(crate) fn parse_datagram(buf: &[u8]) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
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
        if matches!(kind, NLMSG_ERROR | NLMSG_DONE | RTM_NEWLINK | RTM_DELLINK) {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
                .map_err(invalid)?;
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

/// The error of an NLMSG_ERROR message, which carries a negative errno. (`ErrorMessage::to_io`
/// takes its absolute value with `abs`, which overflows on i32::MIN.)
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

/// Link notifications (RTNLGRP_LINK) for the namespace the socket was created in.
pub struct LinkMonitor {
    socket: Socket,
}

/// RTMGRP_LINK from linux/rtnetlink.h.
const RTMGRP_LINK: u32 = 1;

impl LinkMonitor {
    /// Subscribes; create it before listing links so that no change falls between the two.
    pub fn new(poll: std::time::Duration) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        let tv = libc::timeval {
            tv_sec: poll.as_secs() as libc::time_t,
            tv_usec: poll.subsec_micros() as libc::suseconds_t,
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
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(payload);
        m
    }

    /// RTM_NEWLINK for `lo` (index 1, IFF_UP | IFF_LOOPBACK).
    fn lo() -> Vec<u8> {
        let mut p = vec![0, 0, 4, 3]; // family, pad, ARPHRD_LOOPBACK
        p.extend_from_slice(&1i32.to_ne_bytes());
        p.extend_from_slice(&9u32.to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        p.extend_from_slice(&7u16.to_ne_bytes()); // IFLA_IFNAME "lo\0"
        p.extend_from_slice(&3u16.to_ne_bytes());
        p.extend_from_slice(b"lo\0\0");
        message(RTM_NEWLINK, &p)
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
        assert!(parse_datagram(&error(0)).unwrap().0.is_empty());
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
}
