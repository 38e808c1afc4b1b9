//! SIP messages: parsed by rsip, read into our own types.
//!
//! rsip (0.4, unmaintained since 2022) tokenizes the message; this module
//! takes what hark needs from it and checks what rsip does not: compact
//! header names (`v`, `f`, `t`, `i`, `m`, `l`, `c`), the headers every
//! request must carry, a CSeq number below 2^31, and Content-Length against
//! the datagram (a shorter body is an error, a longer one is cut, RFC 3261
//! §18.3). Responses hark sends are written here, not by rsip: they copy
//! the request's Via, From, To, Call-ID and CSeq as §8.2.6.2 says.
//!
//! Nothing here panics on input; every refusal says what is wrong, so the
//! socket task can answer 400 with it when it can find the headers to.

use std::fmt::Write as _;

/// Most bytes accepted in one SIP datagram.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// OPTIONS.
    Options,
    /// Any other method rsip knows (answered 501 by the UAS).
    Other(String),
}

impl Method {
    fn from_token(t: &str) -> Method {
        match t {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

/// The headers every message's transaction and dialog need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Every header, in order, with canonical names (compact forms
    /// expanded).
    pub headers: Vec<(String, String)>,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: String,
    /// From, whole.
    pub from: String,
    /// From's tag.
    pub from_tag: Option<String>,
    /// To, whole.
    pub to: String,
    /// To's tag (absent on a dialog-creating request).
    pub to_tag: Option<String>,
    /// The top Via's branch (empty if it has none).
    pub branch: String,
    /// The body, cut to Content-Length.
    pub body: Vec<u8>,
}

impl Common {
    /// The first value of header `name` (canonical name, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: String,
    /// Headers and body.
    pub common: Common,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers and body.
    pub common: Common,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// Why a datagram is not a usable SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// rsip could not parse it.
    #[error("not a SIP message: {0}")]
    Syntax(String),
    /// A required header is missing.
    #[error("no {0} header")]
    Missing(&'static str),
    /// A header is malformed.
    #[error("bad {header}: {reason}")]
    Invalid {
        /// The header.
        header: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The body is shorter than Content-Length.
    #[error("the body is {got} bytes, Content-Length says {want}")]
    ShortBody {
        /// Bytes present.
        got: usize,
        /// Content-Length.
        want: usize,
    },
}

/// Parses one datagram.
pub fn parse(datagram: &[u8]) -> Result<Message, MessageError> {
    if datagram.len() > MAX_MESSAGE {
        return Err(MessageError::TooLarge(datagram.len()));
    }
    let msg = rsip::SipMessage::try_from(datagram)
        .map_err(|e| MessageError::Syntax(e.to_string().chars().take(120).collect()))?;
    let (head, headers, body) = match &msg {
        rsip::SipMessage::Request(r) => (
            Head::Request(r.method.to_string(), r.uri.to_string()),
            &r.headers,
            &r.body,
        ),
        rsip::SipMessage::Response(r) => (Head::Status(r.status_code.code()), &r.headers, &r.body),
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|h| {
            let text = h.to_string();
            let (name, value) = text.split_once(':')?;
            Some((canonical(name.trim()), value.trim().to_string()))
        })
        .collect();
    let common = common(headers, body)?;
    Ok(match head {
        Head::Request(method, uri) => {
            let method = Method::from_token(&method);
            if common.cseq_method != method.as_str() {
                return Err(MessageError::Invalid {
                    header: "CSeq",
                    reason: "its method differs from the request's",
                });
            }
            Message::Request(Request {
                method,
                uri,
                common,
            })
        }
        Head::Status(status) => Message::Response(Response { status, common }),
    })
}

enum Head {
    Request(String, String),
    Status(u16),
}

/// Full header names for the compact forms of RFC 3261 §7.3.3, and one
/// spelling for the headers hark reads.
fn canonical(name: &str) -> String {
    let full = match name.to_ascii_lowercase().as_str() {
        "v" | "via" => "Via",
        "f" | "from" => "From",
        "t" | "to" => "To",
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "k" | "supported" => "Supported",
        "s" | "subject" => "Subject",
        "e" | "content-encoding" => "Content-Encoding",
        "cseq" => "CSeq",
        "max-forwards" => "Max-Forwards",
        _ => return name.to_string(),
    };
    full.to_string()
}

fn common(headers: Vec<(String, String)>, body: &[u8]) -> Result<Common, MessageError> {
    let first = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let via = first("Via").ok_or(MessageError::Missing("Via"))?;
    let from = first("From").ok_or(MessageError::Missing("From"))?;
    let to = first("To").ok_or(MessageError::Missing("To"))?;
    let call_id = first("Call-ID").ok_or(MessageError::Missing("Call-ID"))?;
    if call_id.is_empty() {
        return Err(MessageError::Invalid {
            header: "Call-ID",
            reason: "empty",
        });
    }
    let cseq_text = first("CSeq").ok_or(MessageError::Missing("CSeq"))?;
    let mut parts = cseq_text.split_whitespace();
    let cseq = parts
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n < 1 << 31)
        .ok_or(MessageError::Invalid {
            header: "CSeq",
            reason: "the number is not below 2^31",
        })?;
    let cseq_method = parts
        .next()
        .filter(|m| parts.next().is_none() && m.bytes().all(|b| b.is_ascii_alphabetic()))
        .ok_or(MessageError::Invalid {
            header: "CSeq",
            reason: "not NUMBER METHOD",
        })?
        .to_string();
    let body = match first("Content-Length") {
        None => body.to_vec(),
        Some(l) => {
            let want: usize = l.parse().map_err(|_| MessageError::Invalid {
                header: "Content-Length",
                reason: "not a number",
            })?;
            if body.len() < want {
                return Err(MessageError::ShortBody {
                    got: body.len(),
                    want,
                });
            }
            body[..want].to_vec()
        }
    };
    // The top Via is the first value of the first Via header.
    let top = via.split(',').next().unwrap_or_default();
    let branch = param(top, "branch").unwrap_or_default();
    Ok(Common {
        from_tag: name_addr_param(&from, "tag"),
        to_tag: name_addr_param(&to, "tag"),
        headers,
        call_id,
        cseq,
        cseq_method,
        from,
        to,
        branch,
        body,
    })
}

/// A header parameter of a name-addr (`"A" <sip:a@b;uriparam>;tag=x`): only
/// the part after the closing `>` holds header parameters.
fn name_addr_param(value: &str, key: &str) -> Option<String> {
    let tail = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    param(tail, key)
}

/// `key=value` among `;`-separated parameters, key case-insensitive.
fn param(value: &str, key: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().to_string())
    })
}

impl Request {
    /// Writes a response to this request: every Via in order, From, To
    /// (with `to_tag` added if it has none), Call-ID and CSeq copied, then
    /// `extra` headers, then the body (`content type`, bytes) if any.
    pub fn response(
        &self,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let c = &self.common;
        let mut s = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = write!(s, "SIP/2.0 {status} {reason}\r\n");
        for (n, v) in c.headers.iter().filter(|(n, _)| n == "Via") {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let _ = write!(s, "From: {}\r\n", c.from);
        match (to_tag, &c.to_tag) {
            (Some(tag), None) => {
                let _ = write!(s, "To: {};tag={tag}\r\n", c.to);
            }
            _ => {
                let _ = write!(s, "To: {}\r\n", c.to);
            }
        }
        let _ = write!(
            s,
            "Call-ID: {}\r\nCSeq: {} {}\r\n",
            c.call_id, c.cseq, c.cseq_method
        );
        for (n, v) in extra {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let mut out = match body {
            Some((kind, bytes)) => {
                let _ = write!(
                    s,
                    "Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
                    bytes.len()
                );
                let mut out = s.into_bytes();
                out.extend_from_slice(bytes);
                out
            }
            None => {
                s.push_str("Content-Length: 0\r\n\r\n");
                s.into_bytes()
            }
        };
        out.shrink_to_fit();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:hark@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKabc123\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:+15551230001@192.0.2.10;user=phone>;tag=as1f2e\r\n\
To: <sip:hark@127.0.0.1:5080>\r\n\
Contact: <sip:asterisk@192.0.2.10:5060>\r\n\
Call-ID: 3c2a9f1e77b1@192.0.2.10\r\n\
CSeq: 102 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 13\r\n\
\r\n\
v=0\r\no=- 1 1\r\n";

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_invite_is_read() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri, "sip:hark@127.0.0.1:5080");
        let c = &r.common;
        assert_eq!(c.call_id, "3c2a9f1e77b1@192.0.2.10");
        assert_eq!((c.cseq, c.cseq_method.as_str()), (102, "INVITE"));
        assert_eq!(c.from_tag.as_deref(), Some("as1f2e"));
        assert_eq!(c.to_tag, None);
        assert_eq!(c.branch, "z9hG4bKabc123");
        // Content-Length 13 cuts the 17 bytes after the blank line.
        assert_eq!(c.body, b"v=0\r\no=- 1 1\r");
        assert_eq!(c.header("max-forwards"), Some("70"));
    }

    #[test]
    fn a_response_copies_what_it_must() {
        let r = request(INVITE);
        let resp = r.response(
            200,
            "OK",
            Some("hk9"),
            &[("Contact", "<sip:hark@127.0.0.1:5080>")],
            Some(("application/sdp", b"v=0\r\n")),
        );
        let Ok(Message::Response(p)) = parse(&resp) else {
            panic!("{}", String::from_utf8_lossy(&resp));
        };
        assert_eq!(p.status, 200);
        assert_eq!(p.common.call_id, r.common.call_id);
        assert_eq!(
            (p.common.cseq, p.common.cseq_method.as_str()),
            (102, "INVITE")
        );
        assert_eq!(p.common.to_tag.as_deref(), Some("hk9"));
        assert_eq!(p.common.from_tag.as_deref(), Some("as1f2e"));
        let vias: Vec<&str> = p
            .common
            .headers
            .iter()
            .filter(|(n, _)| n == "Via")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(vias.len(), 2, "both Vias, in order");
        assert!(vias[0].contains("z9hG4bKabc123") && vias[1].contains("z9hG4bKproxy1"));
        assert_eq!(p.common.body, b"v=0\r\n");
        // No body: Content-Length 0.
        let resp = r.response(100, "Trying", None, &[], None);
        assert!(String::from_utf8_lossy(&resp).ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn compact_and_oddly_cased_headers_are_read() {
        let text = "OPTIONS sip:hark@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.10;BRANCH=z9hG4bKc1\r\n\
f: <sip:a@192.0.2.10>;TAG=t1\r\n\
t: <sip:hark@127.0.0.1>\r\n\
i: compact-1\r\n\
cseq: 7 OPTIONS\r\n\
l: 0\r\n\
\r\n";
        let r = request(text);
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.common.call_id, "compact-1");
        assert_eq!(r.common.branch, "z9hG4bKc1");
        assert_eq!(r.common.from_tag.as_deref(), Some("t1"));
        assert!(r.common.body.is_empty());
    }

    #[test]
    fn a_tag_inside_the_uri_is_not_the_header_tag() {
        let text = INVITE.replace(
            "From: \"Alice\" <sip:+15551230001@192.0.2.10;user=phone>;tag=as1f2e",
            "From: <sip:alice@192.0.2.10;tag=wrong>;tag=right",
        );
        assert_eq!(request(&text).common.from_tag.as_deref(), Some("right"));
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        let cases: Vec<(String, &str)> = vec![
            (INVITE.replace("Call-ID: 3c2a9f1e77b1@192.0.2.10\r\n", ""), "Call-ID"),
            (INVITE.replace("Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKabc123\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1\r\n", ""), "Via"),
            (INVITE.replace("CSeq: 102 INVITE", "CSeq: 4294967295 INVITE"), "CSeq"),
            (INVITE.replace("CSeq: 102 INVITE", "CSeq: -1 INVITE"), "CSeq"),
            (INVITE.replace("CSeq: 102 INVITE", "CSeq: 102 BYE"), "CSeq"),
            (INVITE.replace("CSeq: 102 INVITE", "CSeq: 102"), "CSeq"),
            (INVITE.replace("Content-Length: 13", "Content-Length: 900"), "Content-Length says 900"),
            (INVITE.replace("Content-Length: 13", "Content-Length: lots"), "Content-Length"),
        ];
        for (text, want) in cases {
            let e = parse(text.as_bytes()).expect_err(&text).to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\r\n\r\n",
            b"INVITE\r\n\r\n",
            b"SIP/2.0 abc OK\r\n\r\n",
            &[0xff, 0xfe, 0x00, 0x80][..],
            b"INVITE sip:a SIP/2.0\r\nVia: x\r\n",
        ] {
            assert!(parse(bytes).is_err(), "{bytes:?}");
        }
        assert!(matches!(
            parse(&vec![b'a'; MAX_MESSAGE + 1]),
            Err(MessageError::TooLarge(_))
        ));
    }

    #[test]
    fn a_response_is_read() {
        let text = "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKout1\r\n\
From: <sip:hark@127.0.0.1>;tag=h1\r\n\
To: <sip:bob@192.0.2.20>;tag=b7\r\n\
Call-ID: out-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        match parse(text.as_bytes()) {
            Ok(Message::Response(r)) => {
                assert_eq!(r.status, 180);
                assert_eq!(r.common.to_tag.as_deref(), Some("b7"));
                assert_eq!(r.common.branch, "z9hG4bKout1");
            }
            other => panic!("{other:?}"),
        }
    }
}
