//! The events half: the `/ari/events` websocket, kept connected.
//!
//! # Concurrency
//! [`Events::connect`] spawns one task that owns the websocket. It parses
//! each text message into an [`Event`] and hands it on through a bounded
//! channel; when the application reads slowly, the task waits and stops
//! reading the socket, so memory stays bounded. When the connection drops
//! (closed, an error, or silent past the idle timeout despite pings) it
//! says so with [`Delivery::Disconnected`], retries at once, then with
//! exponential backoff, and says [`Delivery::Connected`] when it is back.
//! Events sent by Asterisk while no socket was open are lost: an
//! application should check the state of what it tracks after each
//! reconnect. The task ends when [`Events`] is dropped.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tracing::{debug, info, warn};

use crate::AriConfig;
use crate::event::{Event, EventError};

/// How the events connection retries and notices a dead peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// The wait after the first failed retry; it doubles after each failure.
    pub initial: Duration,
    /// The longest wait between attempts.
    pub max: Duration,
    /// A connection attempt that takes longer fails.
    pub connect_timeout: Duration,
    /// A ping goes out after this much silence...
    pub ping_every: Duration,
    /// ...and a connection silent this long (no event, no pong) is dropped.
    pub idle_timeout: Duration,
}

impl Default for Reconnect {
    /// 100 ms doubling to 5 s: quick after a blip, gentle on an Asterisk
    /// that is restarting. Pings every 10 s, dead after 30 s of silence:
    /// a half-open TCP connection (a host gone without a FIN) is found
    /// well before a caller gives up on a silent line.
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ping_every: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What the events connection hands on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Delivery {
    /// The websocket is open (first time, or again).
    Connected {
        /// How long no websocket was open before this one (`None` the
        /// first time).
        down_for: Option<Duration>,
        /// Attempts it took.
        attempts: u32,
    },
    /// The websocket closed or failed; a reconnect follows.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// An event.
    Event(Box<Event>),
    /// A message that was not a readable event; it is skipped.
    Malformed(EventError),
}

/// The receiving end of the events connection. Dropping it stops the task.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Delivery>,
    task: JoinHandle<()>,
}

impl Events {
    /// Starts connecting to `config`'s events websocket. At most `capacity`
    /// deliveries wait unread. Must be called inside a tokio runtime.
    pub fn connect(config: AriConfig, capacity: usize, reconnect: Reconnect) -> Events {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(run(config, tx, reconnect));
        Events { rx, task }
    }

    /// The next delivery; `None` only if the task has stopped.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one open connection ended.
enum Closed {
    /// The application dropped [`Events`].
    Receiver,
    /// The connection ended; reconnect.
    Dropped(String),
}

async fn run(config: AriConfig, tx: mpsc::Sender<Delivery>, reconnect: Reconnect) {
    let url = config.events_url();
    let mut down_since: Option<Instant> = None;
    let mut attempts: u32 = 0;
    let mut delay = Duration::ZERO;
    let mut first = true;
    loop {
        attempts = attempts.saturating_add(1);
        let request = match url.as_str().into_client_request() {
            Ok(mut r) => {
                if let Ok(v) = HeaderValue::from_str(&config.authorization()) {
                    r.headers_mut().insert("Authorization", v);
                }
                r
            }
            Err(e) => {
                // The URL was checked when the config was made; a failure
                // here cannot be retried away.
                warn!("ARI events url {url} is not usable: {e}");
                return;
            }
        };
        let connected = tokio::time::timeout(
            reconnect.connect_timeout,
            tokio_tungstenite::connect_async(request),
        )
        .await;
        match connected {
            Ok(Ok((ws, _))) => {
                let down_for = if first {
                    None
                } else {
                    down_since.map(|t| t.elapsed())
                };
                info!(
                    attempts,
                    down_ms = down_for.map(|d| d.as_millis() as u64),
                    "ARI events connected"
                );
                first = false;
                if tx
                    .send(Delivery::Connected { down_for, attempts })
                    .await
                    .is_err()
                {
                    return;
                }
                attempts = 0;
                match pump(ws, &tx, &reconnect).await {
                    Closed::Receiver => return,
                    Closed::Dropped(reason) => {
                        warn!("ARI events connection lost: {reason}");
                        down_since = Some(Instant::now());
                        if tx.send(Delivery::Disconnected { reason }).await.is_err() {
                            return;
                        }
                        // Retry at once: most drops are one connection, not
                        // a dead Asterisk.
                        delay = Duration::ZERO;
                        continue;
                    }
                }
            }
            Ok(Err(e)) => debug!(attempts, "ARI events connect failed: {e}"),
            Err(_) => debug!(attempts, "ARI events connect timed out"),
        }
        if down_since.is_none() {
            down_since = Some(Instant::now());
        }
        delay = if delay.is_zero() {
            reconnect.initial
        } else {
            (delay * 2).min(reconnect.max)
        };
        if attempts == 1 || attempts.is_power_of_two() {
            warn!(
                attempts,
                retry_ms = delay.as_millis() as u64,
                "ARI events: cannot connect; retrying"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
    }
}

async fn pump<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    tx: &mpsc::Sender<Delivery>,
    reconnect: &Reconnect,
) -> Closed
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut last_heard = Instant::now();
    let mut ping =
        tokio::time::interval_at(Instant::now() + reconnect.ping_every, reconnect.ping_every);
    loop {
        tokio::select! {
            msg = ws.next() => {
                last_heard = Instant::now();
                let delivery = match msg {
                    None => return Closed::Dropped("closed".into()),
                    Some(Err(e)) => return Closed::Dropped(e.to_string()),
                    Some(Ok(Message::Text(text))) => match Event::parse(&text) {
                        Ok(e) => Delivery::Event(Box::new(e)),
                        Err(e) => {
                            warn!("ARI event skipped: {e}");
                            Delivery::Malformed(e)
                        }
                    },
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!("closed by Asterisk: {} {}", f.code, f.reason)).unwrap_or_else(|| "closed by Asterisk".into());
                        return Closed::Dropped(why);
                    }
                    // Pongs are answered by tungstenite; binary is not ARI.
                    Some(Ok(_)) => continue,
                };
                if tx.send(delivery).await.is_err() {
                    return Closed::Receiver;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= reconnect.idle_timeout {
                    return Closed::Dropped(format!("silent for {} s", reconnect.idle_timeout.as_secs()));
                }
                if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                    return Closed::Dropped(e.to_string());
                }
            }
            () = tx.closed() => return Closed::Receiver,
        }
    }
}
