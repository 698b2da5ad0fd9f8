//! Path templates such as `/accounts/{key}`: the one place that parses them,
//! so the operator rejects exactly what the sidecar would reject.

use std::fmt;

/// A parsed path template with exactly one `{key}` segment.
///
/// A template matches a path when every literal segment is equal and the
/// path has a non-empty segment where `{key}` stands; segments after the
/// template's end are allowed (`/accounts/{key}` matches `/accounts/7/deposit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Key,
}

/// Why a template was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Templates are absolute paths.
    #[error("must start with '/'")]
    NotAbsolute,
    /// No `{key}` segment, or more than one.
    #[error("must contain exactly one '{{key}}' segment, found {0}")]
    KeyCount(usize),
    /// Braces are only allowed as the whole `{key}` segment.
    #[error("segment {0:?} has braces; only a whole '{{key}}' segment may")]
    StrayBrace(String),
    /// Templates are short; a huge one is a mistake.
    #[error("is longer than {max} bytes", max = PathTemplate::MAX_LEN)]
    TooLong,
}

impl PathTemplate {
    /// Longest accepted template.
    pub const MAX_LEN: usize = 1024;

    /// Parses and checks a template.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        if template.len() > Self::MAX_LEN {
            return Err(TemplateError::TooLong);
        }
        let rest = template
            .strip_prefix('/')
            .ok_or(TemplateError::NotAbsolute)?;
        let mut segments = Vec::new();
        for part in rest.split('/') {
            if part == "{key}" {
                segments.push(Segment::Key);
            } else if part.contains('{') || part.contains('}') {
                return Err(TemplateError::StrayBrace(part.to_string()));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        let keys = segments.iter().filter(|s| **s == Segment::Key).count();
        if keys != 1 {
            return Err(TemplateError::KeyCount(keys));
        }
        Ok(Self { segments })
    }

    /// Extracts the key from a request path (without query), or `None` when
    /// the path does not match. The key is returned as it appears (still
    /// percent-encoded) so that every sidecar hashes the same bytes.
    pub fn extract<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let mut key = None;
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(lit) if lit == part => {}
                Segment::Literal(_) => return None,
                Segment::Key if part.is_empty() => return None,
                Segment::Key => key = Some(part),
            }
        }
        key
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => write!(f, "/{lit}")?,
                Segment::Key => f.write_str("/{key}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_key_from_matching_paths() {
        let t = PathTemplate::parse("/accounts/{key}").unwrap();
        assert_eq!(t.extract("/accounts/42"), Some("42"));
        assert_eq!(t.extract("/accounts/42/deposit"), Some("42"));
        assert_eq!(t.extract("/accounts/"), None);
        assert_eq!(t.extract("/accounts"), None);
        assert_eq!(t.extract("/transfers"), None);
        assert_eq!(t.extract(""), None);
    }

    #[test]
    fn key_in_the_middle() {
        let t = PathTemplate::parse("/v1/{key}/items").unwrap();
        assert_eq!(t.extract("/v1/abc/items"), Some("abc"));
        assert_eq!(t.extract("/v1/abc/other"), None);
        assert_eq!(t.to_string(), "/v1/{key}/items");
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(
            PathTemplate::parse("accounts/{key}"),
            Err(TemplateError::NotAbsolute)
        );
        assert_eq!(
            PathTemplate::parse("/accounts"),
            Err(TemplateError::KeyCount(0))
        );
        assert_eq!(
            PathTemplate::parse("/{key}/{key}"),
            Err(TemplateError::KeyCount(2))
        );
        assert!(matches!(
            PathTemplate::parse("/a{key}"),
            Err(TemplateError::StrayBrace(_))
        ));
        assert_eq!(
            PathTemplate::parse(&"/x".repeat(600)),
            Err(TemplateError::TooLong)
        );
    }
}
