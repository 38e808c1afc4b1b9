//! Cuts streamed text into speakable chunks.
//!
//! A chunk is released at the end of a sentence (`.`, `!`, `?` followed by
//! a space), at a clause mark (`,` `;` `:`) once the chunk is long enough
//! to be worth its own synthesis, or, when text keeps coming without any
//! boundary, after `max_wait` at the last word break, so a long sentence
//! still starts early. A dot after a known abbreviation ("Dr.") or between
//! digits ("3.5") does not end a sentence.

use std::time::{Duration, Instant};

/// Clause marks release a chunk only once it has this many characters.
const MIN_CLAUSE_CHARS: usize = 40;

/// Words whose dot does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "dr", "mr", "mrs", "ms", "st", "ave", "rd", "jr", "sr", "inc", "ltd", "approx", "e.g", "i.e",
    "etc", "vs", "no", "min", "hrs", "a.m", "p.m",
];

/// Sentence splitter for streamed text. Time is passed in.
#[derive(Debug)]
pub struct SentenceSplitter {
    buf: String,
    /// When the oldest unreleased text arrived.
    since: Option<Instant>,
    max_wait: Duration,
}

impl SentenceSplitter {
    /// A splitter that releases a boundary-less chunk after `max_wait`.
    pub fn new(max_wait: Duration) -> Self {
        Self {
            buf: String::new(),
            since: None,
            max_wait,
        }
    }

    /// Adds text that arrived at `now`.
    pub fn push(&mut self, now: Instant, text: &str) {
        if self.buf.trim().is_empty() && !text.trim().is_empty() {
            self.since = Some(now);
        }
        self.buf.push_str(text);
    }

    /// The next chunk ready at `now`, if any.
    pub fn poll_chunk(&mut self, now: Instant) -> Option<String> {
        if let Some(end) = self.boundary() {
            return self.take(end);
        }
        let waited = self
            .since
            .is_some_and(|s| now.duration_since(s) >= self.max_wait);
        if waited {
            // Release up to the last word break, keeping a half-written word.
            if let Some(space) = self.buf.trim_end().rfind(char::is_whitespace) {
                return self.take(space + 1);
            }
        }
        None
    }

    /// When a boundary-less chunk will be released, if text is waiting.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + self.max_wait)
    }

    /// The end of the text: everything left.
    pub fn finish(&mut self) -> Option<String> {
        let len = self.buf.len();
        self.take(len)
    }

    fn take(&mut self, end: usize) -> Option<String> {
        let chunk: String = self.buf.drain(..end).collect();
        self.since = if self.buf.trim().is_empty() {
            None
        } else {
            Some(self.since.unwrap_or_else(Instant::now))
        };
        let chunk = chunk.trim().to_string();
        if chunk.is_empty() { None } else { Some(chunk) }
    }

    /// Byte index just after the first sentence or (long enough) clause end.
    fn boundary(&self) -> Option<usize> {
        for (i, c) in self.buf.char_indices() {
            let next = self.buf[i + c.len_utf8()..].chars().next();
            let followed_by_space = next.is_some_and(char::is_whitespace);
            match c {
                '.' | '!' | '?' if followed_by_space => {
                    if c == '.' && self.is_abbreviation(i) {
                        continue;
                    }
                    return Some(i + 1);
                }
                ',' | ';' | ':' if followed_by_space && i >= MIN_CLAUSE_CHARS => {
                    // "1,000" has no space after the comma, so it never gets here.
                    return Some(i + 1);
                }
                '\n' => return Some(i + 1),
                _ => {}
            }
        }
        None
    }

    fn is_abbreviation(&self, dot: usize) -> bool {
        let before = &self.buf[..dot];
        let word = before
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .trim_start_matches(['(', '"', '\''])
            .to_lowercase();
        ABBREVIATIONS.contains(&word.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &mut SentenceSplitter, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| s.poll_chunk(now)).collect()
    }

    #[test]
    fn sentences_are_released_as_they_complete() {
        let t = Instant::now();
        let mut s = SentenceSplitter::new(Duration::from_secs(1));
        for piece in ["Hel", "lo there", ". How ", "are you", "? I am", " fine."] {
            s.push(t, piece);
        }
        assert_eq!(all(&mut s, t), ["Hello there.", "How are you?"]);
        assert_eq!(s.finish().as_deref(), Some("I am fine."));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn abbreviations_and_decimals_do_not_end_a_sentence() {
        let t = Instant::now();
        let mut s = SentenceSplitter::new(Duration::from_secs(1));
        s.push(t, "Dr. Smith charges 3.5 percent, e.g. on loans. Next ");
        assert_eq!(
            all(&mut s, t),
            ["Dr. Smith charges 3.5 percent, e.g. on loans."]
        );
    }

    #[test]
    fn long_clauses_split_at_commas_short_ones_do_not() {
        let t = Instant::now();
        let mut s = SentenceSplitter::new(Duration::from_secs(1));
        s.push(t, "Yes, of course. ");
        assert_eq!(all(&mut s, t), ["Yes, of course."]);
        s.push(
            t,
            "I have checked the booking for tomorrow evening, and everything is ready",
        );
        assert_eq!(
            all(&mut s, t),
            ["I have checked the booking for tomorrow evening,"]
        );
    }

    #[test]
    fn a_long_sentence_starts_after_the_maximum_wait() {
        let t = Instant::now();
        let mut s = SentenceSplitter::new(Duration::from_millis(500));
        s.push(t, "this sentence just keeps going without any punctu");
        assert_eq!(s.poll_chunk(t), None);
        assert_eq!(s.deadline(), Some(t + Duration::from_millis(500)));
        let later = t + Duration::from_millis(500);
        // Released at the last word break; the half word waits.
        assert_eq!(
            s.poll_chunk(later).as_deref(),
            Some("this sentence just keeps going without any")
        );
        s.push(later, "ation");
        assert_eq!(s.finish().as_deref(), Some("punctuation"));
    }
}
