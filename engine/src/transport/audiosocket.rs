//! AudioSocket listeners: one accept task per listening socket. Each
//! accepted connection is handed to admission (`start_call`), which waits
//! for its UUID, gives it a call slot or refuses it, and runs its driver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::admission::{Phase, Shared, start_call};
use crate::config::Listener;

/// One listening socket and the agent its calls get by default.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) listener: Listener,
    pub(crate) tcp: TcpListener,
    /// Index into `Shared::agents`.
    pub(crate) agent: usize,
}

/// Each call's kernel send buffer (the kernel doubles it): about 2 s of
/// 8 kHz audio. A peer that stops reading fills it (after its own receive
/// window) within seconds, so the driver's write timeout ends that call;
/// with the default, autotuned to megabytes, it took 109 s. Accepted
/// sockets inherit it from the listener.
const SEND_BUFFER: u32 = 32 * 1024;

/// A TCP listener on `address` whose calls get [`SEND_BUFFER`].
pub(crate) fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(address)?;
    socket.listen(1024)
}

pub(crate) async fn accept_loop(
    bound: Bound,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    let Bound {
        listener,
        tcp,
        agent,
    } = bound;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() != Phase::Running {
                    return;
                }
            }
            accepted = tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        warn!(listener = %listener.name, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Frames are small and time-critical.
                let _ = stream.set_nodelay(true);
                start_call(stream, peer, &listener.name, &shared, agent, phase.clone());
            }
        }
    }
}
