//! A scripted fake Asterisk for tests: the ARI REST resources this crate
//! uses and the events websocket, on one loopback port, with the state and
//! events a real Asterisk 22 would give.
//!
//! A test starts calls ([`FakeAri::start_call`]), hangs them up from the
//! caller's side, drops or refuses the websocket, injects raw text, and
//! makes chosen requests fail. External media channels are handed to a
//! hook ([`FakeAri::on_external_media`]) that plays Asterisk's media side
//! (for AudioSocket: connect, send the UUID, stream audio); when the hook
//! returns, the fake hangs that channel up as Asterisk does when the media
//! connection closes, and when the application hangs the channel up, the
//! hook's `hangup` watch fires.
//!
//! As in Asterisk 22, an external media channel enters the application
//! (its StasisStart) only after the answer to `POST /channels/externalMedia`
//! has gone out, a few milliseconds later by default
//! ([`FakeAri::delay_media_stasis_start`]), and until then `addChannel`
//! refuses it with 422.
//!
//! It checks HTTP Basic credentials (`user` / `password` given at start)
//! and answers errors with Asterisk's status codes and `{"message"}` bodies.
//!
//! # Concurrency
//! One accept task splits connections: websocket upgrades of `/ari/events`
//! go to one task each; everything else to an axum server. State is one
//! mutex, held only for map updates, never across an await.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as WsRequest};

use crate::model::{Bridge, CallerId, Channel, DialplanLocation, Playback};

/// How long after answering `POST /channels/externalMedia` the channel
/// enters the application, unless a test says otherwise: Asterisk's dial
/// thread runs `Stasis()` on it after the answer, a few milliseconds later
/// on an idle machine.
const MEDIA_START_DELAY: Duration = Duration::from_millis(5);

/// What the hook gets for an external media channel.
#[derive(Debug)]
pub struct MediaLeg {
    /// The channel's id.
    pub channel_id: String,
    /// Where Asterisk would send the media.
    pub external_host: String,
    /// `audiosocket` or `rtp`.
    pub encapsulation: String,
    /// e.g. `slin`, `ulaw`.
    pub format: String,
    /// The `data` parameter (the AudioSocket UUID).
    pub data: Option<String>,
    /// Turns `true` when the application hangs the channel up.
    pub hangup: watch::Receiver<bool>,
}

/// A call to start with [`FakeAri::start_call`].
#[derive(Debug, Clone, Default)]
pub struct CallSpec {
    /// The caller's number.
    pub caller: String,
    /// The number dialled (the dialplan extension).
    pub exten: String,
    /// Channel variables set before `Stasis()`.
    pub vars: BTreeMap<String, String>,
    /// `Stasis(app,args...)`.
    pub args: Vec<String>,
}

/// One REST request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `POST`, `DELETE` ...
    pub method: String,
    /// The path, e.g. `/ari/channels/1.1/answer`.
    pub path: String,
    /// The query pairs, decoded.
    pub query: Vec<(String, String)>,
}

impl Seen {
    /// The value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A channel as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeChannel {
    /// The resource as served.
    pub channel: Channel,
    /// Its variables.
    pub vars: BTreeMap<String, String>,
    /// In the Stasis application (an external media channel only once its
    /// StasisStart went out).
    pub in_stasis: bool,
    /// Where `continue` sent it, if it was continued.
    pub continued_to: Option<DialplanLocation>,
    /// Where `redirect` sent it.
    pub redirected_to: Option<String>,
}

type Hook = Arc<dyn Fn(MediaLeg) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Failure {
    method: String,
    path_contains: String,
    status: u16,
    remaining: u32,
}

#[derive(Default)]
struct Inner {
    channels: BTreeMap<String, FakeChannel>,
    bridges: BTreeMap<String, Bridge>,
    seen: Vec<Seen>,
    failures: Vec<Failure>,
    sockets: Vec<mpsc::Sender<WsCommand>>,
    ws_connects: Vec<Instant>,
    refuse_ws: bool,
    hangups: BTreeMap<String, watch::Sender<bool>>,
    next_id: u64,
    hook: Option<Hook>,
    /// When an external media channel enters the application after its
    /// POST was answered; `None`: never.
    media_start: Option<Duration>,
}

enum WsCommand {
    Text(String),
    Drop,
}

struct Shared {
    app: String,
    authorization: String,
    inner: Mutex<Inner>,
}

/// The fake Asterisk. Stops when dropped.
pub struct FakeAri {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeAri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAri").field("addr", &self.addr).finish()
    }
}

impl Drop for FakeAri {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeAri {
    /// Starts a fake Asterisk on a free loopback port for application
    /// `app`, accepting `user` / `password`.
    pub async fn start(app: &str, user: &str, password: &str) -> std::io::Result<FakeAri> {
        use base64::Engine;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            app: app.to_string(),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            inner: Mutex::new(Inner {
                media_start: Some(MEDIA_START_DELAY),
                ..Inner::default()
            }),
        });
        let (http_tx, http_rx) = mpsc::channel(64);
        let router = axum::Router::new()
            .fallback(rest)
            .with_state(Arc::clone(&shared));
        let http = tokio::spawn(async move {
            let _ = axum::serve(Split { rx: http_rx, addr }, router).await;
        });
        let accept = tokio::spawn(accept(listener, Arc::clone(&shared), http_tx));
        Ok(FakeAri {
            addr,
            shared,
            tasks: vec![http, accept],
        })
    }

    /// The ARI base URL, `http://127.0.0.1:PORT/ari`.
    pub fn url(&self) -> String {
        format!("http://{}/ari", self.addr)
    }

    /// Sets what plays Asterisk's media side of external media channels.
    pub fn on_external_media<F, Fut>(&self, hook: F)
    where
        F: Fn(MediaLeg) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.shared.lock().hook = Some(Arc::new(move |leg| Box::pin(hook(leg))));
    }

    /// When external media channels enter the application (StasisStart):
    /// `Some(d)`, `d` after the answer to their `POST
    /// /channels/externalMedia` went out (5 ms unless set); `None`, never,
    /// so `addChannel` refuses them with 422 for good.
    pub fn delay_media_stasis_start(&self, delay: Option<Duration>) {
        self.shared.lock().media_start = delay;
    }

    /// A new caller channel enters the application (StasisStart). Returns
    /// its id and when the event was sent.
    pub fn start_call(&self, spec: &CallSpec) -> (String, Instant) {
        let mut inner = self.shared.lock();
        inner.next_id += 1;
        let id = format!("1763800000.{}", inner.next_id);
        let channel = Channel {
            id: id.clone(),
            name: format!("PJSIP/trunk-{:08x}", inner.next_id),
            state: "Ring".into(),
            protocol_id: Some(format!("call-{}@fake", inner.next_id)),
            caller: CallerId {
                name: String::new(),
                number: spec.caller.clone(),
            },
            connected: CallerId::default(),
            accountcode: String::new(),
            dialplan: Some(DialplanLocation {
                context: "from-trunk".into(),
                exten: spec.exten.clone(),
                priority: 2,
                app_name: Some("Stasis".into()),
                app_data: Some(self.shared.app.clone()),
            }),
            creationtime: timestamp(),
            language: "en".into(),
            channelvars: None,
            tenantid: None,
        };
        inner.channels.insert(
            id.clone(),
            FakeChannel {
                channel: channel.clone(),
                vars: spec.vars.clone(),
                in_stasis: true,
                continued_to: None,
                redirected_to: None,
            },
        );
        let app = self.shared.app.clone();
        let event = json!({
            "type": "StasisStart", "application": app, "timestamp": timestamp(),
            "asterisk_id": "fa:ke:00:00:00:01", "args": spec.args, "channel": channel,
        });
        broadcast(&inner, &event);
        (id, Instant::now())
    }

    /// The caller hangs up: the channel leaves its bridge and the
    /// application and is destroyed, with the events Asterisk sends.
    pub fn hangup_from_caller(&self, id: &str) {
        let mut inner = self.shared.lock();
        destroy_channel(&mut inner, &self.shared.app, id, 16, true);
    }

    /// Sends raw text on every open websocket.
    pub fn send_raw(&self, text: &str) {
        let inner = self.shared.lock();
        for s in &inner.sockets {
            let _ = s.try_send(WsCommand::Text(text.to_string()));
        }
    }

    /// Drops every open websocket without a close frame.
    pub fn drop_websockets(&self) {
        let mut inner = self.shared.lock();
        for s in inner.sockets.drain(..) {
            let _ = s.try_send(WsCommand::Drop);
        }
    }

    /// While `true`, websocket upgrades are refused with 503.
    pub fn refuse_websockets(&self, refuse: bool) {
        self.shared.lock().refuse_ws = refuse;
    }

    /// The next `times` requests with this method whose path contains
    /// `path_contains` fail with `status`.
    pub fn fail(&self, method: &str, path_contains: &str, status: u16, times: u32) {
        self.shared.lock().failures.push(Failure {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            status,
            remaining: times,
        });
    }

    /// Every REST request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// A channel, if it exists.
    pub fn channel(&self, id: &str) -> Option<FakeChannel> {
        self.shared.lock().channels.get(id).cloned()
    }

    /// The ids of channels that exist.
    pub fn channel_ids(&self) -> Vec<String> {
        self.shared.lock().channels.keys().cloned().collect()
    }

    /// The bridges that exist.
    pub fn bridges(&self) -> Vec<Bridge> {
        self.shared.lock().bridges.values().cloned().collect()
    }

    /// Websockets open now.
    pub fn open_websockets(&self) -> usize {
        self.shared
            .lock()
            .sockets
            .iter()
            .filter(|s| !s.is_closed())
            .count()
    }

    /// When each websocket was accepted.
    pub fn websocket_connects(&self) -> Vec<Instant> {
        self.shared.lock().ws_connects.clone()
    }

    /// Waits until `check` holds, or `limit` passes; returns whether it held.
    pub async fn wait_until(&self, limit: Duration, check: impl Fn(&FakeAri) -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a few map updates: a panic inside one
        // (a bug in a test) cannot leave the maps half-changed in a way
        // later tests would trip on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn timestamp() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("1970-01-01T00:00:00.000+0000 (+{ms} ms)")
}

fn event(app: &str, kind: &str, fields: Value) -> Value {
    let mut v = json!({
        "type": kind, "application": app, "timestamp": timestamp(),
        "asterisk_id": "fa:ke:00:00:00:01",
    });
    if let (Some(obj), Value::Object(f)) = (v.as_object_mut(), fields) {
        obj.extend(f);
    }
    v
}

fn broadcast(inner: &Inner, event: &Value) {
    let text = event.to_string();
    for s in &inner.sockets {
        let _ = s.try_send(WsCommand::Text(text.clone()));
    }
}

/// Takes a channel out of its bridges and the application and destroys it.
fn destroy_channel(inner: &mut Inner, app: &str, id: &str, cause: i64, hangup_request: bool) {
    let Some(ch) = inner.channels.remove(id) else {
        return;
    };
    if let Some(h) = inner.hangups.remove(id) {
        let _ = h.send(true);
    }
    let channel = serde_json::to_value(&ch.channel).unwrap_or(Value::Null);
    let mut events = Vec::new();
    if hangup_request {
        events.push(event(
            app,
            "ChannelHangupRequest",
            json!({"cause": cause, "channel": channel}),
        ));
    }
    for b in inner.bridges.values_mut() {
        if let Some(pos) = b.channels.iter().position(|c| c == id) {
            b.channels.remove(pos);
            events.push(event(
                app,
                "ChannelLeftBridge",
                json!({"bridge": b, "channel": channel}),
            ));
        }
    }
    if ch.in_stasis {
        events.push(event(app, "StasisEnd", json!({"channel": channel})));
    }
    events.push(event(
        app,
        "ChannelDestroyed",
        json!({"cause": cause, "cause_txt": "Normal Clearing", "channel": channel}),
    ));
    for e in &events {
        broadcast(inner, e);
    }
}

/// Takes a channel out of its bridges and the application, alive.
fn leave_stasis(inner: &mut Inner, app: &str, id: &str) {
    let Some(ch) = inner.channels.get_mut(id) else {
        return;
    };
    ch.in_stasis = false;
    let channel = serde_json::to_value(&ch.channel).unwrap_or(Value::Null);
    let mut events = Vec::new();
    for b in inner.bridges.values_mut() {
        if let Some(pos) = b.channels.iter().position(|c| c == id) {
            b.channels.remove(pos);
            events.push(event(
                app,
                "ChannelLeftBridge",
                json!({"bridge": b, "channel": channel}),
            ));
        }
    }
    events.push(event(app, "StasisEnd", json!({"channel": channel})));
    for e in &events {
        broadcast(inner, e);
    }
}

/// The channel enters the application: from now on bridges take it, and
/// StasisStart goes out. Asterisk does it in this order too
/// (res/res_stasis.c, `stasis_app_exec`: the control `addChannel` looks up
/// is linked, then the start message is sent). A channel hung up
/// meanwhile never enters.
fn enter_stasis(inner: &mut Inner, app: &str, id: &str, args: &[String]) {
    let Some(ch) = inner.channels.get_mut(id) else {
        return;
    };
    ch.in_stasis = true;
    let channel = ch.channel.clone();
    broadcast(
        inner,
        &event(
            app,
            "StasisStart",
            json!({"args": args, "channel": channel}),
        ),
    );
}

/// Fires its sender when dropped.
#[derive(Debug)]
struct OnDrop(Option<oneshot::Sender<()>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Connections handed to axum.
struct Split {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Split {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task is gone: never hand out another connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    http: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        let http = http.clone();
        tokio::spawn(async move {
            let mut head = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(2), stream.peek(&mut head))
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or(0);
            if head[..n].starts_with(b"GET /ari/events") {
                websocket(stream, shared).await;
            } else {
                let _ = http.send((stream, peer)).await;
            }
        });
    }
}

// tungstenite's handshake callback returns its own (large) error response.
#[allow(clippy::result_large_err)]
async fn websocket(stream: TcpStream, shared: Arc<Shared>) {
    // The socket joins the broadcast list inside the handshake, before the
    // 101 goes out, as Asterisk subscribes the application before it
    // answers: an event sent once the client is connected reaches it.
    let (tx, mut rx) = mpsc::channel(1024);
    let check = |req: &WsRequest, resp| {
        let mut inner = shared.lock();
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let app_ok = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == format!("app={}", shared.app)));
        let status = if inner.refuse_ws {
            Some(503)
        } else if auth != Some(shared.authorization.as_str()) {
            Some(401)
        } else if !app_ok {
            Some(400)
        } else {
            None
        };
        match status {
            None => {
                inner.sockets.push(tx);
                inner.ws_connects.push(Instant::now());
                Ok(resp)
            }
            Some(code) => {
                let mut r = ErrorResponse::new(Some("refused".into()));
                *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                Err(r)
            }
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(WsCommand::Text(t)) => {
                    if ws.send(Message::Text(t.into())).await.is_err() {
                        return;
                    }
                }
                // Dropping the stream closes the TCP connection without a
                // close frame, as a crash or a network cut would.
                Some(WsCommand::Drop) | None => return,
            },
            msg = ws.next() => match msg {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn ok_json(v: &impl serde::Serialize) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::to_string(v).unwrap_or_default(),
    )
        .into_response()
}

/// Like [`ok_json`], and `sent` fires once the connection has taken the
/// body, that is after the handler returned and the answer is on its way.
fn ok_json_then(v: &impl serde::Serialize, sent: oneshot::Sender<()>) -> Response {
    let json = Bytes::from(serde_json::to_string(v).unwrap_or_default());
    let guard = OnDrop(Some(sent));
    let body = futures_util::stream::once(async move {
        // Dropped, and so fired, as the body's only chunk is handed over.
        let _guard = guard;
        Ok::<Bytes, std::convert::Infallible>(json)
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

async fn rest(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Vec<(String, String)> = uri.query().map(url_pairs).unwrap_or_default();
    let path = uri.path().to_string();
    let seen = Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
    };
    let param = |k: &str| seen.param(k).map(str::to_string);
    let mut inner = shared.lock();
    inner.seen.push(seen.clone());
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(shared.authorization.as_str())
    {
        return error(401, "Authentication required");
    }
    if let Some(f) = inner
        .failures
        .iter_mut()
        .find(|f| f.remaining > 0 && f.method == method.as_str() && path.contains(&f.path_contains))
    {
        f.remaining -= 1;
        let status = f.status;
        return error(status, "Injected failure");
    }
    let segments: Vec<String> = path
        .trim_start_matches("/ari/")
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let app = shared.app.clone();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["channels", "externalMedia"]) => {
            let (Some(em_app), Some(host), Some(format)) =
                (param("app"), param("external_host"), param("format"))
            else {
                return error(400, "app, external_host and format are required");
            };
            if em_app != app {
                return error(400, "unknown application");
            }
            let encapsulation = param("encapsulation").unwrap_or_else(|| "rtp".into());
            inner.next_id += 1;
            let id = param("channelId").unwrap_or_else(|| format!("1763900000.{}", inner.next_id));
            if inner.channels.contains_key(&id) {
                return error(409, "Channel with given unique ID already exists");
            }
            let tech = if encapsulation == "audiosocket" {
                "AudioSocket"
            } else {
                "UnicastRTP"
            };
            let mut vars = BTreeMap::new();
            if let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(&body)
                && let Some(Value::Object(v)) = b.get("variables")
            {
                for (k, val) in v {
                    vars.insert(k.clone(), val.as_str().unwrap_or_default().to_string());
                }
            }
            if tech == "UnicastRTP" {
                vars.insert("UNICASTRTP_LOCAL_ADDRESS".into(), "127.0.0.1".into());
                vars.insert("UNICASTRTP_LOCAL_PORT".into(), "0".into());
            }
            let channel = Channel {
                id: id.clone(),
                name: format!("{tech}/{host}-{:08x}", inner.next_id),
                state: "Up".into(),
                protocol_id: None,
                caller: CallerId::default(),
                connected: CallerId::default(),
                accountcode: String::new(),
                dialplan: Some(DialplanLocation {
                    context: "default".into(),
                    exten: "s".into(),
                    priority: 1,
                    app_name: None,
                    app_data: None,
                }),
                creationtime: timestamp(),
                language: "en".into(),
                channelvars: None,
                tenantid: None,
            };
            // As Asterisk 22 does it (res/ari/resource_channels.c,
            // `ast_ari_channels_external_media` and
            // `ari_channels_handle_originate_with_id`): the channel is made
            // (chan_audiosocket connects to the media host as it is
            // requested, so the hook starts now), the answer goes out, and
            // only then does a dial thread (`ari_originate_dial`) run
            // `Stasis(app,data)` on it. Until that, `addChannel` finds no
            // control for it and answers 422 (res/ari/resource_bridges.c,
            // `find_channel_control`); StasisStart then reaches the
            // websocket through the application (res/stasis/app.c,
            // `app_send`).
            inner.channels.insert(
                id.clone(),
                FakeChannel {
                    channel: channel.clone(),
                    vars,
                    in_stasis: false,
                    continued_to: None,
                    redirected_to: None,
                },
            );
            let (hangup_tx, hangup) = watch::channel(false);
            inner.hangups.insert(id.clone(), hangup_tx);
            let (sent_tx, sent_rx) = oneshot::channel();
            if let Some(delay) = inner.media_start {
                let shared = Arc::clone(&shared);
                let id = id.clone();
                let args: Vec<String> = param("data").into_iter().collect();
                tokio::spawn(async move {
                    // Err: the client went away before the answer; Asterisk
                    // goes on all the same.
                    let _ = sent_rx.await;
                    tokio::time::sleep(delay).await;
                    let mut inner = shared.lock();
                    enter_stasis(&mut inner, &shared.app, &id, &args);
                });
            }
            if let Some(hook) = inner.hook.clone() {
                let leg = MediaLeg {
                    channel_id: id.clone(),
                    external_host: host,
                    encapsulation,
                    format,
                    data: param("data"),
                    hangup,
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    hook(leg).await;
                    // The media connection closed: Asterisk hangs up.
                    let mut inner = shared.lock();
                    destroy_channel(&mut inner, &shared.app, &id, 16, true);
                });
            }
            ok_json_then(&channel, sent_tx)
        }
        ("GET", ["channels", id]) => match inner.channels.get(*id) {
            Some(c) => ok_json(&c.channel),
            None => error(404, "Channel not found"),
        },
        ("DELETE", ["channels", id]) => {
            if !inner.channels.contains_key(*id) {
                return error(404, "Channel not found");
            }
            destroy_channel(&mut inner, &app, id, 16, false);
            no_content()
        }
        ("POST", ["channels", id, "answer"]) => {
            let Some(c) = inner.channels.get_mut(*id) else {
                return error(404, "Channel not found");
            };
            if !c.in_stasis {
                return error(409, "Channel not in Stasis application");
            }
            let changed = c.channel.state != "Up";
            c.channel.state = "Up".into();
            let channel = c.channel.clone();
            if changed {
                broadcast(
                    &inner,
                    &event(&app, "ChannelStateChange", json!({"channel": channel})),
                );
            }
            no_content()
        }
        ("POST", ["channels", id, "continue"]) => {
            let Some(c) = inner.channels.get_mut(*id) else {
                return error(404, "Channel not found");
            };
            if !c.in_stasis {
                return error(409, "Channel not in Stasis application");
            }
            c.continued_to = Some(DialplanLocation {
                context: param("context").unwrap_or_default(),
                exten: param("extension").unwrap_or_default(),
                priority: param("priority").and_then(|p| p.parse().ok()).unwrap_or(0),
                app_name: None,
                app_data: param("label"),
            });
            leave_stasis(&mut inner, &app, id);
            no_content()
        }
        ("POST", ["channels", id, "redirect"]) => {
            let Some(endpoint) = param("endpoint") else {
                return error(400, "endpoint is required");
            };
            let Some(c) = inner.channels.get_mut(*id) else {
                return error(404, "Channel not found");
            };
            c.redirected_to = Some(endpoint);
            no_content()
        }
        ("GET", ["channels", id, "variable"]) => {
            let Some(c) = inner.channels.get(*id) else {
                return error(404, "Channel not found");
            };
            let Some(name) = param("variable") else {
                return error(400, "variable is required");
            };
            match c.vars.get(&name) {
                Some(v) => ok_json(&json!({ "value": v })),
                None => error(404, "Provided variable was not found"),
            }
        }
        ("POST", ["channels", id, "variable"]) => {
            let Some(name) = param("variable") else {
                return error(400, "variable is required");
            };
            let Some(c) = inner.channels.get_mut(*id) else {
                return error(404, "Channel not found");
            };
            c.vars.insert(name, param("value").unwrap_or_default());
            no_content()
        }
        ("POST", ["bridges"]) => {
            inner.next_id += 1;
            let id = param("bridgeId").unwrap_or_else(|| format!("bridge-{}", inner.next_id));
            if inner.bridges.contains_key(&id) {
                return error(409, "Bridge with given unique ID already exists");
            }
            let bridge = Bridge {
                id: id.clone(),
                technology: "simple_bridge".into(),
                bridge_type: param("type").unwrap_or_else(|| "mixing".into()),
                bridge_class: "stasis".into(),
                creator: "Stasis".into(),
                name: param("name").unwrap_or_default(),
                channels: Vec::new(),
                creationtime: Some(timestamp()),
                video_mode: Some("none".into()),
            };
            inner.bridges.insert(id, bridge.clone());
            ok_json(&bridge)
        }
        ("GET", ["bridges", id]) => match inner.bridges.get(*id) {
            Some(b) => ok_json(b),
            None => error(404, "Bridge not found"),
        },
        ("DELETE", ["bridges", id]) => {
            let Some(mut b) = inner.bridges.remove(*id) else {
                return error(404, "Bridge not found");
            };
            let mut events = Vec::new();
            for c in std::mem::take(&mut b.channels) {
                if let Some(ch) = inner.channels.get(&c) {
                    events.push(event(
                        &app,
                        "ChannelLeftBridge",
                        json!({"bridge": b, "channel": ch.channel}),
                    ));
                }
            }
            events.push(event(&app, "BridgeDestroyed", json!({"bridge": b})));
            for e in &events {
                broadcast(&inner, e);
            }
            no_content()
        }
        ("POST", ["bridges", id, "addChannel"]) => {
            let Some(list) = param("channel") else {
                return error(400, "channel is required");
            };
            if !inner.bridges.contains_key(*id) {
                return error(404, "Bridge not found");
            }
            let wanted: Vec<String> = list.split(',').map(str::to_string).collect();
            for c in &wanted {
                match inner.channels.get(c) {
                    None => return error(400, "Channel not found"),
                    Some(ch) if !ch.in_stasis => {
                        return error(422, "Channel not in Stasis application");
                    }
                    Some(_) => {}
                }
            }
            let mut events = Vec::new();
            for c in wanted {
                let channel = inner.channels.get(&c).map(|ch| ch.channel.clone());
                if let Some(b) = inner.bridges.get_mut(*id)
                    && !b.channels.contains(&c)
                {
                    b.channels.push(c);
                    events.push(event(
                        &app,
                        "ChannelEnteredBridge",
                        json!({"bridge": b, "channel": channel}),
                    ));
                }
            }
            for e in &events {
                broadcast(&inner, e);
            }
            no_content()
        }
        ("POST", ["bridges", id, "removeChannel"]) => {
            let Some(c) = param("channel") else {
                return error(400, "channel is required");
            };
            let channel = inner.channels.get(&c).map(|ch| ch.channel.clone());
            let Some(b) = inner.bridges.get_mut(*id) else {
                return error(404, "Bridge not found");
            };
            let Some(pos) = b.channels.iter().position(|x| *x == c) else {
                return error(422, "Channel not in this bridge");
            };
            b.channels.remove(pos);
            let e = event(
                &app,
                "ChannelLeftBridge",
                json!({"bridge": b, "channel": channel}),
            );
            broadcast(&inner, &e);
            no_content()
        }
        ("POST", ["bridges", id, "play"]) => {
            if !inner.bridges.contains_key(*id) {
                return error(404, "Bridge not found");
            }
            let Some(media) = param("media") else {
                return error(400, "media is required");
            };
            inner.next_id += 1;
            let playback = Playback {
                id: format!("playback-{}", inner.next_id),
                media_uri: media,
                next_media_uri: None,
                target_uri: format!("bridge:{id}"),
                language: "en".into(),
                state: "queued".into(),
            };
            let mut started = playback.clone();
            started.state = "playing".into();
            let mut done = playback.clone();
            done.state = "done".into();
            broadcast(
                &inner,
                &event(&app, "PlaybackStarted", json!({"playback": started})),
            );
            broadcast(
                &inner,
                &event(&app, "PlaybackFinished", json!({"playback": done})),
            );
            ok_json(&playback)
        }
        ("GET", ["playbacks", _]) | ("DELETE", ["playbacks", _]) => {
            error(404, "Playback not found")
        }
        _ => error(404, "Resource not found"),
    }
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
