//! Speaker names: one normal form (Unicode NFC, surrounding white space trimmed) so that a name
//! is one speaker however a client spelled it, and the characters a name may not hold (control,
//! format — zero-width, bidi overrides — and line/paragraph separators), which make names that
//! look alike but differ.

use unicode_normalization::UnicodeNormalization;

/// The most characters a speaker name may have (after normalisation).
pub const MAX_NAME_CHARS: usize = 200;

/// Why a speaker name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("speaker name is empty")]
    Empty,
    #[error("speaker name is {0} characters long; at most {MAX_NAME_CHARS}")]
    TooLong(usize),
    #[error("speaker name holds {} (a control, format or separator character: zero-width and bidi characters are not allowed)", char_label(*.0))]
    Forbidden(char),
    #[error("speaker name {0:?} is a number (numbers address speakers by id)")]
    Number(String),
}

fn char_label(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// The stored form of a speaker name: trimmed, NFC; refused when empty, over
/// [`MAX_NAME_CHARS`], a number, or holding a character of Unicode general category Cc, Cf, Zl
/// or Zp.
pub fn normalize_name(raw: &str) -> Result<String, NameError> {
    let name: String = raw.trim().nfc().collect();
    if let Some(c) = name.chars().find(|&c| forbidden(c)) {
        return Err(NameError::Forbidden(c));
    }
    let n = name.chars().count();
    if n == 0 {
        return Err(NameError::Empty);
    }
    if n > MAX_NAME_CHARS {
        return Err(NameError::TooLong(n));
    }
    if name.parse::<i64>().is_ok() {
        return Err(NameError::Number(name));
    }
    Ok(name)
}

/// The form a name is looked up by: trimmed and NFC, without the checks (a lookup of a bad name
/// simply finds nothing).
pub fn lookup_form(raw: &str) -> String {
    raw.trim().nfc().collect()
}

/// Unicode general category Cf (format characters, Unicode 15.1), as inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Cc (control), Cf (format), Zl and Zp (line and paragraph separators).
fn forbidden(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || u == 0x2028
        || u == 0x2029
        || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_form_per_name() {
        assert_eq!(normalize_name(" alice\t").unwrap(), "alice");
        let nfd = "Jose\u{301}";
        let nfc = "Jos\u{e9}";
        assert_eq!(normalize_name(nfd).unwrap(), nfc);
        assert_eq!(normalize_name(nfc).unwrap(), nfc);
        assert_eq!(lookup_form(&format!(" {nfd} ")), nfc);
        assert_eq!(normalize_name("Zoë Ng").unwrap(), "Zoë Ng");
    }

    #[test]
    fn refused_names() {
        assert_eq!(normalize_name("   "), Err(NameError::Empty));
        assert_eq!(normalize_name(""), Err(NameError::Empty));
        for bad in [
            "al\u{200B}ice",
            "\u{202E}ecila",
            "bob\u{2066}",
            "a\u{FEFF}",
            "x\u{AD}y",
            "tab\tname",
            "line\nbreak",
            "a\u{2028}b",
            "tag\u{E0041}",
        ] {
            assert!(
                matches!(normalize_name(bad), Err(NameError::Forbidden(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(normalize_name("42"), Err(NameError::Number(_))));
        assert_eq!(
            normalize_name(&"x".repeat(201)),
            Err(NameError::TooLong(201))
        );
        assert!(normalize_name(&"é".repeat(200)).is_ok());
        let msg = normalize_name("al\u{200B}ice").unwrap_err().to_string();
        assert!(msg.contains("U+200B"), "{msg}");
    }
}
