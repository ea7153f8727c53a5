//! What a media chunk's plaintext holds. Version 1 (the foundation's) is the fragmented-MP4
//! fragment alone. Version 2 adds, for the reviewer, what the agent computed from the raw
//! frames and samples before encoding: the activity of each second (amount of motion,
//! audio level; no biometrics) and a small JPEG of the fragment. They are sealed with the
//! media, so the server never decodes video and they are shredded with it.
//!
//! Layout v2: `MAGIC` ‖ u32 BE media length ‖ media ‖ u32 BE activity length ‖ activity
//! (JSON, [`Activity`]) ‖ u32 BE thumbnail length ‖ thumbnail (JPEG, may be empty). A
//! plaintext not starting with `MAGIC` is v1 (an MP4 box header never does).

use crate::Error;
use serde::{Deserialize, Serialize};

pub const PAYLOAD_MAGIC: &[u8; 8] = b"CLOEPL02";

/// One fragment's activity: per second of media, starting at second `first_s` of the
/// stream, motion (mean absolute difference between consecutive small grey frames) and
/// audio level (RMS), both on 0–100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Activity {
    pub first_s: u32,
    pub motion: Vec<u8>,
    pub audio: Vec<u8>,
}

/// A plaintext split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    pub media: &'a [u8],
    pub activity: Option<&'a [u8]>,
    pub thumbnail: Option<&'a [u8]>,
}

pub fn encode_payload(media: &[u8], activity: &Activity, thumbnail: &[u8]) -> Vec<u8> {
    let activity = serde_json::to_vec(activity).expect("activity serialises");
    let mut out = Vec::with_capacity(
        PAYLOAD_MAGIC.len() + 12 + media.len() + activity.len() + thumbnail.len(),
    );
    out.extend_from_slice(PAYLOAD_MAGIC);
    for part in [media, &activity, thumbnail] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

pub fn decode_payload(plaintext: &[u8]) -> Result<Payload<'_>, Error> {
    let Some(mut rest) = plaintext.strip_prefix(PAYLOAD_MAGIC.as_slice()) else {
        return Ok(Payload {
            media: plaintext,
            activity: None,
            thumbnail: None,
        });
    };
    let mut parts = [&[][..]; 3];
    for part in parts.iter_mut() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(Error::InvalidPayload("truncated length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(Error::InvalidPayload("part longer than the payload"));
        }
        (*part, rest) = tail.split_at(len);
    }
    if !rest.is_empty() {
        return Err(Error::InvalidPayload("trailing bytes"));
    }
    let [media, activity, thumbnail] = parts;
    Ok(Payload {
        media,
        activity: Some(activity),
        thumbnail: Some(thumbnail).filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_round_trips_and_v1_reads_as_media_alone() {
        let activity = Activity {
            first_s: 4,
            motion: vec![0, 12, 100],
            audio: vec![3, 3, 90],
        };
        let p = encode_payload(b"moof...", &activity, b"\xff\xd8jpeg");
        let d = decode_payload(&p).unwrap();
        assert_eq!(d.media, b"moof...");
        assert_eq!(
            serde_json::from_slice::<Activity>(d.activity.unwrap()).unwrap(),
            activity
        );
        assert_eq!(d.thumbnail, Some(&b"\xff\xd8jpeg"[..]));
        let v1 = b"\x00\x00\x00\x18stypmsdh";
        assert_eq!(
            decode_payload(v1).unwrap(),
            Payload {
                media: v1,
                activity: None,
                thumbnail: None
            }
        );
        assert_eq!(
            decode_payload(&encode_payload(b"m", &Activity::default(), b""))
                .unwrap()
                .thumbnail,
            None
        );
    }

    #[test]
    fn malformed_v2_is_refused_not_misread() {
        let p = encode_payload(b"media", &Activity::default(), b"thumb");
        for cut in PAYLOAD_MAGIC.len()..p.len() {
            assert!(decode_payload(&p[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = p.clone();
        long.push(0);
        assert!(decode_payload(&long).is_err());
    }
}
