//! Word-at-a-time byte scanning for the two per-string passes on the hot path: finding bytes
//! that need escaping and finding control characters.
//!
//! Almost every string in an audit event is plain printable text, so both passes mostly
//! confirm that 8 bytes at a time are uninteresting, using the classic bit tricks from
//! <https://graphics.stanford.edu/~seander/bithacks.html#HasLessInWord>. As booleans over a
//! whole word they are exact (borrows can only produce false hits *above* a true hit).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `x` is below `n`; `n` must be at most 128.
#[inline]
fn has_byte_below(x: u64, n: u8) -> bool {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0
}

/// Whether any byte of `x` equals `b`.
#[inline]
fn has_byte(x: u64, b: u8) -> bool {
    has_byte_below(x ^ (ONES * u64::from(b)), 1)
}

/// The 8 bytes at `i`, if there are that many.
#[inline]
fn word_at(bytes: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// The index of the first byte at or after `from` that JSON requires escaping (below 0x20,
/// `"` or `\`), or `bytes.len()`.
#[inline]
pub(crate) fn next_json_escape(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(x) = word_at(bytes, i) {
        if has_byte_below(x, 0x20) || has_byte(x, b'"') || has_byte(x, b'\\') {
            break;
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map_or(bytes.len(), |p| i + p)
}

/// Whether `s` may hold a Unicode control character (category Cc: U+0000..=U+001F,
/// U+007F..=U+009F). False means certainly none; true means a byte below 0x20, 0x7F, or 0xC2
/// (the lead byte of U+0080..=U+00FF, which includes U+0080..=U+009F) is present.
#[inline]
pub(crate) fn may_contain_control(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(x) = word_at(bytes, i) {
        if has_byte_below(x, 0x20) || has_byte(x, 0x7f) || has_byte(x, 0xc2) {
            return true;
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .any(|&b| b < 0x20 || b == 0x7f || b == 0xc2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn escape_scan_matches_bytewise(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x20), Just(b'a')],
                0..40,
            ),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let expected = bytes[from..].iter().position(|&b| needs_escape(b)).map_or(bytes.len(), |p| from + p);
            prop_assert_eq!(next_json_escape(&bytes, from), expected);
        }

        #[test]
        fn control_scan_never_misses(s in prop::collection::vec(any::<char>(), 0..30).prop_map(String::from_iter)) {
            if s.chars().any(char::is_control) {
                prop_assert!(may_contain_control(&s));
            }
            let bytewise = s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2);
            prop_assert_eq!(may_contain_control(&s), bytewise);
        }
    }

    #[test]
    fn every_position_in_a_word() {
        for special in [0u8, 0x1f, b'"', b'\\'] {
            for len in 1..20 {
                for at in 0..len {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = special;
                    assert_eq!(
                        next_json_escape(&bytes, 0),
                        at,
                        "{special:#x} at {at} of {len}"
                    );
                }
            }
        }
        for special in ['\u{0}', '\u{1f}', '\u{7f}', '\u{85}'] {
            for len in 1..20 {
                for at in 0..len {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'x' })
                        .collect();
                    assert!(may_contain_control(&s), "{special:?} at {at} of {len}");
                }
            }
        }
        assert!(!may_contain_control(
            "plain printable text, é and 😀 included"
        ));
        assert_eq!(next_json_escape(b"plain printable text / 'quotes'", 0), 31);
    }
}
