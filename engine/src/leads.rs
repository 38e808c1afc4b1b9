//! Leads: what a caller left behind, found at the call's end and scored.
//!
//! Sources, best first: the model's own `record_lead` tool call; a
//! structured-output request through the agent's router (when it has real
//! providers: the reply must be one JSON object); the scripted agent's
//! filled slots. Contact details the caller said (an e-mail address, a run
//! of seven or more digits) fill what those left empty. The score is the
//! sum of the configured points, clamped to 0..=100.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::LeadRules;
use crate::llm::{ChatEvent, ChatRequest, Message, Role, Router, Script};
use crate::speaking::Brain;
use crate::store::{Lead, now_ms};

/// The fields of a lead before scoring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LeadFields {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// What the caller wants.
    #[serde(default)]
    pub intent: Option<String>,
    /// Anything else.
    #[serde(default)]
    pub notes: Option<String>,
}

impl LeadFields {
    fn is_empty(&self) -> bool {
        [
            &self.name,
            &self.phone,
            &self.email,
            &self.intent,
            &self.notes,
        ]
        .iter()
        .all(|f| f.is_none())
    }

    /// Blank strings and JSON nulls written as text count as absent.
    fn tidy(mut self) -> Self {
        for f in [
            &mut self.name,
            &mut self.phone,
            &mut self.email,
            &mut self.intent,
            &mut self.notes,
        ] {
            if let Some(v) = f {
                let t = v.trim();
                if t.is_empty()
                    || t.eq_ignore_ascii_case("null")
                    || t.eq_ignore_ascii_case("unknown")
                {
                    *f = None;
                } else if t.len() != v.len() {
                    *f = Some(t.to_string());
                }
            }
        }
        self
    }

    /// Fills empty fields from `other`.
    fn or(mut self, other: LeadFields) -> Self {
        self.name = self.name.or(other.name);
        self.phone = self.phone.or(other.phone);
        self.email = self.email.or(other.email);
        self.intent = self.intent.or(other.intent);
        self.notes = self.notes.or(other.notes);
        self
    }
}

/// The score of `lead` under `rules`, 0..=100.
pub fn score(rules: &LeadRules, lead: &LeadFields) -> i64 {
    let mut s = rules.base;
    let has = |f: &Option<String>| f.is_some();
    if has(&lead.name) {
        s += rules.name;
    }
    if has(&lead.phone) {
        s += rules.phone;
    }
    if has(&lead.email) {
        s += rules.email;
    }
    if has(&lead.intent) {
        s += rules.intent;
    }
    let text = format!(
        "{} {}",
        lead.intent.as_deref().unwrap_or(""),
        lead.notes.as_deref().unwrap_or("")
    )
    .to_lowercase();
    for (word, points) in &rules.keywords {
        if text.contains(word.as_str()) {
            s += points;
        }
    }
    s.clamp(0, 100)
}

/// Fields from a `record_lead` tool call's JSON arguments.
pub fn from_tool(arguments: &str) -> Option<LeadFields> {
    let fields: LeadFields = serde_json::from_str(arguments).ok()?;
    Some(fields.tidy()).filter(|f| !f.is_empty())
}

/// Fields from the scripted dialog's slots.
pub fn from_slots(rules: &LeadRules, slots: &BTreeMap<String, String>) -> LeadFields {
    let mut f = LeadFields::default();
    let mut notes = Vec::new();
    for (slot, value) in slots {
        let s = slot.to_lowercase();
        if rules
            .name_slots
            .iter()
            .any(|n| n.eq_ignore_ascii_case(slot))
        {
            f.name = Some(value.clone());
        } else if s.contains("phone") || s.contains("number") {
            f.phone = Some(value.clone());
        } else if s.contains("email") || s.contains("e-mail") {
            f.email = Some(value.clone());
        } else if s == "intent" || s == "reason" {
            f.intent = Some(value.clone());
        } else {
            notes.push(format!("{slot}: {value}"));
        }
    }
    if !notes.is_empty() {
        f.notes = Some(notes.join("; "));
    }
    f.tidy()
}

/// An e-mail address and a phone number the caller said, if any.
pub fn contacts_in(caller_text: &str) -> LeadFields {
    let email = caller_text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .find(|w| {
            w.split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
        })
        .map(str::to_string);
    // A run of at least 7 digits, allowing spaces, dots and dashes between.
    let mut phone = None;
    let mut run = String::new();
    for c in caller_text.chars().chain(std::iter::once('x')) {
        if c.is_ascii_digit() || (c == '+' && run.is_empty()) {
            run.push(c);
        } else if matches!(c, ' ' | '-' | '.') && !run.is_empty() {
        } else {
            if run.chars().filter(char::is_ascii_digit).count() >= 7 {
                phone = Some(run.clone());
                break;
            }
            run.clear();
        }
    }
    LeadFields {
        email,
        phone,
        ..LeadFields::default()
    }
}

/// A conversation as the text the extraction request carries.
pub fn transcript_text(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| {
            let who = if m.role == Role::User {
                "Caller"
            } else {
                "Agent"
            };
            format!("{who}: {}\n", m.content)
        })
        .collect()
}

/// Asks `router` for the lead in `transcript` as one JSON object (the
/// first `{` to the last `}` of the reply). `None` when no provider gives
/// a usable object.
pub async fn from_model(
    router: &Arc<Router>,
    tenant: &str,
    call: &str,
    transcript: &str,
) -> Option<LeadFields> {
    let request = ChatRequest {
        system: "You read a phone call transcript and extract a sales lead. Reply with one JSON \
                 object and nothing else, with the keys name, phone, email, intent and notes; \
                 use null for anything the caller did not say."
            .into(),
        messages: vec![Message {
            role: Role::User,
            content: transcript.to_string(),
        }],
        tools: vec![],
        max_tokens: 300,
        temperature: 0.0,
    };
    let mut reply = router
        .reply_in_call(tenant, Some(call), request)
        .await
        .ok()?;
    let mut text = String::new();
    while let Some(event) = reply.next().await {
        match event {
            Ok(ChatEvent::Text(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    let fields: LeadFields = serde_json::from_str(text.get(start..=end)?).ok()?;
    Some(fields.tidy()).filter(|f| !f.is_empty())
}

/// What the lead extractor gets at a call's end.
#[derive(Debug)]
pub(crate) struct Ending {
    pub(crate) call_id: String,
    pub(crate) tenant: String,
    /// The conversation, caller lines as `User`.
    pub(crate) messages: Vec<Message>,
    /// The last `record_lead` arguments, if the model called it.
    pub(crate) tool: Option<String>,
}

/// The call's lead, if the caller left anything worth one.
pub(crate) async fn extract(
    brain: Option<&Brain>,
    script: Option<&Script>,
    has_providers: bool,
    rules: &LeadRules,
    ending: Ending,
) -> Option<Lead> {
    if !ending.messages.iter().any(|m| m.role == Role::User) {
        return None;
    }
    let caller_text: Vec<&str> = ending
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    let mut fields = ending.tool.as_deref().and_then(from_tool);
    if let Some(brain) = brain.filter(|_| fields.is_none() && has_providers) {
        let transcript = transcript_text(&ending.messages);
        fields = from_model(&brain.router, &ending.tenant, &ending.call_id, &transcript).await;
    }
    let slots = script
        .map(|s| from_slots(rules, &s.next_line(&ending.messages).1))
        .unwrap_or_default();
    let fields = fields
        .unwrap_or_default()
        .or(slots)
        .or(contacts_in(&caller_text.join(" ")));
    if fields.is_empty() {
        return None;
    }
    Some(Lead {
        call_id: ending.call_id,
        tenant: ending.tenant,
        score: score(rules, &fields),
        name: fields.name,
        phone: fields.phone,
        email: fields.email,
        intent: fields.intent,
        notes: fields.notes,
        at_ms: now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_by_the_rules_and_clamps() {
        let rules = LeadRules {
            keywords: vec![("buy".into(), 30), ("just looking".into(), -50)],
            ..LeadRules::default()
        };
        let f = LeadFields {
            name: Some("Ana".into()),
            intent: Some("wants to buy a table".into()),
            ..LeadFields::default()
        };
        // 10 base + 20 name + 20 intent + 30 keyword
        assert_eq!(score(&rules, &f), 80);
        let all = LeadFields {
            phone: Some("5551234567".into()),
            email: Some("a@b.c".into()),
            ..f.clone()
        };
        assert_eq!(score(&rules, &all), 100);
        let cold = LeadFields {
            notes: Some("just looking".into()),
            ..LeadFields::default()
        };
        assert_eq!(score(&rules, &cold), 0);
    }

    #[test]
    fn slots_map_to_fields_and_the_rest_to_notes() {
        let slots = BTreeMap::from([
            ("name".to_string(), "Ana".to_string()),
            ("party".to_string(), "four".to_string()),
            ("phone_number".to_string(), "555 123 4567".to_string()),
        ]);
        let f = from_slots(&LeadRules::default(), &slots);
        assert_eq!(f.name.as_deref(), Some("Ana"));
        assert_eq!(f.phone.as_deref(), Some("555 123 4567"));
        assert_eq!(f.notes.as_deref(), Some("party: four"));
    }

    #[test]
    fn finds_contacts_in_speech() {
        let f = contacts_in("Sure, it's 555-123-4567 and ana@example.com.");
        assert_eq!(f.phone.as_deref(), Some("5551234567"));
        assert_eq!(f.email.as_deref(), Some("ana@example.com"));
        let none = contacts_in("A table for 4 at 7 please");
        assert_eq!(none, LeadFields::default());
    }

    #[test]
    fn tool_arguments_parse_and_blank_means_absent() {
        let f = from_tool(r#"{"name":"Bo","email":" ","intent":"catering","extra":1}"#).unwrap();
        assert_eq!(f.name.as_deref(), Some("Bo"));
        assert_eq!(f.email, None);
        assert!(from_tool("not json").is_none());
        assert!(from_tool("{}").is_none());
    }
}
