//! Cross-implementation vectors: what this crate seals, with fixed keys and fixed
//! randomness, written to `tests/vectors/browser.json`. The browser agent's tests
//! (`web-agent/test/vectors.test.js`, node's runner) reproduce every byte of it; the
//! end-to-end suite opens chunks the JavaScript code sealed with real randomness.
//!
//! The file is committed: this test fails when the crate no longer produces it byte for
//! byte. After a deliberate change of the format, rewrite it with
//! `CLOE_WRITE_VECTORS=1 cargo test -p protocol --test browser_vectors`.

use base64::Engine;
use protocol::api::{OfflineConsent, CONSENT_PURPOSE};
use protocol::*;
use serde_json::{json, Value};
use uuid::Uuid;

/// Hands out exactly the bytes it was given: with it, HPKE's ephemeral key is
/// DeriveKeyPair(those bytes), which @hpke/core's `ekm` reproduces.
struct FixedRng(Vec<u8>);

impl rand::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(
            dest.len() <= self.0.len(),
            "the vector's randomness ran out"
        );
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand::CryptoRng for FixedRng {}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn vectors() -> Value {
    let dek = AttemptKey::from_bytes([0x42; 32]);
    let attempt = Uuid::parse_str("0193a7c2-5b1e-7d40-9f3a-1c2d3e4f5a6b").unwrap();
    let stream = Uuid::parse_str("5f0e2a71-8c3b-4d9e-a1f2-3b4c5d6e7f80").unwrap();
    let (secret, public) = dek.recipient(&attempt);
    let key_bytes = pattern(39, 7);
    let ekm = pattern(32, 99);
    let started_at_ms = 1_796_000_000_123u64;
    let opening = StreamOpening::seal_with_rng(
        &public,
        &attempt,
        &stream,
        started_at_ms,
        &StreamKey::from_bytes(&key_bytes).unwrap(),
        &mut FixedRng(ekm.clone()),
    );
    let activity = Activity {
        first_s: 2,
        motion: vec![0, 17, 100],
        audio: vec![5, 63, 2],
    };
    let fragments = [
        (pattern(611, 1), 0u64, 0u64, false),
        (
            encode_payload(&pattern(4099, 2), &activity, &pattern(300, 3)),
            0,
            2_000_000,
            false,
        ),
        (
            encode_payload(&pattern(17, 4), &Activity::default(), b""),
            2_000_000,
            3_466_666,
            true,
        ),
    ];
    let mut sealer = StreamSealer::with_opening(
        StreamKey::from_bytes(&key_bytes).unwrap(),
        attempt,
        stream,
        opening.clone(),
    );
    let mut opener = StreamOpener::new(
        opening.open(&secret, &attempt, &stream).unwrap(),
        attempt,
        stream,
    );
    let hex = |b: &[u8]| hex::encode(b);
    let chunks: Vec<Value> = fragments
        .iter()
        .map(|(data, start, end, last)| {
            let (index, chunk) = sealer.seal(Fragment { data, media_start_us: *start, media_end_us: *end, last: *last }).unwrap();
            let opened = opener.open_next(&chunk).unwrap();
            assert_eq!(&opened.plaintext, data);
            json!({ "index": index, "plaintext": hex(data), "media_start_us": start, "media_end_us": end, "last": last,
                    "chunk": hex(&chunk), "digest": hex(&chunk_digest(&chunk)) })
        })
        .collect();
    opener.finish().unwrap();

    let consent = serde_json::to_vec(&OfflineConsent {
        notice_version: "2026-12-v3".into(),
        given_at_ms: 1_796_000_000_000,
    })
    .unwrap();
    let consent_ekm = pattern(32, 5);
    let sealed = seal_to_attempt_with_rng(
        &public,
        &attempt,
        CONSENT_PURPOSE,
        &consent,
        &mut FixedRng(consent_ekm.clone()),
    );
    assert_eq!(
        open_from_attempt(&secret, &attempt, CONSENT_PURPOSE, &sealed)
            .unwrap()
            .as_slice(),
        consent.as_slice()
    );

    let token = LaunchToken::new(&[9; 32], attempt, public);
    let big = pattern(150_000, 11);
    let result = protocol::channel::ResultMessage {
        of: protocol::channel::Answered::Chunk,
        status: 429,
        stream,
        index: 7,
        retry_after_s: 3,
        code: "rate_limited".into(),
    };
    let signer = ReceiptSigningKey::from_bytes(&[7; 32]);
    let receipt = sign_receipt(
        &signer,
        Receipt {
            version: RECEIPT_VERSION,
            attempt_id: attempt,
            sitting_id: Uuid::from_u128(0x5171),
            destroyed_at: "2027-01-20T10:00:00Z".into(),
            reason: "consent_withdrawn".into(),
            by: "jury:hélène « dupré »".into(),
            key_fingerprint: "ab".repeat(32),
            key_id: None,
            backups_unreadable_by: Some("2027-01-22T00:05:00Z".into()),
            previous: Some("cd".repeat(32)),
        },
    );
    json!({
        "about": "protocol/tests/browser_vectors.rs writes this file; web-agent/test/vectors.test.js reproduces it byte for byte",
        "receipt": { "signed": receipt, "public_key": public_key_text(&signer) },
        "attempt": attempt, "stream": stream,
        "attempt_public_key": hex(&public.0),
        "stream_key": hex(&key_bytes),
        "started_at_ms": started_at_ms,
        "opening_ekm": hex(&ekm),
        "opening": hex(&opening.encode()),
        "chunks": chunks,
        "activity": { "first_s": activity.first_s, "motion": activity.motion, "audio": activity.audio },
        "payload": { "media": hex(&pattern(4099, 2)), "thumbnail": hex(&pattern(300, 3)), "encoded": hex(&fragments[1].0) },
        "consent": { "plaintext": String::from_utf8(consent).unwrap(), "purpose": CONSENT_PURPOSE, "ekm": hex(&consent_ekm), "sealed": hex(&sealed),
                     "sealed_base64": base64::engine::general_purpose::STANDARD.encode(&sealed) },
        "launch_token": { "text": token.expose(), "credential": token.credential() },
        "channel": {
            "chunk": hex(&big), "index": 7,
            "parts": protocol::channel::chunk_messages(stream, 7, &big).map(|m| hex(&m)).collect::<Vec<_>>(),
            "end": hex(&protocol::channel::end_message(stream, 12)),
            "heartbeat": hex(&protocol::channel::heartbeat_message(5, 700_000)),
            "result": hex(&result.encode()),
        },
    })
}

#[test]
fn the_committed_vectors_are_what_this_crate_seals() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/browser.json");
    let now = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("CLOE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &now).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .expect("tests/vectors/browser.json (CLOE_WRITE_VECTORS=1 writes it)");
    assert_eq!(
        committed, now,
        "the sealing changed: the browser agent would no longer be byte-compatible"
    );
}
