//! What a reviewer's browser is handed must be what agents make: the candidate seals every
//! byte of a fragment with their own stream key, so a thumbnail or an initialisation
//! segment could carry anything to the reviewer's image and video decoders. Both are
//! checked here, by structure (no decoding), before they are served.

/// Thumbnails are 160×120 JPEGs of a few kilobytes; anything beyond these is not one.
const MAX_THUMBNAIL_BYTES: usize = 64 * 1024;
const MAX_THUMBNAIL_SIDE: u16 = 640;
/// The sample entries the agents write: H.264 (native and browser), AAC (native), Opus
/// (browser).
const CODECS: [&[u8; 4]; 4] = [b"avc1", b"avc3", b"mp4a", b"Opus"];

/// A baseline or progressive JPEG within the bounds: markers well formed up to the scan,
/// a frame header with its dimensions, the end marker last.
pub fn check_thumbnail(jpeg: &[u8]) -> Result<(), &'static str> {
    if jpeg.len() > MAX_THUMBNAIL_BYTES {
        return Err("has a thumbnail larger than any agent makes");
    }
    if !jpeg.starts_with(&[0xFF, 0xD8]) || !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err("has a thumbnail that is not a JPEG");
    }
    let mut at = 2;
    let mut size = None;
    loop {
        let (&[0xFF, marker], rest) = jpeg
            .get(at..)
            .and_then(|r| r.split_first_chunk::<2>())
            .ok_or("has a malformed JPEG thumbnail")?
        else {
            return Err("has a malformed JPEG thumbnail");
        };
        let len = rest
            .first_chunk::<2>()
            .map(|l| usize::from(u16::from_be_bytes(*l)))
            .filter(|&l| l >= 2 && l <= rest.len())
            .ok_or("has a malformed JPEG thumbnail")?;
        match marker {
            // Frame headers (SOF0–SOF15 but DHT, JPG and DAC): precision, height, width.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let h = rest.get(3..5).ok_or("has a malformed JPEG thumbnail")?;
                let w = rest.get(5..7).ok_or("has a malformed JPEG thumbnail")?;
                size = Some((
                    u16::from_be_bytes([w[0], w[1]]),
                    u16::from_be_bytes([h[0], h[1]]),
                ));
            }
            // The scan starts: what follows is entropy-coded data up to the end marker.
            0xDA => break,
            _ => {}
        }
        at += 2 + len;
    }
    match size {
        Some((w, h)) if w > 0 && h > 0 && w <= MAX_THUMBNAIL_SIDE && h <= MAX_THUMBNAIL_SIDE => {
            Ok(())
        }
        Some(_) => Err("has a thumbnail larger than any agent makes"),
        None => Err("has a malformed JPEG thumbnail"),
    }
}

/// An initialisation segment: well-formed boxes, `ftyp` then `moov`, and in every track
/// only the sample entries the agents write.
pub fn check_init_segment(init: &[u8]) -> Result<(), &'static str> {
    const BAD: &str = "has a malformed initialisation segment";
    let top = boxes(init).ok_or(BAD)?;
    let kinds: Vec<&[u8; 4]> = top.iter().map(|(t, _)| *t).collect();
    if kinds.first() != Some(&b"ftyp") || !kinds.contains(&b"moov") {
        return Err(BAD);
    }
    let mut entries = 0;
    for (_, moov) in top.iter().filter(|(t, _)| *t == b"moov") {
        for (_, trak) in boxes(moov)
            .ok_or(BAD)?
            .iter()
            .filter(|(t, _)| *t == b"trak")
        {
            let stsd = [b"mdia", b"minf", b"stbl", b"stsd"]
                .iter()
                .try_fold(*trak, |inside, want| {
                    boxes(inside)?
                        .into_iter()
                        .find(|(t, _)| t == want)
                        .map(|(_, b)| b)
                })
                .ok_or(BAD)?;
            // A full box: version and flags, the entry count, then the sample entries.
            for (kind, _) in boxes(stsd.get(8..).ok_or(BAD)?).ok_or(BAD)? {
                if !CODECS.contains(&kind) {
                    return Err("has an initialisation segment with a codec no agent uses");
                }
                entries += 1;
            }
        }
    }
    if entries == 0 {
        return Err(BAD);
    }
    Ok(())
}

/// The boxes laid end to end in `data` (type and payload), or `None` if one overruns.
fn boxes(data: &[u8]) -> Option<Vec<(&[u8; 4], &[u8])>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (head, _) = rest.split_first_chunk::<8>()?;
        let size = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
        let kind: &[u8; 4] = head[4..].try_into().ok()?;
        if size < 8 || size > rest.len() {
            return None;
        }
        out.push((kind, &rest[8..size]));
        rest = &rest[size..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        [&(payload.len() as u32 + 8).to_be_bytes()[..], kind, payload].concat()
    }

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0];
        j.extend([0xFF, 0xC0, 0, 11, 8]);
        j.extend(h.to_be_bytes());
        j.extend(w.to_be_bytes());
        j.extend([1, 1, 0x11, 0]);
        j.extend([0xFF, 0xDA, 0, 2, 0x12, 0x34, 0xFF, 0xD9]);
        j
    }

    fn init(codecs: &[&[u8; 4]]) -> Vec<u8> {
        let entries: Vec<u8> = codecs.iter().flat_map(|c| mp4(c, &[0; 16])).collect();
        let stsd = mp4(b"stsd", &[[0u8; 8].as_slice(), &entries].concat());
        let trak = ["stbl", "minf", "mdia", "trak"]
            .iter()
            .fold(stsd, |inner, k| {
                mp4(k.as_bytes().try_into().unwrap(), &inner)
            });
        [mp4(b"ftyp", b"isom"), mp4(b"moov", &trak)].concat()
    }

    #[test]
    fn thumbnails_are_small_jpegs() {
        assert_eq!(check_thumbnail(&jpeg(160, 120)), Ok(()));
        assert!(check_thumbnail(&jpeg(4000, 3000)).is_err());
        assert!(check_thumbnail(&jpeg(0, 120)).is_err());
        assert!(check_thumbnail(b"\x89PNG\r\n\x1a\n....").is_err());
        let mut big = jpeg(160, 120);
        big.splice(2..2, vec![0u8; MAX_THUMBNAIL_BYTES]);
        assert!(check_thumbnail(&big).is_err());
        let j = jpeg(160, 120);
        let scan = j.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        // Cut anywhere in the headers (after the scan starts, any bytes are entropy data).
        for cut in 3..scan + 4 {
            let mut t = j[..cut].to_vec();
            t.extend([0xFF, 0xD9]);
            assert!(check_thumbnail(&t).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn initialisation_segments_carry_only_the_agents_codecs() {
        assert_eq!(check_init_segment(&init(&[b"avc1"])), Ok(()));
        assert_eq!(check_init_segment(&init(&[b"avc1", b"mp4a"])), Ok(()));
        assert_eq!(check_init_segment(&init(&[b"Opus"])), Ok(()));
        for other in [b"hvc1", b"vp09", b"mp4v", b"av01"] {
            assert!(check_init_segment(&init(&[b"avc1", other])).is_err());
        }
        assert!(check_init_segment(&init(&[])).is_err(), "no track at all");
        assert!(check_init_segment(b"moof....").is_err());
        let good = init(&[b"avc1"]);
        assert!(check_init_segment(&good[..good.len() - 1]).is_err());
    }
}
