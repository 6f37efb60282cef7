//! Artifact keys: 64 lowercase hex digits of a blake3 hash.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An artifact key: exactly 64 lowercase hex digits (a blake3 hash). Constructed only by
/// [`Key::parse`] (or deserialisation, which parses), so a key can name nothing but a folder
/// `objects/<2 digits>/<key>` inside a store: no `..`, no `/`, no other length.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

/// Why a string is not a [`Key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The offending text (cut to 80 characters).
    pub text: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an artifact key (expected 64 lowercase hex digits)", self.text)
    }
}

impl std::error::Error for KeyError {}

impl Key {
    /// Number of hex digits in a key.
    pub const LEN: usize = 64;
    /// Number of hex digits [`Key::short`] shows.
    pub const SHORT: usize = 12;

    /// Parses a key: exactly [`Key::LEN`] lowercase hex digits.
    pub fn parse(s: &str) -> Result<Key, KeyError> {
        if Self::is_key(s) {
            Ok(Key(s.to_string()))
        } else {
            Err(KeyError { text: s.chars().take(80).collect() })
        }
    }

    /// True for a well-formed key.
    pub fn is_key(s: &str) -> bool {
        s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// The key of a 32-byte hash.
    pub fn from_bytes(bytes: &[u8; 32]) -> Key {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(Self::LEN);
        for b in bytes {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        Key(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first [`Key::SHORT`] digits: how keys are shown to people.
    pub fn short(&self) -> &str {
        &self.0[..Self::SHORT]
    }

    /// The first two digits: the store's fan-out folder.
    pub fn fanout(&self) -> &str {
        &self.0[..2]
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.short())
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::parse(s)
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        Key::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_exactly_64_lowercase_hex_digits() {
        assert_eq!(Key::parse(K).unwrap().as_str(), K);
        for bad in ["", "ZZZZ", &K[..63], &format!("{K}0"), &K.to_uppercase(), "../../etc/passwd", &K.replace('0', "/")]
        {
            let e = Key::parse(bad).unwrap_err();
            assert!(e.to_string().contains("not an artifact key"), "{e}");
        }
    }

    #[test]
    fn deserialising_validates_and_serialising_is_the_plain_string() {
        let k: Key = serde_json::from_str(&format!("\"{K}\"")).unwrap();
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{K}\""));
        let e = serde_json::from_str::<Key>("\"../../x\"").unwrap_err().to_string();
        assert!(e.contains("not an artifact key"), "{e}");
        let e = serde_json::from_str::<Vec<Key>>(&format!("[\"{K}\", \"ZZZZ\"]")).unwrap_err().to_string();
        assert!(e.contains("ZZZZ"), "{e}");
    }

    #[test]
    fn short_fanout_and_bytes() {
        let k = Key::parse(K).unwrap();
        assert_eq!((k.short(), k.fanout()), ("0123456789ab", "01"));
        let mut b = [0u8; 32];
        b[0] = 0xab;
        b[31] = 0x0f;
        let k = Key::from_bytes(&b);
        assert!(k.starts_with("ab") && k.ends_with("0f") && Key::is_key(&k));
    }
}
