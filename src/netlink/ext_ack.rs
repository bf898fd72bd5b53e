//! Parsing of netlink error and done messages, with extended ACKs.
//!
//! No released netlink crate parses extended ACKs, so this module does. An
//! `NLMSG_ERROR` message carries a negative errno (0 for an ACK), then the
//! request's header and, unless the reply is capped (`NLM_F_CAPPED`), the
//! request's payload. When the header has `NLM_F_ACK_TLVS`, attributes follow:
//! `NLMSGERR_ATTR_MSG` (1) is the kernel's text, `NLMSGERR_ATTR_OFFS` (2) the
//! offset of the offending attribute in the request. An `NLMSG_DONE` that ends
//! a failed dump carries the errno and the same attributes right after it.

use crate::{Error, Result};

/// `NLM_F_CAPPED`: the echoed request was cut to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ACK attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: a NUL-terminated explanation.
const NLMSGERR_ATTR_MSG: u16 = 1;

const HEADER_LEN: usize = 16;

/// What the kernel answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KernelReply {
    /// Success; the kernel may still have said something (a warning).
    Ack {
        /// The extended-ACK text sent along with a success.
        warning: Option<String>,
    },
    /// Failure with a positive errno and, when given, the kernel's text.
    Error {
        /// The positive errno.
        errno: i32,
        /// The extended-ACK message.
        message: Option<String>,
    },
}

/// Parses a whole `NLMSG_ERROR` message (header included).
pub(crate) fn parse_error(message: &[u8], flags: u16) -> Result<KernelReply> {
    let payload = message
        .get(HEADER_LEN..)
        .filter(|p| p.len() >= 4)
        .ok_or_else(|| Error::Protocol("error message too short".into()))?;
    let code = i32::from_ne_bytes(payload[..4].try_into().expect("4 bytes"));
    let text = if flags & NLM_F_ACK_TLVS != 0 {
        let echoed = payload.get(4..4 + HEADER_LEN).ok_or_else(|| {
            Error::Protocol("error message lacks the echoed request header".into())
        })?;
        let echoed_len = u32::from_ne_bytes(echoed[..4].try_into().expect("4 bytes")) as usize;
        // With NLM_F_CAPPED only the header was echoed; otherwise the whole
        // request (and the kernel never caps an ACK, code 0).
        let skip = if flags & NLM_F_CAPPED != 0 || code == 0 {
            HEADER_LEN
        } else {
            echoed_len.next_multiple_of(4)
        };
        payload.get(4 + skip..).and_then(message_attribute)
    } else {
        None
    };
    Ok(reply(code, text))
}

/// Parses a whole `NLMSG_DONE` message (header included).
pub(crate) fn parse_done(message: &[u8], flags: u16) -> Result<KernelReply> {
    let payload = message.get(HEADER_LEN..).unwrap_or(&[]);
    // Old kernels may send an empty done message.
    if payload.len() < 4 {
        return Ok(KernelReply::Ack { warning: None });
    }
    let code = i32::from_ne_bytes(payload[..4].try_into().expect("4 bytes"));
    let text = if flags & NLM_F_ACK_TLVS != 0 {
        message_attribute(&payload[4..])
    } else {
        None
    };
    Ok(reply(code, text))
}

fn reply(code: i32, text: Option<String>) -> KernelReply {
    if code == 0 {
        KernelReply::Ack { warning: text }
    } else {
        KernelReply::Error {
            errno: code.checked_neg().unwrap_or(i32::MAX),
            message: text,
        }
    }
}

/// Finds `NLMSGERR_ATTR_MSG` among netlink attributes.
fn message_attribute(mut attributes: &[u8]) -> Option<String> {
    while attributes.len() >= 4 {
        let len = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]) & 0x3fff;
        if len < 4 || len > attributes.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &attributes[4..len];
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            let text = String::from_utf8_lossy(&value[..end]).trim().to_owned();
            return (!text.is_empty()).then_some(text);
        }
        attributes = &attributes[len.next_multiple_of(4).min(attributes.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn header(len: usize, kind: u16, flags: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&5u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out
    }

    /// An error message as the kernel builds it: header, errno, echoed
    /// request (header only when capped), attributes.
    fn error_message(code: i32, flags: u16, echoed_payload: &[u8], attrs: &[u8]) -> Vec<u8> {
        let mut body = code.to_ne_bytes().to_vec();
        body.extend(header(HEADER_LEN + echoed_payload.len(), 16, 0x405));
        body.extend_from_slice(echoed_payload);
        body.extend_from_slice(attrs);
        let mut out = header(HEADER_LEN + body.len(), 2, flags);
        out.extend(body);
        out
    }

    #[test]
    fn capped_error_with_message() {
        let attrs = [
            attribute(NLMSGERR_ATTR_MSG, b"Unknown device type\0"),
            attribute(2, &36u32.to_ne_bytes()),
        ]
        .concat();
        let msg = error_message(-95, NLM_F_CAPPED | NLM_F_ACK_TLVS, &[], &attrs);
        assert_eq!(
            parse_error(&msg, NLM_F_CAPPED | NLM_F_ACK_TLVS).unwrap(),
            KernelReply::Error {
                errno: 95,
                message: Some("Unknown device type".into())
            }
        );
    }

    #[test]
    fn uncapped_error_skips_the_echoed_request() {
        let echoed = [1u8, 2, 3, 4, 5, 6]; // unaligned on purpose
        let mut padded = echoed.to_vec();
        padded.extend([0, 0]);
        let attrs = attribute(NLMSGERR_ATTR_MSG, b"VLAN id out of range\0");
        let mut msg = error_message(-34, NLM_F_ACK_TLVS, &padded, &attrs);
        // The echoed header states the unpadded length.
        let len = (HEADER_LEN + echoed.len()) as u32;
        msg[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(
            parse_error(&msg, NLM_F_ACK_TLVS).unwrap(),
            KernelReply::Error {
                errno: 34,
                message: Some("VLAN id out of range".into())
            }
        );
    }

    #[test]
    fn plain_ack_and_error_without_attributes() {
        let ack = error_message(0, NLM_F_CAPPED, &[], &[]);
        assert_eq!(
            parse_error(&ack, NLM_F_CAPPED).unwrap(),
            KernelReply::Ack { warning: None }
        );
        let err = error_message(-17, 0, &[0; 8], &[]);
        assert_eq!(
            parse_error(&err, 0).unwrap(),
            KernelReply::Error {
                errno: 17,
                message: None
            }
        );
    }

    #[test]
    fn done_with_error_and_message() {
        let mut body = (-22i32).to_ne_bytes().to_vec();
        body.extend(attribute(
            NLMSGERR_ATTR_MSG,
            b"Invalid header for link dump\0",
        ));
        let mut msg = header(HEADER_LEN + body.len(), 3, NLM_F_ACK_TLVS | 2);
        msg.extend(body);
        assert_eq!(
            parse_done(&msg, NLM_F_ACK_TLVS).unwrap(),
            KernelReply::Error {
                errno: 22,
                message: Some("Invalid header for link dump".into())
            }
        );
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse_error(&bytes, NLM_F_ACK_TLVS);
            let _ = parse_error(&bytes, NLM_F_ACK_TLVS | NLM_F_CAPPED);
            let _ = parse_done(&bytes, NLM_F_ACK_TLVS);
        }
        assert_eq!(message_attribute(&[0xff, 0xff, 1, 0]), None);
    }
}
