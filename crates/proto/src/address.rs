//! Email addresses and display names as an account stores them. The device and
//! the server call the same functions, so the app refuses offline what the server
//! would refuse, and every look-up (sign-in, upgrade, reset, social email) finds
//! the row the upgrade wrote.
//!
//! One spelling per mailbox: the domain in ASCII (UTS #46 ToASCII, the `idna`
//! crate), the local part lower-cased and NFC, so `jane@bücher.example` and
//! `jane@xn--bcher-kva.example` are one account. Characters a reader cannot see,
//! or that reorder the text around them (controls, zero-width, bidi), are refused
//! outright rather than stripped: they make look-alike addresses and names, and
//! PostgreSQL refuses a NUL in `text` (a 5xx if it ever got that far).

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use unicode_normalization::UnicodeNormalization;

use crate::ErrorCode;

/// RFC 5321's limit for a forward path, and for its local part.
const EMAIL_MAX: usize = 254;
const LOCAL_MAX: usize = 64;
/// Raw input past this is refused before any normalising work (a Unicode
/// domain's UTF-8 is at most about four times its ASCII form).
const RAW_MAX: usize = 4 * EMAIL_MAX;
/// Characters of a display name, counted after NFC.
pub const NAME_MAX: usize = 256;

/// Controls and the invisible characters that can disguise or reorder text.
/// ZWNJ and ZWJ (U+200C, U+200D) are among them here: in a name they are allowed
/// (see [`is_hidden_in_name`]).
fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{0000}'..='\u{001F}' // C0 controls, NUL included
        | '\u{007F}'..='\u{009F}' // DEL and the C1 controls
        | '\u{00AD}' // soft hyphen
        | '\u{061C}' // Arabic letter mark (bidi)
        | '\u{180E}' // Mongolian vowel separator (zero-width)
        | '\u{200B}'..='\u{200F}' // zero-width space, ZWNJ, ZWJ, LRM, RLM
        | '\u{2028}' | '\u{2029}' // line and paragraph separators
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner and the invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{FEFF}' // zero-width no-break space (BOM)
    )
}

/// Persian, the Indic scripts and emoji sequences (👩‍💻) need ZWNJ and ZWJ to be
/// written correctly, and neither reorders text, so a name may hold them; an
/// email may not (there they only make look-alikes).
fn is_hidden_in_name(c: char) -> bool {
    is_hidden(c) && !matches!(c, '\u{200C}' | '\u{200D}')
}

/// The stored form of `email`, or `INVALID_EMAIL`: trimmed, one `@`, a
/// non-empty local part without the RFC 5322 specials, NFC and lower-cased; a
/// dotted domain that UTS #46 (STD3 rules, DNS lengths, no leading or trailing
/// hyphen) turns into ASCII. Deliverability is proven by the verification email.
pub fn normalize_email(email: &str) -> Result<String, ErrorCode> {
    let invalid = ErrorCode::InvalidEmail;
    let email = email.trim();
    if email.is_empty()
        || email.len() > RAW_MAX
        || email.chars().any(|c| c.is_whitespace() || is_hidden(c))
    {
        return Err(invalid);
    }
    let (local, domain) = email.split_once('@').ok_or(invalid)?;
    if local.is_empty() || local.contains(['<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']'])
    {
        return Err(invalid);
    }
    // Lower-cased as ever (uniqueness is case-insensitive), then NFC, so a
    // precomposed and a decomposed "é" are one mailbox.
    let local: String = local.to_lowercase().nfc().collect();
    if local.len() > LOCAL_MAX {
        return Err(invalid);
    }
    let domain = domain_to_ascii(domain).ok_or(invalid)?;
    let email = format!("{local}@{domain}");
    if email.len() > EMAIL_MAX {
        return Err(invalid);
    }
    Ok(email)
}

/// UTS #46 ToASCII: lower-cases, maps (`Ｅxample。com` → `example.com`),
/// Punycodes non-ASCII labels and checks `xn--` ones. A second `@` ends up here
/// and is refused by the STD3 rules, as is `_`. A mailbox needs a dotted name, so
/// `user@localhost` is refused, as before.
fn domain_to_ascii(domain: &str) -> Option<String> {
    let ascii = Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .ok()?;
    (ascii.split('.').count() >= 2).then(|| ascii.into_owned())
}

/// A display name someone typed, as stored: trimmed and NFC, blank → `None`;
/// `INVALID_NAME` for a control, zero-width or bidi character, `NAME_TOO_LONG`
/// past [`NAME_MAX`] characters.
pub fn normalize_name(name: Option<&str>) -> Result<Option<String>, ErrorCode> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().any(is_hidden_in_name) {
        return Err(ErrorCode::InvalidName);
    }
    let name: String = name.nfc().collect();
    if name.chars().count() > NAME_MAX {
        return Err(ErrorCode::NameTooLong);
    }
    Ok(Some(name))
}

/// A name an identity provider asserts (an ID token's `name`): nobody is refused
/// a sign-in over it, so what [`normalize_name`] would refuse is dropped instead
/// and the rest cut to [`NAME_MAX`] characters.
pub fn name_from_provider(name: &str) -> Option<String> {
    let visible: String = name.chars().filter(|c| !is_hidden_in_name(*c)).collect();
    let name: String = visible.trim().nfc().take(NAME_MAX).collect();
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(email: &str) -> Result<String, ErrorCode> {
        normalize_email(email)
    }

    #[test]
    fn the_idn_pair_is_one_address() {
        let unicode = norm("jane@bücher.example");
        assert_eq!(unicode.as_deref(), Ok("jane@xn--bcher-kva.example"));
        assert_eq!(unicode, norm("jane@xn--bcher-kva.example"));
        assert_eq!(unicode, norm(" Jane@BÜCHER.Example "));
        assert_eq!(unicode, norm("jane@XN--BCHER-KVA.example"));
        // Decomposed ü (u + U+0308) in the domain maps to the same label.
        assert_eq!(unicode, norm("jane@bu\u{0308}cher.example"));
        // Fullwidth letters and the ideographic full stop are UTS #46 mappings.
        assert_eq!(
            norm("user@ｅｘａｍｐｌｅ。com").as_deref(),
            Ok("user@example.com")
        );
    }

    #[test]
    fn the_local_part_is_nfc_and_lower_case() {
        let precomposed = norm("Ren\u{00C9}@example.com");
        let decomposed = norm("rene\u{0301}@example.com");
        assert_eq!(precomposed.as_deref(), Ok("ren\u{00E9}@example.com"));
        assert_eq!(precomposed, decomposed);
        assert_eq!(
            norm(" Device@Example.COM ").as_deref(),
            Ok("device@example.com")
        );
    }

    #[test]
    fn ascii_addresses_keep_the_spelling_stored_today() {
        // Rows written before the normaliser hold `trim().to_lowercase()`: for an
        // ASCII address the normaliser must give exactly that, so no migration.
        for ok in [
            "user@example.com",
            "a.b+c@sub.example.co",
            "x-y_z@my-host.example",
            "o'brien@example.ie",
            "1@2.3",
        ] {
            assert_eq!(norm(ok).as_deref(), Ok(ok.to_lowercase().as_str()), "{ok}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "user",
            "user@",
            "@example.com",
            "user@example",
            "user@localhost",
            "a b@example.com",
            "user@ex_ample.com",
            "user@@example.com",
            "user@exa@mple.com",
            "user@-example.com",
            "user@example-.com",
            "user@example..com",
            "user@example.com.",
            "user@xn--a.example",
            "<user>@example.com",
            "\"user\"@example.com",
            "user@[127.0.0.1]",
        ] {
            assert_eq!(norm(bad), Err(ErrorCode::InvalidEmail), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(norm(&long_local), Err(ErrorCode::InvalidEmail));
        let long_label = format!("user@{}.com", "a".repeat(64));
        assert_eq!(norm(&long_label), Err(ErrorCode::InvalidEmail));
        let long = format!(
            "{}@{}.com",
            "a".repeat(64),
            vec!["b".repeat(60); 4].join(".")
        );
        assert_eq!(norm(&long), Err(ErrorCode::InvalidEmail));
        assert_eq!(norm(&"é".repeat(5000)), Err(ErrorCode::InvalidEmail));
    }

    #[test]
    fn hidden_characters_are_refused_in_either_part() {
        for c in [
            '\u{0000}', '\u{0007}', '\u{001B}', '\u{007F}', '\u{0085}', '\u{009F}', '\u{00AD}',
            '\u{061C}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{202A}',
            '\u{202E}', '\u{2060}', '\u{2064}', '\u{2066}', '\u{2069}', '\u{FEFF}',
        ] {
            for email in [
                format!("ja{c}ne@example.com"),
                format!("jane{c}@example.com"),
                format!("jane@exa{c}mple.com"),
                format!("jane@example.com{c}x"),
            ] {
                assert_eq!(norm(&email), Err(ErrorCode::InvalidEmail), "{email:?}");
            }
        }
        // Surrounding whitespace (U+0085 and the line ends included) is trimmed,
        // as before: a pasted address often ends in a newline.
        assert_eq!(
            norm("\njane@example.com\u{0085}").as_deref(),
            Ok("jane@example.com")
        );
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name(None), Ok(None));
        assert_eq!(normalize_name(Some("   ")), Ok(None));
        assert_eq!(
            normalize_name(Some(" Jane Doe ")),
            Ok(Some("Jane Doe".into()))
        );
        assert_eq!(
            normalize_name(Some("Rene\u{0301}")),
            Ok(Some("Ren\u{00E9}".into()))
        );
        // ZWNJ in Persian, ZWJ in an emoji sequence: kept.
        for kept in [
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
            "👩\u{200D}💻",
        ] {
            assert_eq!(
                normalize_name(Some(kept)),
                Ok(Some(kept.into())),
                "{kept:?}"
            );
        }
        for c in [
            '\u{0000}', '\n', '\t', '\u{0085}', '\u{200B}', '\u{200F}', '\u{202E}', '\u{2066}',
            '\u{FEFF}',
        ] {
            let name = format!("Jane{c}Doe");
            assert_eq!(
                normalize_name(Some(&name)),
                Err(ErrorCode::InvalidName),
                "{name:?}"
            );
        }
        assert_eq!(
            normalize_name(Some(&"n".repeat(NAME_MAX))).map(|n| n.map(|n| n.len())),
            Ok(Some(NAME_MAX))
        );
        assert_eq!(
            normalize_name(Some(&"n".repeat(NAME_MAX + 1))),
            Err(ErrorCode::NameTooLong)
        );
    }

    #[test]
    fn provider_names_lose_what_typed_names_refuse() {
        assert_eq!(
            name_from_provider("\u{202E}Jane\u{0000} Doe\u{200B} "),
            Some("Jane Doe".into())
        );
        assert_eq!(name_from_provider("\u{200B}\u{FEFF}"), None);
        assert_eq!(
            name_from_provider(&"x".repeat(NAME_MAX + 10)).map(|n| n.len()),
            Some(NAME_MAX)
        );
    }
}
