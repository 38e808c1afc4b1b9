//! Word error rate, for tests and benches of speech recognition.

/// Words of `text` for scoring: lowercased, punctuation dropped, hyphens
/// and slashes split.
pub fn normalize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace(['-', '/'], " ")
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance between `reference` and `hypothesis`, and the
/// number of reference words: WER = errors / words.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[h.len()], r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_on_words() {
        assert_eq!(word_errors("Hello, world.", "hello world"), (0, 2));
        assert_eq!(word_errors("a b c d", "a x c"), (2, 4));
        assert_eq!(word_errors("a b", "a b c d"), (2, 2));
        assert_eq!(word_errors("", ""), (0, 0));
        assert_eq!(
            word_errors("call-forward on no answer", "call forward on no answer"),
            (0, 5)
        );
    }
}
