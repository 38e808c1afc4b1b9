//! systemd readiness notification (`Type=notify`), without libsystemd.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named
//! in `NOTIFY_SOCKET` (a path, or an abstract name starting with `@`). When
//! the variable is unset (not under systemd) this does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `"READY=1"`) to systemd if it is listening.
/// Failures are returned for logging; they never stop the daemon.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    notify_to(&path, state)?;
    Ok(true)
}

/// Sends `state` to the notification socket at `path`.
fn notify_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
