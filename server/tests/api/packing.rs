//! Issue 22: a complete stream's fragments packed into a few objects, on both storages.
//! Every read gives the same bytes before, during and after; the loose objects go after
//! their grace; a pack's damage is caught like a chunk's; a purge leaves nothing; two
//! packers at once write one set of packs.

use crate::helpers::*;
use server::packing::PackReport;
use std::time::Duration;
use uuid::Uuid;

/// Fragments recorded per stream (plus the initialisation segment).
const FRAGMENTS: u32 = 6;

/// Small packs, so that a stream makes several: two to four of these fragments each. On
/// a directory, one file per chunk: appended to stream files, there is nothing to pack
/// (`stream_files.rs`).
fn small_packs(s: &mut server::configuration::Settings) {
    s.packing.max_pack_bytes = 700;
    s.object_store.local_files = server::blobs::LocalFiles::PerChunk;
}

/// A reviewer's reads of the whole stream: the media range and each fragment.
async fn reads(app: &TestApp, token: &str, c: &Candidate, stream: Uuid) -> Vec<(u16, Vec<u8>)> {
    let base = format!("/attempts/{}/streams/{stream}", c.attempt_id);
    let mut paths = vec![format!("{base}/media?from=1&to={FRAGMENTS}")];
    paths.extend((0..=FRAGMENTS).map(|i| format!("{base}/fragments/{i}")));
    let mut out = Vec::new();
    for path in paths {
        let r = app.staff_get(token, &path).await;
        out.push((r.status().as_u16(), r.bytes().await.unwrap().to_vec()));
    }
    out
}

fn all_served(reads: &[(u16, Vec<u8>)]) {
    let statuses: Vec<u16> = reads.iter().map(|r| r.0).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// A candidate who recorded one whole stream and ended it.
async fn recorded(app: &TestApp) -> (Candidate, OpenStream) {
    let (c, s) = app.recording_candidate().await;
    for (i, chunk) in seal_stream(&s, FRAGMENTS).into_iter().enumerate() {
        assert_eq!(
            app.put_chunk(&c.token, s.stream_id, i as u32, chunk)
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        app.end_stream(&c.token, s.stream_id, FRAGMENTS)
            .await
            .status(),
        204
    );
    // Reviewed once the exam has ended.
    assert_eq!(
        app.platform_post(&format!("attempts/{}/end", c.attempt_id))
            .await
            .status(),
        200
    );
    (c, s)
}

async fn objects(app: &TestApp, c: &Candidate) -> usize {
    app.blobs()
        .count_attempt_objects(c.attempt_id.into())
        .await
        .unwrap()
}

async fn pass(app: &TestApp) -> PackReport {
    app.state_on_clock().await.packer.run_once().await.unwrap()
}

/// The jury validates the candidate's sitting, and the purge that follows has run.
async fn validated_and_purged(app: &TestApp, c: &Candidate) {
    let sitting = app.sitting_of(c.attempt_id).await;
    let pv = app
        .platform_json(
            reqwest::Method::POST,
            &format!("sittings/{sitting}/pv"),
            Some(serde_json::json!({ "outcome": "validated", "override_unsubmitted": true })),
        )
        .await;
    assert_eq!(pv.status(), 201);
    app.state_on_clock()
        .await
        .retention
        .purge_destroyed()
        .await
        .unwrap();
}

/// One fragment, as the reviewer's player asks for it.
async fn fragment(
    app: &TestApp,
    token: &str,
    c: &Candidate,
    stream: Uuid,
    i: u32,
) -> reqwest::Response {
    app.staff_get(
        token,
        &format!("/attempts/{}/streams/{stream}/fragments/{i}", c.attempt_id),
    )
    .await
}

async fn a_packed_recording_reads_the_same_and_purges_whole(app: TestApp) {
    let (c, s) = recorded(&app).await;
    let token = reviewer_of(&app, "relecteur", c.attempt_id).await;
    let before = reads(&app, &token, &c, s.stream_id).await;
    all_served(&before);
    let loose = (FRAGMENTS + 1) as usize;
    assert_eq!(objects(&app, &c).await, loose);

    // Not yet: the stream ended less than `[packing] after` ago.
    assert_eq!(pass(&app).await, PackReport::default());
    app.clock.advance(Duration::from_secs(3 * 60));
    let packed = pass(&app).await;
    assert_eq!(
        (packed.streams_packed, packed.fragments_packed),
        (1, loose),
        "{packed:?}"
    );
    assert!(packed.packs_written >= 2, "small packs: several {packed:?}");
    assert!(packed.packs_written < loose, "{packed:?}");
    // The loose objects outlive the switch by their grace: a reader that had the old row
    // still finds its object.
    assert_eq!(objects(&app, &c).await, loose + packed.packs_written);
    assert_eq!(reads(&app, &token, &c, s.stream_id).await, before);

    app.clock.advance(Duration::from_secs(11 * 60));
    let swept = pass(&app).await;
    assert_eq!(swept.loose_deleted, loose, "{swept:?}");
    assert_eq!(swept.streams_packed, 0, "packed once");
    assert_eq!(objects(&app, &c).await, packed.packs_written);
    assert_eq!(reads(&app, &token, &c, s.stream_id).await, before);
    assert_eq!(
        pass(&app).await,
        PackReport::default(),
        "nothing left to do"
    );
    let report: serde_json::Value = app
        .staff_get(&token, &format!("/attempts/{}", c.attempt_id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["integrity"], "ok", "{report:#}");
    assert_eq!(report["fragments_stored"], FRAGMENTS + 1, "{report:#}");

    // The jury validates: the packs go with the attempt's purge.
    validated_and_purged(&app, &c).await;
    assert_eq!(objects(&app, &c).await, 0, "nothing left in the store");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_packed_recording_reads_the_same_and_purges_whole_on_sqlite_and_a_directory() {
    a_packed_recording_reads_the_same_and_purges_whole(spawn_app_with(small_packs).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_packed_recording_reads_the_same_and_purges_whole_on_postgres_and_s3() {
    a_packed_recording_reads_the_same_and_purges_whole(
        spawn_app_on_postgres_and_s3(small_packs).await,
    )
    .await;
}

/// On a directory's default layout a stream's chunks are appended to one file as they
/// arrive: the recording is one object from its first chunk on, reads whole, the packer
/// has nothing to do, and the purge deletes the file.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_file_is_a_pack_from_the_start() {
    let app = spawn_app_with(|s| s.packing.max_pack_bytes = 700).await;
    let (c, s) = recorded(&app).await;
    assert_eq!(objects(&app, &c).await, 1, "one file for the stream");
    let token = reviewer_of(&app, "relecteur", c.attempt_id).await;
    let before = reads(&app, &token, &c, s.stream_id).await;
    all_served(&before);
    let rows = app.db().await.chunks_of(s.stream_id.into()).await.unwrap();
    assert_eq!(rows.len(), (FRAGMENTS + 1) as usize);
    assert!(
        rows.windows(2).all(|w| {
            let (a, b) = (w[0].pack.unwrap(), w[1].pack.unwrap());
            (a.tag, a.first) == (b.tag, b.first) && a.offset + w[0].size == b.offset
        }),
        "end to end in one file, in the order they came"
    );
    // Past the packing's delay and the loose objects' grace (within the session's life).
    app.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(pass(&app).await, PackReport::default());
    assert_eq!(objects(&app, &c).await, 1);
    assert_eq!(reads(&app, &token, &c, s.stream_id).await, before);

    let (file, range) = app.blob_file(c.attempt_id, s.stream_id, 3).await;
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[range.start + 40] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    assert_eq!(
        error_code(fragment(&app, &token, &c, s.stream_id, 3).await).await,
        (422, "fragment_altered".into()),
        "a damaged range is caught like a damaged object"
    );
    assert_eq!(
        fragment(&app, &token, &c, s.stream_id, 4).await.status(),
        200,
        "its neighbours read as before"
    );
    // The file's tail lost (a disk's damage, a hand): the chunks it held are missing, as
    // lost objects are, not a storage failure; those before the cut still read.
    let (file, range) = app.blob_file(c.attempt_id, s.stream_id, 5).await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(range.start as u64 + 10)
        .unwrap();
    for (i, want) in [(4, 200), (5, 404), (6, 404)] {
        let status = fragment(&app, &token, &c, s.stream_id, i).await.status();
        assert_eq!(status, want, "fragment {i}");
    }

    validated_and_purged(&app, &c).await;
    assert_eq!(objects(&app, &c).await, 0, "nothing left in the store");
    assert_eq!(app.blob_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_pack_is_caught_and_a_lost_fragment_stays_missing() {
    let app = spawn_app_with(small_packs).await;
    let (c, s) = recorded(&app).await;
    let token = reviewer_of(&app, "relectrice", c.attempt_id).await;
    // Fragment 5 lost from the store before packing: left out, still read as missing.
    let row = app.db().await.chunk(s.stream_id.into(), 5).await.unwrap();
    app.blobs()
        .delete(&server::blobs::chunk_path(
            c.attempt_id.into(),
            s.stream_id.into(),
            5,
            &row.content_sha256,
        ))
        .await
        .unwrap();
    app.clock.advance(Duration::from_secs(3 * 60));
    let packed = pass(&app).await;
    assert_eq!(packed.fragments_packed, FRAGMENTS as usize, "{packed:?}");
    let db = app.db().await;
    assert!(db
        .chunk(s.stream_id.into(), 5)
        .await
        .unwrap()
        .pack
        .is_none());
    let base = format!("/attempts/{}/streams/{}", c.attempt_id, s.stream_id);
    let fragment = |i: u32| {
        let path = format!("{base}/fragments/{i}");
        let (app, token) = (&app, &token);
        async move { app.staff_get(token, &path).await }
    };
    assert_eq!(
        error_code(fragment(5).await).await,
        (404, "not_found".into())
    );
    assert_eq!(fragment(2).await.status(), 200);

    // One bit of fragment 2 flipped inside its pack: refused as altered, its neighbours
    // in the same pack still served.
    let place = db
        .chunk(s.stream_id.into(), 2)
        .await
        .unwrap()
        .pack
        .expect("packed");
    app.alter_blob(c.attempt_id, s.stream_id, 2).await;
    assert_eq!(
        error_code(fragment(2).await).await,
        (422, "fragment_altered".into())
    );
    let neighbour = if place.first == 2 { 3 } else { place.first };
    assert_eq!(fragment(neighbour).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_packers_at_once_leave_one_set_of_packs() {
    let app = spawn_app_with(small_packs).await;
    let (c, s) = recorded(&app).await;
    let token = reviewer_of(&app, "relecteur", c.attempt_id).await;
    let before = reads(&app, &token, &c, s.stream_id).await;
    app.clock.advance(Duration::from_secs(3 * 60));
    let (one, two) = (app.state_on_clock().await, app.state_on_clock().await);
    let (a, b) = tokio::join!(one.packer.run_once(), two.packer.run_once());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.streams_packed + b.streams_packed, 1, "{a:?} {b:?}");
    let packs = a.packs_written + b.packs_written;
    app.clock.advance(Duration::from_secs(11 * 60));
    pass(&app).await;
    assert_eq!(
        objects(&app, &c).await,
        packs,
        "the loser deleted its own packs"
    );
    assert_eq!(reads(&app, &token, &c, s.stream_id).await, before);
}

/// A stream its agent never ended is packed as it is a day after its attempt ended; a
/// fragment the agent's backlog brings later still is stored, on its own, and read.
#[tokio::test(flavor = "multi_thread")]
async fn an_unended_stream_is_packed_as_it_is_once_its_attempt_is_long_over() {
    let app = spawn_app_with(small_packs).await;
    let (c, s) = app.recording_candidate().await;
    let chunks = seal_stream(&s, FRAGMENTS);
    for (i, chunk) in chunks.iter().enumerate().take(4) {
        assert_eq!(
            app.put_chunk(&c.token, s.stream_id, i as u32, chunk.clone())
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        app.platform_post(&format!("attempts/{}/end", c.attempt_id))
            .await
            .status(),
        200
    );
    app.clock.advance(Duration::from_secs(3 * 60));
    assert_eq!(pass(&app).await.streams_packed, 0, "not ended by its agent");
    app.clock.advance(Duration::from_secs(24 * 3600));
    let packed = pass(&app).await;
    assert_eq!(
        (packed.streams_packed, packed.fragments_packed),
        (1, 4),
        "{packed:?}"
    );
    // The backlog's next fragment, later still.
    assert_eq!(
        app.put_chunk(&c.token, s.stream_id, 4, chunks[4].clone())
            .await
            .status(),
        201
    );
    let db = app.db().await;
    assert!(db
        .chunk(s.stream_id.into(), 4)
        .await
        .unwrap()
        .pack
        .is_none());
    assert!(db
        .chunk(s.stream_id.into(), 3)
        .await
        .unwrap()
        .pack
        .is_some());
    let token = reviewer_of(&app, "relecteur", c.attempt_id).await;
    let r = app
        .staff_get(
            &token,
            &format!(
                "/attempts/{}/streams/{}/media?from=1&to=4",
                c.attempt_id, s.stream_id
            ),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The initialisation segment first, then the fragments asked for.
    let expected = [0, 1, 2, 3, 4]
        .map(|i| fragment_data(i, s.stream_id))
        .concat();
    assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());
    assert_eq!(pass(&app).await.streams_packed, 0, "packed once");
}
