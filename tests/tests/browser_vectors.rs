//! The browser agent's sealing against this workspace's Rust, both ways beyond the fixed
//! vectors (`protocol/tests/browser_vectors.rs`, reproduced by `web-agent/test/`): chunks
//! and a consent sealed by the page's code with real randomness open here, chain and
//! finish; and the page decides every server answer as the native agent does.

use capture_agent::client::Failure;
use capture_agent::refusal::{decide, Decision};
use protocol::api::CONSENT_PURPOSE;
use protocol::{open_from_attempt, AttemptKey, ChunkHeader, StreamOpener};
use std::path::Path;
use std::process::Command;
use uuid::Uuid;

fn web_agent() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../web-agent"))
}

fn node(args: &[&str]) -> serde_json::Value {
    let out = Command::new("node")
        .args(args)
        .current_dir(web_agent())
        .output()
        .expect("node (Debian's nodejs) runs the page's code");
    assert!(
        out.status.success(),
        "node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn chunks_and_consent_sealed_by_the_page_open_here() {
    for _ in 0..3 {
        let dek = AttemptKey::generate();
        let attempt = Uuid::new_v4();
        let (secret, public) = dek.recipient(&attempt);
        let v = node(&[
            "tools/seal-fresh.mjs",
            &attempt.to_string(),
            &hex::encode(public.0),
        ]);
        let stream: Uuid = v["stream"].as_str().unwrap().parse().unwrap();
        let chunks: Vec<Vec<u8>> = v["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| hex::decode(c["chunk"].as_str().unwrap()).unwrap())
            .collect();
        let (first, _) = ChunkHeader::parse(&chunks[0]).unwrap();
        let key = first
            .opening
            .as_ref()
            .expect("the page's first chunk carries the opening")
            .open(&secret, &attempt, &stream)
            .unwrap();
        let first_key = key.clone();
        let mut opener = StreamOpener::new(key, attempt, stream);
        for (i, (c, expected)) in chunks
            .iter()
            .zip(v["chunks"].as_array().unwrap())
            .enumerate()
        {
            let opened = opener.open_next(c).unwrap();
            assert_eq!(
                hex::encode(&opened.plaintext),
                expected["plaintext"].as_str().unwrap()
            );
            protocol::verify_chunk(&first_key, attempt, stream, c)
                .expect("the server's tag check accepts it");
            if i == 1 {
                let p = protocol::decode_payload(&opened.plaintext).unwrap();
                let activity: protocol::Activity =
                    serde_json::from_slice(p.activity.unwrap()).unwrap();
                assert_eq!(
                    (
                        activity.motion,
                        activity.audio,
                        p.thumbnail.map(<[u8]>::len)
                    ),
                    (vec![3, 40], vec![70, 12], Some(200))
                );
            }
        }
        opener
            .finish()
            .expect("the page's last chunk is marked final");
        let consent = open_from_attempt(
            &secret,
            &attempt,
            CONSENT_PURPOSE,
            &hex::decode(v["sealed_consent"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            consent.as_slice(),
            v["consent"].as_str().unwrap().as_bytes()
        );
        // Another attempt's key opens none of it.
        let (other, _) = AttemptKey::generate().recipient(&attempt);
        assert!(first
            .opening
            .as_ref()
            .unwrap()
            .open(&other, &attempt, &stream)
            .is_err());
    }
}

#[test]
fn the_page_decides_every_failure_as_the_native_agent() {
    let codes = [
        "network",
        "untrusted_certificate",
        "not_found",
        "route",
        "consent_required",
        "conflicting_chunk",
        "stream_not_opened",
        "stream_ended",
        "attempt_ended",
        "invalid_transition",
        "recording_closed",
        "index_out_of_window",
        "media_time_out_of_window",
        "bad_tag",
        "stream_quota_exceeded",
        "chunk_quota_exceeded",
        "rate_limited",
        "storage_full",
        "overloaded",
        "other",
    ];
    let statuses = [
        0u16, 301, 307, 400, 401, 403, 404, 408, 409, 410, 411, 413, 422, 429, 500, 503, 507,
    ];
    let cases: Vec<(u16, &str)> = statuses
        .iter()
        .flat_map(|s| codes.iter().map(move |c| (*s, *c)))
        .collect();
    let page = node(&["tools/decide.mjs", &serde_json::to_string(&cases).unwrap()]);
    for ((status, code), js) in cases.iter().zip(page.as_array().unwrap()) {
        let native = decide(&Failure {
            status: *status,
            code: (*code).into(),
            message: String::new(),
            retry_after: None,
        });
        let (kind, reason) = match native {
            Decision::Retry => ("retry", None),
            Decision::Reopen => ("reopen", None),
            Decision::Drop(r) => ("drop", Some(serde_json::to_value(r).unwrap())),
            Decision::Stop(r) => ("stop", Some(serde_json::to_value(r).unwrap())),
        };
        assert_eq!(
            js["kind"], kind,
            "{status} {code}: page {js}, native {native:?}"
        );
        if let Some(r) = reason {
            assert_eq!(js["reason"], r, "{status} {code}");
        }
    }
}
