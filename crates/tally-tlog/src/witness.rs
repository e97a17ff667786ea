//! The bodies of C2SP tlog-witness (<https://c2sp.org/tlog-witness>) `add-checkpoint`: the
//! request a log sends, the cosignature lines a witness answers with, and the `409 Conflict`
//! body carrying the witness's latest size.
//!
//! ```text
//! old 20852014                                        ← size the witness last cosigned
//! PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=        ← consistency proof, ≤ 63 lines
//! jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
//!                                                     ← empty line
//! example.com/behind-the-sofa                         ← the signed checkpoint note
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//!
//! — example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe…
//! ```
//!
//! ```
//! use tally_tlog::witness::{AddCheckpointRequest, parse_conflict_body};
//! let req = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— o AAAA\n".into() };
//! assert_eq!(AddCheckpointRequest::parse(req.to_body().as_bytes()).unwrap(), req);
//! assert_eq!(parse_conflict_body(b"42\n"), Some(42));
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::hash::Hash;

/// Most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// `Content-Type` of a `409 Conflict` answer that carries the witness's latest size.
pub const CONFLICT_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The path of the call, under the witness's submission prefix.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";

/// Why an `add-checkpoint` request body is malformed (a witness answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not UTF-8.
    #[error("request body is not UTF-8")]
    NotUtf8,
    /// The first line is not `old <size>`.
    #[error("first line must be \"old <size>\" with a decimal size without leading zeroes")]
    BadOldSize,
    /// A proof line is not the base64 of a 32-byte hash.
    #[error("consistency proof line {0} is not the base64 of a 32-byte hash")]
    BadProofLine(usize),
    /// More than [`MAX_PROOF_LINES`] proof lines.
    #[error("more than {MAX_PROOF_LINES} consistency proof lines")]
    TooManyProofLines,
    /// No empty line before the checkpoint.
    #[error("no empty line between the consistency proof and the checkpoint")]
    NoCheckpoint,
}

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// Size of the checkpoint the client believes the witness cosigned last (0 if none).
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size (empty if `old_size` is 0).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, signature lines included.
    pub checkpoint: String,
}

impl AddCheckpointRequest {
    /// The request body.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&STANDARD.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a request body. The checkpoint note is returned as is; the witness checks it.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        let body = std::str::from_utf8(body).map_err(|_| RequestError::NotUtf8)?;
        let (first, mut rest) = body.split_once('\n').ok_or(RequestError::BadOldSize)?;
        let old_size = first
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or(RequestError::BadOldSize)?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest.split_once('\n').ok_or(RequestError::NoCheckpoint)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(RequestError::TooManyProofLines);
            }
            let hash = crate::checkpoint::decode_root(line)
                .ok_or(RequestError::BadProofLine(proof.len() + 1))?;
            proof.push(hash);
        }
        Ok(AddCheckpointRequest {
            old_size,
            proof,
            checkpoint: rest.to_owned(),
        })
    }
}

/// An ASCII decimal without leading zeroes (except `0` itself), as the spec requires.
pub fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// The body of a `409 Conflict` answer: the witness's latest cosigned size and a newline.
pub fn conflict_body(size: u64) -> String {
    format!("{size}\n")
}

/// Parses the body of a `409 Conflict` answer of type [`CONFLICT_CONTENT_TYPE`].
pub fn parse_conflict_body(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    parse_decimal(text.strip_suffix('\n')?)
}

/// Splits a `200` answer into its signature lines (each without its newline). The answer
/// must be one or more lines, each starting with `—` (U+2014) and ending with a newline.
pub fn parse_cosignature_lines(body: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(body).ok()?;
    let lines: Vec<&str> = text.strip_suffix('\n')?.split('\n').collect();
    let valid = lines
        .iter()
        .all(|l| crate::note::parse_signature_line(l).is_ok());
    (valid && !lines.is_empty()).then_some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example request body of the tlog-witness spec.
    const SPEC_REQUEST: &str = "old 20852014
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=

example.com/behind-the-sofa
20852163
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=
";

    /// The example response body of the tlog-witness spec.
    const SPEC_RESPONSE: &str = "— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==
— witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==
— witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==
";

    #[test]
    fn spec_request_parses_and_reencodes() {
        let req = AddCheckpointRequest::parse(SPEC_REQUEST.as_bytes()).unwrap();
        assert_eq!(req.old_size, 20852014);
        assert_eq!(req.proof.len(), 4);
        assert_eq!(
            STANDARD.encode(req.proof[3]),
            "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0="
        );
        assert!(req
            .checkpoint
            .starts_with("example.com/behind-the-sofa\n20852163\n"));
        let (text, sigs) = crate::note::split(&req.checkpoint).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(sigs.len(), 2);
        assert_eq!(req.to_body(), SPEC_REQUEST);
    }

    #[test]
    fn spec_response_parses() {
        let lines = parse_cosignature_lines(SPEC_RESPONSE.as_bytes()).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("— witness.example/w2 "));
        for bad in ["", "\n", "— w AAAAAAAA", "x\n", "— w AAAAAAAA\n\n"] {
            assert!(
                parse_cosignature_lines(bad.as_bytes()).is_none(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn malformed_requests_are_named() {
        let note = "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— o AAAAAAAA\n";
        let hash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
        let cases: Vec<(Vec<u8>, RequestError)> = vec![
            (b"\xff\n".to_vec(), RequestError::NotUtf8),
            (b"".to_vec(), RequestError::BadOldSize),
            (format!("old 01\n\n{note}").into(), RequestError::BadOldSize),
            (format!("old -1\n\n{note}").into(), RequestError::BadOldSize),
            (format!("old  1\n\n{note}").into(), RequestError::BadOldSize),
            (format!("Old 1\n\n{note}").into(), RequestError::BadOldSize),
            (
                format!("old 18446744073709551616\n\n{note}").into(),
                RequestError::BadOldSize,
            ),
            (
                format!("old 1\nAAAA\n\n{note}").into(),
                RequestError::BadProofLine(1),
            ),
            (
                format!("old 1\n{hash}{}\n\n{note}", &hash[..43]).into(),
                RequestError::BadProofLine(2),
            ),
            (
                format!("old 1\n{}\n{note}", hash.repeat(64)).into(),
                RequestError::TooManyProofLines,
            ),
            (b"old 1\n".to_vec(), RequestError::NoCheckpoint),
            (format!("old 1\n{hash}").into(), RequestError::NoCheckpoint),
        ];
        for (body, want) in cases {
            assert_eq!(
                AddCheckpointRequest::parse(&body),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(&body)
            );
        }
        let ok = format!("old 1\n{}\n{note}", hash.repeat(63));
        assert_eq!(
            AddCheckpointRequest::parse(ok.as_bytes())
                .unwrap()
                .proof
                .len(),
            63
        );
    }

    #[test]
    fn conflict_bodies() {
        assert_eq!(conflict_body(0), "0\n");
        assert_eq!(parse_conflict_body(b"20852014\n"), Some(20852014));
        for bad in [&b"1"[..], b"01\n", b"\n", b"1\n\n", b"x\n", b" 1\n"] {
            assert_eq!(parse_conflict_body(bad), None, "{bad:?}");
        }
    }
}
