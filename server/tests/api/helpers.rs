use base64::Engine;
use protocol::api::*;
use protocol::{Fragment, StreamKey, StreamSealer};
use server::clock::{Clock, ManualClock};
use server::db::Database;
use server::startup::Application;
use std::sync::Arc;
use uuid::Uuid;

pub const PLATFORM_TOKEN: &str = "platform-secret-for-tests";

pub struct TestApp {
    /// Servers the app runs on (a PostgreSQL cluster, a Garage node), alive as long as it.
    pub guards: Vec<Box<dyn std::any::Any + Send>>,
    pub settings: server::configuration::Settings,
    pub public: String,
    pub staff: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub data: tempfile::TempDir,
}

pub struct Candidate {
    pub attempt_id: Uuid,
    pub token: String,
}

pub struct OpenStream {
    pub stream_id: Uuid,
    pub attempt_id: Uuid,
    pub key: StreamKey,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The production storage: a throwaway PostgreSQL cluster and Garage node.
pub async fn spawn_app_on_postgres_and_s3(
    adjust: impl FnOnce(&mut server::configuration::Settings),
) -> TestApp {
    let pg = crate::pg::Cluster::start().await;
    let garage = crate::garage::Garage::start();
    let (url, store) = (pg.url.clone(), garage.settings.clone());
    let mut app = spawn_app_with(|s| {
        s.database.url = Some(url);
        s.object_store = store;
        adjust(s);
    })
    .await;
    app.guards.push(Box::new(pg));
    app.guards.push(Box::new(garage));
    app
}

/// A server on port 0 with the embedded defaults, `adjust`ed.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut server::configuration::Settings)) -> TestApp {
    server::telemetry::init();
    let data = tempfile::tempdir().unwrap();
    let mut settings = server::configuration::load(None).unwrap();
    settings.server.data_dir = data.path().to_owned();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.staff_listen = "127.0.0.1:0".parse().unwrap();
    settings.limits.max_chunk_bytes = 64 * 1024;
    settings.integration.token = Some(PLATFORM_TOKEN.into());
    // The packer's loop runs on wall-clock time beside the tests' manual clock: off, so
    // that what a test counts in the store is what it did; `packing.rs` runs its passes.
    settings.packing.enabled = false;
    adjust(&mut settings);
    let clock = Arc::new(ManualClock::at(time::OffsetDateTime::now_utc()));
    let app = Application::build(settings.clone(), clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    let public = format!("http://{}", app.public_addr());
    let staff = format!("http://{}", app.staff_addr());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        guards: Vec::new(),
        settings,
        public,
        staff,
        http: reqwest::Client::new(),
        clock,
        data,
    }
}

impl TestApp {
    /// The server's database, opened beside it as the CLI does.
    pub async fn db(&self) -> std::sync::Arc<dyn Database> {
        server::state::open_database(&self.on_disk()).await.unwrap()
    }

    /// The file holding a stored chunk's bytes (its own, or its stream's) and their range.
    pub async fn blob_file(
        &self,
        attempt: Uuid,
        stream: Uuid,
        index: u32,
    ) -> (std::path::PathBuf, std::ops::Range<usize>) {
        let row = self.db().await.chunk(stream.into(), index).await.unwrap();
        let (path, start) = match row.pack {
            Some(p) => (
                server::blobs::pack_path(attempt.into(), stream.into(), p.tag, p.first),
                p.offset as usize,
            ),
            None => (
                server::blobs::chunk_path(
                    attempt.into(),
                    stream.into(),
                    index,
                    &row.content_sha256,
                ),
                0,
            ),
        };
        let file = self.data.path().join("blobs").join(path.to_string());
        (file, start..start + row.size as usize)
    }

    /// Flips one bit of a stored chunk's blob, as an attacker on the storage would.
    pub async fn alter_blob(&self, attempt: Uuid, stream: Uuid, index: u32) {
        let (path, range) = self.blob_file(attempt, stream, index).await;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[range.end - 1] ^= 1;
        std::fs::write(&path, bytes).unwrap();
    }

    /// The sitting an attempt belongs to.
    pub async fn sitting_of(&self, attempt: Uuid) -> server::db::SittingId {
        self.db()
            .await
            .attempt(attempt.into())
            .await
            .unwrap()
            .sitting_id
    }

    /// The server's blob store, opened beside it.
    pub fn blobs(&self) -> server::blobs::BlobStore {
        let st = self.on_disk();
        server::blobs::BlobStore::open(&st.object_store, &st.server.data_dir).unwrap()
    }

    /// The settings with the data directory the server runs on.
    fn on_disk(&self) -> server::configuration::Settings {
        let mut st = self.settings.clone();
        st.server.data_dir = self.data.path().to_owned();
        st
    }

    pub async fn create_sitting(&self, reference: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/integration/v1/sittings", self.public))
            .bearer_auth(PLATFORM_TOKEN)
            .json(&serde_json::json!({ "ref": reference }))
            .send()
            .await
            .unwrap()
    }

    pub async fn add_candidate(&self, sitting: Uuid, reference: &str) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/api/integration/v1/sittings/{sitting}/candidates",
                self.public
            ))
            .bearer_auth(PLATFORM_TOKEN)
            .json(&serde_json::json!({ "ref": reference }))
            .send()
            .await
            .unwrap()
    }

    pub async fn candidate(&self) -> Candidate {
        let sitting: CreateSittingResponse = self
            .create_sitting(&format!("S-{}", Uuid::new_v4()))
            .await
            .json()
            .await
            .unwrap();
        let c: AddCandidateResponse = self
            .add_candidate(sitting.sitting_id, "C-1")
            .await
            .json()
            .await
            .unwrap();
        Candidate {
            attempt_id: c.attempt_id,
            token: c.launch_token,
        }
    }

    /// A candidate who consented and opened a stream.
    pub async fn recording_candidate(&self) -> (Candidate, OpenStream) {
        let c = self.candidate().await;
        assert_eq!(self.consent(&c.token).await.status(), 204);
        let s = self.open_stream(&c.token).await;
        (c, s)
    }

    pub async fn consent(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/agent/v1/consent", self.public))
            .bearer_auth(token)
            .json(&ConsentRequest {
                notice_version: NOTICE_VERSION.into(),
                sealed: None,
            })
            .send()
            .await
            .unwrap()
    }

    pub async fn open_stream_raw(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/agent/v1/streams", self.public))
            .bearer_auth(token)
            .json(&OpenStreamRequest {
                agent_version: "test".into(),
                os: "linux".into(),
            })
            .send()
            .await
            .unwrap()
    }

    pub async fn open_stream(&self, token: &str) -> OpenStream {
        let r: OpenStreamResponse = self.open_stream_raw(token).await.json().await.unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r.stream_key)
            .unwrap();
        OpenStream {
            stream_id: r.stream_id,
            attempt_id: r.attempt_id,
            key: StreamKey::from_bytes(&bytes).unwrap(),
        }
    }

    pub async fn put_chunk(
        &self,
        token: &str,
        stream: Uuid,
        index: u32,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .put(format!(
                "{}/api/agent/v1/streams/{stream}/chunks/{index}",
                self.public
            ))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn end_stream(
        &self,
        token: &str,
        stream: Uuid,
        final_index: u32,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/api/agent/v1/streams/{stream}/end", self.public))
            .bearer_auth(token)
            .json(&EndStreamRequest { final_index })
            .send()
            .await
            .unwrap()
    }

    /// Blob files stored under the data directory.
    pub fn blob_count(&self) -> usize {
        self.blob_sizes().len()
    }

    /// The bytes of every blob file under the data directory: whatever the layout (a file
    /// per chunk, or a file per stream), what chunks were written there.
    pub fn blob_bytes(&self) -> u64 {
        self.blob_sizes().iter().sum()
    }

    fn blob_sizes(&self) -> Vec<u64> {
        fn walk(p: &std::path::Path, out: &mut Vec<u64>) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out)
                } else {
                    out.push(e.metadata().unwrap().len())
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data.path().join("blobs"), &mut out);
        out
    }

    pub async fn chunk_rows(&self, stream: Uuid) -> usize {
        self.db()
            .await
            .chunks_of(stream.into())
            .await
            .unwrap()
            .len()
    }
}

/// What these tests record as fragment `i` of a stream: for 0, an initialisation segment
/// the server serves (`ftyp`, then a `moov` whose one track is H.264), naming the stream;
/// then a text naming the fragment and the stream.
pub fn fragment_data(i: u32, stream: Uuid) -> Vec<u8> {
    fn mp4(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        [&(payload.len() as u32 + 8).to_be_bytes()[..], kind, payload].concat()
    }
    if i > 0 {
        return format!("fragment {i} of stream {stream}").into_bytes();
    }
    let stsd = mp4(
        b"stsd",
        &[[0u8; 8].as_slice(), &mp4(b"avc1", &[0; 16])].concat(),
    );
    let trak = [b"stbl", b"minf", b"mdia", b"trak"]
        .iter()
        .fold(stsd, |inner, kind| mp4(kind, &inner));
    [mp4(b"ftyp", stream.as_bytes()), mp4(b"moov", &trak)].concat()
}

/// A recorded stream of `n` fragments (plus init), the last one final.
pub fn seal_stream(s: &OpenStream, n: u32) -> Vec<Vec<u8>> {
    let mut sealer = StreamSealer::new(s.key.clone(), s.attempt_id, s.stream_id);
    (0..=n)
        .map(|i| {
            let data = fragment_data(i, s.stream_id);
            let frag = Fragment {
                data: &data,
                media_start_us: i.saturating_sub(1) as u64 * 2_000_000,
                media_end_us: i as u64 * 2_000_000,
                last: i == n,
            };
            sealer.seal(frag).unwrap().1
        })
        .collect()
}

impl TestApp {
    /// A staff member's GET of `path` (from its leading `/`) under the staff API.
    pub async fn staff_get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/staff/v1{path}", self.staff))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn platform_post(&self, path: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/integration/v1/{path}", self.public))
            .bearer_auth(PLATFORM_TOKEN)
            .send()
            .await
            .unwrap()
    }
}

pub async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: ErrorBody = r.json().await.expect("error responses carry a JSON body");
    (status, body.error)
}

/// The password `add_staff` accounts end up with (after the forced first change).
pub const STAFF_PASSWORD: &str = "Kilo-Tango-2026-bis";

/// A staff account made through the domain (as the CLI does), logged in, its forced
/// first password change done; returns its session token.
pub async fn add_staff(app: &TestApp, login: &str, role: &str) -> String {
    app.state()
        .await
        .accounts
        .add_staff(login, role, "Kilo-Tango-2026")
        .await
        .unwrap();
    let token = staff_login(app, login, "Kilo-Tango-2026").await;
    let r = app
        .http
        .post(format!("{}/api/staff/v1/account/password", app.staff))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "current": "Kilo-Tango-2026", "new": STAFF_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "forced first password change");
    token
}

/// Logs in; returns the session token.
pub async fn staff_login(app: &TestApp, login: &str, password: &str) -> String {
    let r = app
        .http
        .post(format!("{}/api/staff/v1/login", app.staff))
        .json(&serde_json::json!({ "login": login, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A reviewer assigned to the sitting of `attempt`; returns their session token.
pub async fn reviewer_of(app: &TestApp, login: &str, attempt: Uuid) -> String {
    let token = add_staff(app, login, "reviewer").await;
    let sitting = app.sitting_of(attempt).await;
    app.state()
        .await
        .accounts
        .assign_sitting(login, sitting, "test")
        .await
        .unwrap();
    token
}

impl TestApp {
    /// The use cases on the same data directory and stores, as the CLI opens them.
    pub async fn state(&self) -> server::state::AppState {
        server::state::AppState::open(
            self.on_disk(),
            std::sync::Arc::new(server::clock::SystemClock),
        )
        .await
        .unwrap()
    }
}

impl TestApp {
    /// The use cases on the same data directory, on the server's own (manual) clock.
    pub async fn state_on_clock(&self) -> server::state::AppState {
        server::state::AppState::open(
            self.on_disk(),
            self.clock.clone() as std::sync::Arc<dyn Clock>,
        )
        .await
        .unwrap()
    }

    /// A sitting with `n` candidates who each recorded `fragments` fragments and ended.
    pub async fn ended_sitting(
        &self,
        n: usize,
        fragments: u32,
    ) -> (Uuid, Vec<(Candidate, OpenStream)>) {
        let sitting: CreateSittingResponse = self
            .create_sitting(&format!("S-{}", Uuid::new_v4()))
            .await
            .json()
            .await
            .unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            let c: AddCandidateResponse = self
                .add_candidate(sitting.sitting_id, &format!("C-{i}"))
                .await
                .json()
                .await
                .unwrap();
            let c = Candidate {
                attempt_id: c.attempt_id,
                token: c.launch_token,
            };
            assert_eq!(self.consent(&c.token).await.status(), 204);
            let s = self.open_stream(&c.token).await;
            for (i, chunk) in seal_stream(&s, fragments).into_iter().enumerate() {
                assert!(self
                    .put_chunk(&c.token, s.stream_id, i as u32, chunk)
                    .await
                    .status()
                    .is_success());
            }
            self.end_stream(&c.token, s.stream_id, fragments).await;
            assert!(self
                .platform_post(&format!("attempts/{}/end", c.attempt_id))
                .await
                .status()
                .is_success());
            out.push((c, s));
        }
        (sitting.sitting_id, out)
    }

    pub async fn platform_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(method, format!("{}/api/integration/v1/{path}", self.public))
            .bearer_auth(PLATFORM_TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }
}
