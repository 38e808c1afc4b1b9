//! API tokens: created by `hark token create`, shown once, stored only as
//! a SHA-256 hash. A token is 244 random bits, so a plain (unsalted) hash is
//! enough: there is no dictionary to try against it.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Dialect, Store, StoreError, now_ms};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and change (register calls, update leads).
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// Parses `admin` or `viewer`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Who is calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's row id (for the audit log).
    pub token_id: i64,
    /// The tenant whose rows it sees.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
}

/// A freshly created token: the secret is in `token`, shown once.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// Row id.
    pub id: i64,
    /// The bearer token.
    pub token: String,
    /// Its tenant.
    pub tenant: String,
    /// Its role.
    pub role: Role,
}

/// The stored form of a token.
pub(crate) fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Creates the tenant if new, then a token for it.
    pub async fn create_token(
        &self,
        tenant: &str,
        role: Role,
        label: &str,
    ) -> Result<TokenInfo, StoreError> {
        self.ensure_tenant(tenant).await?;
        // Two v4 UUIDs: 244 bits from the OS's random source.
        let token = format!(
            "hark_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_tokens (tenant_id, role, token_hash, label, created_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(tenant.to_string())
        .bind(role.as_str())
        .bind(hash_token(&token))
        .bind(label.to_string())
        .bind(now)
        .execute(self.pool())
        .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens WHERE token_hash = ?")
            .bind(hash_token(&token))
            .fetch_one(self.pool())
            .await?;
        Ok(TokenInfo {
            id,
            token,
            tenant: tenant.to_string(),
            role,
        })
    }

    /// Adds the tenant if it is not there yet.
    pub async fn ensure_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        let ignore = match self.dialect() {
            Dialect::MySql => " ON DUPLICATE KEY UPDATE id = id",
            Dialect::Sqlite => " ON CONFLICT DO NOTHING",
        };
        let sql = format!("INSERT INTO tenants (id, name, created_ms) VALUES (?, ?, ?){ignore}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.to_string())
            .bind(tenant.to_string())
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The principal of a bearer token, if it is one of ours and not revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant_id, role FROM api_tokens WHERE token_hash = ? AND revoked_ms IS NULL",
        )
        .bind(hash_token(token))
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get("role")?;
        Ok(Role::parse(&role).map(|role| Principal {
            token_id: r.try_get("id").unwrap_or(0),
            tenant: r.try_get("tenant_id").unwrap_or_default(),
            role,
        }))
    }

    /// Revokes a token by id (within its tenant); `NotFound` if no such token.
    pub async fn revoke_token(&self, tenant: &str, id: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = ? WHERE tenant_id = ? AND id = ? AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(tenant.to_string())
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::hash_token;

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
