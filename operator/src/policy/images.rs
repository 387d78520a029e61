//! The image allow-list: which `spec.worker.image` a QuoteStream may run.
//!
//! Whoever may create a QuoteStream makes the operator create pods; without this list they
//! could run any image there. The cluster admin lists image patterns (`--allowed-images`);
//! by default only the repository of the operator's own worker image is allowed.
//!
//! A pattern without a tag or digest matches an image's repository (the reference without
//! `:tag` and `@digest`), any tag or digest of it; `*` in it matches any run of characters
//! (`registry.corp/quotes/*`). A pattern with a tag or digest matches exactly that image.
//! References are compared as written: `nginx` and `docker.io/library/nginx` differ.

use std::fmt;

/// The images a stream may set in `spec.worker.image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAllowList {
    patterns: Vec<String>,
}

/// An allow-list entry that cannot match an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "image pattern {0:?} is empty or contains whitespace: write a repository (ghcr.io/org/worker), a repository glob (registry.corp/quotes/*) or an exact image (ghcr.io/org/worker:1.2)"
)]
pub struct ImagePatternError(pub String);

impl ImageAllowList {
    /// The admin's patterns.
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Result<Self, ImagePatternError> {
        let patterns = patterns
            .into_iter()
            .map(|p| p.trim().to_owned())
            .map(|p| {
                if p.is_empty() || p.contains(char::is_whitespace) {
                    Err(ImagePatternError(p))
                } else {
                    Ok(p)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { patterns })
    }

    /// The default: any tag or digest of `image`'s repository (the operator's worker image).
    pub fn repository_of(image: &str) -> Self {
        Self {
            patterns: vec![repository(image).to_owned()],
        }
    }

    /// Whether a stream may run `image`.
    pub fn allows(&self, image: &str) -> bool {
        let image = image.trim();
        self.patterns.iter().any(|p| {
            if repository(p) != p {
                p == image
            } else {
                glob(p, repository(image))
            }
        })
    }
}

impl fmt::Display for ImageAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patterns.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.patterns.join(", "))
    }
}

/// The reference without its digest (`@…`) and tag (a `:` after the last `/`; a `:` before
/// it is a registry port).
fn repository(image: &str) -> &str {
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    match (name.rfind(':'), name.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &name[..colon],
        (Some(colon), None) => &name[..colon],
        _ => name,
    }
}

/// `pattern` matches all of `text`, `*` standing for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn list(patterns: &[&str]) -> ImageAllowList {
        ImageAllowList::new(patterns.iter().map(|p| (*p).to_owned())).unwrap()
    }

    #[test]
    fn the_default_is_the_worker_images_repository() {
        let l = ImageAllowList::repository_of("ghcr.io/quotestream/quotestream-worker:0.1.0");
        assert!(l.allows("ghcr.io/quotestream/quotestream-worker:0.2.0"));
        assert!(l.allows("ghcr.io/quotestream/quotestream-worker"));
        assert!(l.allows("ghcr.io/quotestream/quotestream-worker@sha256:abc"));
        assert!(!l.allows("ghcr.io/quotestream/quotestream-worker-evil:1"));
        assert!(!l.allows("ghcr.io/quotestream/quotestream-worker/x:1"));
        assert!(!l.allows("docker.io/library/busybox:latest"));
        assert!(!l.allows(""));
        assert_eq!(l.to_string(), "ghcr.io/quotestream/quotestream-worker");
    }

    #[test]
    fn registry_ports_are_not_tags() {
        assert_eq!(
            repository("registry.local:5000/worker:1"),
            "registry.local:5000/worker"
        );
        assert_eq!(
            repository("registry.local:5000/worker"),
            "registry.local:5000/worker"
        );
        assert_eq!(repository("busybox:1"), "busybox");
        assert_eq!(repository("busybox@sha256:1"), "busybox");
        let l = list(&["registry.local:5000/*"]);
        assert!(l.allows("registry.local:5000/team/worker:1"));
        assert!(!l.allows("registry.local:5001/worker:1"));
    }

    #[test]
    fn globs_and_exact_images() {
        let l = list(&["registry.corp/quotes/*", "ghcr.io/org/worker:1.2"]);
        assert!(l.allows("registry.corp/quotes/worker:7"));
        assert!(l.allows("registry.corp/quotes/a/b@sha256:0"));
        assert!(!l.allows("registry.corp/other/worker:7"));
        assert!(!l.allows("registry.corp.evil.io/quotes/worker:7"));
        assert!(l.allows("ghcr.io/org/worker:1.2"));
        assert!(!l.allows("ghcr.io/org/worker:1.3"));
        assert!(!l.allows("ghcr.io/org/worker"));
        assert!(list(&["*"]).allows("anything/at:all"));
        assert!(!list(&[]).allows("ghcr.io/org/worker:1.2"));
    }

    #[test]
    fn blank_patterns_are_refused() {
        assert!(ImageAllowList::new(["".to_owned()]).is_err());
        assert!(ImageAllowList::new(["a b".to_owned()]).is_err());
    }

    proptest! {
        /// Without `*`, a repository pattern allows exactly that repository.
        #[test]
        fn a_plain_pattern_is_one_repository(repo in "[a-z]{1,6}(/[a-z]{1,6}){0,2}", other in "[a-z]{1,6}(/[a-z]{1,6}){0,2}", tag in "[a-z0-9.]{1,5}") {
            let l = list(&[repo.as_str()]);
            let tagged = format!("{other}:{tag}");
            prop_assert_eq!(l.allows(&tagged), other == repo);
        }

        /// A glob with one `*` at the end is a prefix test.
        #[test]
        fn a_trailing_star_is_a_prefix(prefix in "[a-z/]{0,8}", text in "[a-z/]{0,12}") {
            prop_assert_eq!(glob(&format!("{prefix}*"), &text), text.starts_with(&prefix));
        }
    }
}
