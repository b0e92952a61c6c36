//! Identifiers received from GUN peers, validated once at the edge: [`Soul`] and [`Did`], plus the
//! souls of the OIP registry nodes (DESIGN §3). Anything past this module holds a checked value;
//! nothing here performs I/O.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest soul accepted from a peer, in bytes.
pub const MAX_SOUL_LEN: usize = 512;

/// Prefix of every GUN record DID.
pub const DID_PREFIX: &str = "did:gun:";

/// Registry root used when `GUN_REGISTRY_ROOT` is not set.
pub const DEFAULT_REGISTRY_ROOT: &str = "oip:registry";

/// Soul of the deletion registry index: DID → `true`.
pub const DELETION_INDEX_SOUL: &str = "oip:deleted:records:index";

/// Prefix of a deletion registry entry soul (`oip:deleted:records:<did>`).
const DELETION_ENTRY_PREFIX: &str = "oip:deleted:records:";

/// How much of a rejected value an error message repeats.
const SHOWN_LEN: usize = 80;

/// Hex characters of a publisher hash: the first segment of every record soul.
const PUBLISHER_HASH_LEN: usize = 12;

/// The key of a GUN node: 1..=512 bytes of visible ASCII (`0x21..=0x7E`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Soul(String);

/// Why a string is not a [`Soul`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid soul {value:?}: {reason}")]
pub struct InvalidSoul {
    /// The rejected value, truncated to about 80 characters.
    pub value: String,
    pub reason: &'static str,
}

impl Soul {
    /// Accept `s` if it is 1..=512 bytes of visible ASCII.
    ///
    /// # Errors
    /// [`InvalidSoul`] naming the value (truncated) and the rule it breaks.
    pub fn parse(s: &str) -> Result<Self, InvalidSoul> {
        let reason = if s.is_empty() {
            "empty"
        } else if s.len() > MAX_SOUL_LEN {
            "longer than 512 bytes"
        } else if !s.bytes().all(|b| b.is_ascii_graphic()) {
            "only visible ascii (no whitespace or control characters) is allowed"
        } else {
            return Ok(Self(s.to_owned()));
        };
        Err(InvalidSoul {
            value: shown(s),
            reason,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `:` (the whole soul when it has none): for a record soul, the
    /// [`publisher_hash`] of its publisher, which `/list?publisherHash=` matches.
    pub fn publisher_hash(&self) -> &str {
        self.0
            .split_once(':')
            .map_or(self.as_str(), |(hash, _)| hash)
    }

    /// The soul GUN gives the nested object stored under `key`: `<self>/<key>`.
    ///
    /// # Errors
    /// When `key` is not visible ASCII or the result is too long.
    pub fn child(&self, key: &str) -> Result<Soul, InvalidSoul> {
        Soul::parse(&format!("{}/{key}", self.0))
    }
}

impl TryFrom<String> for Soul {
    type Error = InvalidSoul;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Soul::parse(&s)
    }
}

impl From<Soul> for String {
    fn from(soul: Soul) -> Self {
        soul.0
    }
}

impl AsRef<str> for Soul {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Soul {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DID of a GUN record: `did:gun:<soul>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Did(String);

/// Why a string is not a [`Did`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid did {value:?}: {reason}")]
pub struct InvalidDid {
    /// The rejected value, truncated to about 80 characters.
    pub value: String,
    pub reason: String,
}

impl Did {
    /// Accept `did:gun:<soul>` where `<soul>` is a valid [`Soul`].
    ///
    /// # Errors
    /// [`InvalidDid`] naming the value (truncated) and why.
    pub fn parse(s: &str) -> Result<Self, InvalidDid> {
        let Some(soul) = s.strip_prefix(DID_PREFIX) else {
            return Err(InvalidDid {
                value: shown(s),
                reason: format!("does not start with {DID_PREFIX:?}"),
            });
        };
        match Soul::parse(soul) {
            Ok(_) => Ok(Self(s.to_owned())),
            Err(err) => Err(InvalidDid {
                value: shown(s),
                reason: format!("soul is {}", err.reason),
            }),
        }
    }

    pub fn from_soul(soul: &Soul) -> Self {
        Self(format!("{DID_PREFIX}{soul}"))
    }

    /// The record's soul (the DID without `did:gun:`).
    pub fn soul(&self) -> Soul {
        Soul(self.0[DID_PREFIX.len()..].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Did {
    type Error = InvalidDid;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Did::parse(&s)
    }
}

impl From<Did> for String {
    fn from(did: Did) -> Self {
        did.0
    }
}

impl AsRef<str> for Did {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hash that starts a publisher's record souls: the first 12 hex characters of the SHA-256
/// of its public key, as OIP's `computeSoul` makes it
/// (`createHash('sha256').update(publisherPubKey).digest('hex').slice(0, 12)`).
pub fn publisher_hash(public_key: &str) -> String {
    let digest = Sha256::digest(public_key.as_bytes());
    digest
        .iter()
        .take(PUBLISHER_HASH_LEN / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Soul of the type index of `record_type` under `root`: `<root>:index:<recordType>`.
///
/// # Errors
/// When root or record type contain characters a soul may not hold.
pub fn type_index_soul(root: &str, record_type: &str) -> Result<Soul, InvalidSoul> {
    Soul::parse(&format!("{root}:index:{record_type}"))
}

/// Soul of the deletion registry index (`oip:deleted:records:index`).
pub fn deletion_index_soul() -> Soul {
    Soul(DELETION_INDEX_SOUL.to_owned())
}

/// Soul of the deletion registry entry of `did`: `oip:deleted:records:<did>`.
///
/// # Errors
/// When the result would exceed [`MAX_SOUL_LEN`].
pub fn deletion_entry_soul(did: &Did) -> Result<Soul, InvalidSoul> {
    Soul::parse(&format!("{DELETION_ENTRY_PREFIX}{did}"))
}

/// `url` as it may be shown, logged or stored: without the user name and password a relay URL
/// may carry (`http://user:pw@relay:8765/` → `http://relay:8765/`).
pub fn redacted(url: &url::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Both setters only fail for URLs that cannot carry credentials, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// `s` cut to about [`SHOWN_LEN`] characters, on a char boundary, for error messages.
pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soul_parse_accepts_visible_ascii_only() {
        let long_ok = "a".repeat(MAX_SOUL_LEN);
        let too_long = "a".repeat(MAX_SOUL_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("647f79c2a338:record1", true),
            ("oip:registry:index:post", true),
            ("a/b/c", true),
            ("~!#$%&'()*+,-./", true),
            (&long_ok, true),
            ("", false),
            (&too_long, false),
            ("has space", false),
            ("tab\there", false),
            ("new\nline", false),
            ("nul\0", false),
            ("del\x7f", false),
            ("café", false),
            (" leading", false),
        ];
        for (input, ok) in cases {
            assert_eq!(Soul::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn invalid_soul_message_names_truncated_value() {
        let bad = format!("{} x", "a".repeat(200));
        let err = Soul::parse(&bad).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("invalid soul \"aaaa"), "{message}");
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("visible ascii"), "{message}");
        assert_eq!(
            Soul::parse("a b").unwrap_err().to_string(),
            "invalid soul \"a b\": only visible ascii (no whitespace or control characters) is allowed"
        );
    }

    #[test]
    fn did_parse_requires_prefix_and_valid_soul() {
        let cases: &[(&str, Option<&str>)] = &[
            ("did:gun:647f79c2a338:record1", Some("647f79c2a338:record1")),
            ("did:gun:a", Some("a")),
            ("did:gun:", None),
            ("did:gun:bad soul", None),
            ("did:arweave:abc", None),
            ("gun:abc", None),
            ("DID:GUN:abc", None),
            ("", None),
        ];
        for (input, soul) in cases {
            let parsed = Did::parse(input);
            assert_eq!(
                parsed.as_ref().ok().map(|d| d.soul().to_string()),
                soul.map(str::to_owned),
                "{input:?}: {parsed:?}"
            );
        }
    }

    #[test]
    fn did_round_trips_through_soul() {
        let soul = Soul::parse("647f79c2a338:post-1").unwrap();
        let did = Did::from_soul(&soul);
        assert_eq!(did.as_str(), "did:gun:647f79c2a338:post-1");
        assert_eq!(did.soul(), soul);
        assert_eq!(Did::parse(did.as_ref()).unwrap(), did);
    }

    #[test]
    fn serde_is_transparent_and_validates() {
        let soul: Soul = serde_json::from_str(r#""a:b""#).unwrap();
        assert_eq!(serde_json::to_string(&soul).unwrap(), r#""a:b""#);
        assert!(serde_json::from_str::<Soul>(r#""a b""#).is_err());
        let did: Did = serde_json::from_str(r#""did:gun:a:b""#).unwrap();
        assert_eq!(serde_json::to_string(&did).unwrap(), r#""did:gun:a:b""#);
        assert!(serde_json::from_str::<Did>(r#""did:x:a""#).is_err());
    }

    #[test]
    fn registry_souls_follow_design() {
        let did = Did::parse("did:gun:abc:1").unwrap();
        let cases = [
            (
                type_index_soul(DEFAULT_REGISTRY_ROOT, "post").unwrap(),
                "oip:registry:index:post",
            ),
            (
                type_index_soul("my:root", "image").unwrap(),
                "my:root:index:image",
            ),
            (deletion_index_soul(), "oip:deleted:records:index"),
            (
                deletion_entry_soul(&did).unwrap(),
                "oip:deleted:records:did:gun:abc:1",
            ),
            (
                Soul::parse("a:b").unwrap().child("data").unwrap(),
                "a:b/data",
            ),
        ];
        for (soul, expected) in cases {
            assert_eq!(soul.as_str(), expected);
        }
        assert!(type_index_soul(DEFAULT_REGISTRY_ROOT, "bad type").is_err());
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_credentials() {
        let cases = [
            ("http://user:pw@relay:8765/", "http://relay:8765/"),
            (
                "http://user@relay:8765/gun-relay",
                "http://relay:8765/gun-relay",
            ),
            ("https://relay.example/", "https://relay.example/"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted(&url::Url::parse(url).unwrap()), shown);
        }
    }

    #[test]
    fn publisher_hash_is_the_start_of_the_keys_sha256_as_oip_computes_it() {
        let cases = [
            // sha256("") and sha256("abc"), the FIPS 180-2 test vectors.
            ("", "e3b0c44298fc"),
            ("abc", "ba7816bf8f01"),
        ];
        for (key, hash) in cases {
            assert_eq!(publisher_hash(key), hash, "{key:?}");
        }
        let soul = Soul::parse(&format!("{}:post-1", publisher_hash("abc"))).unwrap();
        assert_eq!(soul.publisher_hash(), "ba7816bf8f01");
        assert_eq!(
            Soul::parse("no-colon").unwrap().publisher_hash(),
            "no-colon"
        );
        assert_eq!(Soul::parse(":x").unwrap().publisher_hash(), "");
    }

    #[test]
    fn shown_truncates_on_char_boundary() {
        assert_eq!(shown("short"), "short");
        let long = "é".repeat(100);
        let cut = shown(&long);
        assert_eq!(cut.chars().count(), SHOWN_LEN + 1);
        assert!(cut.ends_with('…'));
    }
}
