use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated agent name: 1–64 characters, a letter or `_` first, then letters, digits, `_` or `-`.
/// Names are unique on a node (and, once clustered, in the cluster).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NameError {
    #[error("agent name is empty; give a name such as \"impl\" or \"reviewer_1\"")]
    Empty,
    #[error("agent name {0:?} is longer than 64 characters")]
    TooLong(String),
    #[error("agent name {0:?} is invalid: use letters, digits, '_' or '-', starting with a letter or '_'")]
    BadChar(String),
}

impl AgentName {
    pub fn new(raw: impl AsRef<str>) -> Result<Self, NameError> {
        // Accept AgentWorkshop's atom spelling `:impl` as a convenience.
        let s = raw.as_ref().trim();
        let s = s.strip_prefix(':').unwrap_or(s);
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 64 {
            return Err(NameError::TooLong(s.to_string()));
        }
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(NameError::BadChar(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The candidate nearest to `word` (at most a third of its letters off; words under three
/// letters are too short to guess at), if any: for "did you mean ...?".
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = word.chars().count() / 3;
    if limit == 0 {
        return None;
    }
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        assert_eq!(
            AgentName::new("impl").map(|n| n.to_string()),
            Ok("impl".into())
        );
        assert_eq!(
            AgentName::new(":impl").map(|n| n.to_string()),
            Ok("impl".into())
        );
        assert_eq!(
            AgentName::new("rev_1-b").map(|n| n.to_string()),
            Ok("rev_1-b".into())
        );
        assert_eq!(AgentName::new(""), Err(NameError::Empty));
        assert!(matches!(AgentName::new("1abc"), Err(NameError::BadChar(_))));
        assert!(matches!(AgentName::new("a b"), Err(NameError::BadChar(_))));
        assert!(matches!(
            AgentName::new("a".repeat(65)),
            Err(NameError::TooLong(_))
        ));
    }
}
