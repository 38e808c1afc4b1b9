//! The schema's migrations, embedded in the binary from `sql/mysql/` and
//! `sql/sqlite/`, so `hark migrate` needs no files beside it.

use std::borrow::Cow;
use std::pin::Pin;

use sqlx::SqlSafeStr;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::{Dialect, Store, StoreError};

/// (version, description, MySQL text, SQLite text), in order.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "control plane",
        include_str!("../../../sql/mysql/0001_control_plane.sql"),
        include_str!("../../../sql/sqlite/0001_control_plane.sql"),
    ),
    (
        2,
        "call end reason and node",
        include_str!("../../../sql/mysql/0002_call_end_reason_and_node.sql"),
        include_str!("../../../sql/sqlite/0002_call_end_reason_and_node.sql"),
    ),
];

/// The migrations for one dialect, as sqlx's migrator takes them.
#[derive(Debug)]
struct Embedded(Dialect);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        let list = MIGRATIONS
            .iter()
            .map(|&(version, description, mysql, sqlite)| {
                let sql = match self.0 {
                    Dialect::MySql => mysql,
                    Dialect::Sqlite => sqlite,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(list) })
    }
}

impl Store {
    /// Applies every migration not yet applied; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let migrator = Migrator::new(Embedded(self.dialect)).await?;
        let before = self.applied().await;
        migrator.run(self.pool()).await?;
        let after = self.applied().await;
        Ok(after.saturating_sub(before))
    }

    /// How many migrations the database records as applied (0 before the first).
    async fn applied(&self) -> usize {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(self.pool())
            .await
            .map(|n| n as usize)
            .unwrap_or(0)
    }
}
