//! `[agent.NAME.voice]`: how a chat agent behaves on a phone call.
//!
//! A chat agent with a listener gets the voice loop (see
//! `media_core::Conversation`); these keys tune its turn-taking, barge-in,
//! silence handling, DTMF and hand-off. Every key is optional: the defaults
//! are the conversation's own, chosen for an ordinary phone line.

use std::time::Duration;

use std::path::{Path, PathBuf};

use media_core::{ConversationConfig, Digit, EndpointConfig, Handoff, SmartTurn};
use serde::Deserialize;

use super::{ChatAgent, ConfigError, SpeechConfig, SttConfig, TtsConfig, VadKind, invalid};
use crate::speech::stt::WhisperConfig;

/// A chat agent answering calls: its chat side plus its voice settings.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceAgent {
    /// Name in `[agent.NAME]`.
    pub name: String,
    /// Prompt, providers, routing, tools and the scripted fallback.
    pub chat: ChatAgent,
    /// Turn-taking, barge-in, silence, DTMF and hand-off.
    pub conversation: ConversationConfig,
    /// The detector.
    pub vad: VadKind,
    /// Turn detection settings.
    pub endpoint: EndpointConfig,
    /// Pauses judged by the end-of-turn model and the preview's words
    /// (`turn = "smart"`); `None`: a turn ends on `hangover_ms` of silence.
    pub turn: Option<SmartTurn>,
    /// Speaking rate (Piper's length scale), if not the voice's own.
    pub length_scale: Option<f32>,
    /// Its own Piper voice, if not `[tts].voice`.
    pub tts_voice: Option<PathBuf>,
    /// Its own Whisper model or language, if not `[stt]`'s.
    pub stt: Option<WhisperConfig>,
}

/// Endpointing keys, shared by `kind = "transcribe"` agents and voices.
#[derive(Debug, Default, Clone)]
pub(super) struct RawEndpoint {
    /// "silero" (default) or "energy".
    pub(super) vad: Option<String>,
    pub(super) min_speech_ms: Option<u64>,
    pub(super) hangover_ms: Option<u64>,
    pub(super) pre_roll_ms: Option<u64>,
    pub(super) max_turn_ms: Option<u64>,
    pub(super) speech_threshold: Option<f32>,
    pub(super) silence_threshold: Option<f32>,
    /// Default: none for transcribe agents, 200 ms for voices.
    pub(super) preview_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVoice {
    /// Default: none, the model's (or script's) first line greets.
    greeting: Option<String>,
    /// Default true.
    greeting_interruptible: Option<bool>,
    /// Default true.
    barge_in: Option<bool>,
    /// Default 300 ms of voiced caller audio.
    barge_in_min_ms: Option<u64>,
    /// Default 12 dB; 0: no ducking.
    barge_in_duck_db: Option<f32>,
    /// Default: uh-huh, mm-hmm, yeah, ok, right, ... (see ConversationConfig).
    backchannels: Option<Vec<String>>,
    /// Default 8,000 ms.
    silence_timeout_ms: Option<u64>,
    /// Default 2.
    max_reprompts: Option<u32>,
    reprompt: Option<String>,
    silence_goodbye: Option<String>,
    goodbye: Option<String>,
    apology: Option<String>,
    /// No hand-off unless set: the queue or extension the dialplan goes to.
    handoff_target: Option<String>,
    handoff_phrase: Option<String>,
    /// Default "0"; "" for none.
    transfer_digit: Option<String>,
    /// Default 2,000 ms.
    dtmf_gap_ms: Option<u64>,
    /// Default: no limit.
    max_call_secs: Option<u64>,
    time_up: Option<String>,
    /// Default 40 lines / 8,000 characters of history sent to the model.
    history_lines: Option<usize>,
    history_chars: Option<usize>,
    /// Default: the voice's own rate.
    length_scale: Option<f32>,
    /// Default: `[tts].voice`. A Piper voice of this agent's own.
    tts_voice: Option<String>,
    /// Default: `[stt].model`. "tiny.en" or "base".
    stt_model: Option<String>,
    /// Default: `[stt].language`.
    language: Option<String>,
    /// "silence" (default) or "smart": how a pause becomes a turn end.
    turn: Option<String>,
    /// Default 0.5: the end-of-turn model's probability that ends a turn.
    turn_threshold: Option<f32>,
    /// Endpointing, as for `kind = "transcribe"` agents. The keys are
    /// listed again rather than flattened from `RawEndpoint`: serde's
    /// `deny_unknown_fields` does not work through `flatten`, and a typo
    /// must stay an error.
    vad: Option<String>,
    min_speech_ms: Option<u64>,
    hangover_ms: Option<u64>,
    pre_roll_ms: Option<u64>,
    max_turn_ms: Option<u64>,
    speech_threshold: Option<f32>,
    silence_threshold: Option<f32>,
    preview_ms: Option<u64>,
}

/// Validates endpointing keys under `key`, over `d` as the defaults.
pub(super) fn endpoint(
    key: &str,
    raw: &RawEndpoint,
    d: EndpointConfig,
) -> Result<(VadKind, EndpointConfig), ConfigError> {
    let vad = match raw.vad.as_deref() {
        None | Some("silero") => VadKind::Silero,
        Some("energy") => VadKind::Energy,
        Some(other) => {
            return Err(invalid(
                format!("{key}.vad"),
                format!("{other:?} is not a VAD: use \"silero\" or \"energy\""),
            ));
        }
    };
    let ms = |v: Option<u64>, field: &str, min: u64, max: u64, default: Duration| {
        range_ms(key, v, field, min, max, default)
    };
    let preview = match raw.preview_ms {
        None => d.preview,
        Some(0) => None,
        Some(v) => Some(ms(Some(v), "preview_ms", 50, 5_000, Duration::ZERO)?),
    };
    let endpoint = EndpointConfig {
        preview,
        min_speech: ms(raw.min_speech_ms, "min_speech_ms", 32, 2_000, d.min_speech)?,
        hangover: ms(raw.hangover_ms, "hangover_ms", 100, 5_000, d.hangover)?,
        pre_roll: ms(raw.pre_roll_ms, "pre_roll_ms", 0, 2_000, d.pre_roll)?,
        max_turn: ms(raw.max_turn_ms, "max_turn_ms", 1_000, 120_000, d.max_turn)?,
        speech_threshold: raw.speech_threshold.unwrap_or(d.speech_threshold),
        silence_threshold: raw.silence_threshold.unwrap_or(d.silence_threshold),
    };
    for (field, v) in [
        ("speech_threshold", endpoint.speech_threshold),
        ("silence_threshold", endpoint.silence_threshold),
    ] {
        if !(0.01..=0.99).contains(&v) {
            return Err(invalid(
                format!("{key}.{field}"),
                format!("{v} is not a probability between 0.01 and 0.99"),
            ));
        }
    }
    if let Some(p) = endpoint.preview
        && p >= endpoint.hangover
    {
        return Err(invalid(
            format!("{key}.preview_ms"),
            format!(
                "{} ms is not shorter than hangover_ms ({} ms): a preview is taken during the pause, before the turn ends",
                p.as_millis(),
                endpoint.hangover.as_millis()
            ),
        ));
    }
    if endpoint.silence_threshold > endpoint.speech_threshold {
        return Err(invalid(
            format!("{key}.silence_threshold"),
            "must not exceed speech_threshold (it is the lower, hysteresis threshold)",
        ));
    }
    Ok((vad, endpoint))
}

/// Endpointing defaults for `turn = "smart"`: the pause is judged at the
/// preview (200 ms), and when model and words do not agree the caller is
/// done, the turn waits up to 2 s of silence: long enough for a caller
/// who stops to think mid-sentence, short enough that a caller the
/// signals misjudge is still answered.
pub fn smart_endpointing() -> EndpointConfig {
    EndpointConfig {
        hangover: Duration::from_millis(2_000),
        ..voice_endpointing()
    }
}

/// Endpointing defaults for a conversation: a shorter hangover than for
/// transcription (every 100 ms of it is 100 ms more before the agent
/// answers), and STT started on a preview halfway through it, so the
/// transcript is usually ready when the turn is decided. A pause longer
/// than the hangover splits a turn; the caller then cuts into the reply
/// and the two parts reach the model as one message.
pub fn voice_endpointing() -> EndpointConfig {
    EndpointConfig {
        hangover: Duration::from_millis(400),
        preview: Some(Duration::from_millis(200)),
        ..EndpointConfig::default()
    }
}

fn range_ms(
    key: &str,
    v: Option<u64>,
    field: &str,
    min: u64,
    max: u64,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(Duration::from_millis(v)),
        Some(v) => Err(invalid(
            format!("{key}.{field}"),
            format!("{v} is out of range: use {min} to {max}"),
        )),
    }
}

/// A phrase: trimmed, not empty, not huge.
fn phrase(
    key: &str,
    field: &str,
    v: &Option<String>,
    default: String,
) -> Result<String, ConfigError> {
    match v {
        None => Ok(default),
        Some(t) if t.trim().is_empty() => {
            Err(invalid(format!("{key}.{field}"), "must not be empty"))
        }
        Some(t) if t.len() > 2_000 => Err(invalid(
            format!("{key}.{field}"),
            "longer than 2,000 characters (it is spoken on every call that needs it)",
        )),
        Some(t) => Ok(t.trim().to_string()),
    }
}

/// Validates `[agent.NAME.voice]` (absent: all defaults).
pub(super) fn voice_agent(
    name: &str,
    chat: &ChatAgent,
    raw: Option<&RawVoice>,
    speech: &SpeechConfig,
    base: &Path,
) -> Result<VoiceAgent, ConfigError> {
    let key = format!("agent.{name}.voice");
    let default_raw = RawVoice::default();
    let raw = raw.unwrap_or(&default_raw);
    let d = ConversationConfig::default();
    let ms = |v: Option<u64>, field: &str, min: u64, max: u64, default: Duration| {
        range_ms(&key, v, field, min, max, default)
    };
    let handoff = match &raw.handoff_target {
        None => None,
        Some(t) if t.trim().is_empty() => {
            return Err(invalid(
                format!("{key}.handoff_target"),
                "must not be empty",
            ));
        }
        Some(t) => Some(Handoff {
            target: t.trim().to_string(),
            phrase: phrase(
                &key,
                "handoff_phrase",
                &raw.handoff_phrase,
                "Please hold while I transfer you to a colleague.".into(),
            )?,
        }),
    };
    if handoff.is_none() && raw.handoff_phrase.is_some() {
        return Err(invalid(
            format!("{key}.handoff_phrase"),
            "is set but handoff_target is not: set where the dialplan sends the caller",
        ));
    }
    let transfer_digit = match raw.transfer_digit.as_deref() {
        None => d.transfer_digit,
        Some("") => None,
        Some(s) => match s.as_bytes() {
            [b] => Some(Digit::from_ascii(*b).ok_or_else(|| {
                invalid(
                    format!("{key}.transfer_digit"),
                    format!("{s:?} is not a DTMF digit (0-9, *, #, A-D)"),
                )
            })?),
            _ => {
                return Err(invalid(
                    format!("{key}.transfer_digit"),
                    format!("{s:?} is not one DTMF digit (0-9, *, #, A-D), or \"\" for none"),
                ));
            }
        },
    };
    if let Some(l) = raw.length_scale
        && !(0.3..=3.0).contains(&l)
    {
        return Err(invalid(
            format!("{key}.length_scale"),
            format!("{l} is out of range: use 0.3 (fast) to 3.0 (slow)"),
        ));
    }
    let greeting = match &raw.greeting {
        None => None,
        Some(_) => Some(phrase(&key, "greeting", &raw.greeting, String::new())?),
    };
    let conversation = ConversationConfig {
        greeting,
        greeting_interruptible: raw
            .greeting_interruptible
            .unwrap_or(d.greeting_interruptible),
        barge_in: raw.barge_in.unwrap_or(d.barge_in),
        barge_in_min: ms(
            raw.barge_in_min_ms,
            "barge_in_min_ms",
            0,
            5_000,
            d.barge_in_min,
        )?,
        duck_db: match raw.barge_in_duck_db {
            None => d.duck_db,
            Some(0.0) => None,
            Some(db) if (1.0..=60.0).contains(&db) => Some(db),
            Some(db) => {
                return Err(invalid(
                    format!("{key}.barge_in_duck_db"),
                    format!("{db} is out of range: use 1 to 60 dB, or 0 for no ducking"),
                ));
            }
        },
        backchannels: raw
            .backchannels
            .as_ref()
            .map(|b| b.iter().map(|w| w.trim().to_lowercase()).collect())
            .unwrap_or(d.backchannels),
        silence_timeout: ms(
            raw.silence_timeout_ms,
            "silence_timeout_ms",
            1_000,
            600_000,
            d.silence_timeout,
        )?,
        max_reprompts: raw.max_reprompts.unwrap_or(d.max_reprompts).min(100),
        reprompt: phrase(&key, "reprompt", &raw.reprompt, d.reprompt)?,
        silence_goodbye: phrase(
            &key,
            "silence_goodbye",
            &raw.silence_goodbye,
            d.silence_goodbye,
        )?,
        goodbye: phrase(&key, "goodbye", &raw.goodbye, d.goodbye)?,
        apology: phrase(&key, "apology", &raw.apology, d.apology)?,
        handoff,
        transfer_digit,
        dtmf_gap: ms(raw.dtmf_gap_ms, "dtmf_gap_ms", 200, 30_000, d.dtmf_gap)?,
        max_call: match raw.max_call_secs {
            None => None,
            Some(s @ 10..=86_400) => Some(Duration::from_secs(s)),
            Some(s) => {
                return Err(invalid(
                    format!("{key}.max_call_secs"),
                    format!("{s} is out of range: use 10 to 86400"),
                ));
            }
        },
        time_up: phrase(&key, "time_up", &raw.time_up, d.time_up)?,
        history_lines: raw.history_lines.unwrap_or(d.history_lines).clamp(2, 1_000),
        history_chars: raw
            .history_chars
            .unwrap_or(d.history_chars)
            .clamp(200, 1_000_000),
    };
    let smart = match raw.turn.as_deref() {
        None | Some("silence") => false,
        Some("smart") => true,
        Some(other) => {
            return Err(invalid(
                format!("{key}.turn"),
                format!("{other:?} is not a way to end turns: use \"silence\" or \"smart\""),
            ));
        }
    };
    let turn = match (smart, raw.turn_threshold) {
        (false, Some(_)) => {
            return Err(invalid(
                format!("{key}.turn_threshold"),
                "is set but turn is not \"smart\": only the end-of-turn model uses it",
            ));
        }
        (false, None) => None,
        (true, Some(t)) if !(0.01..=0.99).contains(&t) => {
            return Err(invalid(
                format!("{key}.turn_threshold"),
                format!("{t} is not a probability between 0.01 and 0.99"),
            ));
        }
        (true, t) => Some(SmartTurn {
            threshold: t.unwrap_or(SmartTurn::default().threshold),
        }),
    };
    let (vad, endpoint) = endpoint(
        &key,
        &RawEndpoint {
            vad: raw.vad.clone(),
            min_speech_ms: raw.min_speech_ms,
            hangover_ms: raw.hangover_ms,
            pre_roll_ms: raw.pre_roll_ms,
            max_turn_ms: raw.max_turn_ms,
            speech_threshold: raw.speech_threshold,
            silence_threshold: raw.silence_threshold,
            preview_ms: raw.preview_ms,
        },
        if smart {
            smart_endpointing()
        } else {
            voice_endpointing()
        },
    )?;
    if smart && endpoint.preview.is_none() {
        return Err(invalid(
            format!("{key}.preview_ms"),
            "is 0 but turn = \"smart\" judges the pause at the preview: set the short pause (about 200 ms)",
        ));
    }
    let tts_voice = match (&raw.tts_voice, &speech.tts) {
        (None, _) => None,
        (Some(v), TtsConfig::Piper { voice, .. }) => {
            let path = base.join(v);
            (path != *voice).then_some(path)
        }
        (Some(_), _) => {
            return Err(invalid(
                format!("{key}.tts_voice"),
                "a voice of an agent's own needs tts.engine = \"piper\"",
            ));
        }
    };
    let stt = match (&raw.stt_model, &raw.language, &speech.stt) {
        (None, None, _) => None,
        (model, language, SttConfig::Whisper(w)) => {
            Some(whisper_for(&key, w, &speech.models_dir, model, language)?)
        }
        (Some(_), _, _) => {
            return Err(invalid(
                format!("{key}.stt_model"),
                "a Whisper model of an agent's own needs stt.engine = \"whisper\"",
            ));
        }
        (None, Some(_), _) => {
            return Err(invalid(
                format!("{key}.language"),
                "a language of an agent's own needs stt.engine = \"whisper\"",
            ));
        }
    };
    Ok(VoiceAgent {
        name: name.to_string(),
        chat: chat.clone(),
        conversation,
        vad,
        endpoint,
        turn,
        length_scale: raw.length_scale,
        tts_voice,
        stt,
    })
}

/// `[stt]`'s Whisper with this agent's model and language.
fn whisper_for(
    key: &str,
    global: &WhisperConfig,
    models_dir: &Path,
    model: &Option<String>,
    language: &Option<String>,
) -> Result<WhisperConfig, ConfigError> {
    let mut w = global.clone();
    if let Some(m) = model {
        if !["tiny.en", "base"].contains(&m.as_str()) {
            return Err(invalid(
                format!("{key}.stt_model"),
                format!(
                    "{m:?} is not a Whisper model models/fetch.py provides: use \"tiny.en\" or \"base\""
                ),
            ));
        }
        w.model = models_dir.join(format!("whisper/ggml-{m}.bin"));
        w.name = m.clone();
    }
    match language.as_deref() {
        None => {}
        Some("auto") => w.language = None,
        Some(l) if l.len() == 2 && l.chars().all(|c| c.is_ascii_lowercase()) => {
            w.language = Some(l.to_string());
        }
        Some(l) => {
            return Err(invalid(
                format!("{key}.language"),
                format!("{l:?} is not a two-letter language code (e.g. \"en\") or \"auto\""),
            ));
        }
    }
    if w.name.ends_with(".en") && w.language.as_deref() != Some("en") {
        return Err(invalid(
            format!("{key}.language"),
            format!(
                "{} understands English only: use stt_model = \"base\" for other languages",
                w.name
            ),
        ));
    }
    Ok(w)
}
