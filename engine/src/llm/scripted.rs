//! The scripted agent: a deterministic dialog that needs no network.
//!
//! It greets, asks its questions in order (each answer fills a named slot),
//! reads the slots back for confirmation, and closes. It is the embedded
//! default (no key, no network) and the router's last fallback, so a caller
//! never hears dead air when every provider is down.
//!
//! It is a [`ChatModel`] like the providers, and it keeps no state: the
//! next line follows from the conversation so far, so it can take over a
//! call in the middle.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::{ChatEvent, ChatFuture, ChatModel, ChatRequest, ChatStream, FinishReason, Role};

/// One question and the slot its answer fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptQuestion {
    /// The slot's name, e.g. `party_size`.
    pub slot: String,
    /// What to ask.
    pub ask: String,
}

/// A scripted dialog (from `hark.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Said first.
    pub greeting: String,
    /// Asked in order.
    pub questions: Vec<ScriptQuestion>,
    /// Read back with `{slot}` placeholders, then "Is that right?".
    pub confirm: String,
    /// Said when confirmed; the dialog is then over.
    pub closing: String,
    /// Said when the caller says no to the confirmation, before asking again.
    pub retry: String,
}

impl Script {
    /// The next line and the slots so far, from the conversation.
    pub fn next_line(
        &self,
        messages: &[super::Message],
    ) -> (String, BTreeMap<String, String>, bool) {
        let answers: Vec<&str> = messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.trim())
            .collect();
        let mut slots = BTreeMap::new();
        let mut asked = 0usize; // questions answered in the current round
        let mut confirming = false;
        for a in &answers {
            if confirming {
                if is_yes(a) {
                    return (self.closing.clone(), slots, true);
                }
                // "No" (or anything else): start the questions again.
                confirming = false;
                asked = 0;
                slots.clear();
                continue;
            }
            if let Some(q) = self.questions.get(asked) {
                slots.insert(q.slot.clone(), slot_value(a));
                asked += 1;
            }
            if asked == self.questions.len() {
                confirming = true;
            }
        }
        let restarted = answers.len() > self.questions.len() && asked == 0 && !confirming;
        let line = if confirming {
            format!("{} Is that right?", fill(&self.confirm, &slots))
        } else if answers.is_empty() {
            match self.questions.first() {
                Some(q) => format!("{} {}", self.greeting, q.ask),
                None => format!("{} {}", self.greeting, self.closing),
            }
        } else {
            let ask = self
                .questions
                .get(asked)
                .map(|q| q.ask.clone())
                .unwrap_or_default();
            if restarted {
                format!("{} {ask}", self.retry)
            } else {
                ask
            }
        };
        (line.trim().to_string(), slots, false)
    }
}

fn is_yes(answer: &str) -> bool {
    let a = answer.to_lowercase();
    let first = a
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("");
    matches!(
        first,
        "yes" | "yeah" | "yep" | "yup" | "correct" | "right" | "sure" | "exactly" | "ok" | "okay"
    ) || a.contains("that's right")
        || a.contains("that is right")
}

/// An answer as a slot value: Whisper ends "8 o'clock" with a period, and
/// the read-back template has its own punctuation ("at {time}, under").
fn slot_value(answer: &str) -> String {
    answer
        .trim()
        .trim_end_matches(['.', '!', '?', ',', ';', ':', '…'])
        .trim_end()
        .to_string()
}

/// `{slot}` placeholders filled from `slots`.
fn fill(template: &str, slots: &BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in slots {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A [`Script`] as a [`ChatModel`]: replies instantly, offline.
#[derive(Debug, Clone)]
pub struct ScriptedModel {
    script: Script,
    name: String,
}

impl ScriptedModel {
    /// The model for `script`.
    pub fn new(script: Script) -> Self {
        Self {
            script,
            name: "scripted".into(),
        }
    }
}

impl ChatModel for ScriptedModel {
    fn stream(&self, request: ChatRequest) -> ChatFuture {
        let (line, _slots, done) = self.script.next_line(&request.messages);
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(4);
            let task = tokio::spawn(async move {
                let _ = tx.send(Ok(ChatEvent::Text(line))).await;
                if done {
                    let _ = tx
                        .send(Ok(ChatEvent::ToolCall {
                            id: "scripted_end".into(),
                            name: "end_call".into(),
                            arguments: serde_json::json!({}),
                        }))
                        .await;
                }
                let _ = tx
                    .send(Ok(ChatEvent::Usage {
                        input: 0,
                        output: 0,
                    }))
                    .await;
                let reason = if done {
                    FinishReason::ToolCalls
                } else {
                    FinishReason::Stop
                };
                let _ = tx.send(Ok(ChatEvent::Finish(reason))).await;
            });
            Ok(ChatStream::new(rx, task))
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Message;

    fn script() -> Script {
        Script {
            greeting: "Hello, thanks for calling.".into(),
            questions: vec![
                ScriptQuestion {
                    slot: "name".into(),
                    ask: "What is your name?".into(),
                },
                ScriptQuestion {
                    slot: "party".into(),
                    ask: "For how many people?".into(),
                },
            ],
            confirm: "A table for {party}, under {name}.".into(),
            closing: "You're booked. Goodbye.".into(),
            retry: "Let's try again.".into(),
        }
    }

    fn said(user: &[&str]) -> (String, BTreeMap<String, String>, bool) {
        let mut m = Vec::new();
        for u in user {
            m.push(Message {
                role: Role::Assistant,
                content: "…".into(),
            });
            m.push(Message {
                role: Role::User,
                content: (*u).into(),
            });
        }
        script().next_line(&m)
    }

    #[test]
    fn the_dialog_runs_in_order_and_fills_slots() {
        assert_eq!(said(&[]).0, "Hello, thanks for calling. What is your name?");
        assert_eq!(said(&["Ana"]).0, "For how many people?");
        let (line, slots, done) = said(&["Ana", "four"]);
        assert_eq!(line, "A table for four, under Ana. Is that right?");
        assert_eq!(slots["name"], "Ana");
        assert!(!done);
        let (line, slots, done) = said(&["Ana", "four", "Yes, that's right."]);
        assert_eq!(line, "You're booked. Goodbye.");
        assert_eq!(slots["party"], "four");
        assert!(done);
    }

    #[test]
    fn the_read_back_drops_the_callers_final_punctuation() {
        let (line, slots, _) = said(&["Luigi.", "Two!"]);
        assert_eq!(slots["name"], "Luigi");
        assert_eq!(line, "A table for Two, under Luigi. Is that right?");
        // Inner punctuation stays.
        assert_eq!(slot_value("  Mr. Smith. "), "Mr. Smith");
    }

    #[test]
    fn no_to_the_confirmation_starts_over() {
        assert_eq!(
            said(&["Ana", "four", "No"]).0,
            "Let's try again. What is your name?"
        );
        let (line, slots, _) = said(&["Ana", "four", "No", "Bea", "two"]);
        assert_eq!(line, "A table for two, under Bea. Is that right?");
        assert_eq!(slots["name"], "Bea");
    }
}
