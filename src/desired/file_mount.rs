//! Compose `secrets:` and `configs:` as a service receives them: one read-only file each, at a
//! path in the container, from the repository, from the host, or from content the executor
//! writes into the state dir. Content never leaves memory: labels and diffs hold digests only,
//! keyed with the host's key where the content is secret.

use crate::label_key::LabelKey;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Secrets and configs differ only in where they land by default and in whether their content
/// is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Secret,
    Config,
}

impl FileKind {
    /// The Compose key, top-level and per service.
    pub fn key(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::Config => "configs",
        }
    }

    /// The word for one of them in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }

    /// Where a relative or missing `target` is put, as Compose puts it.
    pub fn default_dir(self) -> &'static str {
        match self {
            Self::Secret => "/run/secrets/",
            Self::Config => "/",
        }
    }
}

/// One entry of a service's `secrets:` or `configs:`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FileMount {
    /// Absolute path in the container.
    pub target: String,
    /// The key under the top-level `secrets:` or `configs:`.
    pub source: String,
    #[serde(flatten)]
    pub from: FileSource,
    /// Owner and permissions of a written file (`environment`/`content` sources only; a bound
    /// file is mounted as it is, as Compose does). No mode means 0444.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The content is secret (every secret; a config that took a secret variable): digests of
    /// it are keyed wherever they are shown or stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// Mode of a written file when the service gives none (Compose's default).
pub const DEFAULT_FILE_MODE: u32 = 0o444;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileSource {
    /// A file or folder of the stack folder (normalized path), bound read-only from the
    /// revision's written-out copy; `digest` is the sha256 of its content.
    Repository { path: String, digest: String },
    /// A host path, bound read-only as it is; it passes the host policy as any bind does.
    Host { path: String },
    /// Content from a variable or inline, written under the state dir by the executor;
    /// `digest` is the sha256 of it.
    Content {
        digest: String,
        #[serde(skip)]
        content: FileContent,
    },
}

impl FileMount {
    /// The content the executor writes, for a `Content` source.
    pub fn content(&self) -> Option<&[u8]> {
        match &self.from {
            FileSource::Content { content, .. } => Some(content.bytes()),
            _ => None,
        }
    }

    /// The name of the file the executor writes for a `Content` source: a digest, keyed with
    /// the host's key, of everything the file is (content, mode, owner). Two revisions never
    /// share a name unless they share the file, and the name tells nothing about the content.
    pub fn content_file_name(&self, key: &LabelKey) -> Option<String> {
        let content = self.content()?;
        let attributes = format!("{:o}:{:?}:{:?}", self.file_mode(), self.uid, self.gid);
        Some(key.digest(&[b"content file", content, attributes.as_bytes()]))
    }

    /// The mode a written file gets.
    pub fn file_mode(&self) -> u32 {
        self.mode.unwrap_or(DEFAULT_FILE_MODE)
    }

    /// The digest of the content, when the reconciler knows it (not for a host file).
    pub fn digest(&self) -> Option<&str> {
        match &self.from {
            FileSource::Repository { digest, .. } | FileSource::Content { digest, .. } => {
                Some(digest)
            }
            FileSource::Host { .. } => None,
        }
    }
}

/// Bytes of a secret or config, shared (one definition may serve many services) and never
/// printed by `{:?}`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileContent(Arc<[u8]>);

impl FileContent {
    pub fn new(bytes: &[u8]) -> Self {
        Self(Arc::from(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for FileContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileContent({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_neither_serialized_nor_debug_printed() {
        let mount = FileMount {
            target: "/run/secrets/db".into(),
            source: "db".into(),
            from: FileSource::Content {
                digest: "d1".into(),
                content: FileContent::new(b"hunter22-value"),
            },
            uid: None,
            gid: None,
            mode: Some(0o400),
            secret: true,
        };
        let json = serde_json::to_string(&mount).unwrap();
        assert_eq!(
            json,
            r#"{"target":"/run/secrets/db","source":"db","kind":"content","digest":"d1","mode":256,"secret":true}"#
        );
        assert!(!format!("{mount:?}").contains("hunter22"));
        assert_eq!(mount.content(), Some(&b"hunter22-value"[..]));
    }
}
