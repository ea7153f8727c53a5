//! A fragment's activity, taken out of its verified chunk at ingest and kept apart.
//!
//! The reviewer's strip needs only the activity of each fragment, a few hundred bytes
//! beside megabytes of media. Ingest has the stream key to check the tag; after the tag
//! holds, AES-GCM's CTR keystream (counter 2 onwards, SP 800-38D §7.1) decrypts any byte
//! range on its own, so this decrypts the payload's framing and its activity part and
//! nothing of the media: still no plaintext media in the server's memory at ingest. The
//! activity is bounded by the fragment's duration (one value per second it covers), then
//! sealed again on its own under a key derived from the stream key, so it dies with the
//! recording. `tests` check the ranges against a whole decryption.

use crate::payload::{Activity, PAYLOAD_MAGIC};
use crate::seal::{nonce, parse_bound};
use crate::{Error, StreamKey, VerifiedChunk};
use aes::Aes256;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use rand::RngCore;
use zeroize::Zeroizing;

/// The most values one fragment may carry, whatever its claimed duration: ten minutes,
/// where agents cut a fragment every two seconds.
pub const MAX_ACTIVITY_POINTS: usize = 600;

/// Values a fragment covering `[start_us, end_us)` of media time carries: one per second
/// it starts in, as both agents compute it.
pub fn activity_points_allowed(start_us: u64, end_us: u64) -> usize {
    let first = start_us / 1_000_000;
    let last = (end_us.saturating_sub(1) / 1_000_000).max(first);
    ((last - first + 1) as usize).min(MAX_ACTIVITY_POINTS)
}

/// The longest JSON text of `points` values (`{"first_s":4294967295,"motion":[100,…],…}`).
fn max_json_len(points: usize) -> usize {
    64 + 8 * points
}

/// The activity of a chunk whose tag was checked (the `VerifiedChunk` says so), or `None`
/// for a payload without any (version 1). An activity longer than the fragment, or
/// malformed, is an error: the caller keeps the media and drops the activity.
pub fn read_activity(
    key: &StreamKey,
    verified: &VerifiedChunk,
    chunk: &[u8],
) -> Result<Option<Activity>, Error> {
    let header = &verified.header;
    let (_, ct, _) = parse_bound(chunk, header.attempt, header.stream)?;
    let mut iv = [0u8; 16];
    iv[..12].copy_from_slice(&nonce(key, header.index, header.last));
    iv[15] = 2;
    let mut ctr = ctr::Ctr32BE::<Aes256>::new((&key.key).into(), (&iv).into());
    let mut read = |from: usize, len: usize| -> Result<Zeroizing<Vec<u8>>, Error> {
        let end = from
            .checked_add(len)
            .filter(|&e| e <= ct.len())
            .ok_or(Error::InvalidPayload("part longer than the payload"))?;
        let mut out = Zeroizing::new(ct[from..end].to_vec());
        ctr.seek(from as u64);
        ctr.apply_keystream(&mut out);
        Ok(out)
    };
    let prefix = PAYLOAD_MAGIC.len();
    if ct.len() < prefix + 4 {
        return Ok(None);
    }
    let head = read(0, prefix + 4)?;
    if &head[..prefix] != PAYLOAD_MAGIC.as_slice() {
        return Ok(None);
    }
    let media_len = u32::from_be_bytes(head[prefix..].try_into().expect("4 bytes")) as usize;
    let at = prefix + 4 + media_len;
    let len = u32::from_be_bytes(read(at, 4)?[..].try_into().expect("4 bytes")) as usize;
    if len
        > max_json_len(activity_points_allowed(
            header.media_start_us,
            header.media_end_us,
        ))
    {
        return Err(Error::InvalidPayload("activity longer than its fragment"));
    }
    let json = read(at + 4, len)?;
    parse_activity(&json, header.media_start_us, header.media_end_us).map(Some)
}

/// A fragment's activity JSON, held to the fragment's duration (one value per second it
/// starts in, each 0–100) before anything of it is kept: for chunks read at ingest, and
/// for fragments stored before ingest took activity out.
pub fn parse_activity(json: &[u8], start_us: u64, end_us: u64) -> Result<Activity, Error> {
    let allowed = activity_points_allowed(start_us, end_us);
    if json.len() > max_json_len(allowed) {
        return Err(Error::InvalidPayload("activity longer than its fragment"));
    }
    let activity: Activity =
        serde_json::from_slice(json).map_err(|_| Error::InvalidPayload("activity is not JSON"))?;
    if activity.motion.len() != activity.audio.len() {
        return Err(Error::InvalidPayload("activity series of unequal lengths"));
    }
    if activity.motion.len() > allowed
        || activity
            .motion
            .iter()
            .chain(&activity.audio)
            .any(|v| *v > 100)
    {
        return Err(Error::InvalidPayload("activity longer than its fragment"));
    }
    Ok(activity)
}

fn activity_cipher(key: &StreamKey) -> Aes256Gcm {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, &key.key);
    let mut k = Zeroizing::new([0u8; 32]);
    hk.expand(b"cloe-connect/activity/v1", k.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new(k.as_ref().into())
}

/// The activity sealed on its own (random nonce ‖ ciphertext ‖ tag), bound to the fragment's
/// index: `first_s` (u32 BE) then one (motion, audio) pair per second.
pub fn seal_activity(key: &StreamKey, index: u32, activity: &Activity) -> Vec<u8> {
    let mut plain = Zeroizing::new(Vec::with_capacity(4 + 2 * activity.motion.len()));
    plain.extend_from_slice(&activity.first_s.to_be_bytes());
    for (m, a) in activity.motion.iter().zip(&activity.audio) {
        plain.extend_from_slice(&[*m, *a]);
    }
    let mut n = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut n);
    let ct = activity_cipher(key)
        .encrypt(
            Nonce::from_slice(&n),
            Payload {
                msg: &plain,
                aad: &index.to_be_bytes(),
            },
        )
        .expect("AES-GCM seals any length below 64 GiB");
    [n.as_slice(), &ct].concat()
}

pub fn open_activity(key: &StreamKey, index: u32, sealed: &[u8]) -> Result<Activity, Error> {
    if sealed.len() < 12 {
        return Err(Error::DecryptionFailed);
    }
    let (n, ct) = sealed.split_at(12);
    let plain = Zeroizing::new(
        activity_cipher(key)
            .decrypt(
                Nonce::from_slice(n),
                Payload {
                    msg: ct,
                    aad: &index.to_be_bytes(),
                },
            )
            .map_err(|_| Error::DecryptionFailed)?,
    );
    let (first, pairs) = plain
        .split_first_chunk::<4>()
        .ok_or(Error::InvalidPayload("truncated activity"))?;
    if pairs.len() % 2 != 0 || pairs.len() / 2 > MAX_ACTIVITY_POINTS {
        return Err(Error::InvalidPayload("truncated activity"));
    }
    Ok(Activity {
        first_s: u32::from_be_bytes(*first),
        motion: pairs.iter().step_by(2).copied().collect(),
        audio: pairs.iter().skip(1).step_by(2).copied().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_payload, open_chunk, seal_chunk, verify_chunk, Fragment, StreamSalt};
    use uuid::Uuid;

    fn key() -> StreamKey {
        crate::AttemptKey::generate().derive_stream_key(
            &StreamSalt([7; 32]),
            &Uuid::nil(),
            &Uuid::nil(),
        )
    }

    fn chunk(key: &StreamKey, plain: &[u8], start_us: u64, end_us: u64) -> Vec<u8> {
        seal_chunk(
            key,
            Uuid::nil(),
            Uuid::nil(),
            3,
            [0; 32],
            Fragment {
                data: plain,
                media_start_us: start_us,
                media_end_us: end_us,
                last: false,
            },
        )
    }

    fn activity(n: usize) -> Activity {
        Activity {
            first_s: 4,
            motion: (0..n).map(|i| (i % 101) as u8).collect(),
            audio: (0..n).map(|i| (100 - i % 101) as u8).collect(),
        }
    }

    fn read(key: &StreamKey, c: &[u8]) -> Result<Option<Activity>, Error> {
        let v = verify_chunk(key, Uuid::nil(), Uuid::nil(), c).unwrap();
        read_activity(key, &v, c)
    }

    #[test]
    fn the_activity_read_alone_is_the_one_a_whole_decryption_finds() {
        let key = key();
        for media_len in [0usize, 1, 15, 16, 17, 1000, 70_000] {
            let media = vec![0xa5; media_len];
            let plain = encode_payload(&media, &activity(3), b"\xff\xd8thumb");
            let c = chunk(&key, &plain, 4_000_000, 6_500_000);
            let whole = open_chunk(&key, Uuid::nil(), Uuid::nil(), &c).unwrap();
            let decoded = crate::decode_payload(&whole.plaintext).unwrap();
            let expected: Activity = serde_json::from_slice(decoded.activity.unwrap()).unwrap();
            assert_eq!(
                read(&key, &c).unwrap(),
                Some(expected),
                "media of {media_len} bytes"
            );
        }
        // Version 1 (media alone) and a payload too short for the framing carry none.
        let c = chunk(&key, b"\x00\x00\x00\x18stypmsdh....", 0, 2_000_000);
        assert_eq!(read(&key, &c).unwrap(), None);
        assert_eq!(read(&key, &chunk(&key, b"", 0, 1)).unwrap(), None);
    }

    #[test]
    fn an_activity_longer_than_its_fragment_is_refused() {
        let key = key();
        // [4 s, 6.5 s) starts in seconds 4, 5 and 6: three values, not four.
        assert_eq!(activity_points_allowed(4_000_000, 6_500_000), 3);
        assert_eq!(activity_points_allowed(4_000_000, 6_000_000), 2);
        assert_eq!(activity_points_allowed(5, 5), 1);
        assert_eq!(activity_points_allowed(0, u64::MAX), MAX_ACTIVITY_POINTS);
        let c = chunk(
            &key,
            &encode_payload(b"m", &activity(4), b""),
            4_000_000,
            6_500_000,
        );
        assert!(read(&key, &c).is_err());
        // The bomb: two million values in one fragment, refused before they are parsed.
        let c = chunk(
            &key,
            &encode_payload(b"m", &activity(2_000_000), b""),
            0,
            2_000_000,
        );
        assert!(read(&key, &c).is_err());
        let mut odd = activity(2);
        odd.audio.pop();
        let c = chunk(&key, &encode_payload(b"m", &odd, b""), 0, 2_000_000);
        assert!(read(&key, &c).is_err());
        let mut loud = activity(2);
        loud.audio[0] = 101;
        assert!(read(
            &key,
            &chunk(&key, &encode_payload(b"m", &loud, b""), 0, 2_000_000)
        )
        .is_err());
    }

    #[test]
    fn a_sealed_activity_opens_only_with_its_key_and_index() {
        let (key, other) = (key(), self::key());
        let a = activity(3);
        let sealed = seal_activity(&key, 9, &a);
        assert_eq!(open_activity(&key, 9, &sealed).unwrap(), a);
        assert!(open_activity(&key, 10, &sealed).is_err());
        assert!(open_activity(&other, 9, &sealed).is_err());
        assert!(open_activity(&key, 9, &sealed[..11]).is_err());
    }
}
