mod common;
use common::*;
use protocol::{ChunkHeader, Error, StreamOpener, HEADER_LEN};
use uuid::Uuid;

fn open_all(chunks: &[Vec<u8>], attempt: Uuid, stream: Uuid) -> Result<Vec<Vec<u8>>, Error> {
    let mut o = StreamOpener::new(stream_key(attempt, stream), attempt, stream);
    let out = chunks
        .iter()
        .map(|c| o.open_next(c).map(|x| x.plaintext))
        .collect::<Result<Vec<_>, _>>()?;
    o.finish()?;
    Ok(out)
}

#[test]
fn intact_stream_opens_to_the_original_fragments() {
    let chunks = sealed_stream(ATTEMPT, STREAM);
    let plain = open_all(&chunks, ATTEMPT, STREAM).unwrap();
    assert_eq!(
        plain,
        vec![
            b"ftyp+moov".to_vec(),
            b"moof+mdat one".to_vec(),
            b"moof+mdat two".to_vec()
        ]
    );
}

#[test]
fn reordering_is_detected() {
    let mut chunks = sealed_stream(ATTEMPT, STREAM);
    chunks.swap(1, 2);
    assert_eq!(
        open_all(&chunks, ATTEMPT, STREAM),
        Err(Error::OutOfOrder {
            expected: 1,
            actual: 2
        })
    );
}

#[test]
fn a_missing_middle_chunk_is_detected() {
    let mut chunks = sealed_stream(ATTEMPT, STREAM);
    chunks.remove(1);
    assert_eq!(
        open_all(&chunks, ATTEMPT, STREAM),
        Err(Error::OutOfOrder {
            expected: 1,
            actual: 2
        })
    );
}

#[test]
fn a_chunk_from_another_attempt_is_refused() {
    let other = Uuid::from_u128(7);
    let chunks = sealed_stream(other, STREAM);
    assert_eq!(open_all(&chunks, ATTEMPT, STREAM), Err(Error::WrongAttempt));
}

#[test]
fn a_chunk_from_another_stream_is_refused() {
    let other = Uuid::from_u128(8);
    let mut chunks = sealed_stream(ATTEMPT, STREAM);
    chunks[1] = sealed_stream(ATTEMPT, other)[1].clone();
    assert_eq!(open_all(&chunks, ATTEMPT, STREAM), Err(Error::WrongStream));
}

#[test]
fn relabelling_a_foreign_chunk_fails_authentication() {
    // Same attempt key, other stream: rewriting the stream id in the header is caught by the tag.
    let other = Uuid::from_u128(8);
    let mut foreign = sealed_stream(ATTEMPT, other)[1].clone();
    foreign[24..40].copy_from_slice(STREAM.as_bytes());
    let mut chunks = sealed_stream(ATTEMPT, STREAM);
    chunks[1] = foreign;
    assert_eq!(
        open_all(&chunks, ATTEMPT, STREAM),
        Err(Error::DecryptionFailed)
    );
}

#[test]
fn truncating_the_stream_is_detected_as_missing_final() {
    let mut chunks = sealed_stream(ATTEMPT, STREAM);
    chunks.pop();
    assert_eq!(open_all(&chunks, ATTEMPT, STREAM), Err(Error::MissingFinal));
}

#[test]
fn truncating_a_chunk_is_detected() {
    let mut chunks = sealed_stream(ATTEMPT, STREAM);
    let n = chunks[1].len();
    chunks[1].truncate(n - 1);
    assert!(matches!(
        open_all(&chunks, ATTEMPT, STREAM),
        Err(Error::LengthMismatch { .. })
    ));
    chunks[1].truncate(10);
    assert_eq!(
        open_all(&chunks, ATTEMPT, STREAM),
        Err(Error::Truncated(10))
    );
}

#[test]
fn every_flipped_bit_is_detected() {
    let chunks = sealed_stream(ATTEMPT, STREAM);
    for bit in 0..chunks[1].len() * 8 {
        let mut c = chunks.clone();
        c[1][bit / 8] ^= 1 << (bit % 8);
        assert!(
            open_all(&c, ATTEMPT, STREAM).is_err(),
            "flipped bit {bit} went unnoticed"
        );
    }
    // A flip in the ciphertext itself is an authentication failure, not a parse error.
    let mut c = chunks.clone();
    c[1][HEADER_LEN + 2] ^= 0x10;
    assert_eq!(open_all(&c, ATTEMPT, STREAM), Err(Error::DecryptionFailed));
}

#[test]
fn splicing_a_stale_chunk_breaks_the_chain() {
    // A chunk from an earlier sealing of the same stream key (same index) does not chain.
    let a = sealed_stream(ATTEMPT, STREAM);
    let mut s = protocol::StreamSealer::new(stream_key(ATTEMPT, STREAM), ATTEMPT, STREAM);
    s.seal(protocol::Fragment {
        data: b"another init",
        media_start_us: 0,
        media_end_us: 0,
        last: false,
    })
    .unwrap();
    let (_, b1) = s
        .seal(protocol::Fragment {
            data: b"x",
            media_start_us: 0,
            media_end_us: 1,
            last: false,
        })
        .unwrap();
    let chunks = vec![a[0].clone(), b1, a[2].clone()];
    assert_eq!(
        open_all(&chunks, ATTEMPT, STREAM),
        Err(Error::BrokenChain { index: 1 })
    );
}

#[test]
fn a_chunk_after_the_final_one_is_refused() {
    let mut chunks = sealed_stream(ATTEMPT, STREAM);
    chunks.push(chunks[2].clone());
    assert_eq!(
        open_all(&chunks, ATTEMPT, STREAM),
        Err(Error::AfterFinal { index: 2 })
    );
}

#[test]
fn header_parse_is_total_on_short_and_garbage_input() {
    for len in 0..200 {
        let garbage: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        assert!(ChunkHeader::parse(&garbage).is_err());
    }
    let chunks = sealed_stream(ATTEMPT, STREAM);
    let mut bad = chunks[1].clone();
    bad[6] = 9;
    assert_eq!(
        ChunkHeader::parse(&bad).unwrap_err(),
        Error::UnsupportedVersion(9)
    );
}

#[test]
fn keys_never_print() {
    let k = fixed_key();
    let sk = stream_key(ATTEMPT, STREAM);
    let printed = format!("{k:?} {sk:?}");
    assert!(!printed.contains("00, 01") && !printed.contains("000102"));
    assert!(printed.contains("redacted"));
}

/// A stream the agent keyed itself (store-and-forward): its first chunk carries the opening.
fn agent_keyed_stream() -> (protocol::AttemptSecret, protocol::StreamKey, Vec<Vec<u8>>) {
    let (secret, public) = fixed_key().recipient(&ATTEMPT);
    let key = protocol::StreamKey::generate();
    let opening =
        protocol::StreamOpening::seal(&public, &ATTEMPT, &STREAM, 1_764_000_000_000, &key);
    let mut s = protocol::StreamSealer::with_opening(key.clone(), ATTEMPT, STREAM, opening);
    let chunks = [
        (b"ftyp+moov".as_slice(), false),
        (b"moof+mdat", false),
        (b"", true),
    ]
    .iter()
    .map(|&(data, last)| {
        s.seal(protocol::Fragment {
            data,
            media_start_us: 0,
            media_end_us: 0,
            last,
        })
        .unwrap()
        .1
    })
    .collect();
    (secret, key, chunks)
}

#[test]
fn an_agent_keyed_stream_opens_from_its_first_chunk_and_its_opening_is_authenticated() {
    let (secret, _, chunks) = agent_keyed_stream();
    let (h0, _) = ChunkHeader::parse(&chunks[0]).unwrap();
    assert!(ChunkHeader::parse(&chunks[1]).unwrap().0.opening.is_none());
    let key = h0
        .opening
        .as_ref()
        .unwrap()
        .open(&secret, &ATTEMPT, &STREAM)
        .unwrap();
    let mut o = StreamOpener::new(key.clone(), ATTEMPT, STREAM);
    let plain: Vec<_> = chunks
        .iter()
        .map(|c| o.open_next(c).unwrap().plaintext)
        .collect();
    o.finish().unwrap();
    assert_eq!(plain[1], b"moof+mdat");
    assert!(protocol::verify_chunk(&key, ATTEMPT, STREAM, &chunks[0]).is_ok());
    // Changing the claimed start time (inside the opening) breaks the chunk's tag.
    let mut moved = chunks[0].clone();
    moved[HEADER_LEN + 7] ^= 1;
    assert_eq!(
        protocol::verify_chunk(&key, ATTEMPT, STREAM, &moved).unwrap_err(),
        Error::DecryptionFailed
    );
    // An opening on a later chunk, or a cut one, is refused by the parser.
    let mut late = chunks[1].clone();
    late[7] |= 0x02;
    assert!(matches!(
        ChunkHeader::parse(&late),
        Err(Error::InvalidHeader(_)) | Err(Error::Truncated(_))
    ));
    assert!(ChunkHeader::parse(&chunks[0][..HEADER_LEN + 40]).is_err());
    // The chain digest covers the opening.
    let mut other = chunks[0].clone();
    other[HEADER_LEN + 20] ^= 1;
    assert_ne!(
        protocol::chunk_digest(&other),
        protocol::chunk_digest(&chunks[0])
    );
}
