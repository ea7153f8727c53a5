//! The PKCS#11 store: each key an AES-256 secret-key object on a token (an HSM, a cloud
//! KMS that speaks PKCS#11; SoftHSM2 in the tests), created sensitive and not
//! extractable, so its bytes never reach this process. Sealing and opening are the
//! token's AES-GCM; destruction is the token's `C_DestroyObject`.

use super::{KekStore, KeyError};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rand::RngCore;
use std::path::Path;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Labels of our keys on the token (which may hold other applications' objects).
const LABEL_PREFIX: &str = "cloe-connect/kek/";

pub struct Pkcs11Keks {
    /// One logged-in session; the token's operations on 32-byte keys are short.
    session: Mutex<Session>,
    described: String,
}

fn token_error(e: Error) -> KeyError {
    KeyError::Token(e.to_string())
}

impl Pkcs11Keks {
    /// Logs in to the token labelled `token` of the module at `module` with the user PIN.
    pub fn open(module: &Path, token: &str, pin: &str) -> Result<Self, KeyError> {
        let pin = AuthPin::from(pin.to_owned());
        let ctx = context(module)?;
        let slot = ctx
            .get_slots_with_initialized_token()
            .map_err(token_error)?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|i| i.label().trim_end() == token)
            })
            .ok_or_else(|| KeyError::Token(format!("no initialised token labelled {token:?}")))?;
        let session = ctx.open_rw_session(slot).map_err(token_error)?;
        match session.login(UserType::User, Some(&pin)) {
            Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) | Ok(()) => {}
            Err(e) => return Err(token_error(e)),
        }
        Ok(Self {
            session: Mutex::new(session),
            described: format!("PKCS#11 token {token:?} ({})", module.display()),
        })
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The module's context, loaded and initialised once per process and never unloaded: a
/// library unloaded while another handle initialises it again crashes the process.
fn context(module: &Path) -> Result<Pkcs11, KeyError> {
    static LOADED: Mutex<Vec<(std::path::PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, ctx)) = loaded.iter().find(|(p, _)| p == module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(token_error)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) | Ok(()) => {}
        Err(e) => return Err(token_error(e)),
    }
    loaded.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

fn label(name: &str) -> Vec<u8> {
    format!("{LABEL_PREFIX}{name}").into_bytes()
}

/// Every key of that name, the one to seal with first. Two instances racing to create a
/// key may each make one: all open, and every instance seals with the lowest id.
fn keys_named(s: &Session, name: &str) -> Result<Vec<ObjectHandle>, KeyError> {
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label(name)),
        ])
        .map_err(token_error)?;
    let mut with_ids = Vec::with_capacity(found.len());
    for h in found {
        // Every key we create has an id. An object without one, or whose attributes cannot
        // be read yet, is another session's key still being written (SoftHSM2 lists it
        // before its attributes are set): not one to seal with yet.
        let Ok(attributes) = s.get_attributes(h, &[AttributeType::Id]) else {
            continue;
        };
        let id = attributes.into_iter().find_map(|a| match a {
            Attribute::Id(id) if !id.is_empty() => Some(id),
            _ => None,
        });
        if let Some(id) = id {
            with_ids.push((id, h));
        }
    }
    with_ids.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(with_ids.into_iter().map(|(_, h)| h).collect())
}

/// Creates the key `name` unless another session (another instance) has just done so.
/// Two sessions creating token objects at the same moment can make SoftHSM2 answer one
/// of them `CKR_GENERAL_ERROR` (its object files are written under a lock it does not
/// always win): look again, and try again a few times, before giving up.
fn create_once(s: &Session, name: &str) -> Result<(), KeyError> {
    const TRIES: u32 = 5;
    for n in 1.. {
        match create(s, name) {
            Err(Error::Pkcs11(RvError::GeneralError, _)) if n < TRIES => {
                std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(n)));
                if !keys_named(s, name)?.is_empty() {
                    return Ok(());
                }
            }
            other => return other.map_err(token_error),
        }
    }
    unreachable!("the loop returns by its last try")
}

fn create(s: &Session, name: &str) -> Result<(), Error> {
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(label(name)),
            Attribute::Id(id.to_vec()),
        ],
    )?;
    Ok(())
}

/// The token's AES-GCM under `key`, with a fresh IV in front.
fn seal_with(s: &Session, key: ObjectHandle, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
    let mut iv = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let params = GcmParams::new(&mut iv, aad, 128.into())?;
    let ct = s.encrypt(&Mechanism::AesGcm(params), key, msg)?;
    Ok([iv.as_slice(), &ct].concat())
}

impl KekStore for Pkcs11Keks {
    fn seal(&self, name: &str, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let s = self.session();
        let mut keys = keys_named(&s, name)?;
        if keys.is_empty() {
            create_once(&s, name)?;
            keys = keys_named(&s, name)?;
        }
        let key = *keys
            .first()
            .ok_or_else(|| KeyError::KekGone(name.to_owned()))?;
        match seal_with(&s, key, msg, aad) {
            // During a creation race, the first key listed may be another session's still
            // being written (SoftHSM2 shows it before its attributes): once more, with the
            // keys listed again.
            Err(Error::Pkcs11(RvError::MechanismInvalid | RvError::KeyHandleInvalid, _)) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let key = *keys_named(&s, name)?
                    .first()
                    .ok_or_else(|| KeyError::KekGone(name.to_owned()))?;
                seal_with(&s, key, msg, aad).map_err(token_error)
            }
            other => other.map_err(token_error),
        }
    }

    fn open(&self, name: &str, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < 12 + 16 {
            return Err(KeyError::UnwrapFailed);
        }
        let s = self.session();
        let keys = keys_named(&s, name)?;
        if keys.is_empty() {
            return Err(KeyError::KekGone(name.to_owned()));
        }
        let (iv, ct) = sealed.split_at(12);
        for key in keys {
            let mut iv = <[u8; 12]>::try_from(iv).expect("split at 12");
            let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(token_error)?;
            match s.decrypt(&Mechanism::AesGcm(params), key, ct) {
                Ok(pt) => return Ok(Zeroizing::new(pt)),
                // A tag that does not verify: the standard's code, or (SoftHSM2) a general
                // error. Either way this key did not seal it; try the next.
                Err(Error::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError
                    | RvError::FunctionFailed,
                    _,
                )) => continue,
                Err(e) => return Err(token_error(e)),
            }
        }
        Err(KeyError::UnwrapFailed)
    }

    fn contains(&self, name: &str) -> Result<bool, KeyError> {
        Ok(!keys_named(&self.session(), name)?.is_empty())
    }

    fn names(&self) -> Result<Vec<String>, KeyError> {
        let s = self.session();
        let all = s
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .map_err(token_error)?;
        let mut out = Vec::new();
        for h in all {
            for a in s
                .get_attributes(h, &[AttributeType::Label])
                .map_err(token_error)?
            {
                if let Attribute::Label(l) = a {
                    if let Some(n) = String::from_utf8_lossy(&l).strip_prefix(LABEL_PREFIX) {
                        out.push(n.to_owned());
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn destroy(&self, name: &str) -> Result<(), KeyError> {
        let s = self.session();
        for key in keys_named(&s, name)? {
            s.destroy_object(key).map_err(token_error)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.described.clone()
    }
}
