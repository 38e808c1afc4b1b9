//! What every transport shares to start calls: the configuration, the
//! agents, the speech models, the store, and the admission state.

use std::sync::Arc;

use super::{Live, Refusal};
use crate::config::{AgentSpec, Config, LeadRules};
use crate::registry::Registry;
use crate::speaking::Brain;
use crate::speech::Speech;
use crate::store::{EndsJournal, Recorder, Store, StoreEvent, WriterStats, now_ms};

/// An agent calls can get: by listener, or by a registered UUID.
#[derive(Debug)]
pub(crate) struct AgentEntry {
    pub(crate) spec: AgentSpec,
    /// The model router, for voice agents.
    pub(crate) brain: Option<Arc<Brain>>,
}

/// What every accept loop shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) speech: Option<Arc<Speech>>,
    pub(crate) agents: Vec<AgentEntry>,
    pub(crate) live: Arc<Live>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Option<Store>,
    /// A recorder to clone for each call, if a store is configured.
    pub(crate) recorder: Option<Recorder>,
    /// Where call ends are made durable, if a store is configured.
    pub(crate) ends: Option<EndsJournal>,
    /// The writer's counters: whether the database is there.
    pub(crate) db: Option<Arc<WriterStats>>,
    pub(crate) rules: Arc<LeadRules>,
}

impl Shared {
    /// The index of the agent named `name`.
    pub(crate) fn agent_index(&self, name: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.spec.name() == name)
    }

    /// The name of agent `i` (an index from `agent_index` or a listener).
    pub(crate) fn agent_name(&self, i: usize) -> &str {
        self.agents
            .get(i)
            .map(|a| a.spec.name())
            .unwrap_or_default()
    }

    /// Records a refused call under its UUID: the dialplan (or an admin)
    /// reads `refused` and why from the API. A duplicate UUID is only
    /// logged: its row is the call in progress, which must stay intact.
    pub(crate) fn record_refusal(&self, uuid: &str, refusal: Refusal, listener_agent: usize) {
        if refusal == Refusal::DuplicateUuid {
            return;
        }
        let registered = self.registry.take(uuid);
        self.registry.set_outcome(
            uuid,
            crate::registry::Outcome {
                outcome: "refused".into(),
                handoff_target: None,
            },
        );
        let Some(recorder) = &self.recorder else {
            return;
        };
        let mut recorder = recorder.clone();
        let tenant = registered
            .as_ref()
            .map(|r| r.tenant.clone())
            .unwrap_or_else(|| self.default_tenant());
        // The agent the call would have had.
        let agent = registered
            .as_ref()
            .map(|r| r.agent.clone())
            .unwrap_or_else(|| self.agent_name(listener_agent).to_string());
        let at = now_ms();
        recorder.record(StoreEvent::CallStarted(crate::store::CallStart {
            call_id: uuid.to_string(),
            tenant: tenant.clone(),
            agent: agent.clone(),
            caller_id: registered.as_ref().and_then(|r| r.caller_id.clone()),
            dnis: registered.as_ref().and_then(|r| r.dnis.clone()),
            direction: "inbound".into(),
            start_ms: at,
            answer_ms: None,
            metadata: None,
            node: Some(self.config.node.clone()),
        }));
        recorder.record(StoreEvent::CallEnded(crate::store::CallEnd {
            call_id: uuid.to_string(),
            tenant,
            agent,
            end_ms: at,
            duration_ms: 0,
            outcome: "refused".into(),
            handoff_target: None,
            reason: Some(refusal.as_str().into()),
        }));
        tokio::spawn(async move { recorder.flush().await });
    }

    /// The tenant of calls nobody assigned.
    pub(crate) fn default_tenant(&self) -> String {
        self.config
            .store
            .as_ref()
            .map(|s| s.tenant.clone())
            .unwrap_or_else(|| "default".into())
    }
}
