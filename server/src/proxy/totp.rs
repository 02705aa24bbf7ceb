//! TOTP (RFC 6238 over RFC 4226's HOTP): HMAC-SHA1, 6 digits, 30-second steps, the parameters
//! every authenticator app supports. A code is accepted one step early or late (clock drift), and
//! never twice: the caller stores the last accepted step and passes it back.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::ProxyError;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
const ISSUER: &str = "hardlab";
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random 160-bit secret (RFC 4226 recommends the HMAC's output size), base32.
pub fn new_secret() -> String {
    let secret: [u8; 20] = rand::random();
    base32_encode(&secret)
}

/// The time step a unix time falls in.
pub fn step_at(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS)
}

/// The code for one time step.
pub fn code_for_step(secret_b32: &str, step: i64) -> Result<String, ProxyError> {
    let key = base32_decode(secret_b32)?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key)
        .map_err(|_| ProxyError::BadRequest("TOTP secret: unusable key".into()))?;
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let truncated = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Ok(format!(
        "{:0width$}",
        truncated % 10u32.pow(DIGITS),
        width = DIGITS as usize
    ))
}

/// Checks a code at `unix_seconds`. Returns the step it matched, which the caller must store and
/// pass as `last_used_step` next time, so that a code seen once (over a shoulder, in a log) is dead.
pub fn verify(
    secret_b32: &str,
    code: &str,
    unix_seconds: i64,
    last_used_step: Option<i64>,
) -> Result<Option<i64>, ProxyError> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let current = step_at(unix_seconds);
    for step in [current - 1, current, current + 1] {
        if last_used_step.is_some_and(|last| step <= last) {
            continue;
        }
        let expected = code_for_step(secret_b32, step)?;
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

/// The `otpauth://` URI an authenticator app enrols from (as a QR code or pasted).
pub fn otpauth_uri(user: &str, secret_b32: &str) -> String {
    let label = percent_encode(&format!("{ISSUER}:{user}"));
    format!(
        "otpauth://totp/{label}?secret={secret_b32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    )
}

/// The enrolment URI as a QR code, an SVG document rendered here (no script, no image service
/// that would see the secret). Dark modules on white with a quiet zone, as phone cameras need.
pub fn qr_svg(uri: &str) -> Result<String, ProxyError> {
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|error| ProxyError::Internal(format!("QR code: {error}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[((buffer >> bits) & 31) as usize],
            ));
        }
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize],
        ));
    }
    out
}

/// Decodes base32 the way authenticator apps accept it: any case, spaces and padding ignored.
pub fn base32_decode(text: &str) -> Result<Vec<u8>, ProxyError> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for ch in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let upper = ch.to_ascii_uppercase();
        let Some(value) = BASE32_ALPHABET.iter().position(|&a| char::from(a) == upper) else {
            return Err(ProxyError::BadRequest(format!(
                "TOTP secret: {ch:?} is not a base32 character"
            )));
        };
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    if out.is_empty() {
        return Err(ProxyError::BadRequest("TOTP secret is empty".into()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA1 key, "12345678901234567890".
    fn rfc_secret() -> String {
        base32_encode(b"12345678901234567890")
    }

    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        // Appendix B lists 8-digit codes; the 6-digit code is their last six digits.
        for (time, eight_digits) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            let code = code_for_step(&rfc_secret(), step_at(time)).unwrap();
            assert_eq!(code, eight_digits[2..], "at {time}");
        }
    }

    #[test]
    fn a_code_from_the_previous_step_is_accepted_and_one_from_two_steps_ago_is_not() {
        let now = 1_700_000_000;
        let previous = code_for_step(&rfc_secret(), step_at(now) - 1).unwrap();
        assert_eq!(
            verify(&rfc_secret(), &previous, now, None).unwrap(),
            Some(step_at(now) - 1)
        );
        let stale = code_for_step(&rfc_secret(), step_at(now) - 2).unwrap();
        assert_eq!(verify(&rfc_secret(), &stale, now, None).unwrap(), None);
    }

    #[test]
    fn a_code_is_accepted_only_once() {
        let now = 1_700_000_000;
        let code = code_for_step(&rfc_secret(), step_at(now)).unwrap();
        let used = verify(&rfc_secret(), &code, now, None).unwrap();
        assert!(used.is_some());
        assert_eq!(verify(&rfc_secret(), &code, now + 5, used).unwrap(), None);
    }

    #[test]
    fn base32_round_trips_and_ignores_case_spaces_and_padding() {
        let secret = new_secret();
        let bytes = base32_decode(&secret).unwrap();
        assert_eq!(bytes.len(), 20);
        assert_eq!(base32_encode(&bytes), secret);
        assert_eq!(base32_decode("mzxw 6ytb oi======").unwrap(), b"foobar");
        assert!(base32_decode("not base32!").is_err());
    }

    #[test]
    fn the_qr_code_is_an_svg_without_script() {
        let svg = qr_svg(&otpauth_uri("bob", "JBSWY3DPEHPK3PXP")).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(!svg.contains("<script"));
        assert!(
            !svg.contains("JBSWY3DPEHPK3PXP"),
            "the secret is drawn, not written"
        );
    }

    #[test]
    fn the_enrolment_uri_names_the_issuer_user_and_parameters() {
        let uri = otpauth_uri("bob smith", "JBSWY3DPEHPK3PXP");
        assert_eq!(
            uri,
            "otpauth://totp/hardlab:bob%20smith?secret=JBSWY3DPEHPK3PXP&issuer=hardlab&algorithm=SHA1&digits=6&period=30"
        );
    }
}
