//! Staff accounts, their sessions, TOTP, sitting assignments and settings on PostgreSQL.

use super::*;

/// A session's last-seen time is written at most this often (idle expiry's resolution).
const SESSION_TOUCH_MS: i64 = 60_000;

#[async_trait]
impl StaffStore for PostgresDatabase {
    async fn create_staff(&self, s: StaffAccount, at_ms: i64) -> DbResult<()> {
        let role = s.role.as_str();
        sqlx::query!(
            "INSERT INTO staff (id, login, role, password_hash, created_at, must_change_password, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            s.id.as_uuid(),
            &s.login,
            role,
            &s.password_hash,
            at_ms,
            s.must_change_password,
            s.password_changed_at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn staff_by_login(&self, login: &str) -> DbResult<StaffAccount> {
        parse(sqlx::query_as!(StaffRecord, "SELECT id, login, role, password_hash, disabled_at, must_change_password, password_changed_at, totp_secret FROM staff WHERE login = $1", login).fetch_one(&self.pool).await.map_err(backend)?)
    }
    async fn staff_by_id(&self, id: StaffId) -> DbResult<StaffAccount> {
        let id = id.as_uuid();
        parse(sqlx::query_as!(StaffRecord, "SELECT id, login, role, password_hash, disabled_at, must_change_password, password_changed_at, totp_secret FROM staff WHERE id = $1", id).fetch_one(&self.pool).await.map_err(backend)?)
    }
    async fn list_staff(&self) -> DbResult<Vec<StaffAccount>> {
        parse_all(sqlx::query_as!(StaffRecord, "SELECT id, login, role, password_hash, disabled_at, must_change_password, password_changed_at, totp_secret FROM staff ORDER BY login").fetch_all(&self.pool).await.map_err(backend)?)
    }
    async fn set_password(
        &self,
        staff: StaffId,
        password_hash: &str,
        must_change: bool,
        at_ms: i64,
    ) -> DbResult<()> {
        let staff = staff.as_uuid();
        let done = sqlx::query!("UPDATE staff SET password_hash = $1, must_change_password = $2, password_changed_at = $3 WHERE id = $4", password_hash, must_change, at_ms, staff)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        found(done.rows_affected())
    }
    async fn set_disabled(&self, staff: StaffId, disabled_at_ms: Option<i64>) -> DbResult<()> {
        let staff = staff.as_uuid();
        let done = sqlx::query!(
            "UPDATE staff SET disabled_at = $1 WHERE id = $2",
            disabled_at_ms,
            staff
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        found(done.rows_affected())
    }
    async fn set_totp(&self, staff: StaffId, sealed_secret: Option<Vec<u8>>) -> DbResult<()> {
        let staff = staff.as_uuid();
        let done = sqlx::query!(
            "UPDATE staff SET totp_secret = $1, totp_last_step = NULL WHERE id = $2",
            sealed_secret,
            staff
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        found(done.rows_affected())
    }
    async fn use_totp_step(&self, staff: StaffId, step: i64) -> DbResult<bool> {
        let staff = staff.as_uuid();
        let done = sqlx::query!("UPDATE staff SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)", step, staff)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn end_sessions_of(&self, staff: StaffId, keep: Option<[u8; 32]>) -> DbResult<()> {
        let staff = staff.as_uuid();
        let keep = keep.unwrap_or([0; 32]).to_vec();
        sqlx::query!(
            "DELETE FROM staff_sessions WHERE staff_id = $1 AND token_hash <> $2",
            staff,
            keep
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
    async fn setting(&self, key: &str) -> DbResult<Option<String>> {
        sqlx::query_scalar!("SELECT value FROM settings WHERE key = $1", key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }
    async fn set_setting(&self, key: &str, value: &str) -> DbResult<()> {
        sqlx::query!("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
    async fn assign_sitting(&self, staff: StaffId, sitting: SittingId, at_ms: i64) -> DbResult<()> {
        let sitting = sitting.as_uuid();
        let staff = staff.as_uuid();
        sqlx::query!("INSERT INTO sitting_assignments (staff_id, sitting_id, assigned_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", staff, sitting, at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
    async fn unassign_sitting(&self, staff: StaffId, sitting: SittingId) -> DbResult<bool> {
        let (staff, sitting) = (staff.as_uuid(), sitting.as_uuid());
        let done = sqlx::query!(
            "DELETE FROM sitting_assignments WHERE staff_id = $1 AND sitting_id = $2",
            staff,
            sitting
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }
    async fn is_assigned(&self, staff: StaffId, sitting: SittingId) -> DbResult<bool> {
        let sitting = sitting.as_uuid();
        let staff = staff.as_uuid();
        let found = sqlx::query_scalar!(r#"SELECT 1 AS "one!" FROM sitting_assignments WHERE staff_id = $1 AND sitting_id = $2"#, staff, sitting)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(found.is_some())
    }
    async fn create_staff_session(
        &self,
        token_hash: [u8; 32],
        staff: StaffId,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> DbResult<()> {
        let staff = staff.as_uuid();
        let token_hash = token_hash.as_slice();
        sqlx::query!("INSERT INTO staff_sessions (token_hash, staff_id, expires_at, last_seen_at) VALUES ($1, $2, $3, $4)", token_hash, staff, expires_at_ms, now_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
    async fn staff_by_session(
        &self,
        token_hash: [u8; 32],
        now_ms: i64,
        idle_ms: i64,
    ) -> DbResult<StaffAccount> {
        let hash = token_hash.as_slice();
        let idle_since = now_ms - idle_ms;
        let r = sqlx::query!("SELECT staff_id, last_seen_at FROM staff_sessions WHERE token_hash = $1 AND expires_at > $2 AND last_seen_at > $3", hash, now_ms, idle_since)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        if r.last_seen_at < now_ms - SESSION_TOUCH_MS {
            sqlx::query!(
                "UPDATE staff_sessions SET last_seen_at = $1 WHERE token_hash = $2",
                now_ms,
                hash
            )
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        }
        self.staff_by_id(r.staff_id.into()).await
    }
    async fn end_staff_session(&self, token_hash: [u8; 32]) -> DbResult<()> {
        let hash = token_hash.as_slice();
        sqlx::query!("DELETE FROM staff_sessions WHERE token_hash = $1", hash)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
    async fn sittings_of_staff(&self, staff: StaffId) -> DbResult<Vec<(SittingId, String)>> {
        let staff = staff.as_uuid();
        let rows = sqlx::query!("SELECT s.id, s.ref AS reference FROM sitting_assignments a JOIN sittings s ON s.id = a.sitting_id WHERE a.staff_id = $1 ORDER BY s.ref", staff)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id.into(), r.reference))
            .collect())
    }
    async fn record_account_event(&self, e: &AccountEvent) -> DbResult<()> {
        let (id, staff) = (e.id, e.staff_id.as_uuid());
        sqlx::query!(
            "INSERT INTO account_events (id, staff_id, action, requested_by, requested_at, approved_by, done_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            id,
            staff,
            e.action,
            e.requested_by,
            e.requested_at_ms,
            e.approved_by,
            e.done_at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn pending_account_event(
        &self,
        staff: StaffId,
        action: &str,
        since_ms: i64,
    ) -> DbResult<Option<AccountEvent>> {
        let staff = staff.as_uuid();
        let row = sqlx::query_as!(
            AccountEventRecord,
            r#"SELECT id, staff_id, action, requested_by, requested_at, approved_by, done_at FROM account_events
               WHERE staff_id = $1 AND action = $2 AND done_at IS NULL AND requested_at >= $3
               ORDER BY requested_at DESC LIMIT 1"#,
            staff,
            action,
            since_ms
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(parse).transpose()
    }

    async fn complete_account_event(
        &self,
        id: uuid::Uuid,
        approved_by: &str,
        at_ms: i64,
    ) -> DbResult<bool> {
        let done = sqlx::query!(
            "UPDATE account_events SET approved_by = $2, done_at = $3 WHERE id = $1 AND done_at IS NULL",
            id,
            approved_by,
            at_ms
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn take_account_notices(
        &self,
        staff: StaffId,
        at_ms: i64,
    ) -> DbResult<Vec<AccountEvent>> {
        let staff = staff.as_uuid();
        let rows = sqlx::query_as!(
            AccountEventRecord,
            r#"UPDATE account_events SET seen_at = $2
               WHERE staff_id = $1 AND done_at IS NOT NULL AND seen_at IS NULL
               RETURNING id, staff_id, action, requested_by, requested_at, approved_by, done_at"#,
            staff,
            at_ms
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut events: Vec<AccountEvent> = parse_all(rows)?;
        events.sort_by_key(|e| e.done_at_ms);
        Ok(events)
    }
}
