//! Any byte string must parse to a header or a typed error, and opening must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protocol::{open_chunk, AttemptKey, ChunkHeader, StreamSalt};

fuzz_target!(|data: &[u8]| {
    if let Ok((h, body)) = ChunkHeader::parse(data) {
        assert_eq!(body.len(), h.body_len as usize);
        assert_eq!(&h.encode()[..], &data[..h.encoded_len()]);
        let key = AttemptKey::from_bytes([7; 32]).derive_stream_key(&StreamSalt([1; 32]), &h.attempt, &h.stream);
        let _ = open_chunk(&key, h.attempt, h.stream, data);
    }
});
