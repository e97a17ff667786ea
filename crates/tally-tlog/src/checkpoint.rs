//! C2SP tlog-checkpoint (<https://c2sp.org/tlog-checkpoint>): the note body that commits a log
//! to a size and root.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::hash::Hash;

/// A checkpoint: the text of a signed note committing the log `origin` to a tree of `size`
/// leaves with root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity, conventionally a schema-less URL; non-empty.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    pub root: Hash,
    /// Optional extension lines, each non-empty, without their newline.
    pub extensions: Vec<String>,
}

/// Why a string is not a valid checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not end with a newline.
    #[error("checkpoint body must end with a newline")]
    MissingFinalNewline,
    /// Fewer than the three mandatory lines.
    #[error("checkpoint body needs origin, size and root lines")]
    TooFewLines,
    /// The origin line is empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// The size line is not a canonical decimal u64.
    #[error("invalid checkpoint tree size {0:?}")]
    InvalidSize(String),
    /// The root line is not the canonical base64 of a 32-byte hash.
    #[error("invalid checkpoint root hash {0:?}")]
    InvalidRoot(String),
    /// An extension line is empty (which would read as the note's blank separator line).
    /// Lines are numbered from 1, so the first extension is line 4.
    #[error("checkpoint extension line {0} is empty")]
    EmptyExtension(usize),
    /// A line (numbered from 1) contains a newline or another character below U+0020,
    /// which signed notes forbid.
    #[error("checkpoint line {0} contains a control character")]
    ControlCharacter(usize),
}

impl Checkpoint {
    /// The checkpoint body: origin, size, base64 root and extensions, each ending in `\n`.
    ///
    /// The result parses back to `self` exactly when [`Checkpoint::validate`] succeeds.
    pub fn to_body(&self) -> String {
        let mut out = String::with_capacity(
            self.origin.len() + 66 + self.extensions.iter().map(|e| e.len() + 1).sum::<usize>(),
        );
        out.push_str(&self.origin);
        out.push('\n');
        out.push_str(&self.size.to_string());
        out.push('\n');
        out.push_str(&STANDARD.encode(self.root));
        out.push('\n');
        for ext in &self.extensions {
            out.push_str(ext);
            out.push('\n');
        }
        out
    }

    /// Checks that every field can be written as a checkpoint line.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        check_line(1, &self.origin)?;
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        for (i, ext) in self.extensions.iter().enumerate() {
            let line = i + 4;
            check_line(line, ext)?;
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension(line));
            }
        }
        Ok(())
    }

    /// Parses a checkpoint body strictly: one spelling per checkpoint, so that two bodies
    /// that differ textually never commit to the same thing.
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let content = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let mut lines = content.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::TooFewLines);
        };

        check_line(1, origin)?;
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }

        let canonical_size = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size_value = canonical_size
            .then(|| size.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| CheckpointError::InvalidSize(size.to_owned()))?;

        let root_value =
            decode_root(root).ok_or_else(|| CheckpointError::InvalidRoot(root.to_owned()))?;

        let mut extensions = Vec::new();
        for (i, ext) in lines.enumerate() {
            let line = i + 4;
            check_line(line, ext)?;
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension(line));
            }
            extensions.push(ext.to_owned());
        }

        Ok(Checkpoint {
            origin: origin.to_owned(),
            size: size_value,
            root: root_value,
            extensions,
        })
    }
}

pub(crate) fn decode_root(s: &str) -> Option<Hash> {
    let bytes = STANDARD.decode(s).ok()?;
    let root: Hash = bytes.try_into().ok()?;
    // The engine already rejects stray padding bits; re-encoding guards that guarantee.
    (STANDARD.encode(root) == s).then_some(root)
}

/// Rejects newlines (which would split the line) and the other characters below U+0020 that
/// signed-note text may not contain.
fn check_line(line: usize, s: &str) -> Result<(), CheckpointError> {
    if s.bytes().any(|b| b < 0x20) {
        return Err(CheckpointError::ControlCharacter(line));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_B64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn parses_minimal_and_extended() {
        let c = Checkpoint::parse(&format!("example.com/log\n0\n{ROOT_B64}\n")).unwrap();
        assert_eq!(c.size, 0);
        assert_eq!(c.root, crate::empty_root());
        assert!(c.extensions.is_empty());
        let body = format!("o\n12\n{ROOT_B64}\next one\next two\n");
        let c = Checkpoint::parse(&body).unwrap();
        assert_eq!(c.extensions, vec!["ext one", "ext two"]);
        assert_eq!(c.to_body(), body);
    }

    #[test]
    fn rejects_non_canonical_bodies() {
        for bad in [
            String::new(),
            "o\n1\n".to_owned(),
            format!("o\n1\n{ROOT_B64}"),
            format!("\n1\n{ROOT_B64}\n"),
            format!("o\n01\n{ROOT_B64}\n"),
            format!("o\n00\n{ROOT_B64}\n"),
            format!("o\n+1\n{ROOT_B64}\n"),
            format!("o\n-1\n{ROOT_B64}\n"),
            format!("o\n 1\n{ROOT_B64}\n"),
            format!("o\n\n{ROOT_B64}\n"),
            format!("o\n18446744073709551616\n{ROOT_B64}\n"),
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n".to_owned(),
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n".to_owned(),
            "o\n1\n47DEQpj8HBSa-_TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n".to_owned(),
            "o\n1\nAAAA\n".to_owned(),
            format!("o\n1\n{ROOT_B64} \n"),
            format!("o\n1\n{ROOT_B64}\n\n"),
            format!("o\n1\n{ROOT_B64}\next\n\n"),
            format!("o\n1\n{ROOT_B64}\r\n"),
            format!("o\t\n1\n{ROOT_B64}\n"),
            format!("o\n1\n{ROOT_B64}\nex\u{1b}t\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validate_matches_parse() {
        let mut c = Checkpoint {
            origin: "o".into(),
            size: 1,
            root: [0; 32],
            extensions: vec![],
        };
        assert!(c.validate().is_ok());
        c.extensions.push(String::new());
        assert_eq!(c.validate(), Err(CheckpointError::EmptyExtension(4)));
        c.extensions = vec!["a\nb".into()];
        assert_eq!(c.validate(), Err(CheckpointError::ControlCharacter(4)));
        c.extensions.clear();
        c.origin.clear();
        assert_eq!(c.validate(), Err(CheckpointError::EmptyOrigin));
    }
}
