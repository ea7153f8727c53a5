//! What the routes and the command line hold: one handle per use case, built once from
//! the settings. The use cases own their dependencies; the shared parts (`Audit`,
//! `Attempts`, the retention `Policy`) are cheap clones. Holds no SQL (that is `db`) and
//! no HTTP (that is `routes`).

use crate::accounts::Accounts;
use crate::attempts::Attempts;
use crate::audit::Audit;
use crate::blobs::BlobStore;
use crate::clock::SharedClock;
use crate::configuration::Settings;
use crate::db::{Database, SqliteDatabase};
use crate::enrolment::Enrolment;
use crate::ingest::Ingest;
use crate::liveness::Liveness;
use crate::packing::Packer;
use crate::retention::{Policy, Retention};
use crate::review::Review;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub ingest: Arc<Ingest>,
    pub liveness: Arc<Liveness>,
    pub enrolment: Arc<Enrolment>,
    pub accounts: Arc<Accounts>,
    pub review: Arc<Review>,
    pub retention: Arc<Retention>,
    /// Complete streams' fragments into packs (`[packing]`).
    pub packer: Arc<Packer>,
    pub policy: Policy,
    pub attempts: Attempts,
    pub audit: Audit,
    /// The data channel, once the server runs (None in the command line's use and when
    /// `[webrtc]` is off).
    pub webrtc: Option<Arc<crate::webrtc::WebRtc>>,
    /// What the HTTP layer itself needs from the settings.
    pub http: Http,
}

#[derive(Clone)]
pub struct Http {
    pub max_concurrent_requests: usize,
    /// The exam platform's bearer token (`[integration] token`); unset, the integration
    /// API answers 401 to everyone.
    pub integration_token: Option<String>,
    /// Peers whose `X-Forwarded-For` names the client (`[server] trusted_proxies`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The anonymous routes' budget (in progress at once) and cap per network.
    pub max_unauthenticated_requests: usize,
    pub max_unauthenticated_per_address: usize,
}

/// The database the settings name: `[database] url`, or SQLite in the data directory.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Arc<dyn Database>> {
    let dir = &settings.server.data_dir;
    std::fs::create_dir_all(dir)?;
    let pool = settings.database.pool();
    Ok(match &settings.database.url {
        Some(url) => crate::db::connect(url, &pool).await?,
        None => Arc::new(SqliteDatabase::open(&dir.join("proctor.sqlite"), &pool).await?),
    })
}

impl AppState {
    pub async fn open(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        settings.server.check_production()?;
        if settings.retention.ceiling.shortest() <= settings.limits.upload_grace {
            anyhow::bail!("[retention] ceiling must be longer than [limits] upload_grace: a recording still uploading would be destroyed");
        }
        let dir = &settings.server.data_dir;
        let db = open_database(&settings).await?;
        let l = &settings.limits;
        let audit = Audit::new(
            db.clone(),
            crate::audit::Checkpoints::new(&settings.server.key_dir()),
            clock.clone(),
        );
        let blobs = BlobStore::open(&settings.object_store, dir)?;
        let attempts = Attempts::new(db.clone(), audit.clone(), clock.clone());
        let mut keys = settings
            .keys
            .open(&settings.server.key_dir())?
            .with_epoch_length(settings.retention.kek_epoch);
        if settings.server.production {
            keys = keys.requiring_signing_key()?;
            if matches!(settings.keys, crate::configuration::KeySettings::File) {
                tracing::warn!("production with key-encryption keys in files: a destroyed key is overwritten in place, which an SSD's remapping or a snapshot of the key volume can defeat; a PKCS#11 token ([keys] store = \"pkcs11\") destroys keys itself");
            }
        }
        tracing::debug!(store = %keys.describe(), "key-encryption keys");
        let liveness = Arc::new(Liveness::new(
            db.clone(),
            audit.clone(),
            clock.clone(),
            &settings.liveness,
        ));
        let policy = Policy::new(db.clone(), settings.retention.ceiling, keys.clone());
        let state = Self {
            audit: audit.clone(),
            attempts: attempts.clone(),
            accounts: Arc::new(Accounts::new(
                db.clone(),
                keys.clone(),
                clock.clone(),
                audit.clone(),
                l,
            )?),
            enrolment: Arc::new(Enrolment::new(
                db.clone(),
                keys.clone(),
                clock.clone(),
                audit.clone(),
                attempts.clone(),
                &settings,
            )),
            retention: Arc::new(Retention::new(
                crate::retention::Parts {
                    db: db.clone(),
                    blobs: blobs.clone(),
                    keys: keys.clone(),
                    clock: clock.clone(),
                    audit: audit.clone(),
                    attempts: attempts.clone(),
                    policy: policy.clone(),
                },
                &settings,
            )?),
            review: Arc::new(Review::new(
                crate::review::Parts {
                    db: db.clone(),
                    blobs: blobs.clone(),
                    keys: keys.clone(),
                    clock: clock.clone(),
                    audit: audit.clone(),
                    attempts: attempts.clone(),
                    policy: policy.clone(),
                },
                &settings.review,
            )),
            packer: Arc::new(Packer::new(
                db.clone(),
                blobs.clone(),
                clock.clone(),
                settings.packing.clone(),
            )),
            policy: policy.clone(),
            liveness: liveness.clone(),
            ingest: Arc::new(Ingest::new(
                db.clone(),
                blobs.clone(),
                crate::ingest::Parts {
                    keys: keys.clone(),
                    clock: clock.clone(),
                    audit: audit.clone(),
                    attempts: attempts.clone(),
                    liveness,
                },
                &settings,
            )),
            webrtc: None,
            http: Http {
                max_concurrent_requests: l.max_concurrent_requests,
                integration_token: settings.integration.token.clone(),
                trusted_proxies: settings.server.trusted_proxies.clone(),
                max_unauthenticated_requests: l.max_unauthenticated_requests,
                max_unauthenticated_per_address: l.max_unauthenticated_per_address,
            },
        };
        // Before anything is served or answered: a database restored from before a
        // destruction must not bring the attempt back.
        state.retention.reapply_tombstones().await?;
        Ok(state)
    }
}
