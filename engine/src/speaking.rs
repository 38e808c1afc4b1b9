//! The I/O half of a talking call: model replies and speech, in order.
//!
//! The call's core asks for utterances ([`Event::Speak`] and
//! [`Event::Think`]); a [`Voice`] carries them out. Each utterance gets a
//! [`SpeechStream`]; a model reply also gets a task that streams the
//! router's reply into it and reports text and tool calls back to the core.
//! All utterances work at once (the next reply synthesizes while this one
//! plays), but only the oldest feeds playout, so they are heard in order.
//!
//! # Concurrency
//! Nothing here blocks the driver: reply tasks run on their own and report
//! through a channel the driver's `select!` waits on; text goes to TTS from
//! the reply task, never from the driver. Cancelling an utterance aborts its
//! task (the router records the request as cancelled) and its stream.
//!
//! [`Event::Speak`]: media_core::Event::Speak
//! [`Event::Think`]: media_core::Event::Think

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use media_core::{Call, ChatLine, ReplyInput, SampleRate, Speaker, Time, UtteranceId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

use crate::llm::{ChatEvent, ChatRequest, Message, Role, Router, ToolSpec};
use crate::speech::Mouth;
use crate::tts::{SpeechStream, Spoken, TextInput, TtsError};

/// Speech is fed to the call's playout up to this far ahead; the rest
/// waits here (and in the stream), so the playout queue never overflows.
const FEED_AHEAD: Duration = Duration::from_secs(1);

/// Reply news waiting for the driver (text pieces are small and many).
const REPLY_QUEUE: usize = 256;

/// How a talking agent thinks: its router and request settings.
#[derive(Debug)]
pub(crate) struct Brain {
    pub(crate) router: Arc<Router>,
    pub(crate) system_prompt: String,
    pub(crate) tools: Vec<ToolSpec>,
    pub(crate) max_tokens: u32,
    pub(crate) temperature: f32,
    /// Whose budget the requests count against.
    pub(crate) tenant: String,
}

impl Brain {
    /// The brain of a voice agent: its router (shared by all its calls,
    /// so breakers and budgets see every call) and request settings.
    /// The hand-off tool is offered only when a hand-off target is set.
    pub(crate) fn for_agent(
        config: &crate::Config,
        agent: &crate::config::VoiceAgent,
        records: Option<mpsc::Sender<crate::llm::UsageRecord>>,
    ) -> Result<Arc<Brain>, String> {
        let (router, chat) = crate::chat::router_for(config, &agent.name, records)?;
        let can_transfer = agent.conversation.handoff.is_some();
        let tools = crate::llm::builtin_tools()
            .into_iter()
            .filter(|t| chat.tools.contains(&t.name))
            .filter(|t| can_transfer || t.name != "transfer_to_human")
            .collect();
        Ok(Arc::new(Brain {
            router,
            system_prompt: chat.system_prompt,
            tools,
            max_tokens: chat.max_tokens,
            temperature: chat.temperature,
            tenant: "default".into(),
        }))
    }
}

/// One utterance on its way to the caller.
struct Utterance {
    id: UtteranceId,
    /// Audio ready for playout, from `at`; `announced` once its segment
    /// was given to the call.
    ready: Option<(Spoken, usize, bool)>,
    /// More audio being synthesized (none for a cached prompt).
    stream: Option<SpeechStream>,
    /// The model reply feeding the stream.
    task: Option<JoinHandle<()>>,
}

impl Drop for Utterance {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A call's utterances in order, and the news from its model replies.
pub(crate) struct Voice {
    mouth: Option<Mouth>,
    brain: Option<Arc<Brain>>,
    queue: VecDeque<Utterance>,
    replies_tx: mpsc::Sender<(UtteranceId, ReplyInput)>,
    /// Whose requests these are, and for which call (usage records).
    scope: Arc<Scope>,
}

/// The tenant and call a model request is made for.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    pub(crate) tenant: Option<String>,
    pub(crate) call: Option<String>,
}

/// News from a call's model replies: which utterance, and what happened.
pub(crate) type ReplyNews = mpsc::Receiver<(UtteranceId, ReplyInput)>;

impl Voice {
    /// A voice, and the receiver its model replies report to.
    pub(crate) fn new(mouth: Option<Mouth>, brain: Option<Arc<Brain>>) -> (Self, ReplyNews) {
        let (replies_tx, replies_rx) = mpsc::channel(REPLY_QUEUE);
        let voice = Self {
            mouth,
            brain,
            queue: VecDeque::new(),
            replies_tx,
            scope: Arc::new(Scope::default()),
        };
        (voice, replies_rx)
    }

    /// Names the tenant and call of this voice's model requests.
    pub(crate) fn set_scope(&mut self, tenant: &str, call: &str) {
        self.scope = Arc::new(Scope {
            tenant: Some(tenant.to_string()),
            call: Some(call.to_string()),
        });
    }

    /// Starts saying fixed `text`: a cached prompt at once, else a stream.
    pub(crate) fn speak(&mut self, id: UtteranceId, text: &str, rate: SampleRate) {
        let mut u = Utterance {
            id,
            ready: None,
            stream: None,
            task: None,
        };
        match &self.mouth {
            None => warn!("the agent asked to speak, but no TTS is configured"),
            Some(mouth) => {
                if let Some(audio) = mouth.cache.get(text, rate) {
                    debug!(samples = audio.len(), "speaking a cached prompt");
                    let spoken = Spoken {
                        text: text.to_string(),
                        audio: audio.to_vec(),
                    };
                    u.ready = Some((spoken, 0, false));
                } else {
                    let mut stream =
                        SpeechStream::start(Arc::clone(&mouth.synth), rate, mouth.max_wait);
                    if let Err(e) = stream.try_push(text) {
                        warn!("cannot start speaking: {e}");
                    }
                    stream.finish();
                    u.stream = Some(stream);
                }
            }
        }
        self.queue.push_back(u);
    }

    /// Starts a model reply to `history`, spoken as it streams.
    pub(crate) fn think(&mut self, id: UtteranceId, history: Vec<ChatLine>, rate: SampleRate) {
        let mut u = Utterance {
            id,
            ready: None,
            stream: None,
            task: None,
        };
        let input = match &self.mouth {
            Some(mouth) => {
                let mut stream =
                    SpeechStream::start(Arc::clone(&mouth.synth), rate, mouth.max_wait);
                let input = stream.take_input();
                u.stream = Some(stream);
                input
            }
            None => None,
        };
        let tx = self.replies_tx.clone();
        match self.brain.clone() {
            Some(brain) => {
                u.task = Some(tokio::spawn(
                    reply(brain, Arc::clone(&self.scope), id, history, input, tx).in_current_span(),
                ));
            }
            None => {
                let _ = tx.try_send((id, ReplyInput::Failed("no model is configured".into())));
            }
        }
        self.queue.push_back(u);
    }

    /// Stops all work on `id`.
    pub(crate) fn cancel(&mut self, id: UtteranceId) {
        if let Some(i) = self.queue.iter().position(|u| u.id == id) {
            if let Some(mut u) = self.queue.remove(i)
                && let Some(s) = u.stream.as_mut()
            {
                s.cancel();
            }
            debug!(%id, "utterance cancelled");
        }
    }

    /// Moves ready audio of the oldest utterance into the call's playout
    /// while it has room; tells the call when an utterance is all handed over.
    pub(crate) fn feed(&mut self, call: &mut Call, now: Time) {
        while let Some(u) = self.queue.front_mut() {
            if let Some((spoken, at, announced)) = u.ready.as_mut() {
                if !*announced {
                    call.begin_segment(now, u.id, &spoken.text, spoken.audio.len());
                    *announced = true;
                }
                let step = call.rate().frame_samples() * 5;
                while *at < spoken.audio.len() && call.queued_audio() < FEED_AHEAD {
                    let end = (*at + step).min(spoken.audio.len());
                    let took = call.play(now, u.id, &spoken.audio[*at..end]);
                    if took == 0 {
                        break;
                    }
                    *at += took;
                }
                if *at < spoken.audio.len() {
                    return;
                }
                u.ready = None;
            }
            if u.stream.is_some() {
                return;
            }
            let id = u.id;
            self.queue.pop_front();
            call.handle_utterance_done(now, id);
        }
    }

    /// True when the oldest utterance's next chunk is wanted now.
    pub(crate) fn wants_audio(&self, call: &Call) -> bool {
        self.queue
            .front()
            .is_some_and(|u| u.stream.is_some() && u.ready.is_none())
            && call.queued_audio() < FEED_AHEAD
    }

    /// The oldest utterance's next chunk (pending forever when there is none).
    pub(crate) async fn next_audio(&mut self) -> Option<Result<Spoken, TtsError>> {
        match self.queue.front_mut().and_then(|u| u.stream.as_mut()) {
            Some(stream) => stream.next_audio().await,
            None => std::future::pending().await,
        }
    }

    /// Takes a chunk [`next_audio`](Self::next_audio) returned.
    pub(crate) fn on_audio(&mut self, audio: Option<Result<Spoken, TtsError>>) {
        let Some(u) = self.queue.front_mut() else {
            return;
        };
        match audio {
            Some(Ok(spoken)) => u.ready = Some((spoken, 0, false)),
            Some(Err(e)) => warn!("speech chunk lost: {e}"),
            None => u.stream = None,
        }
    }
}

/// Streams one routed reply into TTS and reports it to the driver.
async fn reply(
    brain: Arc<Brain>,
    scope: Arc<Scope>,
    id: UtteranceId,
    history: Vec<ChatLine>,
    speech: Option<TextInput>,
    news: mpsc::Sender<(UtteranceId, ReplyInput)>,
) {
    let request = ChatRequest {
        system: brain.system_prompt.clone(),
        messages: history.iter().map(message).collect(),
        tools: brain.tools.clone(),
        max_tokens: brain.max_tokens,
        temperature: brain.temperature,
    };
    let report = |input| {
        let news = news.clone();
        async move {
            // The driver is gone when this fails: the call is over.
            let _ = news.send((id, input)).await;
        }
    };
    let mut reply = match brain
        .router
        .reply_in_call(
            scope.tenant.as_deref().unwrap_or(&brain.tenant),
            scope.call.as_deref(),
            request,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            warn!("no reply: {e}");
            report(ReplyInput::Failed(e.to_string())).await;
            return;
        }
    };
    let provider = reply.provider().to_string();
    let ttft = reply.time_to_first_token();
    let (mut tokens_in, mut tokens_out) = (0, 0);
    loop {
        match reply.next().await {
            Some(Ok(ChatEvent::Text(t))) => {
                if let Some(s) = &speech {
                    let _ = s.push(t.clone()).await;
                }
                report(ReplyInput::Text(t)).await;
            }
            Some(Ok(ChatEvent::ToolCall {
                name, arguments, ..
            })) => {
                report(ReplyInput::Tool {
                    name,
                    arguments: arguments.to_string(),
                })
                .await;
            }
            Some(Ok(ChatEvent::Usage { input, output })) => {
                (tokens_in, tokens_out) = (input, output)
            }
            Some(Ok(ChatEvent::Finish(_))) | None => {
                report(ReplyInput::Done).await;
                break;
            }
            Some(Err(e)) => {
                warn!(%provider, "reply broke off: {e}");
                report(ReplyInput::Failed(e.to_string())).await;
                break;
            }
        }
    }
    info!(
        %provider,
        first_token_ms = ttft.map(|d| d.as_millis() as u64),
        tokens_in,
        tokens_out,
        "ai reply"
    );
    // Dropping `speech` here finishes the text: the rest is spoken.
}

/// A conversation line as a chat message; a line the caller cut off says so.
fn message(line: &ChatLine) -> Message {
    let role = match line.speaker {
        Speaker::Caller => Role::User,
        Speaker::Agent => Role::Assistant,
    };
    let content = if line.interrupted {
        format!("{} [the caller interrupted here]", line.text)
    } else {
        line.text.clone()
    };
    Message { role, content }
}
