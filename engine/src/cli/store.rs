//! `hark migrate` and `hark token`: the store by hand.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use hark::Config;

use crate::{TokenAction, runtime};

/// The store of a configuration that must have one.
pub(crate) async fn open_store(path: &Path) -> anyhow::Result<hark::store::Store> {
    let config = Config::load(path).with_context(|| format!("configuration {}", path.display()))?;
    let Some(sc) = &config.store else {
        bail!(
            "{} has no [store] section: add one with url = \"sqlite://hark.db\" or a mysql:// URL",
            path.display()
        );
    };
    hark::store::Store::connect(&sc.url)
        .await
        .with_context(|| format!("cannot open the store {}", redact_url(&sc.url)))
}

/// A database URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                // A password, redacted.
                Some((user, pw)) if !pw.is_empty() => {
                    format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
                }
                // No password: nothing to hide, and "***" would suggest one.
                _ => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(crate) fn migrate(path: &Path) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = open_store(path).await?;
        let n = store.migrate().await.context("migration failed")?;
        println!("{n} migration(s) applied; the schema is current");
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn token(action: TokenAction, path: &Path) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = open_store(path).await?;
        store.migrate().await.context("migration failed")?;
        match action {
            TokenAction::Create {
                tenant,
                role,
                label,
            } => {
                let Some(role) = hark::store::Role::parse(&role) else {
                    bail!("--role must be admin or viewer, not {role:?}");
                };
                hark::config::check_tenant_id(&tenant)?;
                let t = store.create_token(&tenant, role, &label).await?;
                eprintln!(
                    "token {} for tenant {:?} with role {}: shown once, store it now",
                    t.id,
                    t.tenant,
                    t.role.as_str()
                );
                println!("{}", t.token);
            }
            TokenAction::Revoke { tenant, id } => {
                store
                    .revoke_token(&tenant, id)
                    .await
                    .with_context(|| format!("token {id} of tenant {tenant:?}"))?;
                println!("token {id} revoked");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn only_a_password_is_redacted() {
        assert_eq!(
            redact_url("mysql://hark:s3cret@db:3306/hark"),
            "mysql://hark:***@db:3306/hark"
        );
        // No password: printed as it is, no "***" suggesting one.
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(
            redact_url("mysql://root:@127.0.0.1/test"),
            "mysql://root:@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://hark.db"), "sqlite://hark.db");
    }
}
