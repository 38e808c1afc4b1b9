//! Tools the model may call, and the built-in ones a voice agent needs.

use serde_json::json;

/// A tool: name, what it does, and its arguments as a JSON Schema object.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The name the model calls.
    pub name: String,
    /// When to call it (the model reads this).
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// `transfer_to_human`, `end_call` and `record_lead`.
pub fn builtin_tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "transfer_to_human".into(),
            description: "Hand the caller to a human agent. Use when the caller asks for a person or the request is outside what you can do.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
                "required": ["reason"]
            }),
        },
        ToolSpec {
            name: "end_call".into(),
            description: "End the call politely once the caller's request is complete.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
        ToolSpec {
            name: "record_lead".into(),
            description: "Record the caller as a sales lead with what you learned.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "phone": {"type": "string"},
                    "email": {"type": "string"},
                    "intent": {"type": "string", "description": "What the caller wants."},
                    "notes": {"type": "string"}
                },
                "required": ["intent"]
            }),
        },
    ]
}
