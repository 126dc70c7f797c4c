//! Secrets at rest: AES-256-GCM under a key from the environment.
//!
//! A sealed secret is `v1.{key id}.{base64url(nonce ‖ ciphertext ‖ tag)}`: the key id (the first
//! eight hex digits of the key's SHA-256) says which key opens it, so a store can hold secrets
//! under two keys while `herald keys rotate` moves them to the new one. The additional data is
//! `{account}/{name}`, so a sealed value copied to another account or name does not open.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// The variable that holds the current key: 32 bytes, base64.
pub const KEY_VARIABLE: &str = "HERALD_SECRET_KEY";
/// Keys that still open secrets sealed before a rotation: a comma list, base64.
pub const PREVIOUS_VARIABLE: &str = "HERALD_SECRET_KEY_PREVIOUS";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "no secret key: set {KEY_VARIABLE} to 32 random bytes in base64 (`herald keys generate` makes one)"
    )]
    NoKey,
    #[error("{variable} must be 32 bytes in base64 ({reason})")]
    BadKey {
        variable: &'static str,
        reason: String,
    },
    #[error(
        "a secret is sealed under key {0}, which is neither {KEY_VARIABLE} nor in {PREVIOUS_VARIABLE}"
    )]
    UnknownKey(String),
    #[error("a sealed secret is damaged or belongs to another account")]
    Damaged,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn from_base64(variable: &'static str, encoded: &str) -> Result<Key, SecretError> {
        let bad = |reason: String| SecretError::BadKey { variable, reason };
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(bad(format!("it is {} bytes", bytes.len())));
        }
        let digest = Sha256::digest(&bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad("refused".to_owned()))?;
        Ok(Key {
            id,
            key: LessSafeKey::new(key),
        })
    }
}

/// The keys this process can seal and open secrets with.
#[derive(Clone, Default)]
pub struct Keyring {
    inner: std::sync::Arc<Keys>,
}

#[derive(Default)]
struct Keys {
    current: Option<Key>,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current_id())
            .field(
                "previous",
                &self
                    .inner
                    .previous
                    .iter()
                    .map(|k| &k.id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// A keyring from base64 keys: the current one (if any) and those of earlier rotations.
    pub fn new(current: Option<&str>, previous: &[&str]) -> Result<Keyring, SecretError> {
        let current = current
            .filter(|k| !k.trim().is_empty())
            .map(|k| Key::from_base64(KEY_VARIABLE, k))
            .transpose()?;
        let previous = previous
            .iter()
            .filter(|k| !k.trim().is_empty())
            .map(|k| Key::from_base64(PREVIOUS_VARIABLE, k))
            .collect::<Result<_, _>>()?;
        Ok(Keyring {
            inner: std::sync::Arc::new(Keys { current, previous }),
        })
    }

    /// A new random key, base64, for [`KEY_VARIABLE`].
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        // The system's random source failing is not something to go on from.
        #[allow(clippy::expect_used)]
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random source works");
        STANDARD.encode(bytes)
    }

    /// The id of the key new secrets are sealed under.
    pub fn current_id(&self) -> Option<&str> {
        self.inner.current.as_ref().map(|k| k.id.as_str())
    }

    /// Encrypts the secret `name` of `account`.
    pub fn seal(&self, account: &str, name: &str, plaintext: &str) -> Result<String, SecretError> {
        let key = self.inner.current.as_ref().ok_or(SecretError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Damaged)?;
        let mut sealed = plaintext.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(account, name).as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SecretError::Damaged)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("v1.{}.{}", key.id, URL_SAFE_NO_PAD.encode(out)))
    }

    /// Decrypts what [`seal`](Self::seal) made, under whichever known key it names.
    pub fn open(&self, account: &str, name: &str, sealed: &str) -> Result<String, SecretError> {
        let (key_id, body) = sealed
            .strip_prefix("v1.")
            .and_then(|rest| rest.split_once('.'))
            .ok_or(SecretError::Damaged)?;
        let key = self
            .inner
            .current
            .iter()
            .chain(&self.inner.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| SecretError::UnknownKey(key_id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Damaged);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Damaged)?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad(account, name).as_bytes()), &mut buffer)
            .map_err(|_| SecretError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Damaged)
    }

    /// Whether `sealed` is under the current key already.
    pub fn is_current(&self, sealed: &str) -> bool {
        self.current_id().is_some_and(|id| {
            sealed
                .strip_prefix("v1.")
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(key_id, _)| key_id == id)
        })
    }
}

fn aad(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_account_and_name() {
        let key = Keyring::generate();
        let ring = Keyring::new(Some(&key), &[]).unwrap();
        let sealed = ring.seal("sms-b", "secret_key", "s3cr3t-value").unwrap();
        assert!(!sealed.contains("s3cr3t"), "{sealed}");
        assert_eq!(
            ring.open("sms-b", "secret_key", &sealed).unwrap(),
            "s3cr3t-value"
        );
        assert_eq!(
            ring.open("sms-c", "secret_key", &sealed),
            Err(SecretError::Damaged)
        );
        assert_eq!(
            ring.open("sms-b", "secret_id", &sealed),
            Err(SecretError::Damaged)
        );
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(
            sealed,
            ring.seal("sms-b", "secret_key", "s3cr3t-value").unwrap()
        );
    }

    #[test]
    fn a_previous_key_still_opens_and_an_unknown_one_is_named() {
        let (old, new) = (Keyring::generate(), Keyring::generate());
        let before = Keyring::new(Some(&old), &[]).unwrap();
        let sealed = before.seal("a", "b", "v").unwrap();
        let after = Keyring::new(Some(&new), &[&old]).unwrap();
        assert!(!after.is_current(&sealed));
        assert_eq!(after.open("a", "b", &sealed).unwrap(), "v");
        let only_new = Keyring::new(Some(&new), &[]).unwrap();
        assert!(matches!(
            only_new.open("a", "b", &sealed),
            Err(SecretError::UnknownKey(_))
        ));
        assert_eq!(
            Keyring::default().seal("a", "b", "v"),
            Err(SecretError::NoKey)
        );
        assert!(matches!(
            Keyring::new(Some("c2hvcnQ="), &[]),
            Err(SecretError::BadKey { .. })
        ));
    }
}
