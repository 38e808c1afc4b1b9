//! SIP messages in the spirit of RFC 4475 ("SIP Torture Test Messages"),
//! written for hark: the legal-but-odd messages a parser must take, and the
//! malformed ones it must refuse, without panicking on any.

use sip_bridge::message::{self, Message, MessageError, Method};

/// Headers of a valid request to build variants from.
fn invite(request_line: &str, extra: &str, body: &str) -> String {
    format!(
        "{request_line}\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKtort1\r\n\
Max-Forwards: 70\r\n\
From: <sip:caller@192.0.2.10>;tag=ft1\r\n\
To: <sip:hark@127.0.0.1>\r\n\
Call-ID: torture-1@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
{extra}\
Content-Length: {}\r\n\
\r\n\
{body}",
        body.len()
    )
}

fn parse(text: &str) -> Result<Message, MessageError> {
    message::parse(text.as_bytes())
}

fn request(text: &str) -> message::Request {
    match parse(text) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?} for\n{text}"),
    }
}

#[test]
fn legal_but_unusual_messages_are_accepted() {
    // Escaped characters and parameters in the Request-URI.
    let r = request(&invite(
        "INVITE sip:h%61rk;transport=udp@127.0.0.1:5080;lr SIP/2.0",
        "",
        "",
    ));
    assert_eq!(r.method, Method::Invite);
    assert!(r.uri.contains("h%61rk"), "{}", r.uri);

    // Headers hark does not know, with long values, are kept.
    let long = "x".repeat(2000);
    let r = request(&invite(
        "INVITE sip:hark@127.0.0.1 SIP/2.0",
        &format!("X-Unknown-Header: {long}\r\nNewFangledHeader: newfangled value\r\n"),
        "",
    ));
    assert_eq!(
        r.common.header("X-Unknown-Header").map(str::len),
        Some(2000)
    );
    assert_eq!(
        r.common.header("NewFangledHeader"),
        Some("newfangled value")
    );

    // Several Via values in one header: the top one is the first.
    let text = invite("INVITE sip:hark@127.0.0.1 SIP/2.0", "", "").replace(
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKtort1",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKfirst, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsecond",
    );
    assert_eq!(request(&text).common.branch, "z9hG4bKfirst");

    // An IPv6 reference in the Request-URI is legal, but rsip 0.4 cannot
    // parse one: it is refused with a syntax error, not a panic. (hark's
    // SIP listener is IPv4; this is a known gap, see the README.)
    let text = invite("INVITE sip:hark@[2001:db8::1]:5080 SIP/2.0", "", "");
    assert!(matches!(parse(&text), Err(MessageError::Syntax(_))));

    // A display name with quotes and a comma; tag after the name-addr.
    let text = invite("INVITE sip:hark@127.0.0.1 SIP/2.0", "", "").replace(
        "From: <sip:caller@192.0.2.10>;tag=ft1",
        "From: \"Doe, J. \\\"Quoted\\\"\" <sip:caller@192.0.2.10>;tag=ft9",
    );
    assert_eq!(request(&text).common.from_tag.as_deref(), Some("ft9"));

    // Content-Length with leading zeros; a body with a NUL byte.
    let text = invite("INVITE sip:hark@127.0.0.1 SIP/2.0", "", "ab\0cd")
        .replace("Content-Length: 5", "Content-Length: 0005");
    assert_eq!(request(&text).common.body, b"ab\0cd");

    // A method hark does not serve parses, for a 501.
    let text = invite("MESSAGE sip:hark@127.0.0.1 SIP/2.0", "", "")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE");
    assert_eq!(request(&text).method, Method::Other("MESSAGE".into()));

    // A CSeq at the largest legal value.
    let text = invite("INVITE sip:hark@127.0.0.1 SIP/2.0", "", "")
        .replace("CSeq: 1 INVITE", "CSeq: 2147483647 INVITE");
    assert_eq!(request(&text).common.cseq, 2_147_483_647);
}

#[test]
fn malformed_messages_are_refused() {
    let base = invite("INVITE sip:hark@127.0.0.1 SIP/2.0", "", "v=0\r\n");
    let cases: Vec<(&str, String)> = vec![
        (
            "CSeq over 2^31",
            base.replace("CSeq: 1 INVITE", "CSeq: 2147483648 INVITE"),
        ),
        (
            "CSeq method mismatch",
            base.replace("CSeq: 1 INVITE", "CSeq: 1 ACK"),
        ),
        (
            "CSeq with letters",
            base.replace("CSeq: 1 INVITE", "CSeq: 1a INVITE"),
        ),
        (
            "negative Content-Length",
            base.replace("Content-Length: 5", "Content-Length: -5"),
        ),
        (
            "Content-Length past the body",
            base.replace("Content-Length: 5", "Content-Length: 50"),
        ),
        (
            "no Call-ID",
            base.replace("Call-ID: torture-1@192.0.2.10\r\n", ""),
        ),
        (
            "empty Call-ID",
            base.replace("Call-ID: torture-1@192.0.2.10", "Call-ID: "),
        ),
        (
            "no From",
            base.replace("From: <sip:caller@192.0.2.10>;tag=ft1\r\n", ""),
        ),
        ("no To", base.replace("To: <sip:hark@127.0.0.1>\r\n", "")),
        ("no CSeq", base.replace("CSeq: 1 INVITE\r\n", "")),
        (
            "no Via",
            base.replace(
                "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKtort1\r\n",
                "",
            ),
        ),
        (
            "unknown SIP version",
            base.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia"),
        ),
        (
            "no Request-URI",
            base.replace("INVITE sip:hark@127.0.0.1 SIP/2.0", "INVITE SIP/2.0"),
        ),
        (
            "a header without a colon",
            base.replace("Max-Forwards: 70", "Max-Forwards 70"),
        ),
        (
            "no blank line after the headers",
            base.replace("\r\n\r\nv=0", "\r\nv=0"),
        ),
    ];
    for (name, text) in cases {
        assert!(parse(&text).is_err(), "{name} was accepted:\n{text}");
    }
}

#[test]
fn no_prefix_or_cut_of_a_valid_message_panics() {
    let base = invite(
        "INVITE sip:hark@127.0.0.1 SIP/2.0",
        "",
        "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\n",
    );
    for cut in 0..base.len() {
        let _ = message::parse(&base.as_bytes()[..cut]);
    }
    // Every single byte flipped.
    let bytes = base.as_bytes().to_vec();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xff;
        let _ = message::parse(&b);
    }
}
