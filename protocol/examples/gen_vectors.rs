//! Prints the v1 test vectors as JSON (see tests/vectors.rs).
#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let chunks: Vec<String> = common::sealed_stream(common::ATTEMPT, common::STREAM)
        .iter()
        .map(hex::encode)
        .collect();
    println!("{}", serde_json::to_string_pretty(&chunks).unwrap());
}
