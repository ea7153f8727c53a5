//! The `Database` conformance suite: every trait method, the audit chain, the lifecycle's
//! compare-and-set and concurrent writers, run alike against SQLite and PostgreSQL (a
//! throwaway cluster per test, see `pg.rs`).

mod blobs;
mod key_stores;
#[path = "../support/pg.rs"]
mod pg;

use server::db::*;
use server::lifecycle::AttemptState;
use std::sync::Arc;
use uuid::Uuid;

/// One backend under test, with what keeps it alive and a way to run raw SQL on it.
struct Backend {
    name: &'static str,
    db: Arc<dyn Database>,
    url: String,
    _sqlite_dir: Option<tempfile::TempDir>,
    _pg: Option<pg::Cluster>,
}

fn pool() -> PoolSettings {
    PoolSettings {
        max_connections: 8,
        acquire_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(10),
        connect_retries: 0,
    }
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!(
        "sqlite://{}",
        dir.path().join("conformance.sqlite").display()
    );
    let sqlite = Backend {
        name: "sqlite",
        db: connect(&sqlite_url, &pool()).await.unwrap(),
        url: sqlite_url,
        _sqlite_dir: Some(dir),
        _pg: None,
    };
    let cluster = pg::Cluster::start().await;
    let pg_url = cluster.url.clone();
    let postgres = Backend {
        name: "postgres",
        db: connect(&pg_url, &pool()).await.unwrap(),
        url: pg_url,
        _sqlite_dir: None,
        _pg: Some(cluster),
    };
    vec![sqlite, postgres]
}

impl Backend {
    /// Runs one statement behind the trait's back (to play the intruder).
    async fn raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        if self.name == "sqlite" {
            let pool = sqlx::SqlitePool::connect(&self.url).await?;
            Ok(sqlx::query(sql).execute(&pool).await?.rows_affected())
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await?;
            Ok(sqlx::query(sql).execute(&pool).await?.rows_affected())
        }
    }
}

/// A state change as `Attempts::transition` makes it (with its audit entry).
async fn set_state(
    db: &dyn Database,
    attempt: AttemptId,
    from: AttemptState,
    to: AttemptState,
    at_ms: i64,
) -> bool {
    let event = AuditEvent {
        at_ms,
        actor: "test".into(),
        action: "state".into(),
        attempt_id: Some(attempt),
        detail: serde_json::json!({}),
    };
    db.set_state_audited(attempt, from, to, at_ms, event)
        .await
        .unwrap()
        .is_some()
}

async fn sitting(db: &dyn Database) -> SittingId {
    let id = SittingId::random();
    db.create_sitting(id, &format!("S-{id}"), 1_000)
        .await
        .unwrap();
    id
}

fn new_attempt(sitting: SittingId, reference: &str) -> NewAttempt {
    let id = AttemptId::random();
    NewAttempt {
        id,
        sitting_id: sitting,
        reference: StoredReference::Pseudonymous {
            pseudonym: reference.into(),
            sealed: Some(format!("sealed {reference}").into_bytes()),
        },
        token_hash: *Uuid::new_v4()
            .as_bytes()
            .repeat(2)
            .first_chunk::<32>()
            .unwrap(),
        token_expires_at_ms: 9_000,
        kek_epoch: "2026-11".into(),
        wrapped_dek: vec![7; 60],
        dek_fingerprint: "fp".into(),
        created_at_ms: 1_000,
    }
}

fn chunk(stream: StreamId, index: u32, tag: u8) -> ChunkRow {
    ChunkRow {
        stream_id: stream,
        index,
        digest: [tag; 32],
        content_sha256: [tag ^ 0x55; 32],
        prev_digest: [0; 32],
        size: 1000 + tag as u64,
        media_start_us: 0,
        media_end_us: 2_000_000,
        last: false,
        pack: None,
    }
}

/// A reviewer's account (an id of its own, a placeholder hash), not yet stored.
fn reviewer(login: &str) -> StaffAccount {
    StaffAccount::new(
        StaffId::random(),
        login.into(),
        server::domain::Role::Reviewer,
        "$argon2id$x".into(),
        1,
    )
}

async fn stream_of(db: &dyn Database, attempt: AttemptId, opened_at_ms: i64) -> StreamId {
    let s = Stream {
        id: StreamId::random(),
        attempt_id: attempt,
        keying: StreamKeying::Derived { salt: [3; 32] },
        opened_at_ms,
        ended_at_ms: None,
        final_index: None,
    };
    assert!(db
        .open_stream(s.clone(), b"sealed connection".to_vec(), 1_000)
        .await
        .unwrap());
    s.id
}

#[tokio::test(flavor = "multi_thread")]
async fn sittings_attempts_and_tokens() {
    for b in backends().await {
        let db = &*b.db;
        let s = sitting(db).await;
        assert!(db.sitting_exists(s).await.unwrap(), "{}", b.name);
        assert!(!db.sitting_exists(SittingId::random()).await.unwrap());
        assert_eq!(db.sitting_by_ref(&format!("S-{s}")).await.unwrap(), s);
        assert!(
            matches!(
                db.create_sitting(SittingId::random(), &format!("S-{s}"), 1)
                    .await,
                Err(DbError::Conflict)
            ),
            "{}",
            b.name
        );

        let a = new_attempt(s, "c-1");
        db.create_attempt(a.clone()).await.unwrap();
        let mut dup = new_attempt(s, "c-1");
        dup.token_hash = [9; 32];
        assert!(
            matches!(db.create_attempt(dup).await, Err(DbError::Conflict)),
            "{}",
            b.name
        );
        let got = db.attempt(a.id).await.unwrap();
        assert_eq!(
            (
                got.sitting_id,
                got.reference.clone(),
                got.state,
                got.token_generation,
                got.bytes_stored
            ),
            (
                s,
                StoredReference::Pseudonymous {
                    pseudonym: "c-1".into(),
                    sealed: Some(b"sealed c-1".to_vec())
                },
                AttemptState::Enrolled,
                0,
                0
            )
        );
        assert_eq!(got.wrapped_dek, a.wrapped_dek);
        assert_eq!(db.attempt_by_ref(s, "c-1", true).await.unwrap().id, a.id);
        assert!(matches!(
            db.attempt(AttemptId::random()).await,
            Err(DbError::NotFound)
        ));

        let (by_token, t) = db.attempt_by_token(a.token_hash).await.unwrap();
        assert_eq!(
            (by_token.id, t.generation, t.expires_at_ms, t.revoked_at_ms),
            (a.id, 0, 9_000, None)
        );
        db.record_consent(a.id, "v1", 2_000).await.unwrap();
        assert_eq!(db.attempt(a.id).await.unwrap().consent_at_ms, Some(2_000));

        db.issue_token(a.id, 1, [5; 32], 3_000, 10_000)
            .await
            .unwrap();
        assert_eq!(
            db.token_of(a.id, 0).await.unwrap().revoked_at_ms,
            Some(3_000),
            "{}",
            b.name
        );
        assert_eq!(db.attempt(a.id).await.unwrap().token_generation, 1);
        assert_eq!(db.attempt_by_token([5; 32]).await.unwrap().1.generation, 1);
        assert_eq!(db.revoke_tokens(a.id, 4_000).await.unwrap(), 1);
        assert_eq!(db.revoke_tokens(a.id, 5_000).await.unwrap(), 0);
        assert_eq!(
            db.token_of(a.id, 1).await.unwrap().revoked_at_ms,
            Some(4_000)
        );
    }
}

/// A short launch code works once, before it expires, for its attempt only; two
/// candidates racing with the same code get it once between them.
#[tokio::test(flavor = "multi_thread")]
async fn launch_codes_are_used_once_before_they_expire() {
    for b in backends().await {
        let db = b.db.clone();
        let s = sitting(&*db).await;
        let a = new_attempt(s, "c-1");
        db.create_attempt(a.clone()).await.unwrap();
        db.create_launch_code([1; 32], a.id, 10_000).await.unwrap();
        db.create_launch_code([2; 32], a.id, 10_000).await.unwrap();
        assert!(
            matches!(
                db.create_launch_code([1; 32], a.id, 20_000).await,
                Err(DbError::Conflict)
            ),
            "{}",
            b.name
        );
        assert_eq!(
            db.redeem_launch_code([9; 32], 5_000).await.unwrap(),
            None,
            "{}: unknown",
            b.name
        );
        assert_eq!(
            db.redeem_launch_code([1; 32], 10_000).await.unwrap(),
            None,
            "{}: expired at its expiry",
            b.name
        );
        let racing: Vec<_> = (0..8)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { db.redeem_launch_code([2; 32], 9_999).await.unwrap() })
            })
            .collect();
        let mut won = Vec::new();
        for r in racing {
            won.extend(r.await.unwrap());
        }
        assert_eq!(won, vec![a.id], "{}: used once", b.name);
        assert_eq!(
            db.redeem_launch_code([2; 32], 9_999).await.unwrap(),
            None,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_are_compare_and_set() {
    for b in backends().await {
        let db = b.db.clone();
        let s = sitting(&*db).await;
        let a = new_attempt(s, "c");
        db.create_attempt(a.clone()).await.unwrap();
        assert!(
            !set_state(
                &*db,
                a.id,
                AttemptState::Consented,
                AttemptState::Recording,
                1
            )
            .await,
            "{}: wrong `from`",
            b.name
        );
        assert!(
            set_state(
                &*db,
                a.id,
                AttemptState::Enrolled,
                AttemptState::Consented,
                2
            )
            .await
        );
        // Two writers race from the same state: exactly one wins.
        let (d1, d2) = (db.clone(), db.clone());
        let (r1, r2) = tokio::join!(
            tokio::spawn(async move {
                set_state(
                    &*d1,
                    a.id,
                    AttemptState::Consented,
                    AttemptState::Recording,
                    3,
                )
                .await
            }),
            tokio::spawn(async move {
                set_state(
                    &*d2,
                    a.id,
                    AttemptState::Consented,
                    AttemptState::Withdrawn,
                    3,
                )
                .await
            })
        );
        assert!(r1.unwrap() ^ r2.unwrap(), "{}: one winner", b.name);
        let b2 = new_attempt(s, "d");
        db.create_attempt(b2.clone()).await.unwrap();
        assert!(set_state(&*db, b2.id, AttemptState::Enrolled, AttemptState::Ended, 77).await);
        let ended = db.attempt(b2.id).await.unwrap();
        assert_eq!(
            (ended.state, ended.ended_at_ms),
            (AttemptState::Ended, Some(77)),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_and_chunks() {
    for b in backends().await {
        let db = &*b.db;
        let a = new_attempt(sitting(db).await, "c");
        db.create_attempt(a.clone()).await.unwrap();
        let late = stream_of(db, a.id, 5_000).await;
        let early = stream_of(db, a.id, 1_000).await;
        assert_eq!(db.streams_of(a.id).await.unwrap().len(), 2);
        let ids: Vec<StreamId> = db
            .streams_of(a.id)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, vec![early, late], "{}: by opening time", b.name);
        assert_eq!(
            db.stream(early).await.unwrap().keying,
            StreamKeying::Derived { salt: [3; 32] }
        );

        assert_eq!(
            db.insert_chunk(a.id, chunk(early, 1, 1), 10).await.unwrap(),
            ChunkInsert::Created
        );
        assert_eq!(
            db.insert_chunk(a.id, chunk(early, 0, 2), 10).await.unwrap(),
            ChunkInsert::Created
        );
        assert_eq!(
            db.insert_chunk(a.id, chunk(early, 1, 1), 11).await.unwrap(),
            ChunkInsert::Duplicate
        );
        assert_eq!(
            db.insert_chunk(a.id, chunk(early, 1, 9), 11).await.unwrap(),
            ChunkInsert::Conflict
        );
        assert_eq!(
            db.attempt(a.id).await.unwrap().bytes_stored,
            1001 + 1002,
            "{}: counted once each",
            b.name
        );
        assert_eq!(db.chunk(early, 1).await.unwrap(), chunk(early, 1, 1));
        assert!(matches!(db.chunk(early, 7).await, Err(DbError::NotFound)));
        // Ingest's one read: the stream, and the chunk at the index when there is one.
        let (s, at) = db.stream_at(early, 1).await.unwrap();
        assert_eq!(
            (s.id, s.attempt_id, s.opened_at_ms, s.keying, at),
            (
                early,
                a.id,
                1_000,
                StreamKeying::Derived { salt: [3; 32] },
                Some(chunk(early, 1, 1))
            ),
            "{}",
            b.name
        );
        let (s, at) = db.stream_at(early, 7).await.unwrap();
        assert_eq!((s.id, at), (early, None), "{}", b.name);
        let (_, at) = db.stream_at(late, 1).await.unwrap();
        assert_eq!(
            at, None,
            "{}: another stream's chunk is not this one's",
            b.name
        );
        assert!(matches!(
            db.stream_at(StreamId::random(), 1).await,
            Err(DbError::NotFound)
        ));
        // A chunk appended to its stream's file is inserted with its place (the tag's high
        // bit set: stored as signed), and read back with it by every read.
        let appended = ChunkRow {
            pack: Some(server::db::PackPlace {
                tag: u64::MAX - 6,
                first: 4,
                offset: 7 << 33,
            }),
            ..chunk(late, 5, 5)
        };
        assert_eq!(
            db.insert_chunk(a.id, appended.clone(), 12).await.unwrap(),
            ChunkInsert::Created
        );
        assert_eq!(db.chunk(late, 5).await.unwrap(), appended, "{}", b.name);
        assert_eq!(
            db.stream_at(late, 5).await.unwrap().1,
            Some(appended.clone())
        );
        assert_eq!(
            db.chunks_of(late).await.unwrap(),
            vec![appended],
            "{}",
            b.name
        );
        let idx: Vec<u32> = db
            .chunks_of(early)
            .await
            .unwrap()
            .iter()
            .map(|c| c.index)
            .collect();
        assert_eq!(idx, vec![0, 1]);
        let mut high = chunk(early, u32::MAX - 1, 4);
        high.last = true;
        db.insert_chunk(a.id, high.clone(), 12).await.unwrap();
        assert_eq!(
            db.chunk(early, u32::MAX - 1).await.unwrap(),
            high,
            "{}: the whole u32 range round-trips",
            b.name
        );

        db.end_stream(early, 1, 20).await.unwrap();
        db.end_stream(early, 1, 30).await.unwrap();
        let s = db.stream(early).await.unwrap();
        assert_eq!(
            (s.final_index, s.ended_at_ms),
            (Some(1), Some(20)),
            "{}: the first end time stays",
            b.name
        );
    }
}

/// The report's figures come from the database, not from every chunk row: counts, the
/// media span, holes (from index 0 on) and broken links, the lists bounded.
#[tokio::test(flavor = "multi_thread")]
async fn chunk_summaries_are_computed_in_the_database() {
    for b in backends().await {
        let db = &*b.db;
        let a = new_attempt(sitting(db).await, "c");
        db.create_attempt(a.clone()).await.unwrap();
        let s = stream_of(db, a.id, 1_000).await;
        assert_eq!(
            db.chunk_summary(s, 10).await.unwrap(),
            ChunkSummary::default()
        );
        // Stored: 1, 2 (linked to 1), 3 (not linked to 2), 6, 9 (final). Missing: 0, 4-5, 7-8.
        let link = |index: u32, tag: u8, prev: u8| ChunkRow {
            prev_digest: [prev; 32],
            media_start_us: u64::from(index) * 2_000_000,
            media_end_us: u64::from(index + 1) * 2_000_000,
            ..chunk(s, index, tag)
        };
        for row in [link(1, 1, 0), link(2, 2, 1), link(3, 3, 9), link(6, 6, 5)] {
            db.insert_chunk(a.id, row, 10).await.unwrap();
        }
        let mut last = link(9, 9, 8);
        last.last = true;
        db.insert_chunk(a.id, last, 10).await.unwrap();
        let sum = db.chunk_summary(s, 10).await.unwrap();
        assert_eq!(
            sum,
            ChunkSummary {
                stored: 5,
                has_init: false,
                max_index: Some(9),
                final_stored: true,
                media_start_us: Some(2_000_000),
                media_end_us: Some(20_000_000),
                missing: vec![(0, 0), (4, 5), (7, 8)],
                broken: vec![3],
                first_stored_ms: Some(10),
                last_stored_ms: Some(10),
            },
            "{}",
            b.name
        );
        assert_eq!(
            db.fragment_spans(s, 2).await.unwrap(),
            vec![(1, 2_000_000, 4_000_000, 10), (2, 4_000_000, 6_000_000, 10)],
            "{}",
            b.name
        );
        let bounded = db.chunk_summary(s, 1).await.unwrap();
        assert_eq!(
            (bounded.missing, bounded.broken),
            (vec![(0, 0)], vec![3]),
            "{}",
            b.name
        );
        // A final marker below a later chunk does not make the stream final.
        db.insert_chunk(a.id, link(10, 10, 9), 10).await.unwrap();
        assert!(
            !db.chunk_summary(s, 10).await.unwrap().final_stored,
            "{}",
            b.name
        );
    }
}

/// Wrong launch codes are counted in the database every instance shares: a key locks at
/// its maximum, stays locked whatever else is evicted, and counts again after its window.
#[tokio::test(flavor = "multi_thread")]
async fn launch_code_guesses_lock_and_eviction_cannot_unlock() {
    for b in backends().await {
        let db = &*b.db;
        let (window, lockout) = (60_000, 900_000);
        for n in 1..=3 {
            let locked = db
                .code_guess_failed("net:a", 1_000, window, 3, lockout)
                .await
                .unwrap();
            assert_eq!(locked, n == 3, "{}: failure {n}", b.name);
        }
        assert_eq!(
            db.code_guess_lock("net:a", 2_000).await.unwrap(),
            Some(901_000),
            "{}",
            b.name
        );
        assert_eq!(db.code_guess_lock("net:b", 2_000).await.unwrap(), None);
        // Much later, other keys' failures evict what is over, never a lock still running.
        for k in 0..50 {
            db.code_guess_failed(&format!("net:x{k}"), 500_000, window, 3, lockout)
                .await
                .unwrap();
        }
        assert_eq!(
            db.code_guess_lock("net:a", 500_000).await.unwrap(),
            Some(901_000),
            "{}",
            b.name
        );
        // After its lock-out and window, the key counts from one again.
        assert!(!db
            .code_guess_failed("net:a", 902_000, window, 3, lockout)
            .await
            .unwrap());
        assert_eq!(
            db.code_guess_lock("net:a", 902_000).await.unwrap(),
            None,
            "{}",
            b.name
        );
        // Over its window, an unlocked key starts a new one.
        db.code_guess_failed("net:c", 0, window, 3, lockout)
            .await
            .unwrap();
        db.code_guess_failed("net:c", 1, window, 3, lockout)
            .await
            .unwrap();
        assert!(
            !db.code_guess_failed("net:c", 70_000, window, 3, lockout)
                .await
                .unwrap(),
            "{}",
            b.name
        );
    }
}

/// Store-and-forward: an agent draws its stream ids and keys; the same first chunk may come
/// by two transports, and each chunk says which carried it.
#[tokio::test(flavor = "multi_thread")]
async fn agent_keyed_streams_and_transports() {
    for b in backends().await {
        let db = &*b.db;
        let a = new_attempt(sitting(db).await, "c");
        db.create_attempt(a.clone()).await.unwrap();
        let keying = StreamKeying::Opening(vec![9; 95]);
        let s = Stream {
            id: StreamId::random(),
            attempt_id: a.id,
            keying: keying.clone(),
            opened_at_ms: 2_000,
            ended_at_ms: None,
            final_index: None,
        };
        assert!(db
            .open_stream(s.clone(), b"sealed".to_vec(), 10)
            .await
            .unwrap());
        assert!(
            !db.open_stream(s.clone(), b"sealed".to_vec(), 10)
                .await
                .unwrap(),
            "{}: the same id opens once",
            b.name
        );
        let other = Stream {
            keying: StreamKeying::Opening(vec![8; 95]),
            ..s.clone()
        };
        assert!(
            !db.open_stream(other, b"sealed".to_vec(), 10).await.unwrap(),
            "{}: another opening does not replace it",
            b.name
        );
        assert_eq!(db.stream(s.id).await.unwrap().keying, keying, "{}", b.name);
        assert_eq!(db.streams_of(a.id).await.unwrap().len(), 1);

        let batch = [
            NewChunk {
                attempt: a.id,
                row: chunk(s.id, 0, 1),
                transport: Transport::Https,
                activity: None,
            },
            NewChunk {
                attempt: a.id,
                row: chunk(s.id, 1, 1),
                transport: Transport::Webrtc,
                activity: None,
            },
            NewChunk {
                attempt: a.id,
                row: chunk(s.id, 2, 1),
                transport: Transport::Webrtc,
                activity: Some(b"sealed activity".to_vec()),
            },
            // A duplicate by the other transport counts once, under the first.
            NewChunk {
                attempt: a.id,
                row: chunk(s.id, 1, 1),
                transport: Transport::Https,
                activity: None,
            },
        ];
        db.insert_chunks(&batch, 10).await.unwrap();
        assert_eq!(
            db.chunks_by_transport(a.id).await.unwrap(),
            vec![(Transport::Https, 1), (Transport::Webrtc, 2)],
            "{}",
            b.name
        );
        // The strip's pages: media fragments only (not the init segment), in order.
        let page = db.activity_of(s.id, None, 10).await.unwrap();
        let got: Vec<_> = page.iter().map(|r| (r.index, r.sealed.clone())).collect();
        assert_eq!(
            got,
            vec![(1, None), (2, Some(b"sealed activity".to_vec()))],
            "{}",
            b.name
        );
        assert_eq!(db.activity_of(s.id, None, 1).await.unwrap().len(), 1);
        assert_eq!(db.activity_of(s.id, Some(1), 10).await.unwrap()[0].index, 2);
        assert!(db.activity_of(s.id, Some(2), 10).await.unwrap().is_empty());
        assert!(
            b.raw(&format!(
                "UPDATE chunks SET transport = 'carrier-pigeon' WHERE idx = 0 AND stream_id = '{}'",
                s.id
            ))
            .await
            .is_err(),
            "{}",
            b.name
        );
    }
}

/// Liveness: a sign of life, silences opened for exams in progress only, closed when the
/// agent is heard again, and deleted with the attempt's other connection data.
#[tokio::test(flavor = "multi_thread")]
async fn agent_silences_open_close_and_die_with_the_attempt() {
    for b in backends().await {
        let db = &*b.db;
        let s = sitting(db).await;
        let (live, idle) = (new_attempt(s, "live"), new_attempt(s, "idle"));
        db.create_attempt(live.clone()).await.unwrap();
        db.create_attempt(idle.clone()).await.unwrap();
        assert!(
            set_state(
                db,
                live.id,
                AttemptState::Enrolled,
                AttemptState::Consented,
                1_000
            )
            .await
        );
        assert_eq!(db.agent_heard(live.id, 2_000).await.unwrap(), None);
        assert_eq!(db.agent_heard(idle.id, 2_000).await.unwrap(), None);
        // An older sign of life (another instance, late) never moves it back.
        db.agent_heard(live.id, 1_500).await.unwrap();
        assert!(
            db.mark_silent_agents(2_000).await.unwrap().is_empty(),
            "{}: heard at 2 000, not before",
            b.name
        );
        assert_eq!(
            db.mark_silent_agents(2_001).await.unwrap(),
            vec![(live.id, 2_000)],
            "{}: only an exam in progress goes silent",
            b.name
        );
        assert!(
            db.mark_silent_agents(9_000).await.unwrap().is_empty(),
            "{}: marked once",
            b.name
        );
        assert_eq!(
            db.agent_silences(live.id).await.unwrap(),
            vec![(2_000, None)]
        );
        assert_eq!(db.agent_heard(live.id, 30_000).await.unwrap(), Some(2_000));
        assert_eq!(db.agent_heard(live.id, 31_000).await.unwrap(), None);
        assert_eq!(
            db.agent_silences(live.id).await.unwrap(),
            vec![(2_000, Some(30_000))],
            "{}",
            b.name
        );
        assert!(db.agent_silences(idle.id).await.unwrap().is_empty());

        let destroy = Destruction {
            attempt: live.id,
            pseudonym: "p:live".into(),
            receipt_json: "receipt".into(),
            at_ms: 40_000,
            event: event(Some(live.id), "attempt_destroyed", 40_000),
        };
        assert_eq!(db.destroy_attempts(&[destroy]).await.unwrap().len(), 1);
        assert!(
            db.agent_silences(live.id).await.unwrap().is_empty(),
            "{}: silences go with the attempt",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_chunk_inserts_have_one_winner() {
    for b in backends().await {
        let db = b.db.clone();
        let a = new_attempt(sitting(&*db).await, "c");
        db.create_attempt(a.clone()).await.unwrap();
        let s = stream_of(&*db, a.id, 0).await;
        let outcomes = futures::future::join_all((1..=16u8).map(|tag| {
            let db = db.clone();
            tokio::spawn(async move { db.insert_chunk(a.id, chunk(s, 3, tag), 1).await.unwrap() })
        }))
        .await;
        let created = outcomes
            .iter()
            .filter(|o| *o.as_ref().unwrap() == ChunkInsert::Created)
            .count();
        assert_eq!(created, 1, "{}: {outcomes:?}", b.name);
        assert!(outcomes.iter().all(|o| matches!(
            o.as_ref().unwrap(),
            ChunkInsert::Created | ChunkInsert::Conflict
        )));
        let stored = db.chunk(s, 3).await.unwrap();
        assert_eq!(
            db.attempt(a.id).await.unwrap().bytes_stored,
            stored.size,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_commits_together_and_answers_in_order() {
    for b in backends().await {
        let db = b.db.clone();
        let (x, y) = (
            new_attempt(sitting(&*db).await, "x"),
            new_attempt(sitting(&*db).await, "y"),
        );
        db.create_attempt(x.clone()).await.unwrap();
        db.create_attempt(y.clone()).await.unwrap();
        let (sx, sy) = (
            stream_of(&*db, x.id, 0).await,
            stream_of(&*db, y.id, 0).await,
        );
        db.insert_chunk(x.id, chunk(sx, 0, 1), 1).await.unwrap();
        let batch = [
            NewChunk {
                attempt: y.id,
                row: chunk(sy, 5, 1),
                transport: Transport::Https,
                activity: None,
            },
            NewChunk {
                attempt: x.id,
                row: chunk(sx, 0, 1),
                transport: Transport::Https,
                activity: None,
            },
            NewChunk {
                attempt: x.id,
                row: chunk(sx, 0, 2),
                transport: Transport::Https,
                activity: None,
            },
            NewChunk {
                attempt: x.id,
                row: chunk(sx, 1, 3),
                transport: Transport::Https,
                activity: None,
            },
            // Later in the batch, the same index again: it sees the row just above.
            NewChunk {
                attempt: x.id,
                row: chunk(sx, 1, 3),
                transport: Transport::Https,
                activity: None,
            },
            NewChunk {
                attempt: x.id,
                row: chunk(sx, 1, 4),
                transport: Transport::Https,
                activity: None,
            },
            NewChunk {
                attempt: y.id,
                row: chunk(sy, 2, 1),
                transport: Transport::Https,
                activity: None,
            },
        ];
        use ChunkInsert::*;
        assert_eq!(
            db.insert_chunks(&[], 2).await.unwrap(),
            vec![],
            "{}",
            b.name
        );
        let got = db.insert_chunks(&batch, 2).await.unwrap();
        assert_eq!(
            got,
            vec![Created, Duplicate, Conflict, Created, Duplicate, Conflict, Created],
            "{}",
            b.name
        );
        assert_eq!(
            db.attempt(x.id).await.unwrap().bytes_stored,
            1001 + 1003,
            "{}",
            b.name
        );
        assert_eq!(
            db.attempt(y.id).await.unwrap().bytes_stored,
            1001 + 1001,
            "{}",
            b.name
        );
        assert_eq!(
            db.chunk(sx, 1).await.unwrap(),
            chunk(sx, 1, 3),
            "{}",
            b.name
        );

        // Two writers' batches over the same rows in opposite orders: both finish (rows are
        // locked in one order), and each index has exactly one winner.
        let forward: Vec<NewChunk> = (10..1010)
            .flat_map(|i| {
                [
                    NewChunk {
                        attempt: x.id,
                        row: chunk(sx, i, 5),
                        transport: Transport::Https,
                        activity: None,
                    },
                    NewChunk {
                        attempt: y.id,
                        row: chunk(sy, i, 5),
                        transport: Transport::Https,
                        activity: None,
                    },
                ]
            })
            .collect();
        let backward: Vec<NewChunk> = forward
            .iter()
            .rev()
            .map(|c| NewChunk {
                attempt: c.attempt,
                row: chunk(c.row.stream_id, c.row.index, 6),
                transport: Transport::Https,
                activity: None,
            })
            .collect();
        let (d1, d2) = (db.clone(), db.clone());
        let both = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            tokio::join!(
                tokio::spawn(async move { d1.insert_chunks(&forward, 3).await }),
                tokio::spawn(async move { d2.insert_chunks(&backward, 3).await })
            )
        })
        .await
        .expect("no deadlock");
        let (f, r) = (both.0.unwrap().unwrap(), both.1.unwrap().unwrap());
        let wins = f.iter().chain(&r).filter(|o| **o == Created).count();
        assert_eq!(wins, 2000, "{}: one winner per index", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sitting_assignments() {
    for b in backends().await {
        let db = &*b.db;
        let (x, y) = (sitting(db).await, sitting(db).await);
        let staff = reviewer("relecteur");
        db.create_staff(staff.clone(), 1).await.unwrap();
        assert!(!db.is_assigned(staff.id, x).await.unwrap(), "{}", b.name);
        db.assign_sitting(staff.id, x, 2).await.unwrap();
        db.assign_sitting(staff.id, x, 3).await.unwrap();
        assert!(db.is_assigned(staff.id, x).await.unwrap(), "{}", b.name);
        assert!(
            !db.is_assigned(staff.id, y).await.unwrap(),
            "{}: one sitting, not all",
            b.name
        );
        assert!(
            db.assign_sitting(StaffId::random(), y, 4).await.is_err(),
            "{}: no unknown staff member",
            b.name
        );
    }
}

/// What admins do to an account: a reset waits for a second admin (done once, whichever
/// instance confirms), and the owner reads what was done once.
#[tokio::test(flavor = "multi_thread")]
async fn account_events_wait_complete_once_and_are_told_once() {
    for b in backends().await {
        let db = &*b.db;
        let account = reviewer("relectrice");
        let id = account.id;
        db.create_staff(account, 1).await.unwrap();
        let asked = AccountEvent {
            id: Uuid::new_v4(),
            staff_id: id,
            action: "password_reset".into(),
            requested_by: "admin1".into(),
            requested_at_ms: 100,
            approved_by: None,
            done_at_ms: None,
        };
        db.record_account_event(&asked).await.unwrap();
        assert_eq!(
            db.pending_account_event(id, "password_reset", 50)
                .await
                .unwrap(),
            Some(asked.clone()),
            "{}",
            b.name
        );
        assert_eq!(
            db.pending_account_event(id, "password_reset", 101)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            db.pending_account_event(id, "totp_removed", 0)
                .await
                .unwrap(),
            None
        );
        assert!(
            db.take_account_notices(id, 150).await.unwrap().is_empty(),
            "not done yet"
        );
        assert!(db
            .complete_account_event(asked.id, "admin2", 200)
            .await
            .unwrap());
        assert!(
            !db.complete_account_event(asked.id, "admin3", 201)
                .await
                .unwrap(),
            "{}",
            b.name
        );
        assert_eq!(
            db.pending_account_event(id, "password_reset", 0)
                .await
                .unwrap(),
            None
        );
        let told = db.take_account_notices(id, 300).await.unwrap();
        assert_eq!(
            told,
            vec![AccountEvent {
                approved_by: Some("admin2".into()),
                done_at_ms: Some(200),
                ..asked
            }],
            "{}",
            b.name
        );
        assert!(
            db.take_account_notices(id, 400).await.unwrap().is_empty(),
            "told once"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_and_sessions() {
    for b in backends().await {
        let db = &*b.db;
        let account = reviewer("relectrice");
        let id = account.id;
        db.create_staff(account.clone(), 1).await.unwrap();
        assert!(
            matches!(
                db.create_staff(
                    StaffAccount {
                        id: StaffId::random(),
                        ..account
                    },
                    1
                )
                .await,
                Err(DbError::Conflict)
            ),
            "{}",
            b.name
        );
        let got = db.staff_by_login("relectrice").await.unwrap();
        assert_eq!((got.id, got.role), (id, server::domain::Role::Reviewer));
        // Created at 0, absolute expiry at 1,000,000, idle expiry 100,000.
        let idle = 100_000;
        db.create_staff_session([1; 32], id, 0, 1_000_000)
            .await
            .unwrap();
        assert_eq!(
            db.staff_by_session([1; 32], 99_999, idle).await.unwrap().id,
            id
        );
        // Seen at 99,999: the idle clock restarted there.
        assert_eq!(
            db.staff_by_session([1; 32], 199_000, idle)
                .await
                .unwrap()
                .id,
            id,
            "{}: still active",
            b.name
        );
        assert!(
            matches!(
                db.staff_by_session([1; 32], 299_000, idle).await,
                Err(DbError::NotFound)
            ),
            "{}: idle too long",
            b.name
        );
        db.create_staff_session([2; 32], id, 900_000, 1_000_000)
            .await
            .unwrap();
        assert!(
            matches!(
                db.staff_by_session([2; 32], 1_000_000, idle).await,
                Err(DbError::NotFound)
            ),
            "{}: expired",
            b.name
        );
        db.create_staff_session([3; 32], id, 0, 1_000_000)
            .await
            .unwrap();
        db.end_staff_session([3; 32]).await.unwrap();
        assert!(
            matches!(
                db.staff_by_session([3; 32], 1, idle).await,
                Err(DbError::NotFound)
            ),
            "{}: logged out",
            b.name
        );
        assert!(matches!(
            db.staff_by_login("nobody").await,
            Err(DbError::NotFound)
        ));

        // Account hygiene: forced change, disabling, TOTP steps, settings.
        assert!(
            got.must_change_password && got.disabled_at_ms.is_none() && got.totp_secret.is_none(),
            "{}",
            b.name
        );
        db.set_password(id, "$argon2id$y", false, 5).await.unwrap();
        let got = db.staff_by_id(id).await.unwrap();
        assert_eq!(
            (
                got.password_hash.as_str(),
                got.must_change_password,
                got.password_changed_at_ms
            ),
            ("$argon2id$y", false, 5),
            "{}",
            b.name
        );
        db.set_disabled(id, Some(6)).await.unwrap();
        assert_eq!(
            db.staff_by_login("relectrice")
                .await
                .unwrap()
                .disabled_at_ms,
            Some(6),
            "{}",
            b.name
        );
        assert!(
            matches!(
                db.set_disabled(StaffId::random(), None).await,
                Err(DbError::NotFound)
            ),
            "{}",
            b.name
        );
        db.set_totp(id, Some(vec![1, 2, 3])).await.unwrap();
        assert_eq!(
            db.list_staff().await.unwrap()[0].totp_secret,
            Some(vec![1, 2, 3]),
            "{}",
            b.name
        );
        assert!(db.use_totp_step(id, 100).await.unwrap(), "{}", b.name);
        assert!(
            !db.use_totp_step(id, 100).await.unwrap(),
            "{}: a code is used once",
            b.name
        );
        assert!(
            !db.use_totp_step(id, 99).await.unwrap(),
            "{}: nor an older one",
            b.name
        );
        assert!(db.use_totp_step(id, 101).await.unwrap(), "{}", b.name);
        db.create_staff_session([4; 32], id, 0, 1_000_000)
            .await
            .unwrap();
        db.create_staff_session([5; 32], id, 0, 1_000_000)
            .await
            .unwrap();
        db.end_sessions_of(id, Some([5; 32])).await.unwrap();
        assert!(
            matches!(
                db.staff_by_session([4; 32], 1, idle).await,
                Err(DbError::NotFound)
            ),
            "{}: sessions ended",
            b.name
        );
        assert!(
            db.staff_by_session([5; 32], 1, idle).await.is_ok(),
            "{}: but the one kept",
            b.name
        );
        db.end_sessions_of(id, None).await.unwrap();
        assert!(
            matches!(
                db.staff_by_session([5; 32], 1, idle).await,
                Err(DbError::NotFound)
            ),
            "{}",
            b.name
        );
        assert_eq!(db.setting("totp_required").await.unwrap(), None);
        db.set_setting("totp_required", "true").await.unwrap();
        db.set_setting("totp_required", "false").await.unwrap();
        assert_eq!(
            db.setting("totp_required").await.unwrap().as_deref(),
            Some("false"),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_chain_holds_under_concurrent_appends_and_refuses_edits() {
    for b in backends().await {
        let db = b.db.clone();
        let attempt = Some(AttemptId::random());
        futures::future::join_all((0..40).map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.append_audit(AuditEvent {
                    at_ms: i,
                    actor: format!("a{i}"),
                    action: "test".into(),
                    attempt_id: attempt,
                    detail: serde_json::json!({ "i": i }),
                })
                .await
                .unwrap()
            })
        }))
        .await;
        let trail = db.audit_trail().await.unwrap();
        assert_eq!(trail.len(), 40, "{}", b.name);
        assert_eq!(
            trail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<i64>>()
        );
        assert_eq!(trail[0].attempt_id, attempt);
        verify_audit_chain(&trail)
            .unwrap_or_else(|seq| panic!("{}: chain broken at {seq}", b.name));
        assert!(
            b.raw("UPDATE audit SET actor = 'x' WHERE seq = 3")
                .await
                .is_err(),
            "{}: no edit",
            b.name
        );
        assert!(
            b.raw("DELETE FROM audit WHERE seq = 40").await.is_err(),
            "{}: no delete",
            b.name
        );
        assert_eq!(db.audit_trail().await.unwrap().len(), 40);
    }
}

/// Audit retention: only entries a recorded segment covers may leave, in the same
/// transaction as the segment and the entry that says so; segments never change.
#[tokio::test(flavor = "multi_thread")]
async fn audit_segments_retire_only_what_they_cover() {
    for b in backends().await {
        let db = b.db.clone();
        for i in 1..=5 {
            db.append_audit(event(None, "old", i * 1_000))
                .await
                .unwrap();
        }
        assert!(
            b.raw("DELETE FROM audit WHERE seq = 1").await.is_err(),
            "{}: nothing retired yet",
            b.name
        );
        let last = db.last_audit_before(3_000).await.unwrap().unwrap();
        assert_eq!(last.seq, 2, "{}", b.name);
        assert!(db.last_audit_before(1_000).await.unwrap().is_none());
        let segment = RetiredSegment {
            from_seq: 1,
            up_to_seq: 2,
            last_hash: last.hash,
            signed: "{\"signed\":true}".into(),
        };
        let said = db
            .retire_audit(segment.clone(), event(None, "audit_segment_retired", 9_000))
            .await
            .unwrap();
        assert_eq!(said.seq, 6, "{}: the chain goes on", b.name);
        let kept = db.audit_trail().await.unwrap();
        assert_eq!(
            kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4, 5, 6],
            "{}",
            b.name
        );
        verify_audit_chain_from(&kept, 3, last.hash)
            .unwrap_or_else(|seq| panic!("{}: chain broken at {seq}", b.name));
        assert_eq!(
            db.audit_segments().await.unwrap(),
            vec![segment],
            "{}",
            b.name
        );
        assert!(
            b.raw("DELETE FROM audit WHERE seq = 3").await.is_err(),
            "{}: a kept entry stays",
            b.name
        );
        for sql in [
            "UPDATE audit_segments SET up_to_seq = 5",
            "DELETE FROM audit_segments",
        ] {
            assert!(b.raw(sql).await.is_err(), "{}: {sql}", b.name);
        }
        // The next entry chains on the newest kept one.
        assert_eq!(
            db.append_audit(event(None, "new", 10_000))
                .await
                .unwrap()
                .seq,
            7
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_idempotent_and_the_schema_survives_a_reconnect() {
    for b in backends().await {
        let s = sitting(&*b.db).await;
        let again = connect(&b.url, &pool()).await.unwrap();
        assert!(again.sitting_exists(s).await.unwrap(), "{}", b.name);
    }
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_a_crash() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), &pool())
        .await
        .err()
        .expect("nothing listens there");
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
}

/// PostgreSQL restarted under a running server (an upgrade, a failover): every pooled
/// connection is dead, and the next calls, several at once, all succeed on new ones
/// without the server restarting: the pool tests a connection before handing it out.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_restart_costs_no_request() {
    let cluster = pg::Cluster::start().await;
    let db = connect(&cluster.url, &pool()).await.unwrap();
    // Fill the pool: eight connections open and idle.
    let calls = |db: std::sync::Arc<dyn Database>| async move {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    let id = SittingId::random();
                    db.create_sitting(id, &format!("R-{id}"), 1_000).await?;
                    db.sitting_exists(id).await.map(|_| ())
                })
            })
            .collect();
        let mut failed = Vec::new();
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                failed.push(format!("{e:?}"));
            }
        }
        failed
    };
    assert_eq!(calls(db.clone()).await, Vec::<String>::new());
    cluster.restart();
    assert_eq!(
        calls(db.clone()).await,
        Vec::<String>::new(),
        "no call fails after the restart"
    );
}

/// Background work on several instances: claimers running at once never get the same
/// attempt, together they get every due one, and a lapsed claim is claimable again.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_share_the_work_without_overlap() {
    for b in backends().await {
        let s = sitting(&*b.db).await;
        let mut due = std::collections::HashSet::new();
        for i in 0..60 {
            let mut a = new_attempt(s, &format!("c{i}"));
            // 50 ended long ago, 10 created lately and not ended (the ceiling counts from
            // the creation of an attempt that never ended).
            if i >= 50 {
                a.created_at_ms = 20_000;
            }
            b.db.create_attempt(a.clone()).await.unwrap();
            if i < 50 {
                assert!(
                    set_state(
                        &*b.db,
                        a.id,
                        AttemptState::Enrolled,
                        AttemptState::Ended,
                        1_000 + i
                    )
                    .await
                );
                due.insert(a.id);
            }
        }
        // Two "instances", each with its own pool, claiming in small batches at once.
        let second = connect(&b.url, &pool()).await.unwrap();
        let claimers = [
            b.db.clone(),
            second,
            b.db.clone(),
            connect(&b.url, &pool()).await.unwrap(),
        ];
        let rounds = futures::future::join_all(claimers.into_iter().map(|db| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = db.claim_due(5_000, 10_000, 60_000, 3).await.unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got.into_iter().map(|f| f.attempt_id));
                }
            })
        }))
        .await;
        let all: Vec<AttemptId> = rounds.into_iter().flat_map(|r| r.unwrap()).collect();
        let unique: std::collections::HashSet<_> = all.iter().copied().collect();
        assert_eq!(
            all.len(),
            unique.len(),
            "{}: an attempt was claimed twice",
            b.name
        );
        assert_eq!(unique, due, "{}: every due attempt, and only those", b.name);
        // While the lease runs nothing is claimable; once it lapses, all of it again.
        assert!(b
            .db
            .claim_due(64_000, 10_000, 60_000, 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            b.db.claim_due(65_000, 10_000, 60_000, 100)
                .await
                .unwrap()
                .len(),
            50,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_quota_holds_under_a_concurrent_flood() {
    for b in backends().await {
        let a = new_attempt(sitting(&*b.db).await, "c");
        b.db.create_attempt(a.clone()).await.unwrap();
        let opened = futures::future::join_all((0..20).map(|i| {
            let db = b.db.clone();
            tokio::spawn(async move {
                let s = Stream {
                    id: StreamId::random(),
                    attempt_id: a.id,
                    keying: StreamKeying::Derived { salt: [1; 32] },
                    opened_at_ms: i,
                    ended_at_ms: None,
                    final_index: None,
                };
                db.open_stream(s, b"sealed".to_vec(), 5).await.unwrap()
            })
        }))
        .await;
        assert_eq!(
            opened.iter().filter(|o| *o.as_ref().unwrap()).count(),
            5,
            "{}",
            b.name
        );
        assert_eq!(b.db.streams_of(a.id).await.unwrap().len(), 5, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_change_and_its_audit_entry_commit_together() {
    for b in backends().await {
        let a = new_attempt(sitting(&*b.db).await, "c");
        b.db.create_attempt(a.clone()).await.unwrap();
        let event = |action: &str| AuditEvent {
            at_ms: 5,
            actor: "platform".into(),
            action: action.into(),
            attempt_id: Some(a.id),
            detail: serde_json::json!({}),
        };
        assert!(b
            .db
            .set_state_audited(
                a.id,
                AttemptState::Recording,
                AttemptState::Ended,
                5,
                event("refused")
            )
            .await
            .unwrap()
            .is_none());
        let entry =
            b.db.set_state_audited(
                a.id,
                AttemptState::Enrolled,
                AttemptState::Ended,
                5,
                event("attempt_ended"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            entry.action, "attempt_ended",
            "{}: the entry comes back, for its checkpoint",
            b.name
        );
        let trail = b.db.audit_trail().await.unwrap();
        assert_eq!(
            trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            vec!["attempt_ended"],
            "{}: a refused change leaves no entry",
            b.name
        );
        assert_eq!(b.db.attempt(a.id).await.unwrap().ended_at_ms, Some(5));
        verify_audit_chain(&trail).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reviews_and_flags() {
    for b in backends().await {
        let db = &*b.db;
        let s = sitting(db).await;
        let a = new_attempt(s, "candidat-1");
        db.create_attempt(a.clone()).await.unwrap();
        let reviewer = reviewer("relecteur");
        db.create_staff(reviewer.clone(), 1).await.unwrap();
        db.assign_sitting(reviewer.id, s, 1).await.unwrap();
        assert_eq!(
            db.sittings_of_staff(reviewer.id).await.unwrap(),
            vec![(s, format!("S-{s}"))],
            "{}",
            b.name
        );
        assert_eq!(
            db.attempts_of_sitting(s)
                .await
                .unwrap()
                .iter()
                .map(|x| x.id)
                .collect::<Vec<_>>(),
            vec![a.id],
            "{}",
            b.name
        );

        let review = Review {
            id: ReviewId::random(),
            attempt_id: a.id,
            round: 1,
            reviewer_id: reviewer.id,
            started_at_ms: 10,
            submitted_at_ms: None,
            outcome: None,
        };
        db.create_review(review.clone()).await.unwrap();
        let again = Review {
            id: ReviewId::random(),
            ..review.clone()
        };
        assert!(
            matches!(db.create_review(again).await, Err(DbError::Conflict)),
            "{}: one review per round",
            b.name
        );
        assert_eq!(
            db.reviews_of(a.id).await.unwrap(),
            vec![review.clone()],
            "{}",
            b.name
        );

        let flag = Flag {
            id: FlagId::random(),
            review_id: review.id,
            attempt_id: a.id,
            start_ms: 1_000,
            end_ms: 6_000,
            category: FlagCategory::Talking,
            severity: Severity::Medium,
            note: "parle à quelqu’un hors champ".into(),
            updated_at_ms: 20,
        };
        assert!(db.save_flag(flag.clone()).await.unwrap(), "{}", b.name);
        let edited = Flag {
            category: FlagCategory::OtherPerson,
            severity: Severity::High,
            updated_at_ms: 21,
            ..flag.clone()
        };
        assert!(
            db.save_flag(edited.clone()).await.unwrap(),
            "{}: edit",
            b.name
        );
        assert_eq!(
            db.flags_of(a.id).await.unwrap(),
            vec![edited.clone()],
            "{}",
            b.name
        );
        // A flag of another review cannot be taken over by id.
        let other = Review {
            id: ReviewId::random(),
            round: 2,
            ..review.clone()
        };
        db.create_review(other.clone()).await.unwrap();
        assert!(
            !db.save_flag(Flag {
                review_id: other.id,
                ..edited.clone()
            })
            .await
            .unwrap(),
            "{}: not another review's flag",
            b.name
        );
        assert!(
            !db.delete_flag(other.id, flag.id).await.unwrap(),
            "{}",
            b.name
        );

        assert_eq!(
            db.submit_review(review.id, ReviewOutcome::NoIrregularity, 30)
                .await
                .unwrap(),
            Submit::Disagrees(1),
            "{}: a flag is an irregularity",
            b.name
        );
        assert_eq!(
            db.submit_review(review.id, ReviewOutcome::Irregularities, 30)
                .await
                .unwrap(),
            Submit::Submitted(1),
            "{}",
            b.name
        );
        assert_eq!(
            db.submit_review(review.id, ReviewOutcome::NoIrregularity, 31)
                .await
                .unwrap(),
            Submit::AlreadySubmitted,
            "{}: submitted once",
            b.name
        );
        // Submitted: flags are frozen.
        assert!(
            !db.save_flag(Flag {
                note: "changed".into(),
                ..edited.clone()
            })
            .await
            .unwrap(),
            "{}: frozen",
            b.name
        );
        assert!(
            !db.save_flag(Flag {
                id: FlagId::random(),
                ..edited.clone()
            })
            .await
            .unwrap(),
            "{}: no new flag",
            b.name
        );
        assert!(
            !db.delete_flag(review.id, flag.id).await.unwrap(),
            "{}: no deletion",
            b.name
        );
        assert_eq!(db.flags_of(a.id).await.unwrap(), vec![edited], "{}", b.name);
        let got = db.reviews_of(a.id).await.unwrap();
        assert_eq!(
            (got[0].outcome, got[0].submitted_at_ms),
            (Some(ReviewOutcome::Irregularities), Some(30)),
            "{}",
            b.name
        );
        assert_eq!(got[1].round, 2);
    }
}

fn event(attempt: Option<AttemptId>, action: &str, at_ms: i64) -> AuditEvent {
    AuditEvent {
        at_ms,
        actor: "jury".into(),
        action: action.into(),
        attempt_id: attempt,
        detail: serde_json::json!({}),
    }
}

fn pv_update(
    a: AttemptId,
    from: AttemptState,
    to: AttemptState,
    contested: bool,
    due_at_ms: Option<i64>,
) -> PvUpdate {
    PvUpdate {
        attempt: a,
        from,
        to,
        contested,
        due_at_ms,
        event: event(Some(a), "attempt_decided", 3_000),
    }
}

/// The PV decision, retention facts, holds, erasure, claims of what is due, and the
/// destruction transaction with its purges, on both backends.
#[tokio::test(flavor = "multi_thread")]
async fn pv_decisions_holds_and_destruction() {
    for b in backends().await {
        let db = &*b.db;
        let s = sitting(db).await;
        let [a1, a2, a3] = ["c1", "c2", "c3"].map(|r| new_attempt(s, r));
        for a in [&a1, &a2, &a3] {
            db.create_attempt(a.clone()).await.unwrap();
        }
        assert!(
            set_state(
                db,
                a1.id,
                AttemptState::Enrolled,
                AttemptState::Ended,
                2_000
            )
            .await
        );
        assert!(
            set_state(
                db,
                a2.id,
                AttemptState::Enrolled,
                AttemptState::Ended,
                2_000
            )
            .await
        );
        let stream = stream_of(db, a1.id, 1_500).await;
        assert_eq!(
            db.insert_chunk(a1.id, chunk(stream, 0, 1), 1_600)
                .await
                .unwrap(),
            ChunkInsert::Created
        );
        let reviewer = reviewer("relecteur");
        db.create_staff(reviewer.clone(), 1).await.unwrap();
        let review = Review {
            id: ReviewId::random(),
            attempt_id: a1.id,
            round: 1,
            reviewer_id: reviewer.id,
            started_at_ms: 10,
            submitted_at_ms: None,
            outcome: None,
        };
        db.create_review(review.clone()).await.unwrap();
        let flag = Flag {
            id: FlagId::random(),
            review_id: review.id,
            attempt_id: a1.id,
            start_ms: 1,
            end_ms: 2,
            category: FlagCategory::Talking,
            severity: Severity::Low,
            note: "note libre".into(),
            updated_at_ms: 1,
        };
        assert!(db.save_flag(flag).await.unwrap());
        assert!(matches!(
            db.submit_review(review.id, ReviewOutcome::Irregularities, 20)
                .await
                .unwrap(),
            Submit::Submitted(1)
        ));

        // A decision whose attempts changed meanwhile records nothing.
        let decision = PvDecision {
            sitting_id: s,
            outcome: PvOutcome::Reservations,
            decided_at_ms: 3_000,
            decided_by: "jury".into(),
            override_unsubmitted: true,
        };
        let raced = [pv_update(
            a1.id,
            AttemptState::InReview,
            AttemptState::Decided,
            false,
            Some(3_000),
        )];
        assert!(
            matches!(
                db.record_pv(&decision, &raced, event(None, "pv_decided", 3_000))
                    .await
                    .unwrap(),
                PvRecorded::Raced
            ),
            "{}",
            b.name
        );
        assert!(
            db.pv_decision(s).await.unwrap().is_none(),
            "{}: nothing of a raced decision stays",
            b.name
        );
        // So does one that would leave an attempt in a state it has left meanwhile.
        let raced = [pv_update(
            a3.id,
            AttemptState::Consented,
            AttemptState::Consented,
            false,
            Some(3_000),
        )];
        assert!(
            matches!(
                db.record_pv(&decision, &raced, event(None, "pv_decided", 3_000))
                    .await
                    .unwrap(),
                PvRecorded::Raced
            ),
            "{}",
            b.name
        );
        let updates = [
            pv_update(
                a1.id,
                AttemptState::Ended,
                AttemptState::Decided,
                false,
                Some(3_000),
            ),
            pv_update(
                a2.id,
                AttemptState::Ended,
                AttemptState::Decided,
                true,
                Some(9_000),
            ),
            pv_update(
                a3.id,
                AttemptState::Enrolled,
                AttemptState::Enrolled,
                false,
                Some(3_000),
            ),
        ];
        match db
            .record_pv(&decision, &updates, event(None, "pv_decided", 3_000))
            .await
            .unwrap()
        {
            PvRecorded::Recorded(entries) => assert_eq!(entries.len(), 4, "{}", b.name),
            other => panic!("{}: {other:?}", b.name),
        }
        assert!(
            matches!(
                db.record_pv(&decision, &updates, event(None, "pv_decided", 3_001))
                    .await
                    .unwrap(),
                PvRecorded::AlreadyDecided
            ),
            "{}",
            b.name
        );
        assert_eq!(
            db.pv_decision(s).await.unwrap(),
            Some(decision.clone()),
            "{}",
            b.name
        );
        let facts = db
            .retention_facts(&[a1.id, a2.id, a3.id, AttemptId::random()])
            .await
            .unwrap();
        assert_eq!(facts.len(), 3, "{}: unknown ids are left out", b.name);
        assert_eq!(
            facts
                .iter()
                .find(|f| f.attempt_id == a1.id)
                .unwrap()
                .last_active_at_ms,
            3_000,
            "{}: the last state change",
            b.name
        );
        db.issue_token(a3.id, 1, [9; 32], 4_500, 9_999)
            .await
            .unwrap();
        assert_eq!(
            db.retention_facts(&[a3.id]).await.unwrap()[0].last_active_at_ms,
            4_500,
            "{}: a token issued again",
            b.name
        );
        let f2 = facts.iter().find(|f| f.attempt_id == a2.id).unwrap();
        assert_eq!(
            (f2.state, f2.contested, f2.pv, f2.due_at_ms, f2.ended_at_ms),
            (
                AttemptState::Decided,
                true,
                Some((PvOutcome::Reservations, 3_000)),
                Some(9_000),
                Some(2_000)
            ),
            "{}",
            b.name
        );
        assert_eq!(
            db.attempt(a3.id).await.unwrap().state,
            AttemptState::Enrolled,
            "{}",
            b.name
        );

        // A hold: the claim skips it; placed twice, the second changes nothing.
        assert!(db
            .change_retention(
                a2.id,
                RetentionChange::Hold {
                    reason: "recours".into()
                },
                event(Some(a2.id), "hold", 4_000)
            )
            .await
            .unwrap()
            .is_some());
        assert!(db
            .change_retention(
                a2.id,
                RetentionChange::Hold {
                    reason: "again".into()
                },
                event(Some(a2.id), "hold", 4_001)
            )
            .await
            .unwrap()
            .is_none());
        let claimed: std::collections::HashSet<AttemptId> = db
            .claim_due(10_000, 0, 60_000, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.attempt_id)
            .collect();
        assert_eq!(
            claimed,
            [a1.id, a3.id].into(),
            "{}: due by due_at, the held one skipped",
            b.name
        );
        assert!(db
            .change_retention(
                a2.id,
                RetentionChange::Lift {
                    at_ms: 5_000,
                    due_at_ms: 12_000
                },
                event(Some(a2.id), "lift", 5_000)
            )
            .await
            .unwrap()
            .is_some());
        let f2 = db.retention_facts(&[a2.id]).await.unwrap().pop().unwrap();
        assert_eq!(
            (f2.hold_reason, f2.hold_lifted_at_ms, f2.due_at_ms),
            (None, Some(5_000), Some(12_000)),
            "{}",
            b.name
        );
        let destroy = |a: AttemptId| Destruction {
            attempt: a,
            pseudonym: format!("p:{a}"),
            receipt_json: format!("receipt of {a}"),
            at_ms: 8_000,
            event: event(Some(a), "attempt_destroyed", 8_000),
        };
        assert!(
            db.destroy_attempts(&[destroy(a2.id)])
                .await
                .unwrap()
                .is_empty(),
            "{}: a due time fixed later (the lift) wins over a stale claim",
            b.name
        );
        assert!(db
            .change_retention(
                a3.id,
                RetentionChange::Erasure { at_ms: 6_000 },
                event(Some(a3.id), "erase", 6_000)
            )
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            db.retention_facts(&[a3.id]).await.unwrap()[0].erasure_requested_at_ms,
            Some(6_000),
            "{}",
            b.name
        );

        // Destruction: key overwritten, receipt kept, connection data and notes purged;
        // a held attempt is skipped; destroying twice changes nothing.
        assert_eq!(
            db.connections_of(a1.id).await.unwrap(),
            vec![(stream, b"sealed connection".to_vec())],
            "{}",
            b.name
        );
        assert!(db
            .change_retention(
                a2.id,
                RetentionChange::Hold {
                    reason: "recours".into()
                },
                event(Some(a2.id), "hold", 7_000)
            )
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            db.destroy_attempts(&[destroy(a1.id), destroy(a2.id)])
                .await
                .unwrap()
                .len(),
            1,
            "{}: the held one is skipped",
            b.name
        );
        assert!(
            db.destroy_attempts(&[destroy(a1.id)])
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
        // With no reader holding it, the destroyed pages leave the log at once.
        assert!(db.flush_destroyed().await.unwrap(), "{}", b.name);
        let gone = db.attempt(a1.id).await.unwrap();
        assert_eq!(
            (gone.state, gone.wrapped_dek.len()),
            (AttemptState::Destroyed, 0),
            "{}",
            b.name
        );
        let f1 = db.retention_facts(&[a1.id]).await.unwrap().pop().unwrap();
        assert_eq!(
            (f1.destroyed_at_ms, f1.receipt, f1.blobs_purged),
            (Some(8_000), Some(format!("receipt of {}", a1.id)), false),
            "{}",
            b.name
        );
        assert!(
            db.connections_of(a1.id).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        // What was found goes with the recording (flags: category, range, note; the
        // reviews' outcomes), and the reference leaves only its pseudonym.
        assert!(
            db.flags_of(a1.id).await.unwrap().is_empty(),
            "{}: flags purged",
            b.name
        );
        assert!(
            db.reviews_of(a1.id)
                .await
                .unwrap()
                .iter()
                .all(|r| r.outcome.is_none()),
            "{}: outcomes purged",
            b.name
        );
        assert_eq!(
            db.reviews_of(a1.id).await.unwrap().len(),
            1,
            "{}: who reviewed stays",
            b.name
        );
        assert_eq!(
            gone.reference,
            StoredReference::Pseudonymous {
                pseudonym: format!("p:{}", a1.id),
                sealed: None
            },
            "{}",
            b.name
        );
        assert!(
            !db.pending_retention()
                .await
                .unwrap()
                .iter()
                .any(|f| f.attempt_id == a1.id),
            "{}",
            b.name
        );
        assert_eq!(
            db.epochs().await.unwrap(),
            vec![("2026-11".to_owned(), 2)],
            "{}",
            b.name
        );

        // The blobs go afterwards, resumably: then the chunk rows too.
        assert_eq!(db.unpurged(0, 10).await.unwrap(), vec![a1.id], "{}", b.name);
        db.finish_purge(&[a1.id], 9_000).await.unwrap();
        assert!(db.unpurged(0, 10).await.unwrap().is_empty(), "{}", b.name);
        assert!(db.chunks_of(stream).await.unwrap().is_empty(), "{}", b.name);
        // A chunk that lands after the purge (an upload in flight) makes it due again, while
        // the destruction is recent.
        assert_eq!(
            db.insert_chunk(a1.id, chunk(stream, 1, 2), 9_500)
                .await
                .unwrap(),
            ChunkInsert::Created
        );
        assert_eq!(db.unpurged(0, 10).await.unwrap(), vec![a1.id], "{}", b.name);
        assert!(
            db.unpurged(8_001, 10).await.unwrap().is_empty(),
            "{}: not once the grace is over",
            b.name
        );
        db.finish_purge(&[a1.id], 9_600).await.unwrap();
        assert!(db.unpurged(0, 10).await.unwrap().is_empty(), "{}", b.name);

        // A month's survivors move under a newer KEK, once (compare-and-set on the old key).
        let live: std::collections::HashSet<AttemptId> = db
            .live_keys_of_epoch("2026-11")
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(live, [a2.id, a3.id].into(), "{}", b.name);
        assert!(
            db.rewrap(a2.id, ("2026-11", &[7; 60]), ("2027-01", &[8; 60]))
                .await
                .unwrap(),
            "{}",
            b.name
        );
        assert!(
            !db.rewrap(a2.id, ("2026-11", &[7; 60]), ("2027-01", &[9; 60]))
                .await
                .unwrap(),
            "{}: moved already",
            b.name
        );
        assert!(
            !db.rewrap(a1.id, ("2026-11", &[]), ("2027-01", &[9; 60]))
                .await
                .unwrap(),
            "{}: destroyed",
            b.name
        );
        assert_eq!(
            db.epochs().await.unwrap(),
            vec![("2026-11".to_owned(), 1), ("2027-01".to_owned(), 1)],
            "{}",
            b.name
        );
        assert_eq!(
            db.attempt(a2.id).await.unwrap().wrapped_dek,
            vec![8; 60],
            "{}",
            b.name
        );

        // Notes an earlier version stored in clear are found (a2 has none; a1's is purged).
        assert!(
            db.clear_notes("sealed:v1:", 10).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        let review2 = Review {
            id: ReviewId::random(),
            attempt_id: a2.id,
            round: 1,
            reviewer_id: reviewer.id,
            started_at_ms: 10,
            submitted_at_ms: None,
            outcome: None,
        };
        db.create_review(review2.clone()).await.unwrap();
        let clear = Flag {
            id: FlagId::random(),
            review_id: review2.id,
            attempt_id: a2.id,
            start_ms: 1,
            end_ms: 2,
            category: FlagCategory::Talking,
            severity: Severity::Low,
            note: "en clair".into(),
            updated_at_ms: 1,
        };
        let sealed = Flag {
            id: FlagId::random(),
            note: "sealed:v1:AAAA".into(),
            ..clear.clone()
        };
        for f in [&clear, &sealed] {
            assert!(db.save_flag(f.clone()).await.unwrap());
        }
        assert_eq!(
            db.clear_notes("sealed:v1:", 10).await.unwrap(),
            vec![(clear.id, a2.id, "en clair".to_owned())],
            "{}",
            b.name
        );
        db.set_note(clear.id, "sealed:v1:BBBB").await.unwrap();
        assert!(
            db.clear_notes("sealed:v1:", 10).await.unwrap().is_empty(),
            "{}",
            b.name
        );

        // A reference an earlier version stored in clear is found, then replaced.
        let flag = if b.name == "sqlite" { "0" } else { "FALSE" };
        b.raw(&format!("UPDATE attempts SET ref = 'C-EN-CLAIR', ref_sealed = NULL, ref_is_pseudonym = {flag} WHERE id = '{}'", a2.id)).await.unwrap();
        assert_eq!(
            db.clear_references(10).await.unwrap(),
            vec![a2.id],
            "{}",
            b.name
        );
        assert_eq!(
            db.attempt(a2.id).await.unwrap().reference,
            StoredReference::Clear("C-EN-CLAIR".into()),
            "{}",
            b.name
        );
        let pseudonymous = StoredReference::Pseudonymous {
            pseudonym: "p:c2".into(),
            sealed: Some(b"sealed c2".to_vec()),
        };
        db.set_reference(a2.id, &pseudonymous).await.unwrap();
        assert!(
            db.clear_references(10).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert_eq!(
            db.attempt(a2.id).await.unwrap().reference,
            pseudonymous,
            "{}",
            b.name
        );
        assert_eq!(
            db.attempt_by_ref(s, "p:c2", true).await.unwrap().id,
            a2.id,
            "{}",
            b.name
        );

        // Connection data an earlier version stored in clear is found, then sealed.
        let legacy = StreamId::random();
        let salt = if b.name == "sqlite" {
            "x'00'"
        } else {
            "'\\x00'::bytea"
        };
        b.raw(&format!("INSERT INTO streams (id, attempt_id, salt, opened_at, client_ip, agent_version, os) VALUES ('{legacy}', '{}', {salt}, 0, '192.0.2.9', '0.9', 'linux')", a2.id)).await.unwrap();
        let clear = db.clear_connections(10).await.unwrap();
        assert_eq!(
            clear
                .iter()
                .map(|c| (c.0, c.1, c.2.client_ip.as_str()))
                .collect::<Vec<_>>(),
            vec![(legacy, a2.id, "192.0.2.9")],
            "{}",
            b.name
        );
        db.seal_connection(legacy.into(), Some(b"sealed".to_vec()))
            .await
            .unwrap();
        assert!(
            db.clear_connections(10).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert!(
            db.connections_of(a2.id)
                .await
                .unwrap()
                .contains(&(legacy.into(), b"sealed".to_vec())),
            "{}",
            b.name
        );
        assert_eq!(
            verify_audit_chain(&db.audit_trail().await.unwrap()),
            Ok(()),
            "{}",
            b.name
        );
        let of_a1: Vec<String> = db
            .audit_of(a1.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert!(
            of_a1.first().is_some_and(|a| a == "state")
                && of_a1.last().is_some_and(|a| a == "attempt_destroyed"),
            "{}: {of_a1:?}",
            b.name
        );
        assert!(
            db.audit_of(AttemptId::random()).await.unwrap().is_empty(),
            "{}",
            b.name
        );
    }
}

/// Both backends number their migrations alike: a migration added to one is added to the
/// other under the same number and name.
#[test]
fn both_backends_number_their_migrations_alike() {
    let names = |backend: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(backend)
            .join("migrations");
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (sqlite, postgres) = (names("db-sqlite"), names("db-postgres"));
    assert!(sqlite.len() >= 11, "{sqlite:?}");
    assert_eq!(sqlite, postgres);
}

/// A PostgreSQL database migrated while its migrations were numbered one behind SQLite's
/// (no 0002) opens, and its bookkeeping ends in the shared numbering.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_database_of_the_old_numbering_opens() {
    let cluster = pg::Cluster::start().await;
    let db = connect(&cluster.url, &pool()).await.unwrap();
    let s = sitting(&*db).await;
    drop(db);
    let admin = sqlx::PgPool::connect(&cluster.url).await.unwrap();
    // The bookkeeping as the old numbering left it: versions 1..=10, 2 being the content hash.
    for sql in [
        "DELETE FROM _sqlx_migrations WHERE version = 2",
        "UPDATE _sqlx_migrations SET version = -version WHERE version >= 3",
        "UPDATE _sqlx_migrations SET version = -version - 1 WHERE version <= -3",
    ] {
        sqlx::query(sql).execute(&admin).await.unwrap();
    }
    let old: String =
        sqlx::query_scalar("SELECT description FROM _sqlx_migrations WHERE version = 2")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(old, "chunk content hash");

    let db = connect(&cluster.url, &pool()).await.unwrap();
    assert!(db.sitting_exists(s).await.unwrap(), "the data is kept");
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&admin)
            .await
            .unwrap();
    // Every migration there is, whatever their number.
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../db-postgres/migrations"
    ))
    .unwrap()
    .count() as i64;
    assert_eq!(rows.len() as i64, migrations, "{rows:?}");
    assert_eq!(rows[1], (2, "lifecycle and tokens".to_string()));
    assert_eq!(rows[2], (3, "chunk content hash".to_string()));
    assert_eq!(rows[10], (11, "launch codes".to_string()));
    assert_eq!(rows[11], (12, "pseudonymous references".to_string()));
    assert_eq!(rows[12], (13, "audit retention".to_string()));
    // Opening again changes nothing.
    drop(db);
    connect(&cluster.url, &pool()).await.unwrap();
    let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(again, migrations);
}

/// Issue 22: only a complete, ended, settled stream of a living attempt is to pack; its
/// rows switch once; the loose objects are listed after the switch until finished.
#[tokio::test]
async fn packing_lists_complete_settled_streams_and_switches_rows_once() {
    for b in backends().await {
        let db = &*b.db;
        let a = new_attempt(sitting(db).await, "c");
        db.create_attempt(a.clone()).await.unwrap();
        // Stream `whole`: 0..=2, ended at 5,000. `holed`: 0 and 2 (final), ended.
        // `open`: 0..=1, never ended.
        let (whole, holed, open) = (
            stream_of(db, a.id, 1_000).await,
            stream_of(db, a.id, 1_000).await,
            stream_of(db, a.id, 1_000).await,
        );
        for (s, indices) in [
            (whole, vec![0, 1, 2]),
            (holed, vec![0, 2]),
            (open, vec![0, 1]),
        ] {
            for i in indices {
                let mut row = chunk(s, i, i as u8);
                row.last = i == 2;
                db.insert_chunk(a.id, row, 2_000).await.unwrap();
            }
        }
        db.end_stream(whole, 2, 5_000).await.unwrap();
        db.end_stream(holed, 2, 5_000).await.unwrap();
        assert!(
            db.streams_to_pack(5_000, 0, 10).await.unwrap().is_empty(),
            "{}: not settled",
            b.name
        );
        assert_eq!(
            db.streams_to_pack(5_001, 0, 10).await.unwrap(),
            vec![(a.id, whole)],
            "{}: only the whole ended stream",
            b.name
        );

        let places = |tag: u64| {
            [(0, 0, 0), (1, 0, 10), (2, 2, 0)]
                .map(|(i, first, offset)| (i, PackPlace { tag, first, offset }))
        };
        assert_eq!(
            db.set_packed(whole, &places(7), 6_000).await.unwrap(),
            Packed::Done
        );
        assert_eq!(
            db.set_packed(whole, &places(8), 6_001).await.unwrap(),
            Packed::AlreadyPacked,
            "{}",
            b.name
        );
        let rows = db.chunks_of(whole).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.pack).collect::<Vec<_>>(),
            [(0, 0), (0, 10), (2, 0)]
                .map(|(first, offset)| Some(PackPlace {
                    tag: 7,
                    first,
                    offset
                }))
                .to_vec(),
            "{}: the winner's tag",
            b.name
        );
        assert_eq!(db.chunk(whole, 1).await.unwrap().pack, rows[1].pack);
        assert!(db
            .chunks_of(open)
            .await
            .unwrap()
            .iter()
            .all(|r| r.pack.is_none()));
        assert!(
            db.streams_to_pack(9_000, 0, 10).await.unwrap().is_empty(),
            "{}: packed once",
            b.name
        );

        // Once the attempt ended long enough ago, the holed and the unended streams are
        // packed as they are.
        assert!(
            set_state(
                db,
                a.id,
                AttemptState::Enrolled,
                AttemptState::Ended,
                20_000
            )
            .await
        );
        assert!(
            db.streams_to_pack(9_000, 20_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
        let mut late = db.streams_to_pack(9_000, 20_001, 10).await.unwrap();
        late.sort();
        let mut expected = vec![(a.id, holed), (a.id, open)];
        expected.sort();
        assert_eq!(
            late, expected,
            "{}: incomplete streams of an ended attempt",
            b.name
        );

        assert!(
            db.loose_to_delete(6_000, 10).await.unwrap().is_empty(),
            "{}: grace",
            b.name
        );
        assert_eq!(
            db.loose_to_delete(6_001, 10).await.unwrap(),
            vec![(a.id, whole)]
        );
        db.finish_loose(whole, 7_000).await.unwrap();
        assert!(
            db.loose_to_delete(9_000, 10).await.unwrap().is_empty(),
            "{}",
            b.name
        );

        // A destroyed attempt's streams are neither listed nor switched.
        let other = new_attempt(sitting(db).await, "d");
        db.create_attempt(other.clone()).await.unwrap();
        let s = stream_of(db, other.id, 1_000).await;
        let mut row = chunk(s, 0, 1);
        row.last = true;
        db.insert_chunk(other.id, row, 2_000).await.unwrap();
        db.end_stream(s, 0, 2_000).await.unwrap();
        assert_eq!(
            db.streams_to_pack(9_000, 0, 10).await.unwrap(),
            vec![(other.id, s)]
        );
        db.destroy_attempts(&[Destruction {
            attempt: other.id,
            pseudonym: "p:other".into(),
            receipt_json: "receipt".into(),
            at_ms: 8_000,
            event: event(Some(other.id), "attempt_destroyed", 8_000),
        }])
        .await
        .unwrap();
        assert!(
            db.streams_to_pack(9_000, 0, 10).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert_eq!(
            db.set_packed(
                s,
                &[(
                    0,
                    PackPlace {
                        tag: 1,
                        first: 0,
                        offset: 0
                    }
                )],
                9_000
            )
            .await
            .unwrap(),
            Packed::Destroyed,
            "{}",
            b.name
        );
    }
}
