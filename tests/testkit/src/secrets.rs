//! The check every "no secret in the output" test makes: none of the secret values appears
//! anywhere in a process's output (log lines, errors), whatever the log level.

/// Panics with the offending line when any of `secrets` occurs in `output`.
pub fn assert_no_secret<S: AsRef<str>>(output: &str, secrets: impl IntoIterator<Item = S>) {
    for secret in secrets {
        let secret = secret.as_ref();
        assert!(!secret.is_empty(), "an empty secret matches everything");
        if let Some(at) = output.find(secret) {
            let start = output[..at].rfind('\n').map_or(0, |n| n + 1);
            let end = output[at..].find('\n').map_or(output.len(), |n| at + n);
            panic!("secret {secret:?} in the output:\n{}", &output[start..end]);
        }
    }
}

/// The parts of `value` that carry the marker `s3cr3t` (the tests' secrets are made of
/// letters, digits and dashes), so a test can give a whole malformed setting and check that no
/// secret part of it is echoed.
pub fn secret_parts(value: &str) -> Vec<&str> {
    value
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|s| s.contains("s3cr3t"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_secret_and_shows_its_line() {
        let out = "a\nuser pw-s3cr3t-1 here\nb";
        let caught = std::panic::catch_unwind(|| assert_no_secret(out, ["pw-s3cr3t-1"]));
        let message = caught
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.ends_with("user pw-s3cr3t-1 here"), "{message}");
        assert_no_secret(out, ["other-s3cr3t"]);
        assert_eq!(
            secret_parts("postgres://u:Pw-s3cr3t-p6@host/db?x=Tok-s3cr3t"),
            ["Pw-s3cr3t-p6", "Tok-s3cr3t"]
        );
    }
}
