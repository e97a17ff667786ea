//! `s3://bucket/prefix`: where a log's checkpoints are anchored.

use std::fmt;
use std::str::FromStr;

use crate::AnchorError;

/// A bucket and a key prefix (without a trailing `/`; possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorLocation {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix under which every tenant's checkpoints lie; empty for the bucket's root.
    pub prefix: String,
}

impl FromStr for AnchorLocation {
    type Err = AnchorError;

    /// Parses `s3://bucket` or `s3://bucket/some/prefix`. Bucket names follow S3's rules
    /// (3-63 of `a-z 0-9 . -`); the prefix is limited to `A-Z a-z 0-9 . _ - /` so that keys
    /// never need escaping anywhere they are used.
    fn from_str(s: &str) -> Result<Self, AnchorError> {
        let bad = |why: &str| {
            AnchorError::Config(format!(
                "{s:?} is not an anchor location: {why} (expected s3://BUCKET or s3://BUCKET/PREFIX)"
            ))
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !bucket_ok {
            return Err(bad(
                "the bucket name must be 3-63 characters of a-z, 0-9, '.' and '-'",
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
            || prefix
                .split('/')
                .any(|p| p.is_empty() && !prefix.is_empty())
            || prefix.starts_with('/')
        {
            return Err(bad(
                "the prefix may hold only A-Z, a-z, 0-9, '.', '_', '-' and single '/' separators",
            ));
        }
        Ok(AnchorLocation {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for AnchorLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let l: AnchorLocation = "s3://audit-anchors/prod/tally/".parse().unwrap();
        assert_eq!(l.bucket, "audit-anchors");
        assert_eq!(l.prefix, "prod/tally");
        assert_eq!(l.to_string(), "s3://audit-anchors/prod/tally");
        let l: AnchorLocation = "s3://bkt".parse().unwrap();
        assert_eq!(l.prefix, "");
        assert_eq!(l.to_string(), "s3://bkt");
    }

    #[test]
    fn refuses_what_is_not_a_location() {
        for bad in [
            "/tmp/file",
            "s3://",
            "s3://B",
            "s3://Upper-Case",
            "s3://bucket//x",
            "s3://bucket/a b",
            "s3://bucket/ü",
            "gs://bucket/x",
        ] {
            let e = bad.parse::<AnchorLocation>().unwrap_err().to_string();
            assert!(e.contains("is not an anchor location"), "{bad}: {e}");
        }
    }
}
