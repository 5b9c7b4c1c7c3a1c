//! The recovery phrase itself: 12 words of the BIP-39 English list over a
//! 128-bit secret (the `bip39` crate), read back with errors a person can act
//! on, and the keys HKDF-SHA256 derives from the secret:
//!
//! - the **sign-in key**, sent to the server, which keeps its SHA-256 and finds
//!   the guest by it (`POST /sign-in/recovery`);
//! - the **records key**, for end-to-end encryption of records later: it never
//!   leaves the device, and the server cannot derive it, since the phrase and
//!   the secret never leave the device either. So that layer needs no new phrase.
//!
//! Nothing here logs, and every value that holds the secret prints `<redacted>`.

use bip39::{Language, Mnemonic};
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

/// Words in a phrase: 128 bits of secret and 4 of checksum.
pub const WORDS: usize = 12;

/// HKDF's salt: names the scheme, so a change of it is a new salt.
const SALT: &[u8] = b"guestpass recovery v1";
const SIGN_IN_INFO: &[u8] = b"guestpass recovery sign-in key";
const RECORDS_INFO: &[u8] = b"guestpass records encryption key";

/// A phrase that parsed: its 12 words, lower case, one space apart.
pub struct Phrase(SecretString);

impl std::fmt::Debug for Phrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phrase(<redacted>)")
    }
}

/// Why a typed phrase is not one, in words that say what to fix. None of them
/// repeats a word: the phrase is a secret even when mistyped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    #[error("A recovery phrase has 12 words; this has {0}.")]
    WordCount(usize),
    #[error("Word {0} is not on the list of recovery words. Check its spelling.")]
    UnknownWord(usize),
    #[error("These 12 words are not a recovery phrase: one of them is probably another word of the list by mistake. Check each word.")]
    Checksum,
}

impl Phrase {
    /// A new phrase over 128 fresh random bits.
    pub fn generate() -> Self {
        let mut entropy = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut entropy);
        let phrase = Mnemonic::from_entropy_in(Language::English, &entropy)
            .map(|m| m.words().collect::<Vec<_>>().join(" "))
            // 16 bytes is a valid entropy length; this branch cannot be taken.
            .unwrap_or_default();
        entropy.fill(0);
        Self(SecretString::from(phrase))
    }

    /// Reads what a person typed or pasted: any case, any spacing, commas or
    /// numbering ("1. abandon 2. ability") between the words.
    pub fn parse(typed: &str) -> Result<Self, PhraseError> {
        let words: Vec<String> = typed
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .map(|w| w.trim_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')'))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        if words.len() != WORDS {
            return Err(PhraseError::WordCount(words.len()));
        }
        let list = Language::English;
        if let Some(i) = words.iter().position(|w| list.find_word(w).is_none()) {
            return Err(PhraseError::UnknownWord(i + 1));
        }
        let joined = words.join(" ");
        Mnemonic::parse_in_normalized(list, &joined).map_err(|_| PhraseError::Checksum)?;
        Ok(Self(SecretString::from(joined)))
    }

    /// The phrase as stored in the keyring and shown to the person.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn words(&self) -> Vec<String> {
        self.expose().split(' ').map(str::to_owned).collect()
    }

    fn secret(&self) -> SecretBox<[u8; 16]> {
        let mut secret = [0u8; 16];
        if let Ok(m) = Mnemonic::parse_in_normalized(Language::English, self.expose()) {
            let entropy = m.to_entropy();
            if entropy.len() == secret.len() {
                secret.copy_from_slice(&entropy);
            }
        }
        SecretBox::new(Box::new(secret))
    }

    fn derive(&self, info: &[u8]) -> SecretBox<[u8; 32]> {
        let secret = self.secret();
        let hk = Hkdf::<Sha256>::new(Some(SALT), secret.expose_secret());
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit (255 × 32); this cannot fail.
        let _ = hk.expand(info, &mut out);
        SecretBox::new(Box::new(out))
    }

    /// What the server keeps the SHA-256 of: URL-safe base64, 43 characters.
    pub fn sign_in_key(&self) -> SecretString {
        use base64::Engine;
        let key = self.derive(SIGN_IN_INFO);
        SecretString::from(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.expose_secret()),
        )
    }

    /// Reserved for end-to-end encryption of records (not used yet).
    pub fn records_key(&self) -> SecretBox<[u8; 32]> {
        self.derive(RECORDS_INFO)
    }

    /// The phrase as a QR code, an SVG document (black on white, so any camera
    /// reads it in either colour scheme).
    pub fn qr_svg(&self) -> String {
        use qrcode::render::svg;
        match qrcode::QrCode::new(self.expose().as_bytes()) {
            Ok(code) => code
                .render::<svg::Color>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build(),
            Err(_) => String::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_phrase_reads_back_and_its_keys_are_distinct_and_stable() {
        let p = Phrase::generate();
        assert_eq!(p.words().len(), WORDS);
        let typed = format!("  {} ", p.expose().to_uppercase().replace(' ', ",\n "));
        let back = Phrase::parse(&typed).unwrap();
        assert_eq!(back.expose(), p.expose());
        assert_eq!(
            back.sign_in_key().expose_secret(),
            p.sign_in_key().expose_secret()
        );
        assert_eq!(p.sign_in_key().expose_secret().len(), 43);
        let other = Phrase::generate();
        assert_ne!(
            p.sign_in_key().expose_secret(),
            other.sign_in_key().expose_secret()
        );
        // The records key is another key than the one the server sees.
        use base64::Engine;
        let records = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(p.records_key().expose_secret());
        assert_ne!(records, p.sign_in_key().expose_secret());
        assert!(!format!("{p:?}").contains(p.words()[0].as_str()));
        assert!(p.qr_svg().starts_with("<?xml"));
    }

    #[test]
    fn the_bip39_test_vector_holds() {
        // BIP-39's first English vector: entropy 00…00.
        let p = Phrase::parse(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        )
        .unwrap();
        assert_eq!(*p.secret().expose_secret(), [0u8; 16]);
    }

    #[test]
    fn mistakes_are_named_without_repeating_the_words() {
        let good = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        assert_eq!(
            Phrase::parse("abandon ability").unwrap_err(),
            PhraseError::WordCount(2)
        );
        let typo = good
            .replacen("abandon", "abandno", 7)
            .replacen("abandno", "abandon", 6);
        let err = Phrase::parse(&typo).unwrap_err();
        assert_eq!(err, PhraseError::UnknownWord(7));
        assert_eq!(
            err.to_string(),
            "Word 7 is not on the list of recovery words. Check its spelling."
        );
        // A listed word in the wrong place fails the checksum (15 times in 16).
        let swapped = good.replace("about", "ability");
        assert_eq!(Phrase::parse(&swapped).unwrap_err(), PhraseError::Checksum);
        assert!(Phrase::parse("1. abandon 2. abandon 3. abandon 4. abandon 5. abandon 6. abandon 7. abandon 8. abandon 9. abandon 10. abandon 11. abandon 12. about").is_ok());
    }
}
