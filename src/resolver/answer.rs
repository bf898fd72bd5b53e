//! Answering one query: pure, no I/O. The serving loop hands it the bytes
//! a container sent and the names that container may see; it says what to
//! send back, or that the query goes upstream, or that it is dropped.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// The names of one network's containers: each name (lower case) and the
/// addresses it has, and each address's name.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    addresses: HashMap<String, Vec<IpAddr>>,
    owners: HashMap<IpAddr, String>,
}

impl Names {
    /// Adds a container: its name, its other DNS names and its addresses.
    pub(crate) fn add(&mut self, name: &str, aliases: &[String], addresses: &[IpAddr]) {
        for n in std::iter::once(name).chain(aliases.iter().map(String::as_str)) {
            let entry = self.addresses.entry(n.to_ascii_lowercase()).or_default();
            for a in addresses {
                if !entry.contains(a) {
                    entry.push(*a);
                }
            }
        }
        for a in addresses {
            self.owners.entry(*a).or_insert_with(|| name.to_owned());
        }
    }

    /// How many names it holds.
    pub(crate) fn len(&self) -> usize {
        self.addresses.len()
    }
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: relay it to an upstream resolver as it is.
    Forward,
    /// Not worth an answer (too short to carry an id, or a response).
    Drop,
}

/// The answering rules: the search domain, the TTL, the largest UDP reply
/// without EDNS.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Lower case, no trailing dot.
    pub domain: String,
    pub ttl: u32,
}

/// Answers `query` for a container that sees the networks in `view`. A
/// reply larger than the transport takes (over UDP: 512 bytes, or the
/// client's EDNS size; over TCP, `tcp`: 65535) is sent truncated (`TC`),
/// so that the client asks again over TCP.
pub(crate) fn answer(query: &[u8], view: &[&Names], rules: &Rules, tcp: bool) -> Outcome {
    if query.len() < 12 {
        return Outcome::Drop;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    if query[2] & 0x80 != 0 {
        // A response: never answered (no loops between resolvers).
        return Outcome::Drop;
    }
    let message = match Message::from_vec(query) {
        Ok(message) => message,
        Err(_) => return error(id, OpCode::Query, ResponseCode::FormErr),
    };
    if message.op_code() != OpCode::Query {
        return error(id, message.op_code(), ResponseCode::NotImp);
    }
    let [question] = message.queries() else {
        return error(id, OpCode::Query, ResponseCode::FormErr);
    };
    if question.query_class() != DNSClass::IN {
        return Outcome::Forward;
    }
    let qname = question.name().to_lowercase();
    let text = qname.to_ascii();
    let text = text.trim_end_matches('.');
    let qtype = question.query_type();

    if qtype == RecordType::PTR {
        let Ok(address) = qname.parse_arpa_name() else {
            return Outcome::Forward;
        };
        let address = address.addr();
        let Some(owner) = view.iter().find_map(|n| n.owners.get(&address)) else {
            return Outcome::Forward;
        };
        let Ok(target) = Name::from_ascii(format!("{owner}.{}.", rules.domain)) else {
            return Outcome::Forward;
        };
        let record =
            Record::from_rdata(question.name().clone(), rules.ttl, RData::PTR(PTR(target)));
        return reply(&message, ResponseCode::NoError, vec![record], tcp);
    }

    let (label, in_domain) = match text.strip_suffix(&rules.domain) {
        Some("") => return reply(&message, ResponseCode::NoError, Vec::new(), tcp),
        Some(rest) if rest.ends_with('.') => (&rest[..rest.len() - 1], true),
        _ => (text, false),
    };
    let lookup = |name: &str| -> Vec<IpAddr> {
        view.iter()
            .filter_map(|n| n.addresses.get(name))
            .flatten()
            .copied()
            .collect()
    };
    // A name given whole (an alias that holds the domain) first.
    let mut found = lookup(text);
    if found.is_empty() && in_domain {
        found = lookup(label);
    }
    if found.is_empty() {
        return if in_domain {
            reply(&message, ResponseCode::NXDomain, Vec::new(), tcp)
        } else {
            // `ipv1` unknown here, or `example.org`: the world's.
            Outcome::Forward
        };
    }
    let mut records = Vec::new();
    let mut seen = Vec::new();
    for address in found {
        if seen.contains(&address) {
            continue;
        }
        seen.push(address);
        let rdata = match (address, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
            _ => continue,
        };
        records.push(Record::from_rdata(
            question.name().clone(),
            rules.ttl,
            rdata,
        ));
    }
    // A known name with no address of that type: NOERROR, no answer.
    reply(&message, ResponseCode::NoError, records, tcp)
}

/// A reply to `query` with `answers`, authoritative.
fn reply(query: &Message, code: ResponseCode, answers: Vec<Record>, tcp: bool) -> Outcome {
    let mut out = Message::new();
    out.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code)
        .add_queries(query.queries().iter().cloned())
        .add_answers(answers);
    let max = if tcp {
        usize::from(u16::MAX)
    } else {
        query
            .extensions()
            .as_ref()
            .map_or(512, |e| usize::from(e.max_payload().max(512)))
    };
    match out.to_vec() {
        Ok(bytes) if bytes.len() <= max => Outcome::Reply(bytes),
        Ok(_) => {
            // Too large for the transport: the client asks again over TCP.
            out.take_answers();
            out.set_truncated(true);
            out.to_vec().map_or(Outcome::Drop, Outcome::Reply)
        }
        Err(_) => error(query.id(), OpCode::Query, ResponseCode::ServFail),
    }
}

/// A header-only error reply.
fn error(id: u16, op: OpCode, code: ResponseCode) -> Outcome {
    Message::error_msg(id, op, code)
        .to_vec()
        .map_or(Outcome::Drop, Outcome::Reply)
}

/// The question section of a DNS message (the bytes after the header, up
/// to the end of the first question), to match an upstream's answer with
/// the query it answers. `None` for a message that does not parse.
pub(crate) fn question_of(message: &[u8]) -> Option<Vec<u8>> {
    let parsed = Message::from_vec(message).ok()?;
    let mut out = Vec::new();
    for query in parsed.queries() {
        out.extend(query.name().to_lowercase().to_ascii().into_bytes());
        out.extend(u16::from(query.query_type()).to_be_bytes());
        out.extend(u16::from(query.query_class()).to_be_bytes());
    }
    Some(out)
}

/// A SERVFAIL for `query` (the upstreams did not answer), if it has an id.
pub(crate) fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    match Message::from_vec(query) {
        Ok(message) => {
            let mut out = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
            out.add_queries(message.queries().iter().cloned());
            out.set_recursion_desired(message.recursion_desired());
            out.set_recursion_available(true);
            out.to_vec().ok()
        }
        Err(_) => Message::error_msg(id, OpCode::Query, ResponseCode::ServFail)
            .to_vec()
            .ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn rules() -> Rules {
        Rules {
            domain: "underlay.internal".into(),
            ttl: 5,
        }
    }

    fn ask(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    fn parse(outcome: Outcome) -> Message {
        match outcome {
            Outcome::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn names() -> Names {
        let mut names = Names::default();
        names.add(
            "ipv1",
            &["db".into()],
            &["192.168.1.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        );
        names
    }

    #[test]
    fn names_resolve_with_and_without_the_domain_in_any_case() {
        let names = names();
        for name in [
            "ipv1.",
            "IPV1.",
            "db.",
            "ipv1.underlay.internal.",
            "Db.Underlay.Internal.",
        ] {
            let m = parse(answer(
                &ask(name, RecordType::A),
                &[&names],
                &rules(),
                false,
            ));
            assert_eq!(m.id(), 0x1234);
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert!(m.authoritative());
            assert_eq!(m.answers().len(), 1, "{name}");
            assert_eq!(
                m.answers()[0].data(),
                &RData::A(A("192.168.1.2".parse().unwrap()))
            );
        }
        let m = parse(answer(
            &ask("ipv1.", RecordType::AAAA),
            &[&names],
            &rules(),
            false,
        ));
        assert_eq!(
            m.answers()[0].data(),
            &RData::AAAA(AAAA("fd00::2".parse().unwrap()))
        );
        // A known name with no record of that type: NOERROR, no data.
        let m = parse(answer(
            &ask("ipv1.", RecordType::MX),
            &[&names],
            &rules(),
            false,
        ));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
    }

    #[test]
    fn an_alias_that_holds_the_domain_resolves_as_given() {
        let mut names = Names::default();
        names.add(
            "c",
            &["api.underlay.internal".into()],
            &["10.0.0.5".parse().unwrap()],
        );
        let m = parse(answer(
            &ask("api.underlay.internal.", RecordType::A),
            &[&names],
            &rules(),
            false,
        ));
        assert_eq!(m.answers().len(), 1);
    }

    #[test]
    fn questions_match_case_blind_and_type_wise() {
        let a = question_of(&ask("Example.ORG.", RecordType::A)).unwrap();
        assert_eq!(a, question_of(&ask("example.org.", RecordType::A)).unwrap());
        assert_ne!(
            a,
            question_of(&ask("example.org.", RecordType::AAAA)).unwrap()
        );
        assert_ne!(a, question_of(&ask("evil.com.", RecordType::A)).unwrap());
        assert_eq!(question_of(&[1, 2, 3]), None);
    }

    #[test]
    fn unknown_names_go_upstream_unless_they_are_in_the_domain() {
        let names = names();
        assert_eq!(
            answer(
                &ask("example.org.", RecordType::A),
                &[&names],
                &rules(),
                false
            ),
            Outcome::Forward
        );
        assert_eq!(
            answer(&ask("ipv9.", RecordType::A), &[&names], &rules(), false),
            Outcome::Forward
        );
        let m = parse(answer(
            &ask("ipv9.underlay.internal.", RecordType::A),
            &[&names],
            &rules(),
            false,
        ));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        // Another network's names are not seen.
        assert_eq!(
            answer(&ask("ipv1.", RecordType::A), &[], &rules(), false),
            Outcome::Forward
        );
    }

    #[test]
    fn addresses_resolve_back_to_names() {
        let names = names();
        let m = parse(answer(
            &ask("2.1.168.192.in-addr.arpa.", RecordType::PTR),
            &[&names],
            &rules(),
            false,
        ));
        assert_eq!(
            m.answers()[0].data(),
            &RData::PTR(PTR(Name::from_ascii("ipv1.underlay.internal.").unwrap()))
        );
        assert_eq!(
            answer(
                &ask("9.1.168.192.in-addr.arpa.", RecordType::PTR),
                &[&names],
                &rules(),
                false
            ),
            Outcome::Forward
        );
    }

    #[test]
    fn bad_queries_get_formerr_or_nothing() {
        let names = names();
        assert_eq!(
            answer(&[1, 2, 3], &[&names], &rules(), false),
            Outcome::Drop
        );
        let mut garbage = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        garbage.extend([0xff; 20]);
        let m = parse(answer(&garbage, &[&names], &rules(), false));
        assert_eq!(m.id(), 0xabcd);
        assert_eq!(m.response_code(), ResponseCode::FormErr);
        // A response is never answered.
        let mut response = ask("ipv1.", RecordType::A);
        response[2] |= 0x80;
        assert_eq!(answer(&response, &[&names], &rules(), false), Outcome::Drop);
    }

    #[test]
    fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let mut names = Names::default();
        let many: Vec<IpAddr> = (1..=100u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        names.add("big", &[], &many);
        let m = parse(answer(
            &ask("big.", RecordType::A),
            &[&names],
            &rules(),
            false,
        ));
        assert!(m.truncated());
        assert!(m.answers().is_empty());
        let m = parse(answer(
            &ask("big.", RecordType::A),
            &[&names],
            &rules(),
            true,
        ));
        assert_eq!(m.answers().len(), 100);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let names = names();
            let _ = answer(&bytes, &[&names], &rules(), false);
            let _ = servfail(&bytes);
        }
    }
}
