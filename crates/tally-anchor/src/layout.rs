//! Object keys: the only place that builds or parses them.
//!
//! A checkpoint of tenant `T` at tree size `N` is stored at `<prefix>/T/checkpoint/<N as 20
//! digits>`. The key holds the size but not the root, on purpose: a second, different
//! checkpoint of the same size is a fork, and a key that can hold only one of them makes the
//! uploader notice (its write is refused) instead of storing both side by side. Zero-padded
//! sizes list in tree order.

use crate::AnchorLocation;

/// The key of tenant `tenant`'s checkpoint at `size`.
pub fn checkpoint_key(location: &AnchorLocation, tenant: &str, size: u64) -> String {
    format!("{}{tenant}/checkpoint/{size:020}", key_root(location))
}

/// The prefix under which every anchored checkpoint lies (ends with `/` unless empty).
pub fn key_root(location: &AnchorLocation) -> String {
    if location.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", location.prefix)
    }
}

/// The tenant and size a checkpoint key names; `None` for any other key.
pub fn parse_checkpoint_key(location: &AnchorLocation, key: &str) -> Option<(String, u64)> {
    let rest = key.strip_prefix(&key_root(location))?;
    let (tenant, size) = rest.split_once("/checkpoint/")?;
    if !tally_event::is_valid_tenant(tenant)
        || size.len() != 20
        || !size.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((tenant.to_string(), size.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_size() {
        let loc: AnchorLocation = "s3://bkt/p/q".parse().unwrap();
        let k = checkpoint_key(&loc, "acme", 42);
        assert_eq!(k, "p/q/acme/checkpoint/00000000000000000042");
        assert_eq!(parse_checkpoint_key(&loc, &k), Some(("acme".into(), 42)));
        assert!(checkpoint_key(&loc, "acme", 9) < checkpoint_key(&loc, "acme", 10));
        let root: AnchorLocation = "s3://bkt".parse().unwrap();
        assert_eq!(
            checkpoint_key(&root, "t", u64::MAX),
            "t/checkpoint/18446744073709551615"
        );
        assert_eq!(
            parse_checkpoint_key(&root, "t/checkpoint/18446744073709551615"),
            Some(("t".into(), u64::MAX))
        );
        for other in [
            "p/q/acme/checkpoint/42",
            "p/q/ACME/checkpoint/00000000000000000042",
            "x/acme/checkpoint/00000000000000000042",
            "p/q/acme/other/00000000000000000042",
        ] {
            assert_eq!(parse_checkpoint_key(&loc, other), None, "{other}");
        }
    }
}
