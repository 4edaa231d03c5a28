//! Secret masking: which values may never reach a terminal, a log, the journal or an error.

/// Shown in place of a secret value.
pub const MASK: &str = "(hidden)";

/// Keys that look secret by name (DESIGN 4): `*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*KEY*`.
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

#[cfg(test)]
mod tests {
    use super::*;

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
