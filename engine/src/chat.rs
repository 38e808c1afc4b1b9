//! `hark chat --agent NAME`: a text conversation with an agent's providers.
//!
//! Engineers test prompts, routing and failover without a phone. Each line
//! typed is the caller's turn; the reply streams as it arrives, followed by
//! its usage record (provider, time to first token, tokens, cost, outcome).
//! With no reachable provider the scripted dialog answers.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::config::{ChatAgent, Config, ProviderKind};
use crate::llm::{
    Anthropic, ChatEvent, ChatModel, ChatRequest, Gemini, Message, OpenAiCompatible, Provider,
    Role, Router, ScriptedModel, UsageRecord, builtin_tools,
};

/// Builds `agent`'s router from the configuration.
pub fn router_for(
    config: &Config,
    agent: &str,
    records: Option<mpsc::Sender<UsageRecord>>,
) -> Result<(Arc<Router>, ChatAgent), String> {
    let Some(chat) = config.chats.get(agent) else {
        let known: Vec<&str> = config.chats.keys().map(String::as_str).collect();
        return Err(format!(
            "no chat agent named {agent:?} (chat agents: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ));
    };
    let client = crate::llm::http_client().map_err(|e| e.to_string())?;
    let mut providers = Vec::new();
    for name in &chat.providers {
        let p = &config.providers[name];
        let key = p.api_key.as_ref().map(|k| k.expose().to_string());
        let model: Arc<dyn ChatModel> = match p.kind {
            ProviderKind::OpenAi => Arc::new(OpenAiCompatible::new(
                client.clone(),
                &p.base_url,
                &p.model,
                key,
            )),
            // Config validation requires a key for these two.
            ProviderKind::Anthropic => Arc::new(Anthropic::new(
                client.clone(),
                &p.base_url,
                &p.model,
                key.unwrap_or_default(),
            )),
            ProviderKind::Gemini => Arc::new(Gemini::new(
                client.clone(),
                &p.base_url,
                &p.model,
                key.unwrap_or_default(),
            )),
        };
        providers.push(Provider {
            model,
            price: p.price,
        });
    }
    let fallback: Arc<dyn ChatModel> = Arc::new(ScriptedModel::new(chat.script.clone()));
    Ok((
        Router::new(providers, Some(fallback), chat.router.clone(), records),
        chat.clone(),
    ))
}

/// Runs the conversation on `input` lines, writing to `out`, until EOF.
pub async fn run<R, W>(
    router: Arc<Router>,
    agent: ChatAgent,
    tenant: &str,
    input: R,
    mut out: W,
    mut records: mpsc::Receiver<UsageRecord>,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let tools: Vec<_> = builtin_tools()
        .into_iter()
        .filter(|t| agent.tools.contains(&t.name))
        .collect();
    let mut history: Vec<Message> = Vec::new();
    let mut lines = BufReader::new(input).lines();
    // The agent speaks first, as on a call.
    let mut turn: Option<String> = None;
    loop {
        if let Some(said) = turn.take() {
            history.push(Message {
                role: Role::User,
                content: said,
            });
        }
        let request = ChatRequest {
            system: agent.system_prompt.clone(),
            messages: history.clone(),
            tools: tools.clone(),
            max_tokens: agent.max_tokens,
            temperature: agent.temperature,
        };
        out.write_all(b"agent> ").await?;
        let mut reply_text = String::new();
        let mut end = false;
        match router.reply(tenant, request).await {
            Ok(mut reply) => {
                while let Some(event) = reply.next().await {
                    match event {
                        Ok(ChatEvent::Text(t)) => {
                            out.write_all(t.as_bytes()).await?;
                            out.flush().await?;
                            reply_text.push_str(&t);
                        }
                        Ok(ChatEvent::ToolCall {
                            name, arguments, ..
                        }) => {
                            out.write_all(format!("\n  [tool {name} {arguments}]").as_bytes())
                                .await?;
                            end |= name == "end_call" || name == "transfer_to_human";
                        }
                        Ok(_) => {}
                        Err(e) => {
                            out.write_all(format!("\n  [reply ended: {e}]").as_bytes())
                                .await?;
                        }
                    }
                }
            }
            Err(e) => out.write_all(format!("[no reply: {e}]").as_bytes()).await?,
        }
        out.write_all(b"\n").await?;
        while let Ok(r) = records.try_recv() {
            let line = format!(
                "  ({}: {} in / {} out tokens, cost {:.5}, first token {}, total {} ms, {:?})\n",
                r.provider,
                r.input_tokens,
                r.output_tokens,
                r.cost,
                r.time_to_first_token
                    .map(|d| format!("{} ms", d.as_millis()))
                    .unwrap_or_else(|| "-".into()),
                r.total.as_millis(),
                r.outcome
            );
            out.write_all(line.as_bytes()).await?;
        }
        if !reply_text.is_empty() {
            history.push(Message {
                role: Role::Assistant,
                content: reply_text,
            });
        }
        if end {
            out.write_all(b"(the agent ended the conversation)\n")
                .await?;
            return Ok(());
        }
        out.write_all(b"you> ").await?;
        out.flush().await?;
        match lines.next_line().await? {
            Some(l) if !l.trim().is_empty() => turn = Some(l.trim().to_string()),
            Some(_) => turn = Some(String::from("(silence)")),
            None => return Ok(()),
        }
    }
}
