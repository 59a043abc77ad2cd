//! The replay cache of client-assertion ids (`jti`), shared by every instance.
//!
//! Owns: the `jti_replay` table — claiming a `(issuer, jti)` pair once until it
//! expires, and purging expired pairs.
//! Must not: verify tokens (auth does) or touch resources.

use super::{now_millis, Store, StoreError};

impl Store {
    /// Record `jti` of `issuer` as used until `expires_at` (epoch milliseconds).
    /// `true` = first use; `false` = seen before and not yet expired (a replay).
    pub async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM jti_replay WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO jti_replay (issuer, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer.to_string())
        .bind(jti.to_string())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }
}
