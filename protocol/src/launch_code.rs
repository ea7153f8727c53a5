//! The short launch code a candidate can type instead of clicking the exam platform's link:
//! eight characters of an alphabet without look-alikes (no 0/O, 1/I/L), about 40 bits,
//! shown as `K7F4-3QX9`. The server keeps its hash, lets it be used once within minutes,
//! and counts failed guesses per address; the code buys the attempt's launch token.

/// 31 symbols a candidate reads and types without confusion.
pub const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
pub const CODE_LEN: usize = 8;

/// A code as typed, normalised: case, spaces and dashes do not matter; `None` if it
/// cannot be a code.
pub fn normalise(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// A fresh code from `random` bytes (one per symbol, rejection-sampled by the caller's
/// source through `next`), in its display form.
pub fn generate(mut next: impl FnMut() -> u8) -> String {
    let mut code = String::with_capacity(CODE_LEN + 1);
    while code.len() < CODE_LEN + 1 {
        if code.len() == 4 {
            code.push('-');
            continue;
        }
        // 248 = 8 × 31: bytes past it would favour the first symbols.
        let b = next();
        if b < 248 {
            code.push(ALPHABET[usize::from(b % 31)] as char);
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_and_type_back() {
        let mut n = 0u8;
        let code = generate(|| {
            n = n.wrapping_add(37);
            n
        });
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        let plain = normalise(&code).unwrap();
        assert_eq!(normalise(&code.to_lowercase()), Some(plain.clone()));
        assert_eq!(
            normalise(&format!(" {} {} ", &plain[..4], &plain[4..])),
            Some(plain)
        );
        assert_eq!(normalise("K7F4-3QX"), None, "too short");
        assert_eq!(normalise("K7F4-3QX0"), None, "0 is not in the alphabet");
        assert_eq!(normalise("clt_abcdef"), None);
    }

    #[test]
    fn every_symbol_is_drawn_evenly() {
        let mut counts = [0u32; 31];
        let mut b = 0u8;
        for _ in 0..(256 * 4) {
            for c in generate(|| {
                b = b.wrapping_add(1);
                b
            })
            .bytes()
            .filter(|c| *c != b'-')
            {
                counts[ALPHABET.iter().position(|a| *a == c).unwrap()] += 1;
            }
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1 + max / 50, "{counts:?}");
    }
}
