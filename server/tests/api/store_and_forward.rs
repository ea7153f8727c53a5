//! Store-and-forward from the first second: the launch token carries the attempt's public
//! key; the agent keys its streams itself and keeps its consent sealed; the server opens a
//! stream from its first chunk, records consent with its original time, and refuses
//! forged openings without storing anything.

use crate::helpers::*;
use base64::Engine;
use protocol::api::*;
use protocol::{
    seal_to_attempt, AttemptPublicKey, Fragment, LaunchToken, StreamKey, StreamOpening,
    StreamSealer,
};
use uuid::Uuid;

/// What an agent holds with the token alone.
struct Offline {
    attempt: Uuid,
    public: AttemptPublicKey,
}

fn offline(c: &Candidate) -> Offline {
    let (attempt, public) = LaunchToken::parse(&c.token)
        .unwrap()
        .offline
        .expect("the launch token carries the attempt's key");
    assert_eq!(attempt, c.attempt_id);
    Offline { attempt, public }
}

/// A stream keyed by the agent, started at `started_ms` by its clock: init and `n`
/// fragments of 2 s, the last one final.
fn agent_stream(o: &Offline, started_ms: u64, n: u32) -> (Uuid, Vec<Vec<u8>>) {
    let (id, key) = (Uuid::new_v4(), StreamKey::generate());
    let opening = StreamOpening::seal(&o.public, &o.attempt, &id, started_ms, &key);
    let mut sealer = StreamSealer::with_opening(key, o.attempt, id, opening);
    let chunks = (0..=n)
        .map(|i| {
            let data = fragment_data(i, id);
            let frag = Fragment {
                data: &data,
                media_start_us: i.saturating_sub(1) as u64 * 2_000_000,
                media_end_us: i as u64 * 2_000_000,
                last: i == n,
            };
            sealer.seal(frag).unwrap().1
        })
        .collect();
    (id, chunks)
}

fn sealed_consent(o: &Offline, notice_version: &str, given_at_ms: i64) -> String {
    let json = serde_json::to_vec(&OfflineConsent {
        notice_version: notice_version.into(),
        given_at_ms,
    })
    .unwrap();
    base64::engine::general_purpose::STANDARD.encode(seal_to_attempt(
        &o.public,
        &o.attempt,
        CONSENT_PURPOSE,
        &json,
    ))
}

impl TestApp {
    async fn consent_sealed(
        &self,
        token: &str,
        notice_version: &str,
        sealed: String,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/api/agent/v1/consent", self.public))
            .bearer_auth(token)
            .json(&ConsentRequest {
                notice_version: notice_version.into(),
                sealed: Some(sealed),
            })
            .send()
            .await
            .unwrap()
    }
    fn now_ms(&self) -> i64 {
        (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

use server::clock::Clock;

#[tokio::test]
async fn a_recording_made_offline_lands_whole_with_its_own_times() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    let o = offline(&c);
    // The public key the integration API states is the token's, and the agent API's.
    let info: AttemptInfo = app
        .http
        .get(format!("{}/api/agent/v1/attempt", app.public))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&info.public_key)
            .unwrap(),
        o.public.0
    );
    assert_eq!(info.attempt_id, c.attempt_id);

    // The candidate consented and recorded 26 s while the server was unreachable.
    app.clock.advance(std::time::Duration::from_secs(120));
    let consented = app.now_ms() - 30_000;
    let (stream, chunks) = agent_stream(&o, consented as u64 + 1_000, 13);
    // Nothing uploads before consent: the first chunk is refused until it is recorded.
    assert_eq!(
        error_code(app.put_chunk(&c.token, stream, 0, chunks[0].clone()).await).await,
        (403, "consent_required".into())
    );
    assert_eq!(
        app.consent_sealed(
            &c.token,
            NOTICE_VERSION,
            sealed_consent(&o, NOTICE_VERSION, consented)
        )
        .await
        .status(),
        204
    );
    for (i, chunk) in chunks.iter().enumerate() {
        let r = app
            .put_chunk(&c.token, stream, i as u32, chunk.clone())
            .await;
        assert_eq!(r.status(), 201, "chunk {i}: {}", r.text().await.unwrap());
    }
    assert_eq!(app.end_stream(&c.token, stream, 13).await.status(), 204);

    let report = app
        .state()
        .await
        .review
        .report_for_operator(c.attempt_id.into())
        .await
        .unwrap();
    assert_eq!(
        report.consent_at,
        Some(server::clock::rfc3339(server::clock::from_unix_ms(
            consented
        )))
    );
    assert_eq!(report.streams.len(), 1);
    assert_eq!(report.streams[0].stream_id, stream.into());
    assert_eq!(
        report.streams[0].started_at,
        server::clock::rfc3339(server::clock::from_unix_ms(consented + 1_000)),
        "the stream starts when it was recorded"
    );
    assert_eq!(
        (report.fragments_stored, report.integrity.as_str()),
        (14, "ok")
    );
    assert_eq!(report.chunks_by_transport.get("https"), Some(&14));
    let trail = app.db().await.audit_trail().await.unwrap();
    assert!(trail
        .iter()
        .any(|e| e.action == "consent_recorded" && e.detail.contains("\"kept_offline\":true")));

    // The server opens what the agent keyed: a reviewer reads the fragments back.
    app.state()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    let token = reviewer_of(&app, "relecteur", c.attempt_id).await;
    let url = format!(
        "{}/api/staff/v1/attempts/{}/streams/{stream}/fragments/7",
        app.staff, c.attempt_id
    );
    let r = app.http.get(url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        format!("fragment 7 of stream {stream}").as_bytes()
    );
}

#[tokio::test]
async fn forged_or_damaged_openings_create_nothing() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    assert_eq!(app.consent(&c.token).await.status(), 204);
    let o = offline(&c);
    let now = app.now_ms() as u64;

    // Sealed to another attempt's key: the server cannot open it.
    let other = app.candidate().await;
    let forged = Offline {
        attempt: o.attempt,
        public: offline(&other).public,
    };
    let (s1, chunks) = agent_stream(&forged, now, 1);
    assert_eq!(
        error_code(app.put_chunk(&c.token, s1, 0, chunks[0].clone()).await).await,
        (422, "authentication_failed".into())
    );
    // A start time changed in transit breaks the chunk's tag.
    let (s2, chunks) = agent_stream(&o, now, 1);
    let mut moved = chunks[0].clone();
    moved[protocol::HEADER_LEN + 7] ^= 1;
    assert_eq!(
        error_code(app.put_chunk(&c.token, s2, 0, moved).await).await,
        (422, "authentication_failed".into())
    );
    // A later chunk cannot open a stream.
    assert_eq!(
        error_code(app.put_chunk(&c.token, s2, 1, chunks[1].clone()).await).await,
        (409, "stream_not_opened".into())
    );
    // A first chunk without an opening opens nothing either.
    let mut bare = StreamSealer::new(StreamKey::generate(), o.attempt, Uuid::new_v4());
    let (_, bare0) = bare
        .seal(Fragment {
            data: b"init",
            media_start_us: 0,
            media_end_us: 0,
            last: false,
        })
        .unwrap();
    let bare_id = protocol::ChunkHeader::parse(&bare0).unwrap().0.stream;
    assert_eq!(
        error_code(app.put_chunk(&c.token, bare_id, 0, bare0).await).await,
        (409, "stream_not_opened".into())
    );

    assert!(app
        .db()
        .await
        .streams_of(c.attempt_id.into())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(app.blob_count(), 0);
    // The honest stream still opens afterwards.
    assert_eq!(
        app.put_chunk(&c.token, s2, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        app.put_chunk(&c.token, s2, 1, chunks[1].clone())
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn sealed_consent_is_checked_and_the_same_first_chunk_twice_opens_one_stream() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    let o = offline(&c);
    let other = offline(&app.candidate().await);
    let now = app.now_ms();
    // Sealed for another attempt, another notice, or not base64: refused, nothing recorded.
    assert_eq!(
        error_code(
            app.consent_sealed(
                &c.token,
                NOTICE_VERSION,
                sealed_consent(&other, NOTICE_VERSION, now)
            )
            .await
        )
        .await,
        (400, "bad_request".into())
    );
    assert_eq!(
        error_code(
            app.consent_sealed(
                &c.token,
                NOTICE_VERSION,
                sealed_consent(&o, "2020-01-v1", now)
            )
            .await
        )
        .await,
        (400, "bad_request".into())
    );
    assert_eq!(
        error_code(
            app.consent_sealed(
                &c.token,
                "2020-01-v1",
                sealed_consent(&o, "2020-01-v1", now)
            )
            .await
        )
        .await,
        (400, "bad_request".into())
    );
    assert_eq!(
        error_code(
            app.consent_sealed(&c.token, NOTICE_VERSION, "%%%".into())
                .await
        )
        .await,
        (400, "bad_request".into())
    );
    assert!(app
        .db()
        .await
        .attempt(c.attempt_id.into())
        .await
        .unwrap()
        .consent_at_ms
        .is_none());
    // A clock far in the future is brought back to now; far in the past, to the attempt's creation.
    assert_eq!(
        app.consent_sealed(
            &c.token,
            NOTICE_VERSION,
            sealed_consent(&o, NOTICE_VERSION, now + 86_400_000)
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .consent_at_ms,
        Some(now)
    );

    // Two transports bring the same first chunk at once: one stream, both acknowledged.
    let (s, chunks) = agent_stream(&o, now as u64, 2);
    let (a, b) = tokio::join!(
        app.put_chunk(&c.token, s, 0, chunks[0].clone()),
        app.put_chunk(&c.token, s, 0, chunks[0].clone())
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 201]);
    assert_eq!(
        app.db()
            .await
            .streams_of(c.attempt_id.into())
            .await
            .unwrap()
            .len(),
        1
    );
    // The same stream id with another opening (another key) is a conflict, not a second stream.
    let (_, rival) = {
        let key = StreamKey::generate();
        let opening = StreamOpening::seal(&o.public, &o.attempt, &s, now as u64, &key);
        let mut sealer = StreamSealer::with_opening(key, o.attempt, s, opening);
        sealer
            .seal(Fragment {
                data: b"rival",
                media_start_us: 0,
                media_end_us: 0,
                last: false,
            })
            .unwrap()
    };
    assert_eq!(
        error_code(app.put_chunk(&c.token, s, 0, rival).await).await,
        (422, "authentication_failed".into())
    );
    assert_eq!(
        app.db()
            .await
            .streams_of(c.attempt_id.into())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_stream_recorded_before_the_end_lands_after_it_one_started_after_does_not() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    let o = offline(&c);
    assert_eq!(app.consent(&c.token).await.status(), 204);
    let before_end = app.now_ms() as u64 + 1_000;
    app.clock.advance(std::time::Duration::from_secs(60));
    app.state_on_clock()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    // Two hours after the end: the outage lasted.
    app.clock.advance(std::time::Duration::from_secs(7200));
    let (late, chunks) = agent_stream(&o, before_end, 2);
    for (i, chunk) in chunks.into_iter().enumerate() {
        assert_eq!(
            app.put_chunk(&c.token, late, i as u32, chunk)
                .await
                .status(),
            201
        );
    }
    let (after, chunks) = agent_stream(&o, app.now_ms() as u64 - 1_000, 1);
    assert_eq!(
        error_code(app.put_chunk(&c.token, after, 0, chunks[0].clone()).await).await,
        (409, "attempt_ended".into())
    );
    // Past [limits] max_offline after the end, no stream can claim it began before it.
    app.clock.advance(app.settings.limits.max_offline);
    let (too_late, chunks) = agent_stream(&o, before_end, 1);
    assert_eq!(
        error_code(
            app.put_chunk(&c.token, too_late, 0, chunks[0].clone())
                .await
        )
        .await,
        (409, "attempt_ended".into())
    );
    assert_eq!(
        app.db()
            .await
            .streams_of(c.attempt_id.into())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Review findings: what a lying clock, a missing consent or a refused first chunk could
/// have bought.
#[tokio::test]
async fn agent_times_are_held_to_max_offline_and_consent_comes_first() {
    let app = spawn_app().await;
    let c = app.candidate().await;
    let o = offline(&c);
    // Three days after enrolment, an agent dates its consent and its stream at the epoch.
    app.clock
        .advance(std::time::Duration::from_secs(3 * 86_400));
    let now = app.now_ms();
    let floor = now - app.settings.limits.max_offline.as_millis() as i64;
    assert_eq!(
        app.consent_sealed(
            &c.token,
            NOTICE_VERSION,
            sealed_consent(&o, NOTICE_VERSION, 0)
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .consent_at_ms,
        Some(floor)
    );
    let (s, chunks) = agent_stream(&o, 0, 1);
    assert_eq!(
        app.put_chunk(&c.token, s, 0, chunks[0].clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        app.db().await.stream(s.into()).await.unwrap().opened_at_ms,
        floor,
        "the quota and windows count from max_offline ago at most"
    );

    // A first chunk the window refuses opens nothing (and spends no stream of the quota).
    let (late, _) = agent_stream(&o, now as u64, 0);
    let far = {
        let key = StreamKey::generate();
        let mut sealer = StreamSealer::with_opening(
            key.clone(),
            o.attempt,
            late,
            StreamOpening::seal(&o.public, &o.attempt, &late, now as u64, &key),
        );
        sealer
            .seal(Fragment {
                data: b"init",
                media_start_us: 0,
                media_end_us: 90_000_000_000,
                last: false,
            })
            .unwrap()
            .1
    };
    assert_eq!(
        error_code(app.put_chunk(&c.token, late, 0, far).await).await,
        (422, "media_time_out_of_window".into())
    );
    assert!(
        app.db().await.stream(late.into()).await.is_err(),
        "no stream row from a refused first chunk"
    );
}

#[tokio::test]
async fn an_exam_spent_offline_lands_after_its_end_but_never_without_consent() {
    let app = spawn_app().await;
    // Ended with no consent on record: a first chunk is refused.
    let c = app.candidate().await;
    let o = offline(&c);
    app.clock.advance(std::time::Duration::from_secs(3600));
    let before_end = app.now_ms();
    app.state_on_clock()
        .await
        .enrolment
        .end_attempt(c.attempt_id.into(), "test")
        .await
        .unwrap();
    let (s, chunks) = agent_stream(&o, before_end as u64 - 60_000, 2);
    assert_eq!(
        error_code(app.put_chunk(&c.token, s, 0, chunks[0].clone()).await).await,
        (403, "consent_required".into())
    );
    assert!(app
        .db()
        .await
        .streams_of(c.attempt_id.into())
        .await
        .unwrap()
        .is_empty());
    // The agent reconnects: its consent, given before the end, is recorded; then the
    // recording made under it lands, after the end.
    app.clock.advance(std::time::Duration::from_secs(600));
    assert_eq!(
        app.consent_sealed(
            &c.token,
            NOTICE_VERSION,
            sealed_consent(&o, NOTICE_VERSION, before_end - 120_000)
        )
        .await
        .status(),
        204
    );
    for (i, chunk) in chunks.into_iter().enumerate() {
        assert_eq!(
            app.put_chunk(&c.token, s, i as u32, chunk).await.status(),
            201
        );
    }
    assert_eq!(
        app.db()
            .await
            .attempt(c.attempt_id.into())
            .await
            .unwrap()
            .state
            .as_str(),
        "ended"
    );
    // Consent dated after the end is not taken.
    let late = app.candidate().await;
    let lo = offline(&late);
    let end = app.now_ms();
    app.state_on_clock()
        .await
        .enrolment
        .end_attempt(late.attempt_id.into(), "test")
        .await
        .unwrap();
    app.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(
        error_code(
            app.consent_sealed(
                &late.token,
                NOTICE_VERSION,
                sealed_consent(&lo, NOTICE_VERSION, end + 30_000)
            )
            .await
        )
        .await,
        (409, "invalid_transition".into())
    );
}
