//! Deserialising structs from JSON objects only.
//!
//! serde's derived `Deserialize` for a struct also accepts a JSON *array* of the field values in
//! declaration order, so `"actor": ["alice"]` would quietly become an actor whose id is
//! `alice`. Events and records are only ever objects; these helpers route struct
//! deserialisation through `deserialize_map`, so that anything else is a type error.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// Deserialises a `T` that must be written as a JSON object; `expecting` names it in errors.
pub(crate) fn required<'de, D, T>(deserializer: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(ObjectVisitor {
        expecting,
        marker: PhantomData,
    })
}

/// Like [`required`] for an `Option<T>` field: `null` is `None`.
pub(crate) fn optional<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_option(OptionalObjectVisitor {
        expecting,
        marker: PhantomData,
    })
}

struct ObjectVisitor<T> {
    expecting: &'static str,
    marker: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

struct OptionalObjectVisitor<T> {
    expecting: &'static str,
    marker: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionalObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        required(deserializer, self.expecting).map(Some)
    }
}
