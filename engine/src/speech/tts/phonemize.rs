//! Phonemes from the `espeak-ng` program, run per sentence.
//!
//! espeak-ng is GPL-3+; hark is MIT OR Apache-2.0, so hark never links
//! libespeak-ng and runs the program instead (about 10 ms per sentence).
//! Its `--stdin` mode buffers until end of input, so each sentence is a
//! separate run with the text as an argument.
//!
//! Debian's espeak-ng 1.51 drops punctuation from `--ipa` output and starts
//! a new line at each clause. Piper's voices were trained with punctuation
//! in the phoneme stream, so the clause breaks become ", " and the
//! sentence's final mark ("." "?" "!") is put back.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Why text could not be turned into phonemes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhonemizeError {
    /// The program is missing or failed to start.
    #[error("cannot run espeak-ng: {0} (install Debian's espeak-ng package)")]
    Spawn(String),
    /// It ran but failed.
    #[error("espeak-ng failed: {0}")]
    Failed(String),
    /// It took too long.
    #[error("espeak-ng took longer than {0:?}")]
    Timeout(Duration),
}

/// espeak-ng input longer than this is split by the caller first.
pub(super) const MAX_SENTENCE_CHARS: usize = 600;

/// IPA phonemes for one sentence, with clause and sentence punctuation.
pub(super) async fn phonemize(voice: &str, sentence: &str) -> Result<String, PhonemizeError> {
    let text: String = sentence.chars().take(MAX_SENTENCE_CHARS).collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(String::new());
    }
    // A leading '-' would be read as an option.
    let arg = if text.starts_with('-') {
        format!(" {text}")
    } else {
        text.to_string()
    };
    let child = Command::new("espeak-ng")
        .args(["-q", "--ipa", "-v", voice, "--", &arg])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PhonemizeError::Spawn(e.to_string()))?;
    let limit = Duration::from_secs(5);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| PhonemizeError::Timeout(limit))?
        .map_err(|e| PhonemizeError::Failed(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(PhonemizeError::Failed(format!(
            "{}: {}",
            out.status,
            err.trim()
        )));
    }
    let ipa = String::from_utf8_lossy(&out.stdout);
    let clauses: Vec<&str> = ipa
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut joined = clauses.join(", ");
    let end = match text.chars().last() {
        Some('?') => "?",
        Some('!') => "!",
        _ => ".",
    };
    if !joined.is_empty() {
        joined.push_str(end);
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clauses_and_the_final_mark_come_back() {
        let p = phonemize("en-us", "Hello, how are you?").await.unwrap();
        assert!(p.contains(", "), "{p}");
        assert!(p.ends_with('?'), "{p}");
        assert!(p.contains('h'), "{p}");
        assert_eq!(phonemize("en-us", "   ").await.unwrap(), "");
    }

    #[tokio::test]
    async fn odd_text_is_harmless() {
        for t in ["--help", "-v xx", "\"quoted\" 'text'", "🙂", "a\nb"] {
            let p = phonemize("en-us", t).await;
            assert!(p.is_ok(), "{t}: {p:?}");
        }
        // espeak-ng falls back to a default voice for an unknown name.
        let _ = phonemize("no-such-voice", "hello").await;
    }
}
