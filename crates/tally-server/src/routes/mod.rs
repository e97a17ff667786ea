//! HTTP handlers, one module per resource.

pub(crate) mod alerts;
pub(crate) mod events;
pub(crate) mod export;
pub(crate) mod ingest;
pub(crate) mod keys;
pub(crate) mod ops;
pub(crate) mod privacy;
pub(crate) mod proofs;
pub(crate) mod search;
pub(crate) mod stream;
pub(crate) mod tenants;
pub(crate) mod tiles;
