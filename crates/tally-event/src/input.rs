//! The client-facing shape of an event, as it arrives in a request body.
//!
//! These types check only the JSON *shape* (which keys exist, which are strings, objects or
//! numbers). Every field that has a rule beyond its JSON type is kept as a plain string, and
//! even required fields are `Option`s, so that [`validate`](crate::validate) can report every
//! broken rule of an event at once instead of serde stopping at the first.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::object;

/// One audit event as submitted by a client (schema v1).
///
/// Deserialising rejects unknown fields at every level, and `actor` and `resource` must be
/// objects. A field given as JSON `null` becomes `None`, exactly like an absent field. (The
/// derived `Deserialize` of the event itself would also read a JSON array of field values
/// positionally; [`parse_body`](crate::parse_body) does not allow that, so use it for input.)
/// `Serialize` writes the same shape back, omitting `None` fields, which is what load
/// generators and client libraries send.
///
/// ```
/// use tally_event::{ActorInput, EventInput};
///
/// let event = EventInput {
///     time: Some("2024-05-01T10:00:00Z".into()),
///     actor: Some(ActorInput { id: Some("alice".into()), ..Default::default() }),
///     action: Some("user.login".into()),
///     outcome: Some("SUCCESS".into()),
///     ..Default::default()
/// };
/// let json = serde_json::to_string(&event).unwrap();
/// assert_eq!(json, r#"{"time":"2024-05-01T10:00:00Z","actor":{"id":"alice"},"action":"user.login","outcome":"SUCCESS"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an audit event object")]
pub struct EventInput {
    /// Schema version; must be 1 if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Client-chosen UUID, which makes retries idempotent; assigned by the server if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the event happened: RFC 3339 with a zone offset. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Tenant the event belongs to; defaults to the API key's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Who did it. Required.
    #[serde(
        default,
        deserialize_with = "actor",
        skip_serializing_if = "Option::is_none"
    )]
    pub actor: Option<ActorInput>,
    /// What was done, as a dotted name such as `user.password.change`. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Coarse class of the action, such as `LOGIN` (see
    /// [`WELL_KNOWN_CATEGORIES`](crate::WELL_KNOWN_CATEGORIES)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// What it was done to.
    #[serde(
        default,
        deserialize_with = "resource",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource: Option<ResourceInput>,
    /// How it ended: `SUCCESS`, `FAILURE`, `UNAUTHORIZED` or `DENIED`. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Free-text explanation, typically of a failure or denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Id of the request that caused the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Distributed-tracing trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Id tying together events of one business operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Snapshot of the resource before the action: any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Snapshot of the resource after the action: any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// Any further context, as a JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// The `actor` object of an [`EventInput`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an actor object")]
pub struct ActorInput {
    /// Stable id of the principal (user id, service account, …). Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `user`, `service` or `system`. Called `type` in JSON.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Client IP address, IPv4 or IPv6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's User-Agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Id of the session the action was taken in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// The `resource` object of an [`EventInput`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a resource object")]
pub struct ResourceInput {
    /// Kind of resource, such as `invoice`. Required when `resource` is given. Called `type`
    /// in JSON.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Id of the resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Human-readable name of the resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The expectation named in errors about an event's shape.
pub(crate) const EVENT_EXPECTING: &str = "an audit event object";

/// Deserialises one event, which must be a JSON object.
pub(crate) fn deserialize_event<'de, D: Deserializer<'de>>(d: D) -> Result<EventInput, D::Error> {
    object::required(d, EVENT_EXPECTING)
}

fn actor<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ActorInput>, D::Error> {
    object::optional(d, "an actor object")
}

fn resource<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ResourceInput>, D::Error> {
    object::optional(d, "a resource object")
}
