//! A sink that failed permanently, as one line: what the worker writes to its container's
//! termination message when it cannot start, and what the operator reads back from the pod's
//! `lastState.terminated.message` into the stream's `Degraded` condition. One definition, so
//! the two sides cannot drift apart.

use std::fmt;

/// Kubernetes keeps at most 4096 bytes of a termination message; the line stays below.
pub const MAX_LINE_BYTES: usize = 4000;

const PREFIX: &str = "sink ";
const SETTING_OPEN: &str = " failed [";
const SETTING_CLOSE: &str = "]: ";

/// A permanent failure of one sink: retrying cannot help until someone changes `setting`
/// (or the server behind it: a grant, a table, a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkFailure {
    /// The sink's label (`postgres`, `redis`, `storage`).
    pub sink: String,
    /// The QuoteStream field to look at, e.g. `spec.sinks.postgres.dsnSecretRef`.
    pub setting: String,
    /// What the server or the parser said, and the fix.
    pub reason: String,
}

impl SinkFailure {
    pub fn new(
        sink: impl Into<String>,
        setting: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            sink: sink.into(),
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    /// The line for the termination message: `sink <sink> failed [<setting>]: <reason>`, on
    /// one line (newlines become spaces) and cut to [`MAX_LINE_BYTES`] on a char boundary.
    pub fn line(&self) -> String {
        one_line(&self.to_string())
    }

    /// Reads a [`SinkFailure::line`] back; `None` for any other text (a panic, a log tail).
    pub fn parse(text: &str) -> Option<Self> {
        let line = text.lines().find(|l| l.starts_with(PREFIX))?;
        let rest = line.strip_prefix(PREFIX)?;
        let (sink, rest) = rest.split_once(SETTING_OPEN)?;
        let (setting, reason) = rest.split_once(SETTING_CLOSE)?;
        let plain = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        (plain(sink) && plain(setting)).then(|| Self::new(sink, setting, reason.trim()))
    }
}

/// `text` as one termination-message line: newlines become spaces, cut to [`MAX_LINE_BYTES`]
/// on a char boundary.
pub fn one_line(text: &str) -> String {
    let mut line = text.replace(['\n', '\r'], " ");
    let mut end = line.len().min(MAX_LINE_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line
}

impl fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}{SETTING_OPEN}{}{SETTING_CLOSE}{}",
            self.sink, self.setting, self.reason
        )
    }
}

impl std::error::Error for SinkFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_back_as_the_same_failure() {
        let f = SinkFailure::new(
            "postgres",
            "spec.sinks.postgres.dsnSecretRef",
            "28P01 password authentication failed for user \"w\"; check the user and password",
        );
        assert_eq!(
            f.line(),
            "sink postgres failed [spec.sinks.postgres.dsnSecretRef]: 28P01 password authentication failed for user \"w\"; check the user and password"
        );
        assert_eq!(SinkFailure::parse(&f.line()), Some(f));
    }

    #[test]
    fn other_text_is_not_a_sink_failure() {
        for text in [
            "",
            "thread 'main' panicked at src/main.rs:1:1",
            "error: worker configuration: interval: \"0s\" is out of range",
            "sink  failed []: nothing named",
        ] {
            assert_eq!(SinkFailure::parse(text), None, "{text}");
        }
    }

    #[test]
    fn a_long_reason_is_cut_on_a_char_boundary_and_newlines_go() {
        let f = SinkFailure::new("redis", "spec.sinks.redis.url", "é\n".repeat(3000));
        let line = f.line();
        assert!(line.len() <= MAX_LINE_BYTES);
        assert!(!line.contains('\n'));
        assert_eq!(
            SinkFailure::parse(&line).map(|p| p.sink),
            Some("redis".into())
        );
    }
}
