//! A synchronous route-netlink socket.
//!
//! [`Netlink`] sends requests to the kernel and waits for their answers: an
//! acknowledgement, a single reply, or a multi-part dump. Every request that
//! changes state asks for an ACK, so success and failure are both answered.
//! Replies are matched to requests by sequence number; stray messages from an
//! earlier, abandoned request are skipped.
//!
//! Kernel errors become [`crate::Error::Kernel`] carrying the
//! errno and the kernel's extended-ACK text ("Unknown device type",
//! "Attribute failed policy validation"), which the socket asks for with
//! `NETLINK_EXT_ACK` and parses itself.
//!
//! A socket stays in the network namespace where it was created; use
//! [`NetNs::netlink`](crate::netns::NetNs::netlink) for one that works inside
//! another namespace.
//!
//! ```no_run
//! use underlay::netlink::Netlink;
//!
//! let nl = Netlink::open()?;
//! for link in nl.links()? {
//!     println!("{} {}", link.index, link.name);
//! }
//! # Ok::<(), underlay::Error>(())
//! ```

mod ext_ack;

use std::sync::Mutex;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{Error, Result};
use ext_ack::KernelReply;

/// Size of the receive buffer. The kernel sizes dump datagrams to what
/// readers accept, capped at 32 KiB; a larger datagram is detected and
/// received whole anyway.
const RECV_BUFFER: usize = 64 * 1024;

/// How often a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 8;

/// A route-netlink socket bound to the network namespace it was opened in.
///
/// It is `Send + Sync`: requests from several threads are serialised on an
/// internal lock, so each request meets its own answer.
///
/// ```no_run
/// use std::sync::Arc;
/// use underlay::netlink::Netlink;
///
/// let nl = Arc::new(Netlink::open()?);
/// let shared = Arc::clone(&nl);
/// let links = std::thread::spawn(move || shared.links()).join().unwrap()?;
/// println!("{} links, {} addresses", links.len(), nl.addresses(None)?.len());
/// # Ok::<(), underlay::Error>(())
/// ```
pub struct Netlink {
    socket: Socket,
    port: u32,
    inner: Mutex<Inner>,
}

/// The socket and its port; not the buffers (tens of kilobytes that say
/// nothing, in every `{:?}` of a host).
impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("socket", &std::os::fd::AsRawFd::as_raw_fd(&self.socket))
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

struct Inner {
    sequence: u32,
    send_buffer: Vec<u8>,
    recv_buffer: Vec<u8>,
}

/// One request in a [`Netlink::batch`]: a message, its extra header flags and
/// a description of the operation for error messages.
pub(crate) struct Request {
    pub message: RouteNetlinkMessage,
    pub flags: u16,
    pub operation: String,
}

impl Netlink {
    /// Opens a route-netlink socket in the network namespace of the calling
    /// thread, with extended ACKs, capped ACKs and strict dump checking.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be created, bound or connected. Missing optional
    /// features (extended ACKs on kernels before 4.12) are not errors.
    ///
    /// ```no_run
    /// use underlay::netlink::Netlink;
    ///
    /// let nl = Netlink::open()?;
    /// assert_eq!(nl.link_by_name("lo")?.index, 1);
    /// # Ok::<(), underlay::Error>(())
    /// ```
    pub fn open() -> Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| Error::io("open a route netlink socket", e))?;
        let address = socket
            .bind_auto()
            .map_err(|e| Error::io("bind the route netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io("connect the route netlink socket", e))?;
        // Extended ACKs carry the kernel's explanation of an error; capped
        // ACKs leave out the echoed request we do not need. Both are
        // best-effort: kernels before 4.12 lack them.
        if let Err(e) = socket.set_ext_ack(true) {
            log::debug!("NETLINK_EXT_ACK unavailable: {e}");
        }
        if let Err(e) = socket.set_cap_ack(true) {
            log::debug!("NETLINK_CAP_ACK unavailable: {e}");
        }
        if let Err(e) = socket.set_netlink_get_strict_chk(true) {
            log::debug!("NETLINK_GET_STRICT_CHK unavailable: {e}");
        }
        Ok(Netlink {
            socket,
            port: address.port_number(),
            inner: Mutex::new(Inner {
                sequence: 0,
                send_buffer: Vec::with_capacity(4096),
                recv_buffer: vec![0; RECV_BUFFER],
            }),
        })
    }

    /// The socket's descriptor (for the ioctls a socket of its namespace
    /// answers).
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.socket)
    }

    /// Sends one request that changes state and waits for its ACK.
    pub(crate) fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
        operation: impl FnOnce() -> String,
    ) -> Result<()> {
        let mut inner = self.lock();
        let seq = inner.next_sequence();
        inner.send_buffer.clear();
        serialize(&mut inner.send_buffer, message, flags | NLM_F_ACK, seq);
        self.send(&inner.send_buffer)?;
        match self.receive_ack(&mut inner, seq)? {
            KernelReply::Ack { warning } => {
                if let Some(w) = warning {
                    log::warn!("{}: kernel warning: {w}", operation());
                }
                Ok(())
            }
            KernelReply::Error { errno, message } => Err(Error::Kernel {
                operation: operation(),
                errno,
                message,
            }),
        }
    }

    /// Sends several requests in one datagram, each with its own ACK, and
    /// returns one result per request, in order. The kernel handles them one
    /// after the other; a failed request does not stop the ones after it.
    pub(crate) fn batch(&self, requests: Vec<Request>) -> Result<Vec<Result<()>>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut inner = self.lock();
        let first = inner.sequence.wrapping_add(1);
        inner.send_buffer.clear();
        let mut operations = Vec::with_capacity(requests.len());
        for request in requests {
            let seq = inner.next_sequence();
            serialize(
                &mut inner.send_buffer,
                request.message,
                request.flags | NLM_F_ACK,
                seq,
            );
            operations.push(request.operation);
        }
        self.send(&inner.send_buffer)?;
        let mut results: Vec<Option<Result<()>>> = (0..operations.len()).map(|_| None).collect();
        let mut pending = operations.len();
        while pending > 0 {
            let received = self.receive_acks(&mut inner)?;
            for frame in frames(&inner.recv_buffer[..received]) {
                let frame = frame?;
                let index = frame.sequence.wrapping_sub(first) as usize;
                if frame.port != self.port || index >= results.len() {
                    log::debug!("skipping stray netlink message seq {}", frame.sequence);
                    continue;
                }
                if frame.message_type != NLMSG_ERROR || results[index].is_some() {
                    continue;
                }
                let reply = ext_ack::parse_error(frame.bytes, frame.flags)?;
                results[index] = Some(match reply {
                    KernelReply::Ack { warning } => {
                        if let Some(w) = warning {
                            log::warn!("{}: kernel warning: {w}", operations[index]);
                        }
                        Ok(())
                    }
                    KernelReply::Error { errno, message } => Err(Error::Kernel {
                        operation: std::mem::take(&mut operations[index]),
                        errno,
                        message,
                    }),
                });
                pending -= 1;
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    /// Sends a `GET` request for one object and returns the kernel's reply.
    pub(crate) fn get(
        &self,
        message: RouteNetlinkMessage,
        operation: impl FnOnce() -> String,
    ) -> Result<RouteNetlinkMessage> {
        let mut inner = self.lock();
        let seq = inner.next_sequence();
        inner.send_buffer.clear();
        serialize(&mut inner.send_buffer, message, 0, seq);
        self.send(&inner.send_buffer)?;
        loop {
            let received = self.receive(&mut inner)?;
            for frame in frames(&inner.recv_buffer[..received]) {
                let frame = frame?;
                if frame.port != self.port || frame.sequence != seq {
                    continue;
                }
                match frame.message_type {
                    NLMSG_ERROR => {
                        return match ext_ack::parse_error(frame.bytes, frame.flags)? {
                            KernelReply::Ack { .. } => Err(Error::Protocol(format!(
                                "{}: the kernel acknowledged without a reply",
                                operation()
                            ))),
                            KernelReply::Error { errno, message } => Err(Error::Kernel {
                                operation: operation(),
                                errno,
                                message,
                            }),
                        }
                    }
                    NLMSG_NOOP | NLMSG_DONE | NLMSG_OVERRUN => {}
                    // A plain GET is answered by exactly one message.
                    _ => return parse_inner(frame.bytes),
                }
            }
        }
    }

    /// Runs a dump and returns every message of it. A dump that the kernel
    /// marks as interrupted by a concurrent change is run again.
    pub(crate) fn dump(
        &self,
        message: RouteNetlinkMessage,
        operation: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_RETRIES {
            let mut inner = self.lock();
            let seq = inner.next_sequence();
            inner.send_buffer.clear();
            serialize(&mut inner.send_buffer, message.clone(), NLM_F_DUMP, seq);
            self.send(&inner.send_buffer)?;
            let mut messages = Vec::new();
            let mut interrupted = false;
            'datagrams: loop {
                let received = self.receive(&mut inner)?;
                for frame in frames(&inner.recv_buffer[..received]) {
                    let frame = frame?;
                    if frame.port != self.port || frame.sequence != seq {
                        continue;
                    }
                    if frame.flags & NLM_F_DUMP_INTR != 0 {
                        interrupted = true;
                    }
                    match frame.message_type {
                        NLMSG_DONE => {
                            if let KernelReply::Error { errno, message } =
                                ext_ack::parse_done(frame.bytes, frame.flags)?
                            {
                                return Err(Error::Kernel {
                                    operation: operation(),
                                    errno,
                                    message,
                                });
                            }
                            break 'datagrams;
                        }
                        NLMSG_ERROR => match ext_ack::parse_error(frame.bytes, frame.flags)? {
                            KernelReply::Error { errno, message } => {
                                return Err(Error::Kernel {
                                    operation: operation(),
                                    errno,
                                    message,
                                })
                            }
                            KernelReply::Ack { .. } => break 'datagrams,
                        },
                        NLMSG_NOOP | NLMSG_OVERRUN => {}
                        _ => {
                            messages.push(parse_inner(frame.bytes)?);
                            if frame.flags & NLM_F_MULTIPART == 0 {
                                break 'datagrams;
                            }
                        }
                    }
                }
            }
            if !interrupted {
                return Ok(messages);
            }
            log::debug!("{}: dump interrupted, retrying", operation());
        }
        Err(Error::Protocol(format!(
            "{}: dump interrupted {DUMP_RETRIES} times in a row by concurrent changes",
            operation()
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only buffers and a counter
        // behind, which are safe to reuse.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, bytes: &[u8]) -> Result<()> {
        loop {
            match self.socket.send(bytes, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("send a netlink request", e)),
            }
        }
    }

    fn receive_ack(&self, inner: &mut Inner, seq: u32) -> Result<KernelReply> {
        loop {
            let received = self.receive_acks(inner)?;
            for frame in frames(&inner.recv_buffer[..received]) {
                let frame = frame?;
                if frame.port != self.port || frame.sequence != seq {
                    log::debug!("skipping stray netlink message seq {}", frame.sequence);
                    continue;
                }
                if frame.message_type == NLMSG_ERROR {
                    return ext_ack::parse_error(frame.bytes, frame.flags);
                }
            }
        }
    }

    /// Receives one datagram of ACKs (small: capped, with at most an
    /// extended-ACK message) in one call, without peeking at its size
    /// first. One larger than the buffer (never seen) is an error, not a
    /// truncated read.
    fn receive_acks(&self, inner: &mut Inner) -> Result<usize> {
        loop {
            let capacity = inner.recv_buffer.len();
            let mut buf = &mut inner.recv_buffer[..];
            match self.socket.recv(&mut buf, libc::MSG_TRUNC) {
                Ok(n) if n > capacity => {
                    return Err(Error::Protocol(format!(
                        "a netlink ACK of {n} bytes, more than the {capacity} expected"
                    )))
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("receive a netlink reply", e)),
            }
        }
    }

    /// Receives one whole datagram into the receive buffer, growing it when
    /// the kernel sent more than it holds.
    fn receive(&self, inner: &mut Inner) -> Result<usize> {
        loop {
            let capacity = inner.recv_buffer.len();
            let peeked = {
                let mut buf = &mut inner.recv_buffer[..];
                self.socket.recv(&mut buf, libc::MSG_PEEK | libc::MSG_TRUNC)
            };
            match peeked {
                Ok(n) if n > capacity => {
                    inner.recv_buffer.resize(n.next_power_of_two(), 0);
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("receive a netlink reply", e)),
            }
            let mut buf = &mut inner.recv_buffer[..];
            match self.socket.recv(&mut buf, 0) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("receive a netlink reply", e)),
            }
        }
    }
}

impl Inner {
    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }
}

/// Appends one serialized request to `buffer`.
pub(crate) fn serialize(buffer: &mut Vec<u8>, message: RouteNetlinkMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let start = buffer.len();
    let len = packet.buffer_len();
    // Messages in one datagram start on 4-byte boundaries.
    buffer.resize(start + len.next_multiple_of(4), 0);
    packet.serialize(&mut buffer[start..start + len]);
}

/// One netlink message inside a received datagram.
struct Frame<'a> {
    message_type: u16,
    flags: u16,
    sequence: u32,
    port: u32,
    /// The whole message, header included.
    bytes: &'a [u8],
}

/// Splits a datagram into its messages.
fn frames(mut datagram: &[u8]) -> impl Iterator<Item = Result<Frame<'_>>> {
    std::iter::from_fn(move || {
        if datagram.len() < 16 {
            return None;
        }
        let buffer = match NetlinkBuffer::new_checked(datagram) {
            Ok(b) => b,
            Err(e) => {
                datagram = &[];
                return Some(Err(Error::Protocol(format!(
                    "malformed netlink header: {e}"
                ))));
            }
        };
        let len = buffer.length() as usize;
        let frame = Frame {
            message_type: buffer.message_type(),
            flags: buffer.flags(),
            sequence: buffer.sequence_number(),
            port: buffer.port_number(),
            bytes: &datagram[..len],
        };
        datagram = &datagram[len.next_multiple_of(4).min(datagram.len())..];
        Some(Ok(frame))
    })
}

fn parse_inner(bytes: &[u8]) -> Result<RouteNetlinkMessage> {
    let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
        .map_err(|e| Error::Protocol(format!("cannot parse a route netlink message: {e}")))?;
    match packet.payload {
        NetlinkPayload::InnerMessage(m) => Ok(m),
        other => Err(Error::Protocol(format!(
            "expected a route message, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};

    #[test]
    fn serialized_requests_are_aligned_and_flagged() {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName("abc".into()));
        let mut buffer = Vec::new();
        serialize(
            &mut buffer,
            RouteNetlinkMessage::GetLink(link.clone()),
            NLM_F_ACK,
            7,
        );
        serialize(
            &mut buffer,
            RouteNetlinkMessage::GetLink(link),
            NLM_F_ACK,
            8,
        );
        let parsed: Vec<_> = frames(&buffer).map(|f| f.unwrap()).collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].sequence, 7);
        assert_eq!(parsed[1].sequence, 8);
        assert_eq!(parsed[0].flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(buffer.len() % 4, 0);
        assert!(matches!(
            parse_inner(parsed[1].bytes).unwrap(),
            RouteNetlinkMessage::GetLink(_)
        ));
    }

    #[test]
    fn truncated_datagram_is_a_protocol_error_not_a_panic() {
        let mut buffer = Vec::new();
        serialize(
            &mut buffer,
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            0,
            1,
        );
        // Claim a length longer than the datagram.
        buffer[0] = 200;
        let first = frames(&buffer).next().unwrap();
        assert!(matches!(first, Err(Error::Protocol(_))));
    }

    /// Everything a reply datagram goes through, on arbitrary bytes: the
    /// frame splitter, the route-message parser, the error/ACK and DONE
    /// parsers (extended ACK included), and the link decoder.
    fn parse_datagram(datagram: &[u8]) {
        for frame in frames(datagram) {
            let Ok(frame) = frame else { continue };
            let _ = ext_ack::parse_error(frame.bytes, frame.flags);
            let _ = ext_ack::parse_done(frame.bytes, frame.flags);
            if let Ok(RouteNetlinkMessage::NewLink(link)) = parse_inner(frame.bytes) {
                let _ = crate::link::Link::from_message(link);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(4000)
        ))]

        #[test]
        fn replies_of_any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            parse_datagram(&bytes);
        }

        #[test]
        fn replies_with_valid_headers_and_any_payload_never_panic(
            kind in proptest::prelude::prop_oneof![
                proptest::prelude::Just(2u16), proptest::prelude::Just(3u16),
                proptest::prelude::Just(16u16), proptest::prelude::Just(20u16),
                proptest::prelude::Just(24u16), 0u16..40,
            ],
            flags in proptest::prelude::any::<u16>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            // A well-formed netlink header around arbitrary payload, so
            // the parsers behind the splitter get the garbage.
            let mut datagram = Vec::new();
            datagram.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
            datagram.extend_from_slice(&kind.to_ne_bytes());
            datagram.extend_from_slice(&flags.to_ne_bytes());
            datagram.extend_from_slice(&1u32.to_ne_bytes());
            datagram.extend_from_slice(&0u32.to_ne_bytes());
            datagram.extend_from_slice(&payload);
            parse_datagram(&datagram);
        }
    }
}
