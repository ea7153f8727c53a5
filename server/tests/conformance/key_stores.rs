//! The `KekStore` promises, the same on each store: files in a directory and a PKCS#11
//! token (SoftHSM2 here; an HSM or a cloud KMS in production).

#[path = "../support/softhsm.rs"]
mod softhsm;

use server::keys::{FileKeks, KekStore, KeyError, Pkcs11Keks};
use std::sync::Arc;

/// Two handles on one store (two instances of the server, or a command beside `serve`).
type Pair = (Arc<dyn KekStore>, Arc<dyn KekStore>);

fn file_store() -> (Pair, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let a = FileKeks::open(dir.path()).unwrap();
    let b = FileKeks::open(dir.path()).unwrap();
    ((Arc::new(a), Arc::new(b)), dir)
}

/// Every token this test process uses, one per test.
const TOKENS: &[&str] = &[
    "conformance-bind",
    "conformance-destroy",
    "conformance-race",
    "conformance-sensitive",
];

fn pkcs11_store(label: &str) -> Pair {
    let token = softhsm::in_process(TOKENS, label);
    let open = || Pkcs11Keks::open(softhsm::MODULE.as_ref(), &token.label, softhsm::PIN).unwrap();
    (Arc::new(open()), Arc::new(open()))
}

fn check_seal_open_and_binding(s: &dyn KekStore) {
    let sealed = s
        .seal(
            "2027-01-20",
            b"a data key of 32 bytes, exactly.",
            b"attempt A",
        )
        .unwrap();
    assert_eq!(
        sealed.len(),
        12 + 32 + 16,
        "{}: nonce, ciphertext, tag",
        s.describe()
    );
    assert_eq!(
        &s.open("2027-01-20", &sealed, b"attempt A").unwrap()[..],
        b"a data key of 32 bytes, exactly."
    );
    assert!(matches!(
        s.open("2027-01-20", &sealed, b"attempt B"),
        Err(KeyError::UnwrapFailed)
    ));
    let mut tampered = sealed.clone();
    tampered[20] ^= 1;
    assert!(matches!(
        s.open("2027-01-20", &tampered, b"attempt A"),
        Err(KeyError::UnwrapFailed)
    ));
    assert!(matches!(
        s.open("2027-01-21", &sealed, b"attempt A"),
        Err(KeyError::KekGone(_))
    ));
    assert!(matches!(
        s.open("2027-01-20", &sealed[..20], b"attempt A"),
        Err(KeyError::UnwrapFailed)
    ));
    // Two seals of one message differ (a fresh nonce each time).
    assert_ne!(
        sealed,
        s.seal(
            "2027-01-20",
            b"a data key of 32 bytes, exactly.",
            b"attempt A"
        )
        .unwrap()
    );
}

fn check_names_and_destruction((a, b): &Pair) {
    assert!(a.names().unwrap().is_empty(), "{}", a.describe());
    let day1 = a.seal("2027-01-20", b"one", b"").unwrap();
    let day2 = a.seal("2027-01-21", b"two", b"").unwrap();
    a.seal("staff-secrets", b"totp", b"").unwrap();
    assert_eq!(
        b.names().unwrap(),
        ["2027-01-20", "2027-01-21", "staff-secrets"],
        "the other handle sees every key"
    );
    assert!(b.contains("2027-01-20").unwrap() && !b.contains("2027-01-22").unwrap());
    // Destroyed through one handle: gone for the other at once (nothing cached).
    b.destroy("2027-01-20").unwrap();
    assert!(matches!(
        a.open("2027-01-20", &day1, b""),
        Err(KeyError::KekGone(_))
    ));
    assert!(!a.contains("2027-01-20").unwrap());
    assert_eq!(a.names().unwrap(), ["2027-01-21", "staff-secrets"]);
    assert_eq!(&a.open("2027-01-21", &day2, b"").unwrap()[..], b"two");
    a.destroy("2027-01-20").unwrap();
    // A key of the same name made later is a new key: the old seal stays unreadable.
    a.seal("2027-01-20", b"new", b"").unwrap();
    let reopened = a.open("2027-01-20", &day1, b"");
    assert!(
        matches!(reopened, Err(KeyError::UnwrapFailed)),
        "{reopened:?}"
    );
}

/// Handles creating the same key at once each open what the other sealed, before and
/// after; destruction removes every copy.
fn check_racing_creation((a, b): &Pair) {
    let sealed: Vec<(usize, Vec<u8>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                scope.spawn(move || (i, s.seal("2027-02-01", &[i as u8; 32], b"race").unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, s) in &sealed {
        for h in [a, b] {
            assert_eq!(
                &h.open("2027-02-01", s, b"race").unwrap()[..],
                &[*i as u8; 32]
            );
        }
    }
    a.destroy("2027-02-01").unwrap();
    for (_, s) in &sealed {
        assert!(matches!(
            b.open("2027-02-01", s, b"race"),
            Err(KeyError::KekGone(_))
        ));
    }
    assert!(!b.names().unwrap().contains(&"2027-02-01".to_owned()));
}

#[test]
fn file_store_seals_opens_and_binds() {
    let ((a, _), _dir) = file_store();
    check_seal_open_and_binding(&*a);
}

#[test]
fn pkcs11_store_seals_opens_and_binds() {
    check_seal_open_and_binding(&*pkcs11_store("conformance-bind").0);
}

#[test]
fn file_store_names_and_destruction() {
    let (pair, _dir) = file_store();
    check_names_and_destruction(&pair);
}

#[test]
fn pkcs11_store_names_and_destruction() {
    check_names_and_destruction(&pkcs11_store("conformance-destroy"));
}

#[test]
fn file_store_racing_creation() {
    let (pair, _dir) = file_store();
    check_racing_creation(&pair);
}

#[test]
fn pkcs11_store_racing_creation() {
    check_racing_creation(&pkcs11_store("conformance-race"));
}

/// On the token the key's value can never be read out, so no copy of it exists outside
/// the token to outlive its destruction; a wrong PIN or token opens nothing.
#[test]
fn pkcs11_keys_never_leave_the_token() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let (a, _) = pkcs11_store("conformance-sensitive");
    a.seal("2027-03-01", b"x", b"").unwrap();
    let ctx = Pkcs11::new(softhsm::MODULE).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "conformance-sensitive")
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let _ = session.login(
        cryptoki::session::UserType::User,
        Some(&softhsm::PIN.to_owned().into()),
    );
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
        .unwrap();
    assert_eq!(keys.len(), 1);
    let attrs = session
        .get_attributes(
            keys[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Value,
            ],
        )
        .unwrap_or_default();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(
        !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
        "the key's value is never readable: {attrs:?}"
    );
    assert!(matches!(
        Pkcs11Keks::open(softhsm::MODULE.as_ref(), "no-such-token", softhsm::PIN),
        Err(KeyError::Token(_))
    ));
}
