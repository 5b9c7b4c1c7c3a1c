//! A fresh PostgreSQL database per server start, dropped afterwards, so every cell
//! starts from the same empty schema and the bench never touches existing data.

use anyhow::Context;
use sqlx::Connection;

use crate::servers::Target;

pub struct FreshDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl FreshDb {
    /// The target to start: a PostgreSQL target (Guestpass's or Better Auth's) moved
    /// to a fresh database (returned, to be dropped after the run), any other target
    /// as it is.
    pub async fn for_target(
        target: &Target,
        label: &str,
    ) -> anyhow::Result<(Option<Self>, Target)> {
        match target.postgres_url() {
            Some(url) => {
                let db = Self::create(url, label).await?;
                let started = target.with_postgres_url(db.url.clone());
                Ok((Some(db), started))
            }
            None => Ok((None, target.clone())),
        }
    }

    pub async fn create(admin_url: &str, label: &str) -> anyhow::Result<Self> {
        let name = format!("guestpass_bench_{}_{label}", std::process::id());
        let mut url = reqwest::Url::parse(admin_url).context("the PostgreSQL URL")?;
        url.set_path(&name);
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        })
    }

    pub async fn drop_now(self) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}
