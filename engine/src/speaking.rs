//! The I/O half of a talking call: model replies and speech.
//!
//! The session asks for utterances ([`Event::Speak`] and [`Event::Think`]);
//! a [`Voice`] carries them out. Each utterance gets a [`SpeechStream`]; a
//! model reply also gets a task that streams the router's reply into it and
//! reports text and tool calls back to the session. All utterances work at
//! once (the next reply synthesizes while this one plays); which one's
//! audio is wanted, and when, is the session's decision
//! ([`Session::wants_speech`]), and so is feeding it to playout.
//!
//! # Concurrency
//! Nothing here blocks the driver: reply tasks run on their own and report
//! through a channel the driver's `select!` waits on; text goes to TTS from
//! the reply task, never from the driver. Cancelling an utterance aborts its
//! task (the router records the request as cancelled) and its stream.
//!
//! [`Event::Speak`]: media_core::Event::Speak
//! [`Event::Think`]: media_core::Event::Think
//! [`Session::wants_speech`]: media_core::Session::wants_speech

use std::collections::HashMap;
use std::sync::Arc;

use media_core::{ChatLine, ReplyInput, Session, Speaker, Time, UtteranceId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

use crate::llm::{ChatEvent, ChatRequest, Message, Role, Router, ToolSpec};
use crate::speech::Mouth;
use crate::speech::tts::{SpeechStream, Spoken, TextInput, TtsError};

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

/// One utterance being synthesized.
struct Utterance {
    /// Its audio, piece by piece.
    stream: SpeechStream,
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

/// A call's utterances being synthesized, and the news from its model replies.
pub(crate) struct Voice {
    mouth: Option<Mouth>,
    brain: Option<Arc<Brain>>,
    working: HashMap<UtteranceId, Utterance>,
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
            working: HashMap::new(),
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

    /// Starts saying fixed `text`: a cached prompt goes to the session at
    /// once, anything else is synthesized.
    pub(crate) fn speak(&mut self, session: &mut Session, now: Time, id: UtteranceId, text: &str) {
        let rate = session.rate();
        let Some(mouth) = &self.mouth else {
            warn!("the agent asked to speak, but no TTS is configured");
            session.handle_speech_done(now, id);
            return;
        };
        if let Some(audio) = mouth.cache.get(text, rate) {
            debug!(samples = audio.len(), "speaking a cached prompt");
            session.handle_speech(now, id, text, audio.to_vec());
            session.handle_speech_done(now, id);
            return;
        }
        let mut stream = SpeechStream::start(Arc::clone(&mouth.synth), rate, mouth.max_wait);
        if let Err(e) = stream.try_push(text) {
            warn!("cannot start speaking: {e}");
        }
        stream.finish();
        self.working.insert(id, Utterance { stream, task: None });
    }

    /// Starts a model reply to `history`, spoken as it streams.
    pub(crate) fn think(
        &mut self,
        session: &mut Session,
        now: Time,
        id: UtteranceId,
        history: Vec<ChatLine>,
    ) {
        let mut work = self.mouth.as_ref().map(|mouth| {
            let stream =
                SpeechStream::start(Arc::clone(&mouth.synth), session.rate(), mouth.max_wait);
            Utterance { stream, task: None }
        });
        let input = work.as_mut().and_then(|w| w.stream.take_input());
        let tx = self.replies_tx.clone();
        let task = match self.brain.clone() {
            Some(brain) => Some(tokio::spawn(
                reply(brain, Arc::clone(&self.scope), id, history, input, tx).in_current_span(),
            )),
            None => {
                let _ = tx.try_send((id, ReplyInput::Failed("no model is configured".into())));
                None
            }
        };
        match work {
            Some(mut w) => {
                w.task = task;
                self.working.insert(id, w);
            }
            // Nothing to hear: the reply task runs detached (its text
            // still reaches the session) and ends with the reply.
            None => session.handle_speech_done(now, id),
        }
    }

    /// Stops all work on `id`.
    pub(crate) fn cancel(&mut self, id: UtteranceId) {
        if let Some(mut u) = self.working.remove(&id) {
            u.stream.cancel();
            debug!(%id, "utterance cancelled");
        }
    }

    /// The next piece of `id`'s audio (pending forever when there is none).
    pub(crate) async fn next_audio(
        &mut self,
        id: Option<UtteranceId>,
    ) -> Option<Result<Spoken, TtsError>> {
        match id.and_then(|id| self.working.get_mut(&id)) {
            Some(u) => u.stream.next_audio().await,
            None => std::future::pending().await,
        }
    }

    /// Hands a piece [`next_audio`](Self::next_audio) returned to the session.
    pub(crate) fn on_audio(
        &mut self,
        session: &mut Session,
        now: Time,
        id: UtteranceId,
        audio: Option<Result<Spoken, TtsError>>,
    ) {
        match audio {
            Some(Ok(spoken)) => session.handle_speech(now, id, &spoken.text, spoken.audio),
            Some(Err(e)) => warn!("speech chunk lost: {e}"),
            None => {
                self.working.remove(&id);
                session.handle_speech_done(now, id);
            }
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
