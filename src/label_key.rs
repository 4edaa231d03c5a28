//! The host's key for digests of secret values (`<state-dir>/label.key`).
//!
//! Container labels are read by far more tools than the container's env (`docker ps`, log
//! shippers, cAdvisor, dashboards). A plain sha256 of a secret in a label lets anyone holding
//! the label guess the secret offline, so digests of secret values are keyed with 32 random
//! bytes that never leave the state dir. Losing the key only means services holding a secret are
//! recreated once (their spec hash changes), never a wrong decision.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub const FILE_NAME: &str = "label.key";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct LabelKey(Option<Arc<[u8; 32]>>);

impl fmt::Debug for LabelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "LabelKey(set)"
        } else {
            "LabelKey(none)"
        })
    }
}

impl LabelKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Some(Arc::new(bytes)))
    }

    /// The key in `state_dir`, or no key when there is none yet (`validate`, a first `diff`).
    pub fn load(state_dir: &Path) -> std::io::Result<Self> {
        match std::fs::read(state_dir.join(FILE_NAME)) {
            Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(key) => Ok(Self::from_bytes(key)),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a 32-byte key; remove it to make a new one (services holding a secret are then recreated once)",
                        state_dir.join(FILE_NAME).display()
                    ),
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Make the key if the state dir has none; done before anything is created with it.
    pub fn ensure(state_dir: &Path) -> std::io::Result<Self> {
        let key = Self::load(state_dir)?;
        if key.0.is_some() {
            return Ok(key);
        }
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
        std::fs::create_dir_all(state_dir)?;
        let tmp = state_dir.join(format!("{FILE_NAME}.tmp-{}", std::process::id()));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        // Two processes racing here: the first rename wins and both end up reading its key.
        if std::fs::hard_link(&tmp, state_dir.join(FILE_NAME)).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return Self::load(state_dir);
        }
        let _ = std::fs::remove_file(&tmp);
        Ok(Self::from_bytes(bytes))
    }

    /// 16 hex digits of HMAC-SHA256 over `parts` (separated, so ("a","bc") != ("ab","c")).
    pub fn digest(&self, parts: &[&[u8]]) -> String {
        let key: &[u8] = self.0.as_deref().map_or(&[0u8; 32], |k| k.as_slice());
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key");
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        crate::desired::hex(&mac.finalize().into_bytes())[..16].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LabelKey::load(dir.path()).unwrap(), LabelKey::default());
        let made = LabelKey::ensure(dir.path()).unwrap();
        assert_ne!(made, LabelKey::default());
        assert_eq!(LabelKey::ensure(dir.path()).unwrap(), made);
        assert_eq!(LabelKey::load(dir.path()).unwrap(), made);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key must not be readable by others");
    }

    #[test]
    fn digests_depend_on_the_key_and_on_where_the_parts_split() {
        let a = LabelKey::from_bytes([1; 32]);
        let b = LabelKey::from_bytes([2; 32]);
        assert_ne!(a.digest(&[b"hunter22"]), b.digest(&[b"hunter22"]));
        assert_eq!(a.digest(&[b"hunter22"]), a.digest(&[b"hunter22"]));
        assert_ne!(a.digest(&[b"a", b"bc"]), a.digest(&[b"ab", b"c"]));
        assert!(!format!("{a:?}").contains('1'));
    }
}
