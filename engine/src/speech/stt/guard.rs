//! Whisper's known hallucinations on non-speech.
//!
//! Fed silence, noise, hold music or a click, Whisper tends to produce a
//! stock phrase from its training data ("Thank you.", "Thanks for
//! watching!", "you") or a bracketed annotation ("[BLANK_AUDIO]", "(music)").
//! Such a result must not become a caller turn. A stock phrase only counts
//! as a hallucination when the decoder also doubted it (low confidence or a
//! high no-speech probability): a caller may really say "thank you".

/// Phrases Whisper produces on non-speech that a caller may also really
/// say (compared lowercased, without punctuation): dropped only when the
/// decoder doubted them.
const STOCK: &[&str] = &[
    "thank you",
    "thank you very much",
    "thanks for watching",
    "thank you for watching",
    "thanks for listening",
    "please subscribe",
    "subscribe to my channel",
    "bye",
    "okay",
];

/// Lone words that are never a caller's turn on their own; Whisper writes
/// "you" for noise with high confidence (measured: 0.80 on white noise).
const NEVER_A_TURN: &[&str] = &["you", "so", "oh", "uh", "um", "hmm", "mm", "ah", "eh"];

/// True when `text` should not become a caller turn.
///
/// `confidence` is the mean token probability and `no_speech` Whisper's
/// no-speech probability for the turn.
pub fn is_hallucination(text: &str, confidence: f32, no_speech: f32) -> bool {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return true;
    }
    // Only annotations: "[BLANK_AUDIO]", "(music)", "*cough*", "♪♪".
    let mut rest = trimmed.to_string();
    for (open, close) in [('[', ']'), ('(', ')'), ('*', '*')] {
        while let Some(a) = rest.find(open) {
            let Some(len) = rest[a + open.len_utf8()..].find(close) else {
                break;
            };
            rest.replace_range(a..a + open.len_utf8() + len + close.len_utf8(), " ");
        }
    }
    let words: String = rest
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == '\'')
        .collect::<String>()
        .to_lowercase();
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    if words.is_empty() {
        return true;
    }
    if NEVER_A_TURN.contains(&words.as_str()) {
        return true;
    }
    let doubtful = confidence < 0.5 || no_speech > 0.6;
    doubtful && STOCK.contains(&words.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_and_empty_text_are_hallucinations() {
        for t in [
            "",
            "   ",
            "[BLANK_AUDIO]",
            "(music)",
            " [Music] ",
            "♪♪",
            "*cough*",
            "...",
            "(silence) [noise]",
        ] {
            assert!(is_hallucination(t, 0.9, 0.0), "{t:?}");
        }
    }

    #[test]
    fn stock_phrases_count_only_when_the_decoder_doubted_them() {
        assert!(is_hallucination(" Thank you.", 0.3, 0.1));
        assert!(is_hallucination("Thanks for watching!", 0.8, 0.9));
        assert!(is_hallucination("you", 0.2, 0.0));
        assert!(is_hallucination(" you", 0.8, 0.0));
        assert!(is_hallucination("Um.", 0.9, 0.0));
        // A caller who really says it, clearly.
        assert!(!is_hallucination("Thank you.", 0.9, 0.05));
    }

    #[test]
    fn real_turns_pass() {
        for t in [
            "I would like to book a table.",
            "Yes.",
            "Thank you, that is all I need.",
            "[inaudible] my account number is four two",
        ] {
            assert!(!is_hallucination(t, 0.4, 0.5), "{t:?}");
        }
    }
}
