//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers' annotations
//! plus the event schema, which lives in `tally-event` and is described here by hand.

use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tally",
        description = "Tamper-evident audit log. Events are appended to a per-tenant RFC 6962 Merkle log; \
                       checkpoints are C2SP signed notes (Ed25519); the tree is also served as C2SP tlog-tiles.",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::ingest::ingest,
        routes::events::get_event,
        routes::search::search,
        routes::search::stats,
        routes::search::stream,
        routes::export::export,
        routes::events::list_tenants,
        routes::proofs::checkpoint,
        routes::proofs::log_key,
        routes::proofs::inclusion,
        routes::proofs::consistency,
        routes::keys::list,
        routes::keys::create,
        routes::keys::revoke,
        routes::ops::healthz,
        routes::ops::metrics,
        routes::ops::openapi,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorInfo, crate::error::ErrorDetail)),
    modifiers(&Additions),
    tags(
        (name = "events", description = "Send and read audit events"),
        (name = "investigation", description = "Search and statistics over the events"),
        (name = "proofs", description = "Checkpoints, inclusion and consistency proofs"),
        (name = "keys", description = "API keys (admin)"),
        (name = "ops", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

struct Additions;

impl Modify for Additions {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tly_<id>_<secret>")
                    .build(),
            ),
        );
        let event: RefOr<Schema> = serde_json::from_value(event_schema())
            .expect("the event schema is a valid OpenAPI schema");
        components.schemas.insert("Event".to_string(), event);
    }
}

/// The document, ready to serve.
pub fn document() -> Doc {
    ApiDoc::openapi()
}

/// JSON Schema of an event (schema version 1) as clients send it.
fn event_schema() -> serde_json::Value {
    let s = |max: u32, description: &str| json!({"type": "string", "minLength": 1, "maxLength": max, "description": description});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["time", "actor", "action", "outcome"],
        "description": "An audit event, schema version 1. Unknown fields are rejected.",
        "properties": {
            "schema_version": {"type": "integer", "enum": [1]},
            "id": {"type": "string", "format": "uuid", "description": "Client-chosen id; a retry with the same id and content is stored once. Assigned (UUIDv7) when absent."},
            "time": {"type": "string", "format": "date-time", "description": "RFC 3339 with a zone; stored in UTC with millisecond precision."},
            "tenant": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
            "actor": {
                "type": "object", "additionalProperties": false, "required": ["id"],
                "properties": {
                    "id": s(256, "Who acted"),
                    "type": {"type": "string", "enum": ["user", "service", "system"]},
                    "ip": {"type": "string", "description": "IPv4 or IPv6 address"},
                    "user_agent": s(1024, "User agent"),
                    "session_id": s(256, "Session id"),
                }
            },
            "action": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$", "description": "Dotted action name, e.g. user.password.change"},
            "category": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,31}$", "description": "LOGIN, LOGOUT, CREATE, READ, UPDATE, DELETE, EXPORT, VIEW_PII, AUTHZ, ADMIN, CONFIG, …"},
            "resource": {
                "type": "object", "additionalProperties": false, "required": ["type"],
                "properties": {"type": s(64, "Resource type, e.g. USER"), "id": s(256, "Resource id"), "name": s(256, "Resource name")}
            },
            "outcome": {"type": "string", "enum": ["SUCCESS", "FAILURE", "UNAUTHORIZED", "DENIED"]},
            "reason": {"type": "string", "maxLength": 1024},
            "request_id": s(128, "Correlates with application logs"),
            "trace_id": s(128, "Distributed trace id"),
            "correlation_id": s(128, "Groups related events"),
            "before": {"type": ["object", "array", "string", "number", "boolean"], "description": "Snapshot of the resource before the change (any JSON)"},
            "after": {"type": ["object", "array", "string", "number", "boolean"], "description": "Snapshot of the resource after the change (any JSON)"},
            "metadata": {"type": "object", "description": "Anything else (a JSON object)"}
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_builds_and_names_the_event_schema() {
        let doc = serde_json::to_value(super::document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(doc["components"]["schemas"]["Event"]["required"][0], "time");
        assert!(doc["paths"]["/v1/events"]["post"].is_object());
    }
}
