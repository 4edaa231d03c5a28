//! Secret masking: which values may never reach a terminal, a log, the journal or an error.

/// Shown in place of a secret value.
pub const MASK: &str = "(hidden)";

/// Keys that look secret by name: `*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*KEY*`.
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|needle| upper.contains(needle))
}

/// Replace every occurrence of the given secret values in a free text (e.g. an engine error that
/// echoes the env it was given).
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        // Short values would mask unrelated text ("1", "on") and leak nothing by staying.
        if secret.len() >= 4 {
            out = out.replace(secret, MASK);
        }
    }
    out
}

/// A repository URL as it may be shown: a password or token in it is hidden
/// (`https://user:tok@host/x` -> `https://user:(hidden)@host/x`). An https user name alone is
/// hidden too, since hosts take a token there (`https://<token>@host/x`); ssh's `git@` is kept.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None if scheme.is_some_and(|s| s.starts_with("http")) => MASK.to_string(),
        None => userinfo.to_string(),
    };
    let prefix = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    format!("{prefix}{shown}{}", &rest[at..])
}

/// The secret parts of a repository URL (password, or an https user name used as a token), to
/// scrub from messages that echo the URL, such as libgit2's.
pub fn url_secrets(url: &str) -> Vec<String> {
    let redacted = redact_url(url);
    if redacted == url {
        return Vec::new();
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@').unwrap_or(0)];
    match userinfo.split_once(':') {
        Some((_, password)) => vec![password.to_string()],
        None => vec![userinfo.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_repository_urls_are_hidden_and_the_rest_is_kept() {
        assert_eq!(
            redact_url("https://ops:glpat-abc123@git.example/ops/desired.git"),
            "https://ops:(hidden)@git.example/ops/desired.git"
        );
        assert_eq!(
            redact_url("https://ghp_token123@github.example/o/r.git"),
            "https://(hidden)@github.example/o/r.git"
        );
        for kept in [
            "ssh://git@host/ops",
            "git@host:ops/desired.git",
            "https://git.example/ops.git",
            "file:///srv/repo.git",
            "https://git.example/path@with-at",
        ] {
            assert_eq!(redact_url(kept), kept);
        }
        assert_eq!(
            url_secrets("https://ops:glpat-abc123@git.example/x"),
            ["glpat-abc123"]
        );
        assert_eq!(url_secrets("https://tok999@h/x"), ["tok999"]);
        assert!(url_secrets("ssh://git@host/ops").is_empty());
    }

    #[test]
    fn secret_looking_names_are_recognised_in_any_case() {
        for key in [
            "DB_PASSWORD",
            "api_token",
            "Secret",
            "AWS_ACCESS_KEY_ID",
            "SSH_KEY",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["LOG_LEVEL", "PORT", "WEB_TAG"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn scrub_removes_secret_values_from_free_text() {
        let text = "container failed: env DB_PASSWORD=hunter22 rejected";
        assert_eq!(
            scrub(text, ["hunter22"]),
            "container failed: env DB_PASSWORD=(hidden) rejected"
        );
    }
}
