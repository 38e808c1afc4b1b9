//! `GET /v1/stats`: a tenant's calls, outcomes, handle time, voice-to-voice
//! percentiles and AI cost for a period. Each figure is one aggregate query
//! over an index; the percentiles come from a `GROUP BY` of whole
//! milliseconds, so they are exact without reading every turn.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError};

/// Cost and tokens of one provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderCost {
    /// The provider.
    pub provider: String,
    /// Requests.
    pub requests: i64,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// Summed cost.
    pub cost: f64,
}

/// Voice-to-voice percentiles over a period's turns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct V2v {
    /// Turns measured.
    pub turns: i64,
    /// Median, ms.
    pub p50_ms: Option<i64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<i64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<i64>,
}

/// The answer of `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Period start (epoch ms, inclusive).
    pub from_ms: i64,
    /// Period end (exclusive).
    pub to_ms: i64,
    /// Calls created in the period.
    pub calls: i64,
    /// Calls by outcome ("in_progress" for those without one yet).
    pub outcomes: BTreeMap<String, i64>,
    /// Mean duration of the ended calls, ms.
    pub average_handle_ms: Option<i64>,
    /// Voice-to-voice latency of the period's turns.
    pub voice_to_voice: V2v,
    /// AI cost by provider.
    pub ai_cost: Vec<ProviderCost>,
}

impl Store {
    /// The tenant's figures for `[from_ms, to_ms)`.
    pub async fn stats(&self, tenant: &str, from_ms: i64, to_ms: i64) -> Result<Stats, StoreError> {
        let d = self.dialect();
        // Three aggregates over three covering indexes, on three pooled
        // connections at once.
        let outcomes_q = sqlx::query(AssertSqlSafe(format!(
            "SELECT outcome, COUNT(*) AS n, {} AS total, COUNT(duration_ms) AS ended FROM calls \
             WHERE tenant_id = ? AND created_ms >= ? AND created_ms < ? GROUP BY outcome",
            d.int("SUM(duration_ms)")
        )))
        .bind(tenant.to_string())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool());
        let hist_q = sqlx::query(
            "SELECT v2v_ms, COUNT(*) AS n FROM turns WHERE tenant_id = ? AND at_ms >= ? AND at_ms < ? \
             GROUP BY v2v_ms ORDER BY v2v_ms",
        )
        .bind(tenant.to_string())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool());
        let cost_q = sqlx::query(AssertSqlSafe(format!(
            "SELECT provider, COUNT(*) AS n, {} AS tin, {} AS tout, SUM(cost) AS cost FROM ai_requests \
             WHERE tenant_id = ? AND at_ms >= ? AND at_ms < ? GROUP BY provider ORDER BY provider",
            d.int("SUM(tokens_in)"),
            d.int("SUM(tokens_out)")
        )))
        .bind(tenant.to_string())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool());
        let (rows, hist_rows, cost_rows) = tokio::try_join!(outcomes_q, hist_q, cost_q)?;
        let mut outcomes = BTreeMap::new();
        let (mut calls, mut total, mut ended) = (0i64, 0i64, 0i64);
        for r in &rows {
            let outcome: Option<String> = r.try_get("outcome")?;
            let n: i64 = r.try_get("n")?;
            calls += n;
            total += r.try_get::<Option<i64>, _>("total")?.unwrap_or(0);
            ended += r.try_get::<i64, _>("ended")?;
            *outcomes
                .entry(outcome.unwrap_or_else(|| "in_progress".into()))
                .or_insert(0) += n;
        }

        let hist = hist_rows
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>("v2v_ms")?, r.try_get::<i64, _>("n")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        let ai_cost = cost_rows
            .iter()
            .map(|r| {
                Ok(ProviderCost {
                    provider: r.try_get("provider")?,
                    requests: r.try_get("n")?,
                    tokens_in: r.try_get::<Option<i64>, _>("tin")?.unwrap_or(0),
                    tokens_out: r.try_get::<Option<i64>, _>("tout")?.unwrap_or(0),
                    cost: r.try_get::<Option<f64>, _>("cost")?.unwrap_or(0.0),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        Ok(Stats {
            from_ms,
            to_ms,
            calls,
            outcomes,
            average_handle_ms: (ended > 0).then(|| total / ended),
            voice_to_voice: percentiles(&hist),
            ai_cost,
        })
    }
}

/// Nearest-rank percentiles of a sorted (value, count) histogram.
fn percentiles(hist: &[(i64, i64)]) -> V2v {
    let turns: i64 = hist.iter().map(|&(_, n)| n).sum();
    let at = |q: f64| {
        if turns == 0 {
            return None;
        }
        let rank = ((q * turns as f64).ceil() as i64).max(1);
        let mut seen = 0;
        hist.iter().find_map(|&(v, n)| {
            seen += n;
            (seen >= rank).then_some(v)
        })
    };
    V2v {
        turns,
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::percentiles;

    #[test]
    fn nearest_rank_over_a_histogram() {
        // 100 turns: 1..=100 ms once each.
        let h: Vec<(i64, i64)> = (1..=100).map(|v| (v, 1)).collect();
        let p = percentiles(&h);
        assert_eq!(
            (p.turns, p.p50_ms, p.p95_ms, p.p99_ms),
            (100, Some(50), Some(95), Some(99))
        );
        let p = percentiles(&[(400, 3), (900, 1)]);
        assert_eq!((p.p50_ms, p.p95_ms), (Some(400), Some(900)));
        assert_eq!(percentiles(&[]).p50_ms, None);
    }
}
