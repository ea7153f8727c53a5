//! The server's domain as the routes and the CLI see it: `Proctor` holds the ports
//! (database, blobs, keys, clock, settings) and the guards every use case shares. The use
//! cases live in their own modules: `enrolment` (sittings, candidates, launch tokens,
//! lifecycle transitions), `ingest` (consent, streams, chunks), `staff_auth`, `recording`
//! (reports and media). Holds no SQL (that is `db`) and no HTTP (that is `routes`).

use crate::blobs::BlobStore;
use crate::clock::SharedClock;
use crate::configuration::Settings;
use crate::db::*;
use crate::keys::KeyStore;
use std::sync::Arc;

pub struct Proctor {
    pub db: Arc<dyn Database>,
    pub blobs: BlobStore,
    pub keys: KeyStore,
    pub clock: SharedClock,
    pub settings: Settings,
    pub enrolment: Arc<crate::enrolment::Enrolment>,
    pub accounts: Arc<crate::accounts::Accounts>,
    pub audit: crate::audit::Audit,
    pub attempts: crate::attempts::Attempts,
    pub policy: crate::retention::Policy,
    pub review: Arc<crate::review::Review>,
    pub retention: Arc<crate::retention::Retention>,
    pub liveness: Arc<crate::liveness::Liveness>,
    pub ingest: Arc<crate::ingest::Ingest>,
}

impl Proctor {
    pub async fn open(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        settings.server.check_production()?;
        if settings.retention.ceiling.shortest() <= settings.limits.upload_grace {
            anyhow::bail!("[retention] ceiling must be longer than [limits] upload_grace: a recording still uploading would be destroyed");
        }
        let dir = &settings.server.data_dir;
        std::fs::create_dir_all(dir)?;
        let pool = settings.database.pool();
        let db: Arc<dyn Database> = match &settings.database.url {
            Some(url) => crate::db::connect(url, &pool).await?,
            None => Arc::new(SqliteDatabase::open(&dir.join("proctor.sqlite"), &pool).await?),
        };
        let l = &settings.limits;
        let audit = crate::audit::Audit::new(
            db.clone(),
            crate::audit::Checkpoints::new(&settings.server.key_dir()),
            clock.clone(),
        );
        let blobs = BlobStore::open(&settings.object_store, dir)?;
        let attempts = crate::attempts::Attempts::new(db.clone(), audit.clone(), clock.clone());
        let keys = KeyStore::open(&settings.server.key_dir())?;
        let liveness = Arc::new(crate::liveness::Liveness::new(
            db.clone(),
            audit.clone(),
            clock.clone(),
            &settings.liveness,
        ));
        let policy = crate::retention::Policy::new(db.clone(), settings.retention.ceiling);
        Ok(Self {
            audit: audit.clone(),
            attempts: attempts.clone(),
            db: db.clone(),
            blobs: blobs.clone(),
            keys: keys.clone(),
            accounts: Arc::new(crate::accounts::Accounts::new(
                db.clone(),
                keys.clone(),
                clock.clone(),
                audit.clone(),
                l,
            )?),
            enrolment: Arc::new(crate::enrolment::Enrolment::new(
                db.clone(),
                keys.clone(),
                clock.clone(),
                audit.clone(),
                attempts.clone(),
                &settings,
            )),
            retention: Arc::new(crate::retention::Retention::new(
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
            )),
            review: Arc::new(crate::review::Review::new(
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
            policy: policy.clone(),
            liveness: liveness.clone(),
            ingest: Arc::new(crate::ingest::Ingest::new(
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
            clock,
            settings,
        })
    }
}
