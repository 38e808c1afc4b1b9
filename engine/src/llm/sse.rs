//! An incremental server-sent events parser with size limits.
//!
//! Bytes arrive in arbitrary pieces; complete events come out. An event is
//! its `event:` name (if any) and its `data:` lines joined with `\n`;
//! comments (`:`) and unknown fields are ignored; `\r\n`, `\n` and `\r` all
//! end lines. A line or an event longer than the limit is an error rather
//! than unbounded memory.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if given.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Why the stream is not valid SSE within the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// An event grew past the limit.
    #[error("server-sent event larger than {0} bytes")]
    TooLarge(usize),
    /// The bytes are not UTF-8.
    #[error("server-sent event is not UTF-8")]
    NotUtf8,
}

/// Incremental SSE parser.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
    max: usize,
    /// The previous byte was '\r' (a following '\n' belongs to it).
    after_cr: bool,
}

impl SseParser {
    /// A parser that refuses events over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            line: Vec::new(),
            event: None,
            data: String::new(),
            has_data: false,
            max,
            after_cr: false,
        }
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr && b == b'\n' {
                self.after_cr = false;
                continue;
            }
            self.after_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                if let Some(e) = self.line_done(&line)? {
                    out.push(e);
                }
            } else {
                if self.line.len() + self.data.len() >= self.max {
                    return Err(SseError::TooLarge(self.max));
                }
                self.line.push(b);
            }
        }
        Ok(out)
    }

    /// The end of the stream. As the SSE standard says, an event not yet
    /// closed by its blank line is discarded (the stream was cut inside
    /// it); returns true when that happened.
    pub fn finish(&mut self) -> bool {
        let cut = !self.line.is_empty() || self.has_data;
        self.line.clear();
        self.data.clear();
        self.event = None;
        self.has_data = false;
        cut
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let body = b"event: message_start\ndata: {\"a\":1}\n\n: ping comment\ndata: line1\r\ndata: line2\r\n\r\ndata: [DONE]\n\n";
        for cut in 0..body.len() {
            let mut p = SseParser::new(1 << 20);
            let mut got = p.feed(&body[..cut]).unwrap();
            got.extend(p.feed(&body[cut..]).unwrap());
            assert_eq!(
                got,
                vec![
                    SseEvent {
                        event: Some("message_start".into()),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: None,
                        data: "line1\nline2".into()
                    },
                    SseEvent {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn limits_and_bad_bytes_are_errors() {
        let mut p = SseParser::new(16);
        assert_eq!(p.feed(&[b'd'; 40]), Err(SseError::TooLarge(16)));
        let mut p = SseParser::new(1024);
        assert_eq!(p.feed(b"data: \xff\xfe\n"), Err(SseError::NotUtf8));
        // Cut inside an event: it is dropped, and the cut is reported.
        let mut p = SseParser::new(1024);
        assert_eq!(p.feed(b"data: tail").unwrap(), vec![]);
        assert!(p.finish());
        let mut p = SseParser::new(1024);
        assert_eq!(p.feed(b"data: whole\n\n").unwrap().len(), 1);
        assert!(!p.finish());
    }
}
