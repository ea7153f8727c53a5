use crate::helpers::*;
use protocol::api::ChunkAck;
use protocol::{Fragment, StreamSealer};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn a_stream_uploads_idempotently_and_ends() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    assert_eq!(s.attempt_id, c.attempt_id);
    let chunks = seal_stream(&s, 3);
    for (i, chunk) in chunks.iter().enumerate() {
        let r = app
            .put_chunk(&c.token, s.stream_id, i as u32, chunk.clone())
            .await;
        assert_eq!(r.status(), 201);
    }
    // Replay: harmless.
    let r = app
        .put_chunk(&c.token, s.stream_id, 1, chunks[1].clone())
        .await;
    assert_eq!(r.status(), 200);
    assert!(!r.json::<ChunkAck>().await.unwrap().created);
    assert_eq!(app.chunk_rows(s.stream_id).await, 4);
    // Each chunk's bytes once: the replay wrote nothing.
    assert_eq!(
        app.blob_bytes(),
        chunks.iter().map(|c| c.len() as u64).sum::<u64>()
    );
    assert_eq!(app.end_stream(&c.token, s.stream_id, 3).await.status(), 204);
    // A chunk past the end is refused.
    let r = app
        .put_chunk(&c.token, s.stream_id, 4, chunks[3].clone())
        .await;
    assert_eq!(error_code(r).await.0, 400);
}

#[tokio::test]
async fn no_consent_no_stream() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    assert_eq!(
        error_code(app.open_stream_raw(&c.token).await).await,
        (403, "consent_required".into())
    );
    let r = app
        .http
        .post(format!("{}/api/agent/v1/consent", app.public))
        .bearer_auth(&c.token)
        .json(&serde_json::json!({ "notice_version": "1999" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    assert_eq!(
        error_code(app.open_stream_raw(&c.token).await).await,
        (403, "consent_required".into())
    );
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let app = spawn_app().await;
    assert_eq!(
        error_code(app.consent("clt_nope").await).await,
        (401, "unauthorized".into())
    );
    let r = app
        .http
        .post(format!("{}/api/agent/v1/consent", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let c = app.candidate().await;
    app.clock.advance(Duration::from_secs(8 * 24 * 3600));
    assert_eq!(
        error_code(app.consent(&c.token).await).await,
        (401, "token_expired".into())
    );
}

#[tokio::test]
async fn every_bad_chunk_gets_its_4xx_and_stores_nothing() {
    let app = spawn_app().await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, 2);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 0, chunks[0].clone())
            .await
            .status(),
        201
    );

    // Flipped bit in the ciphertext: authentication fails.
    let mut tampered = chunks[1].clone();
    let n = tampered.len();
    tampered[n - 20] ^= 1;
    assert_eq!(
        error_code(app.put_chunk(&c.token, s.stream_id, 1, tampered).await).await,
        (422, "authentication_failed".into())
    );
    // Garbage and truncation: malformed.
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, s.stream_id, 1, b"hello".to_vec())
                .await
        )
        .await,
        (400, "malformed_chunk".into())
    );
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, s.stream_id, 1, chunks[1][..n - 1].to_vec())
                .await
        )
        .await,
        (400, "malformed_chunk".into())
    );
    // Index in the URL differs from the sealed one.
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, s.stream_id, 2, chunks[1].clone())
                .await
        )
        .await,
        (400, "bad_request".into())
    );
    // A chunk of a stream the server does not know (its first chunk, which would open it,
    // never came), another stream's chunk under this URL, and a stream id that is not an id.
    let unknown = Uuid::new_v4();
    let mut stray = StreamSealer::new(s.key.clone(), s.attempt_id, unknown);
    stray
        .seal(Fragment {
            data: b"init",
            media_start_us: 0,
            media_end_us: 0,
            last: false,
        })
        .unwrap();
    let (_, stray1) = stray
        .seal(Fragment {
            data: b"media",
            media_start_us: 0,
            media_end_us: 1,
            last: false,
        })
        .unwrap();
    assert_eq!(
        error_code(app.put_chunk(&c.token, unknown, 1, stray1).await).await,
        (409, "stream_not_opened".into())
    );
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, Uuid::new_v4(), 1, chunks[1].clone())
                .await
        )
        .await,
        (400, "bad_request".into())
    );
    let r = app
        .http
        .put(format!("{}/api/agent/v1/streams/xyz/chunks/1", app.public))
        .bearer_auth(&c.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));
    // Oversized body.
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, s.stream_id, 1, vec![0u8; 70_000])
                .await
        )
        .await,
        (413, "too_large".into())
    );
    // Sealed for another attempt (the other candidate's own key): forbidden here.
    let other = app.candidate().await;
    app.consent(&other.token).await;
    let os = app.open_stream(&other.token).await;
    let foreign = seal_stream(&os, 1);
    // Whether that stream exists or not, the answer is the same: no probing.
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, os.stream_id, 1, foreign[1].clone())
                .await
        )
        .await,
        (403, "forbidden".into())
    );
    let mut unknown_foreign = StreamSealer::new(os.key.clone(), os.attempt_id, Uuid::new_v4());
    let (_, unknown_foreign) = unknown_foreign
        .seal(Fragment {
            data: b"x",
            media_start_us: 0,
            media_end_us: 0,
            last: false,
        })
        .unwrap();
    let unknown_id = protocol::ChunkHeader::parse(&unknown_foreign)
        .unwrap()
        .0
        .stream;
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, unknown_id, 0, unknown_foreign)
                .await
        )
        .await,
        (403, "forbidden".into())
    );
    let mut relabelled = StreamSealer::new(os.key.clone(), os.attempt_id, s.stream_id);
    let (_, wrong_attempt) = relabelled
        .seal(Fragment {
            data: b"x",
            media_start_us: 0,
            media_end_us: 0,
            last: false,
        })
        .unwrap();
    assert_eq!(
        error_code(app.put_chunk(&c.token, s.stream_id, 0, wrong_attempt).await).await,
        (403, "forbidden".into())
    );
    // A different chunk at an index already stored: conflict.
    let mut again = StreamSealer::new(s.key.clone(), s.attempt_id, s.stream_id);
    let (_, other0) = again
        .seal(Fragment {
            data: b"other init",
            media_start_us: 0,
            media_end_us: 0,
            last: false,
        })
        .unwrap();
    assert_eq!(
        error_code(app.put_chunk(&c.token, s.stream_id, 0, other0).await).await,
        (409, "conflicting_chunk".into())
    );
    // Ending a stream whose final chunk is not stored: conflict.
    assert_eq!(
        error_code(app.end_stream(&c.token, s.stream_id, 2).await).await,
        (409, "conflict".into())
    );

    // Nothing of the above was stored; the honest chunks still go through.
    assert_eq!(app.chunk_rows(s.stream_id).await, 1);
    assert_eq!(app.blob_bytes(), chunks[0].len() as u64);
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 1, chunks[1].clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 2, chunks[2].clone())
            .await
            .status(),
        201
    );
    assert_eq!(app.end_stream(&c.token, s.stream_id, 2).await.status(), 204);
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.action == "agent_incident" && e.detail.contains("chunk_conflict")),
        "conflicts are logged in the audit trail"
    );
}
