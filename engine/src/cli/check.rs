//! `hark check-config`: a file checked as `serve` would take it.

use std::path::Path;
use std::process::ExitCode;

use hark::Config;
use hark::config::AgentSpec;

use super::store::redact_url;

pub(crate) fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let problems = hark::preflight::check(&config);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{}: {p}", path.display());
        }
        return Ok(ExitCode::from(2));
    }
    println!("{}: ok", path.display());
    println!(
        "  max_calls {}, drain timeout {} ms, max payload {} bytes, send-ahead {} frame(s)",
        config.max_calls,
        config.drain_timeout.as_millis(),
        config.max_payload,
        config.call.send_ahead
    );
    for l in &config.listeners {
        let agent = match &l.agent {
            AgentSpec::Echo { name, delay } => {
                format!("{name} (echo, delay {} ms)", delay.as_millis())
            }
            AgentSpec::Say {
                name,
                text,
                hangup,
                length_scale,
            } => format!(
                "{name} (say {:?}{}, length scale {})",
                text.chars().take(40).collect::<String>(),
                if *hangup { ", then hang up" } else { "" },
                length_scale.map_or("as the voice".to_string(), |l| l.to_string())
            ),
            AgentSpec::Transcribe {
                name,
                vad,
                endpoint,
            } => format!(
                "{name} (transcribe, {vad:?} VAD, min speech {} ms, hangover {} ms, pre-roll {} ms, max turn {} s)",
                endpoint.min_speech.as_millis(),
                endpoint.hangover.as_millis(),
                endpoint.pre_roll.as_millis(),
                endpoint.max_turn.as_secs()
            ),
            AgentSpec::Voice(v) => {
                let c = &v.conversation;
                let providers = if v.chat.providers.is_empty() {
                    "script only".to_string()
                } else {
                    v.chat.providers.join(", ")
                };
                format!(
                    "{} (voice: {providers}; {:?} VAD, hangover {} ms, preview {}; barge-in {}; silence {} s x {}; hand-off {})",
                    v.name,
                    v.vad,
                    v.endpoint.hangover.as_millis(),
                    v.endpoint
                        .preview
                        .map_or("off".to_string(), |p| format!("{} ms", p.as_millis())),
                    if c.barge_in {
                        format!("after {} ms", c.barge_in_min.as_millis())
                    } else {
                        "off".to_string()
                    },
                    c.silence_timeout.as_secs(),
                    c.max_reprompts,
                    c.handoff.as_ref().map_or("none", |h| h.target.as_str())
                )
            }
            other => other.name().to_string(),
        };
        println!("  listener {} on {} -> agent {agent}", l.name, l.address);
    }
    if config.listeners.iter().any(|l| l.agent.speaks()) {
        match &config.speech.tts {
            hark::config::TtsConfig::Piper {
                voice,
                sessions,
                threads,
            } => println!(
                "  tts: piper {} ({sessions} session(s) x {threads} thread(s)), {} prompt(s)",
                voice.display(),
                config.speech.prompts.len()
            ),
            hark::config::TtsConfig::Http(h) => println!(
                "  tts: {}/audio/speech, model {}, voice {}",
                h.base_url, h.model, h.voice
            ),
            _ => {}
        }
    }
    if config.listeners.iter().any(|l| l.agent.listens()) {
        let s = &config.speech;
        println!("  models in {}", s.models_dir.display());
        match &s.stt {
            hark::config::SttConfig::Whisper(w) => println!(
                "  stt: whisper {} ({}), {} worker(s) x {} thread(s), queue {}, fitted window {}",
                w.name,
                w.model.display(),
                w.workers,
                w.threads,
                w.queue,
                w.fit_window
            ),
            hark::config::SttConfig::Http(h) => println!(
                "  stt: {}/audio/transcriptions, model {}, {} in flight",
                h.base_url, h.model, h.max_in_flight
            ),
            _ => {}
        }
    }
    match &config.store {
        Some(st) => println!(
            "  store {} (spool {}, migrate at start: {}, default tenant {:?})",
            redact_url(&st.url),
            st.spool.display(),
            st.migrate,
            st.tenant
        ),
        None => println!("  store: none (records are only logged)"),
    }
    if let Some(ari) = &config.ari {
        let listener = &config.listeners[ari.listener];
        let media = match ari.media {
            hark::config::StasisMedia::AudioSocket => format!(
                "AudioSocket to {}",
                ari.media_host
                    .clone()
                    .unwrap_or_else(|| listener.address.to_string())
            ),
            hark::config::StasisMedia::Rtp => format!(
                "RTP/ulaw on {} ports {}-{}",
                ari.rtp_address, ari.rtp_ports.0, ari.rtp_ports.1
            ),
        };
        println!(
            "  ari {} as {:?}, app {:?}: default agent {:?}, media {media}, hand-off to {},{},{}",
            redact_url(&ari.url),
            ari.username,
            ari.app,
            listener.agent.name(),
            ari.handoff_context,
            ari.handoff_extension,
            ari.handoff_priority
        );
    }
    if let Some(sip) = &config.sip {
        let codecs: Vec<&str> = sip.codecs.iter().map(|c| c.name()).collect();
        println!(
            "  sip on udp {} (contact {}), allow {}, codecs {}, RTP on {} ports {}-{}, default agent {:?}",
            sip.listen,
            sip.advertise,
            sip.allow,
            codecs.join(" "),
            sip.rtp_address,
            sip.rtp_ports.0,
            sip.rtp_ports.1,
            config.listeners[sip.listener].agent.name()
        );
    }
    if let Some(api) = &config.api {
        println!(
            "  api on http://{} (body up to {} bytes, {} requests/s per token, burst {})",
            api.address, api.max_body_bytes, api.rate_per_sec, api.burst
        );
    }
    Ok(ExitCode::SUCCESS)
}
