//! TOTP (RFC 6238 over RFC 4226 HOTP): SHA-1, 6 digits, 30-second steps, the parameters every
//! authenticator app understands.

use aws_lc_rs::hmac;

/// Seconds per step.
pub const STEP_SECS: i64 = 30;

/// Digits per code.
pub const DIGITS: u32 = 6;

/// Steps of clock difference accepted either way.
pub const SKEW_STEPS: i64 = 1;

/// The HOTP value of `secret` at `counter` (RFC 4226 §5.3).
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let digest = tag.as_ref();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10_u32.pow(DIGITS)
}

/// The step `unix` seconds fall in.
pub fn step_at(unix: i64) -> i64 {
    unix.div_euclid(STEP_SECS)
}

/// The step within the skew window whose code `code` is, if any. The caller still has to
/// refuse a step already used.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let current = step_at(now);
    // Every candidate is computed, so the time taken does not say which one matched.
    let mut found = None;
    for step in current - SKEW_STEPS..=current + SKEW_STEPS {
        let counter = u64::try_from(step).ok()?;
        let equal = subtle::ConstantTimeEq::ct_eq(&hotp(secret, counter), &wanted);
        if bool::from(equal) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Formats a code with leading zeros.
pub fn format_code(code: u32) -> String {
    format!("{code:0width$}", width = DIGITS as usize)
}

/// RFC 4648 base32 without padding, as authenticator apps expect secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1: the 20-byte ASCII secret and 8-digit values, of which the
    /// last six digits are this module's codes.
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight_digits) in [
            (59, 94_287_082_u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            let counter = u64::try_from(step_at(time)).expect("positive");
            assert_eq!(hotp(secret, counter), eight_digits % 1_000_000, "t={time}");
        }
    }

    #[test]
    fn codes_match_within_one_step_either_way_only() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let code = |t: i64| format_code(hotp(secret, u64::try_from(step_at(t)).expect("t")));
        assert_eq!(matching_step(secret, &code(now), now), Some(step_at(now)));
        assert_eq!(
            matching_step(secret, &code(now - 30), now),
            Some(step_at(now) - 1)
        );
        assert_eq!(
            matching_step(secret, &code(now + 30), now),
            Some(step_at(now) + 1)
        );
        assert_eq!(matching_step(secret, &code(now - 60), now), None);
        for bad in ["", "12345", "1234567", "12a456", "-12345"] {
            assert_eq!(matching_step(secret, bad, now), None, "{bad}");
        }
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}
