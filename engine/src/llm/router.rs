//! The provider router: which model answers, and what happens when it fails.
//!
//! Per agent: an ordered list of providers and a policy:
//!
//! - `priority` tries them in configured order.
//! - `cheapest` orders by price per 1k input plus output tokens.
//! - `fastest` orders by a moving average of each provider's time to first
//!   token (untried providers first, so every provider gets measured).
//!
//! A provider whose circuit breaker is open is skipped. The breaker opens
//! after `breaker_failures` consecutive failures, and one probe is let
//! through after `breaker_cooldown` (half-open).
//!
//! Failover happens only **before the first token reaches the caller**: an
//! error, a rate limit or the first-token timeout moves on to the next
//! provider. After the first token, a failure or the total timeout ends the
//! reply cleanly instead, because the caller has already heard part of it.
//!
//! Per tenant, a token budget per window and a request rate limit apply.
//! When they are exceeded, or when every provider fails, the scripted agent
//! answers, so the caller never hears dead air.
//!
//! Every request yields a [`UsageRecord`] (provider, tokens, cost, time to
//! first token, total time, outcome) on the records channel.
//!
//! # Concurrency
//! The router is shared by all calls. Its state (breakers, latency
//! averages, tenant use) is behind one mutex that is held for bookkeeping
//! only, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ChatEvent, ChatModel, ChatRequest, ChatStream, LlmError};

/// How the provider list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// As configured.
    Priority,
    /// Lowest price first.
    Cheapest,
    /// Lowest measured time to first token first.
    Fastest,
}

/// Price per 1,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    /// Per 1k prompt tokens.
    pub input_per_1k: f64,
    /// Per 1k reply tokens.
    pub output_per_1k: f64,
}

/// One provider in a router.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The model.
    pub model: Arc<dyn ChatModel>,
    /// Its price.
    pub price: Price,
}

/// A per-tenant limit on tokens per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBudget {
    /// Tokens (prompt + reply) allowed per window.
    pub tokens: u64,
    /// The window.
    pub window: Duration,
}

/// Router settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Ordering policy.
    pub policy: Policy,
    /// Longest wait for the first token before trying the next provider.
    pub first_token_timeout: Duration,
    /// Longest a whole reply may take.
    pub total_timeout: Duration,
    /// Consecutive failures that open a provider's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker stays open before one probe.
    pub breaker_cooldown: Duration,
    /// Token budget per tenant.
    pub budget: Option<TokenBudget>,
    /// Requests per minute per tenant.
    pub requests_per_minute: Option<u32>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Priority,
            // A caller notices silence after about 2 s; leave time to fail over.
            first_token_timeout: Duration::from_millis(1_500),
            total_timeout: Duration::from_secs(30),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(30),
            budget: None,
            requests_per_minute: None,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The reply completed.
    Ok,
    /// The provider failed (with why); before the first token the router
    /// moved on.
    Failed(String),
    /// The caller stopped listening (barge-in) before the end.
    Cancelled,
}

/// One request's accounting, for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// The tenant.
    pub tenant: String,
    /// The call the request served, if it served one.
    pub call: Option<String>,
    /// `provider/model`.
    pub provider: String,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Reply tokens.
    pub output_tokens: u32,
    /// From the configured prices.
    pub cost: f64,
    /// Time to first token, if one came.
    pub time_to_first_token: Option<Duration>,
    /// Time to the end (or the failure).
    pub total: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// Why no provider answered (the caller then gets the scripted agent, if
/// the router has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Every provider failed or was skipped.
    #[error("no provider answered: {0}")]
    AllFailed(String),
    /// The tenant's token budget for this window is spent.
    #[error("token budget of tenant {0} exhausted")]
    BudgetExhausted(String),
    /// The tenant sent too many requests this minute.
    #[error("request rate limit of tenant {0} reached")]
    RateLimited(String),
}

#[derive(Debug, Default, Clone, Copy)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// May a request go to this provider now?
    fn allows(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now >= until && !self.probing => {
                // Half-open: one probe.
                self.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    fn success(&mut self) {
        *self = Breaker::default();
    }

    fn failure(&mut self, now: Instant, config: &RouterConfig) {
        self.failures += 1;
        if self.probing || self.failures >= config.breaker_failures {
            self.open_until = Some(now + config.breaker_cooldown);
        }
        self.probing = false;
    }
}

#[derive(Debug, Default)]
struct SlotState {
    breaker: Breaker,
    /// Moving average of time to first token.
    ttft: Option<Duration>,
}

#[derive(Debug, Default)]
struct TenantUse {
    /// (when, tokens) of recent requests.
    tokens: VecDeque<(Instant, u64)>,
    requests: VecDeque<Instant>,
}

#[derive(Debug)]
struct State {
    slots: Vec<SlotState>,
    tenants: HashMap<String, TenantUse>,
}

/// Routes one agent's requests over its providers.
#[derive(Debug)]
pub struct Router {
    providers: Vec<Provider>,
    fallback: Option<Arc<dyn ChatModel>>,
    config: RouterConfig,
    state: Mutex<State>,
    records: Option<mpsc::Sender<UsageRecord>>,
}

/// Weight of the newest sample in the time-to-first-token average.
const EWMA_WEIGHT: f64 = 0.3;

impl Router {
    /// A router over `providers`, answering with `fallback` when none can.
    pub fn new(
        providers: Vec<Provider>,
        fallback: Option<Arc<dyn ChatModel>>,
        config: RouterConfig,
        records: Option<mpsc::Sender<UsageRecord>>,
    ) -> Arc<Self> {
        let slots = providers.iter().map(|_| SlotState::default()).collect();
        Arc::new(Self {
            providers,
            fallback,
            config,
            state: Mutex::new(State {
                slots,
                tenants: HashMap::new(),
            }),
            records,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Provider indices in the order this request will try them.
    fn plan(&self, now: Instant) -> Vec<usize> {
        let mut st = self.state();
        let mut order: Vec<usize> = (0..self.providers.len()).collect();
        match self.config.policy {
            Policy::Priority => {}
            Policy::Cheapest => order.sort_by(|&a, &b| {
                let p = |i: usize| {
                    self.providers[i].price.input_per_1k + self.providers[i].price.output_per_1k
                };
                p(a).total_cmp(&p(b))
            }),
            Policy::Fastest => {
                order.sort_by_key(|&i| st.slots[i].ttft.unwrap_or(Duration::ZERO));
            }
        }
        order.retain(|&i| st.slots[i].breaker.allows(now));
        order
    }

    /// Checks and counts the tenant's rate and budget.
    fn admit(&self, tenant: &str, now: Instant) -> Result<(), RouteError> {
        let mut st = self.state();
        let t = st.tenants.entry(tenant.to_string()).or_default();
        if let Some(limit) = self.config.requests_per_minute {
            while t
                .requests
                .front()
                .is_some_and(|&at| now.duration_since(at) >= Duration::from_secs(60))
            {
                t.requests.pop_front();
            }
            if t.requests.len() >= limit as usize {
                return Err(RouteError::RateLimited(tenant.to_string()));
            }
            t.requests.push_back(now);
        }
        if let Some(b) = self.config.budget {
            while t
                .tokens
                .front()
                .is_some_and(|&(at, _)| now.duration_since(at) >= b.window)
            {
                t.tokens.pop_front();
            }
            let used: u64 = t.tokens.iter().map(|&(_, n)| n).sum();
            if used >= b.tokens {
                return Err(RouteError::BudgetExhausted(tenant.to_string()));
            }
        }
        Ok(())
    }

    /// A streamed reply from the first provider that produces a first token
    /// in time; the scripted agent when none does (or the tenant is over
    /// its limits). `Err` only when there is no fallback either.
    pub async fn reply(
        self: &Arc<Self>,
        tenant: &str,
        request: ChatRequest,
    ) -> Result<Reply, RouteError> {
        self.reply_in_call(tenant, None, request).await
    }

    /// [`Router::reply`] for a call: its usage records name the call.
    pub async fn reply_in_call(
        self: &Arc<Self>,
        tenant: &str,
        call: Option<&str>,
        request: ChatRequest,
    ) -> Result<Reply, RouteError> {
        let call = call.map(str::to_string);
        let now = Instant::now();
        if let Err(e) = self.admit(tenant, now) {
            return self.fall_back(tenant, call, request, e).await;
        }
        let mut why = Vec::new();
        for i in self.plan(now) {
            let provider = &self.providers[i];
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.config.first_token_timeout, async {
                let mut stream = provider.model.stream(request.clone()).await?;
                match stream.next().await {
                    Some(Ok(first)) => Ok((stream, first)),
                    Some(Err(e)) => Err(e),
                    None => Err(LlmError::Truncated),
                }
            })
            .await
            .unwrap_or(Err(LlmError::Timeout("the first token")));
            match attempt {
                Ok((stream, first)) => {
                    let ttft = started.elapsed();
                    {
                        let mut st = self.state();
                        let slot = &mut st.slots[i];
                        slot.ttft = Some(match slot.ttft {
                            None => ttft,
                            Some(avg) => avg.mul_f64(1.0 - EWMA_WEIGHT) + ttft.mul_f64(EWMA_WEIGHT),
                        });
                    }
                    return Ok(Reply {
                        router: Arc::clone(self),
                        tenant: tenant.to_string(),
                        call,
                        slot: Some(i),
                        provider: provider.model.name().to_string(),
                        first: Some(first),
                        stream,
                        started,
                        ttft: Some(ttft),
                        deadline: started + self.config.total_timeout,
                        usage: (0, 0),
                        ended: false,
                    });
                }
                Err(e) => {
                    self.state().slots[i]
                        .breaker
                        .failure(Instant::now(), &self.config);
                    self.record(UsageRecord {
                        tenant: tenant.to_string(),
                        call: call.clone(),
                        provider: provider.model.name().to_string(),
                        input_tokens: 0,
                        output_tokens: 0,
                        cost: 0.0,
                        time_to_first_token: None,
                        total: started.elapsed(),
                        outcome: Outcome::Failed(e.to_string()),
                    });
                    why.push(format!("{}: {e}", provider.model.name()));
                }
            }
        }
        let e = RouteError::AllFailed(if self.providers.is_empty() {
            "no providers configured".to_string()
        } else if why.is_empty() {
            "every provider's breaker is open".to_string()
        } else {
            why.join("; ")
        });
        self.fall_back(tenant, call, request, e).await
    }

    async fn fall_back(
        self: &Arc<Self>,
        tenant: &str,
        call: Option<String>,
        request: ChatRequest,
        why: RouteError,
    ) -> Result<Reply, RouteError> {
        let Some(model) = &self.fallback else {
            return Err(why);
        };
        if self.providers.is_empty() {
            tracing::debug!("answering with the scripted agent (no providers configured)");
        } else {
            tracing::warn!(reason = %why, "answering with the scripted agent");
        }
        let started = Instant::now();
        let mut stream = model.stream(request).await.map_err(|_| why.clone())?;
        let first = match stream.next().await {
            Some(Ok(e)) => e,
            _ => return Err(why),
        };
        Ok(Reply {
            router: Arc::clone(self),
            tenant: tenant.to_string(),
            call,
            slot: None,
            provider: model.name().to_string(),
            first: Some(first),
            stream,
            started,
            ttft: Some(started.elapsed()),
            deadline: started + self.config.total_timeout,
            usage: (0, 0),
            ended: false,
        })
    }

    fn record(&self, r: UsageRecord) {
        if let Some(tx) = &self.records
            && tx.try_send(r).is_err()
        {
            tracing::warn!("usage record dropped: the records queue is full");
        }
    }

    fn finish(&self, reply: &Reply, outcome: Outcome) {
        let (input, output) = reply.usage;
        let price = reply
            .slot
            .map(|i| self.providers[i].price)
            .unwrap_or_default();
        let cost = f64::from(input) / 1000.0 * price.input_per_1k
            + f64::from(output) / 1000.0 * price.output_per_1k;
        {
            let mut st = self.state();
            if let Some(i) = reply.slot {
                match &outcome {
                    Outcome::Failed(_) => st.slots[i].breaker.failure(Instant::now(), &self.config),
                    _ => st.slots[i].breaker.success(),
                }
            }
            if self.config.budget.is_some() {
                st.tenants
                    .entry(reply.tenant.clone())
                    .or_default()
                    .tokens
                    .push_back((Instant::now(), u64::from(input) + u64::from(output)));
            }
        }
        self.record(UsageRecord {
            tenant: reply.tenant.clone(),
            call: reply.call.clone(),
            provider: reply.provider.clone(),
            input_tokens: input,
            output_tokens: output,
            cost,
            time_to_first_token: reply.ttft,
            total: reply.started.elapsed(),
            outcome,
        });
    }
}

/// A routed, streamed reply.
#[derive(Debug)]
pub struct Reply {
    router: Arc<Router>,
    tenant: String,
    call: Option<String>,
    slot: Option<usize>,
    provider: String,
    first: Option<ChatEvent>,
    stream: ChatStream,
    started: Instant,
    ttft: Option<Duration>,
    deadline: Instant,
    usage: (u32, u32),
    ended: bool,
}

impl Reply {
    /// `provider/model` that is answering (`scripted` for the fallback).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Time to the first token.
    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.ttft
    }

    /// The next event. After the first token a failure is returned once and
    /// ends the reply (no failover: the caller has heard part of it).
    pub async fn next(&mut self) -> Option<Result<ChatEvent, LlmError>> {
        if self.ended {
            return None;
        }
        let event = match self.first.take() {
            Some(e) => Some(Ok(e)),
            None => tokio::time::timeout_at(self.deadline, self.stream.next())
                .await
                .unwrap_or(Some(Err(LlmError::Timeout("the end of the reply")))),
        };
        match &event {
            Some(Ok(ChatEvent::Usage { input, output })) => self.usage = (*input, *output),
            Some(Ok(ChatEvent::Finish(_))) => {
                self.ended = true;
                self.router.finish(self, Outcome::Ok);
            }
            Some(Err(e)) => {
                self.ended = true;
                self.router.finish(self, Outcome::Failed(e.to_string()));
            }
            None => {
                self.ended = true;
                self.router.finish(
                    self,
                    Outcome::Failed("stream ended without a finish".into()),
                );
            }
            Some(Ok(_)) => {}
        }
        event
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            let router = Arc::clone(&self.router);
            router.finish(self, Outcome::Cancelled);
        }
    }
}
