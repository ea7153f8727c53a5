//! `verify_chunk` accepts exactly what `open_chunk` accepts, without decrypting.
#[allow(dead_code)]
mod common;
use common::*;
use proptest::prelude::*;
use protocol::{open_chunk, seal_chunk, verify_chunk, Error, Fragment, HEADER_LEN};

fn sealed(len: usize, index: u32, last: bool) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
    let key = stream_key(ATTEMPT, STREAM);
    seal_chunk(
        &key,
        ATTEMPT,
        STREAM,
        index,
        if index == 0 { [0; 32] } else { [9; 32] },
        Fragment {
            data: &data,
            media_start_us: 0,
            media_end_us: 1,
            last,
        },
    )
}

#[test]
fn verify_agrees_with_open_on_every_length_up_to_1_kib() {
    let key = stream_key(ATTEMPT, STREAM);
    for len in 0..=1024 {
        let chunk = sealed(len, (len % 5) as u32, len % 2 == 0);
        let v = verify_chunk(&key, ATTEMPT, STREAM, &chunk)
            .unwrap_or_else(|e| panic!("length {len}: {e}"));
        let o = open_chunk(&key, ATTEMPT, STREAM, &chunk).unwrap();
        assert_eq!((v.header, v.digest), (o.header, o.digest));
    }
}

#[test]
fn verify_refuses_wrong_key_attempt_and_stream() {
    let chunk = sealed(300, 3, false);
    let other = stream_key(STREAM, ATTEMPT);
    assert_eq!(
        verify_chunk(&other, ATTEMPT, STREAM, &chunk),
        Err(Error::DecryptionFailed)
    );
    assert_eq!(
        verify_chunk(&stream_key(ATTEMPT, STREAM), STREAM, STREAM, &chunk),
        Err(Error::WrongAttempt)
    );
    assert_eq!(
        verify_chunk(&stream_key(ATTEMPT, STREAM), ATTEMPT, ATTEMPT, &chunk),
        Err(Error::WrongStream)
    );
}

proptest! {
    /// Any single flipped bit anywhere in a chunk is refused by both, with the same error.
    #[test]
    fn any_flipped_bit_is_refused_like_open_does(len in 0usize..2048, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let key = stream_key(ATTEMPT, STREAM);
        let mut chunk = sealed(len, 1, false);
        let at = pos.index(chunk.len());
        chunk[at] ^= 1 << bit;
        let v = verify_chunk(&key, ATTEMPT, STREAM, &chunk).map(|v| v.digest);
        let o = open_chunk(&key, ATTEMPT, STREAM, &chunk).map(|o| o.digest);
        prop_assert!(v.is_err());
        prop_assert_eq!(v, o);
        if at >= HEADER_LEN { prop_assert_eq!(verify_chunk(&key, ATTEMPT, STREAM, &chunk).unwrap_err(), Error::DecryptionFailed); }
    }
}

#[test]
fn launch_secrets_differ_per_generation_and_attempt() {
    let k = fixed_key();
    assert_eq!(*k.launch_secret(&ATTEMPT, 0), *k.launch_secret(&ATTEMPT, 0));
    assert_ne!(*k.launch_secret(&ATTEMPT, 0), *k.launch_secret(&ATTEMPT, 1));
    assert_ne!(*k.launch_secret(&ATTEMPT, 0), *k.launch_secret(&STREAM, 0));
}
