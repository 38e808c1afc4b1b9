//! RTP ports for one call, from a configured range (`[ari] rtp_ports`,
//! `[sip] rtp_ports`), so firewalls and SBCs can be told which to open.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

/// Binds a free port of `lo..=hi` on `ip`, starting from a random one so
/// consecutive calls do not collide.
pub(crate) async fn bind(ip: IpAddr, (lo, hi): (u16, u16)) -> std::io::Result<UdpSocket> {
    let span = u32::from(hi.saturating_sub(lo)) + 1;
    let start = uuid::Uuid::new_v4().as_u128() as u32 % span;
    for i in 0..span {
        let port = lo + ((start + i) % span) as u16;
        if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
            return Ok(socket);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every RTP port in {lo}..={hi} is in use"),
    ))
}
