use protocol::{AttemptKey, Fragment, StreamKey, StreamSalt, StreamSealer};
use uuid::Uuid;

pub const ATTEMPT: Uuid = Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef);
pub const STREAM: Uuid = Uuid::from_u128(0xfedc_ba98_7654_4321_8fed_cba9_8765_4321);

pub fn fixed_key() -> AttemptKey {
    let mut k = [0u8; 32];
    k.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    AttemptKey::from_bytes(k)
}

pub fn stream_key(attempt: Uuid, stream: Uuid) -> StreamKey {
    fixed_key().derive_stream_key(&StreamSalt([0x5a; 32]), &attempt, &stream)
}

/// Three fragments: init segment, a middle fragment, the final one.
pub fn sealed_stream(attempt: Uuid, stream: Uuid) -> Vec<Vec<u8>> {
    let mut s = StreamSealer::new(stream_key(attempt, stream), attempt, stream);
    let frags: [(&[u8], u64, u64, bool); 3] = [
        (b"ftyp+moov", 0, 0, false),
        (b"moof+mdat one", 0, 2_000_000, false),
        (b"moof+mdat two", 2_000_000, 4_000_000, true),
    ];
    frags
        .iter()
        .map(|&(data, a, b, last)| {
            s.seal(Fragment {
                data,
                media_start_us: a,
                media_end_us: b,
                last,
            })
            .unwrap()
            .1
        })
        .collect()
}
