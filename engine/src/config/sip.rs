//! `[sip]`: hark as a SIP endpoint. An SBC or Asterisk's `Dial(PJSIP/...)`
//! sends INVITEs to `listen`; each call's RTP gets a port of `rtp_ports`.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use sip_bridge::sdp::Codec;

use super::{ConfigError, Listener, invalid, listener_index, port_range};

/// The validated `[sip]` section.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// The UDP address SIP is read on.
    pub listen: SocketAddr,
    /// The address written in Contact, Via and SDP: `advertise`, else the
    /// listen address.
    pub advertise: IpAddr,
    /// Who may send SIP and RTP.
    pub allow: AllowList,
    /// Codecs in preference order.
    pub codecs: Vec<Codec>,
    /// Where RTP sockets bind.
    pub rtp_address: IpAddr,
    /// The RTP port range, inclusive.
    pub rtp_ports: (u16, u16),
    /// Index into `Config::listeners`: whose agent answers when the
    /// Request-URI's user names no agent.
    pub listener: usize,
}

/// Source addresses allowed, as networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<(IpAddr, u8)>);

impl AllowList {
    /// True when `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|&(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// Parses `ADDR` or `ADDR/BITS`.
    fn parse(entries: &[String]) -> Result<AllowList, String> {
        entries
            .iter()
            .map(|e| {
                let (addr, bits) = e.split_once('/').unwrap_or((e, ""));
                let ip: IpAddr = addr
                    .trim()
                    .parse()
                    .map_err(|_| format!("{e:?} is not an address or ADDRESS/BITS"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits = if bits.is_empty() {
                    max
                } else {
                    bits.parse::<u8>()
                        .ok()
                        .filter(|b| *b <= max)
                        .ok_or_else(|| format!("{e:?}: the prefix length must be 0..={max}"))?
                };
                Ok((ip, bits))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(AllowList)
    }
}

impl std::fmt::Display for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(ip, b)| format!("{ip}/{b}")).collect();
        f.write_str(&parts.join(", "))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSip {
    /// Default 127.0.0.1:5060.
    listen: Option<String>,
    /// Default: the listen address (required when that is 0.0.0.0 or ::).
    advertise: Option<String>,
    /// Default ["127.0.0.1", "::1"]: nobody else until configured.
    allow: Option<Vec<String>>,
    /// Default ["opus", "pcmu", "pcma"].
    codecs: Option<Vec<String>>,
    /// Default: the listen address.
    rtp_address: Option<String>,
    /// Default [30000, 30999].
    rtp_ports: Option<[u16; 2]>,
    /// Default: the first listener.
    listener: Option<String>,
}

impl RawSip {
    pub(super) fn validate(self, listeners: &[Listener]) -> Result<SipConfig, ConfigError> {
        let text = self.listen.unwrap_or_else(|| "127.0.0.1:5060".into());
        let listen: SocketAddr = text
            .parse()
            .map_err(|_| invalid("sip.listen", format!("{text:?} is not ADDRESS:PORT")))?;
        let advertise = match self.advertise {
            Some(a) => a
                .parse()
                .map_err(|_| invalid("sip.advertise", format!("{a:?} is not an IP address")))?,
            None if listen.ip().is_unspecified() => {
                return Err(invalid(
                    "sip.advertise",
                    format!("sip.listen is {listen}: say which address peers reach hark at"),
                ));
            }
            None => listen.ip(),
        };
        let allow = AllowList::parse(
            &self
                .allow
                .unwrap_or_else(|| vec!["127.0.0.1".into(), "::1".into()]),
        )
        .map_err(|e| invalid("sip.allow", e))?;
        let names = self
            .codecs
            .unwrap_or_else(|| vec!["opus".into(), "pcmu".into(), "pcma".into()]);
        let mut codecs = Vec::new();
        for n in &names {
            let c = Codec::from_config(n).ok_or_else(|| {
                invalid(
                    "sip.codecs",
                    format!("{n:?}: hark speaks \"opus\", \"pcmu\" and \"pcma\""),
                )
            })?;
            if !codecs.contains(&c) {
                codecs.push(c);
            }
        }
        if codecs.is_empty() {
            return Err(invalid("sip.codecs", "name at least one codec"));
        }
        let rtp_address = match self.rtp_address {
            Some(a) => a
                .parse()
                .map_err(|_| invalid("sip.rtp_address", format!("{a:?} is not an IP address")))?,
            None => listen.ip(),
        };
        let rtp_ports = port_range(self.rtp_ports, (30000, 30999), "sip.rtp_ports")?;
        let listener = listener_index(
            listeners,
            self.listener.as_deref(),
            "sip.listener",
            "SIP calls need a [[listener]]: its agent answers them",
        )?;
        Ok(SipConfig {
            listen,
            advertise,
            allow,
            codecs,
            rtp_address,
            rtp_ports,
            listener,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const LISTENERS: &str = "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:0\"\nagent = \"e\"\n\
        [agent.e]\nkind = \"echo\"\n";

    fn parse(sip: &str) -> Result<SipConfig, String> {
        Config::parse(&format!("{LISTENERS}[sip]\n{sip}"))
            .map(|c| c.sip.expect("[sip] is set"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_loopback_only() {
        let c = parse("").expect("valid");
        assert_eq!(c.listen, "127.0.0.1:5060".parse().expect("addr"));
        assert_eq!(c.advertise, c.listen.ip());
        assert_eq!(c.codecs, [Codec::Opus, Codec::Pcmu, Codec::Pcma]);
        assert_eq!(
            (c.rtp_address, c.rtp_ports),
            (c.listen.ip(), (30000, 30999))
        );
        assert!(c.allow.contains("127.0.0.1".parse().expect("ip")));
        assert!(!c.allow.contains("192.0.2.1".parse().expect("ip")));
        let c = parse(
            "listen = \"0.0.0.0:5070\"\nadvertise = \"192.0.2.5\"\ncodecs = [\"PCMA\", \"ulaw\"]\n",
        )
        .expect("valid");
        assert_eq!(c.codecs, [Codec::Pcma, Codec::Pcmu]);
        assert_eq!(c.advertise, "192.0.2.5".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("listen = \"nope\"\n", "sip.listen"),
            ("listen = \"0.0.0.0:5060\"\n", "sip.advertise"),
            ("codecs = [\"g722\"]\n", "sip.codecs"),
            ("codecs = []\n", "sip.codecs"),
            ("allow = [\"10.0.0.0/40\"]\n", "sip.allow"),
            ("rtp_ports = [2000, 1000]\n", "sip.rtp_ports"),
            ("rtp_address = \"x\"\n", "sip.rtp_address"),
            ("listener = \"nope\"\n", "sip.listener"),
            ("colour = \"red\"\n", "colour"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    fn list(v: &[&str]) -> AllowList {
        AllowList::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn the_allow_list_matches_networks() {
        let a = list(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]);
        assert!(a.contains("10.200.1.1".parse().expect("ip")));
        assert!(!a.contains("11.0.0.1".parse().expect("ip")));
        assert!(a.contains("192.0.2.7".parse().expect("ip")));
        assert!(!a.contains("192.0.2.8".parse().expect("ip")));
        assert!(a.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(
            a.contains("::ffff:10.1.2.3".parse().expect("ip")),
            "v4-mapped"
        );
        assert!(list(&["0.0.0.0/0"]).contains("203.0.113.1".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(AllowList::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
