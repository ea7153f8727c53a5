//! Test vectors v1: fixed key, salt, ids and plaintexts → exact chunk bytes.
//! Regenerate only on purpose (a wire format change): `cargo run -p protocol --example gen_vectors`.
mod common;
use common::*;

#[test]
fn sealing_matches_the_checked_in_vectors() {
    let expected: Vec<String> = serde_json::from_str(include_str!("vectors/v1.json")).unwrap();
    let actual: Vec<String> = sealed_stream(ATTEMPT, STREAM)
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(actual, expected);
}
