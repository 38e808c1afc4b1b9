//! Leads: the list, one lead, and status changes along the workflow
//! new -> qualified -> contacted -> converted, with closed reachable from
//! every open status. Each change is written with its audit entry in one
//! transaction.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::calls::{Bind, decode_cursor, keyset_page, split_page};
use super::{Store, StoreError, now_ms};

/// Where a lead is in the sales workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeadStatus {
    /// Just extracted from a call.
    New,
    /// Worth following up.
    Qualified,
    /// Someone reached out.
    Contacted,
    /// Became a customer (final).
    Converted,
    /// Dropped (final).
    Closed,
}

impl LeadStatus {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::New => "new",
            LeadStatus::Qualified => "qualified",
            LeadStatus::Contacted => "contacted",
            LeadStatus::Converted => "converted",
            LeadStatus::Closed => "closed",
        }
    }

    /// Parses a status name.
    pub fn parse(s: &str) -> Option<LeadStatus> {
        Some(match s {
            "new" => LeadStatus::New,
            "qualified" => LeadStatus::Qualified,
            "contacted" => LeadStatus::Contacted,
            "converted" => LeadStatus::Converted,
            "closed" => LeadStatus::Closed,
            _ => return None,
        })
    }

    /// Whether the workflow allows going from `self` to `to`. Staying put
    /// is allowed (a PATCH of the notes alone).
    pub fn can_become(self, to: LeadStatus) -> bool {
        use LeadStatus::*;
        self == to
            || matches!(
                (self, to),
                (New, Qualified)
                    | (Qualified, Contacted)
                    | (Contacted, Converted)
                    | (New | Qualified | Contacted, Closed)
            )
    }
}

/// A lead as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadRow {
    /// Its id.
    pub id: i64,
    /// The call it came from.
    pub call_id: String,
    /// Name.
    pub name: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Intent.
    pub intent: Option<String>,
    /// 0-100.
    pub score: i64,
    /// Workflow status.
    pub status: String,
    /// Notes.
    pub notes: Option<String>,
    /// When it was extracted (epoch ms).
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// Filters of `GET /v1/leads`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadFilter {
    /// Exact status.
    pub status: Option<LeadStatus>,
    /// Score at least.
    pub min_score: Option<i64>,
    /// Created at or after.
    pub from_ms: Option<i64>,
    /// Created before.
    pub to_ms: Option<i64>,
    /// The page after this cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// A `PATCH /v1/leads/{id}` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadPatch {
    /// The new status.
    pub status: Option<LeadStatus>,
    /// New notes (replacing the old).
    pub notes: Option<String>,
}

const LEAD_COLUMNS: &str =
    "id, call_id, name, phone, email, intent, score, status, notes, created_ms, updated_ms";

fn lead_row(r: &AnyRow) -> Result<LeadRow, sqlx::Error> {
    Ok(LeadRow {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        name: r.try_get("name")?,
        phone: r.try_get("phone")?,
        email: r.try_get("email")?,
        intent: r.try_get("intent")?,
        score: r.try_get("score")?,
        status: r.try_get("status")?,
        notes: r.try_get("notes")?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

impl Store {
    /// A page of the tenant's leads, newest first.
    pub async fn list_leads(
        &self,
        tenant: &str,
        f: &LeadFilter,
    ) -> Result<(Vec<LeadRow>, Option<String>), StoreError> {
        let mut sql = format!("SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = ?");
        let mut binds = vec![Bind::Text(tenant.to_string())];
        if let Some(s) = f.status {
            sql.push_str(" AND status = ?");
            binds.push(Bind::Text(s.as_str().into()));
        }
        if let Some(v) = f.min_score {
            sql.push_str(" AND score >= ?");
            binds.push(Bind::Int(v));
        }
        if let Some(v) = f.from_ms {
            sql.push_str(" AND created_ms >= ?");
            binds.push(Bind::Int(v));
        }
        if let Some(v) = f.to_ms {
            sql.push_str(" AND created_ms < ?");
            binds.push(Bind::Int(v));
        }
        if let Some(c) = &f.cursor {
            let (ms, id) = decode_cursor(c)?;
            let id: i64 = id.parse().map_err(|_| StoreError::BadCursor)?;
            sql.push_str(" AND (created_ms < ? OR (created_ms = ? AND id < ?))");
            binds.extend([Bind::Int(ms), Bind::Int(ms), Bind::Int(id)]);
        }
        let limit = f.limit.clamp(1, 500);
        let rows = keyset_page(sql, binds, limit)
            .fetch_all(self.pool())
            .await?;
        let rows = rows.iter().map(lead_row).collect::<Result<Vec<_>, _>>()?;
        let (out, next) = split_page(rows, limit, |l| format!("{}.{}", l.created_ms, l.id));
        Ok((out, next))
    }

    /// One lead of the tenant.
    pub async fn lead(&self, tenant: &str, id: i64) -> Result<LeadRow, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = ? AND id = ?"
        )))
        .bind(tenant.to_string())
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(lead_row(&row)?)
    }

    /// Applies a change if the workflow allows it, with its audit entry.
    pub async fn patch_lead(
        &self,
        tenant: &str,
        id: i64,
        patch: &LeadPatch,
        token_id: Option<i64>,
    ) -> Result<LeadRow, StoreError> {
        let mut tx = self.pool().begin().await?;
        let lock = match self.dialect() {
            super::Dialect::MySql => " FOR UPDATE",
            super::Dialect::Sqlite => "",
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = ? AND id = ?{lock}"
        )))
        .bind(tenant.to_string())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut lead = lead_row(&row)?;
        // A status in the database that we do not know is treated as final.
        let from = LeadStatus::parse(&lead.status).unwrap_or(LeadStatus::Closed);
        let to = patch.status.unwrap_or(from);
        if !from.can_become(to) {
            return Err(StoreError::Transition {
                from: from.as_str(),
                to: to.as_str(),
            });
        }
        // The status it has and the notes it has: nothing changes, so
        // nothing is written and nothing audited (a PATCH is idempotent).
        if to == from
            && patch
                .notes
                .as_ref()
                .is_none_or(|n| Some(n) == lead.notes.as_ref())
        {
            tx.rollback().await?;
            return Ok(lead);
        }
        let now = now_ms();
        let notes = patch.notes.clone().or(lead.notes.clone());
        sqlx::query(
            "UPDATE leads SET status = ?, notes = ?, updated_ms = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(to.as_str())
        .bind(notes.clone())
        .bind(now)
        .bind(tenant.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({
            "from": from.as_str(),
            "to": to.as_str(),
            "notes_changed": patch.notes.is_some(),
        });
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, token_id, action, target, detail, at_ms) VALUES (?, ?, 'lead.update', ?, ?, ?)",
        )
        .bind(tenant.to_string())
        .bind(token_id)
        .bind(format!("lead:{id}"))
        .bind(detail.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        lead.status = to.as_str().to_string();
        lead.notes = notes;
        lead.updated_ms = now;
        Ok(lead)
    }

    /// Writes an audit entry for an API change made outside a transaction.
    pub(crate) async fn audit(
        &self,
        tenant: &str,
        token_id: Option<i64>,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, token_id, action, target, detail, at_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant.to_string())
        .bind(token_id)
        .bind(action.to_string())
        .bind(target.to_string())
        .bind(detail.to_string())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::LeadStatus::*;

    #[test]
    fn the_workflow_only_moves_forward_or_closes() {
        assert!(New.can_become(Qualified));
        assert!(Qualified.can_become(Contacted));
        assert!(Contacted.can_become(Converted));
        assert!(New.can_become(Closed));
        assert!(Contacted.can_become(Closed));
        assert!(!New.can_become(Contacted));
        assert!(!New.can_become(Converted));
        assert!(!Converted.can_become(Closed));
        assert!(!Closed.can_become(New));
        assert!(!Qualified.can_become(New));
        assert!(Converted.can_become(Converted));
    }
}
