//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers' annotations
//! plus the event schema, generated from the schema registry of `tally-event`
//! (`tally_event::fields`).

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
        routes::stream::stream,
        routes::export::export,
        routes::tenants::list,
        routes::tenants::describe,
        routes::tenants::create,
        routes::tenants::disable,
        routes::tenants::enable,
        routes::tenants::set_quotas,
        routes::privacy::get_policy,
        routes::privacy::set_policy,
        routes::privacy::place_hold,
        routes::privacy::release_hold,
        routes::privacy::erase,
        routes::privacy::get_data_keys,
        routes::privacy::rotate_data_key,
        routes::alerts::list,
        routes::alerts::get,
        routes::alerts::acknowledge,
        routes::alerts::resolve,
        routes::alerts::rules,
        routes::alerts::set_rules,
        routes::proofs::checkpoint,
        routes::proofs::log_key,
        routes::proofs::inclusion,
        routes::proofs::consistency,
        routes::keys::list,
        routes::keys::create,
        routes::keys::revoke,
        routes::keys::rotate,
        routes::ops::healthz,
        routes::ops::metrics,
        routes::ops::openapi,
    ),
    components(schemas(
        crate::error::ErrorBody, crate::error::ErrorInfo, crate::error::ErrorDetail,
        crate::extract::LeafIndex, crate::extract::TreeSize, crate::extract::ResumeIndex,
        routes::events::EventKey, routes::ingest::IngestBody, routes::search::SearchOrder,
        routes::search::StatsField, routes::stream::StreamEvent, routes::export::ExportFormat, routes::ops::HealthOk,
        routes::ops::HealthFailed, routes::alerts::RuleSchema, routes::alerts::RulesBody,
    )),
    modifiers(&Additions),
    tags(
        (name = "events", description = "Send and read audit events"),
        (name = "investigation", description = "Search and statistics over the events"),
        (name = "proofs", description = "Checkpoints, inclusion and consistency proofs"),
        (name = "tiles", description = "The tree as C2SP tlog-tiles: checkpoints, hash tiles, entry bundles"),
        (name = "keys", description = "API keys (admin)"),
        (name = "tenants", description = "Tenants: list and describe (read); create, disable, enable and limit (admin of every tenant)"),
        (name = "privacy", description = "Personal data: which values are personal, legal holds, erasure of subjects (admin of the tenant)"),
        (name = "alerts", description = "Alerts raised by the rules, their state, and the rules (read; rules changed by an admin of every tenant)"),
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
                    .description(Some(
                        "An API key (tly_<id>_<secret>), or, on a server configured for single \
                         sign-on, a JWT of its OpenID Connect issuer. A key with its own rate \
                         limit is answered 429 with Retry-After beyond it.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in tile_paths() {
            let item = serde_json::from_value(item).expect("a tile path is a valid path item");
            doc.paths.paths.insert(path, item);
        }
    }
}

/// The C2SP tlog-tiles routes. The router serves them with one wildcard each, which utoipa
/// cannot annotate, so they are written here: hash tiles and entry bundles, for the `default`
/// tenant at the root and for any tenant under `/logs/{tenant}`.
fn tile_paths() -> Vec<(String, serde_json::Value)> {
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    let tenant = json!({
        "name": "tenant", "in": "path", "required": true,
        "description": "Tenant", "example": "default", "schema": {"type": "string", "pattern": crate::extract::TENANT_PATTERN}
    });
    let level = json!({
        "name": "level", "in": "path", "required": true,
        "description": "Tile level (level L holds the tree's nodes at height 8·L)",
        "example": 0, "schema": {"type": "integer", "minimum": 0, "maximum": 63}
    });
    let index = json!({
        "name": "index", "in": "path", "required": true,
        "description": "Tile index in the C2SP encoding: 3-digit groups, all but the last prefixed with x \
                        (x001/x234/067), then .p/<width> for a partial tile of 1-255 entries. \
                        The slashes may be sent percent-encoded.",
        "example": "000", "schema": {"type": "string", "pattern": "^(x[0-9]{3}/)*[0-9]{3}(\\.p/(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]?))?$"}
    });
    let operation = |summary: &str,
                     id: &str,
                     params: Vec<serde_json::Value>,
                     ok: serde_json::Value,
                     missing: &str| {
        let mut responses = json!({
            "200": ok,
            "401": error("Missing or unknown API key"),
            "403": error("The key lacks the read scope or may not read this tenant"),
            "404": error(missing),
        });
        if params.iter().any(|p| p["name"] == "tenant") {
            responses["400"] = error("Malformed tenant");
        }
        json!({"get": {
            "tags": ["tiles"], "summary": summary, "operationId": id,
            "parameters": params, "responses": responses,
            "security": [{"api_key": []}],
        }})
    };
    let note = json!({"description": "The latest signed checkpoint (C2SP signed note)",
        "content": {"text/plain": {"schema": {"type": "string"}}}});
    let tile = json!({"description": "The tile's bytes: 32-byte hashes, or length-prefixed records for an entry bundle",
        "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}});
    let no_checkpoint = "No such tenant, or no checkpoint yet";
    let no_tile = "No such tenant, a malformed tile path, or a tile beyond the tree";
    vec![
        (
            "/checkpoint".into(),
            operation(
                "Checkpoint of the default tenant",
                "default_checkpoint",
                vec![],
                note.clone(),
                no_checkpoint,
            ),
        ),
        (
            "/tile/{level}/{index}".into(),
            operation(
                "Hash tile of the default tenant",
                "default_hash_tile",
                vec![level.clone(), index.clone()],
                tile.clone(),
                no_tile,
            ),
        ),
        (
            "/tile/entries/{index}".into(),
            operation(
                "Entry bundle of the default tenant",
                "default_entry_bundle",
                vec![index.clone()],
                tile.clone(),
                no_tile,
            ),
        ),
        (
            "/logs/{tenant}/checkpoint".into(),
            operation(
                "Checkpoint of a tenant",
                "tenant_checkpoint",
                vec![tenant.clone()],
                note,
                no_checkpoint,
            ),
        ),
        (
            "/logs/{tenant}/tile/{level}/{index}".into(),
            operation(
                "Hash tile of a tenant",
                "tenant_hash_tile",
                vec![tenant.clone(), level, index.clone()],
                tile.clone(),
                no_tile,
            ),
        ),
        (
            "/logs/{tenant}/tile/entries/{index}".into(),
            operation(
                "Entry bundle of a tenant",
                "tenant_entry_bundle",
                vec![tenant, index],
                tile,
                no_tile,
            ),
        ),
    ]
}

/// A schema written as JSON, for what the derive macros cannot say (unions, exact bounds).
pub(crate) fn schema(value: serde_json::Value) -> RefOr<Schema> {
    serde_json::from_value(value).expect("a hand-written schema is a valid OpenAPI schema")
}

/// The document, ready to serve.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    // Added as JSON: utoipa's schema types cannot hold "any JSON value" (an empty schema).
    doc["components"]["schemas"]["Event"] = event_schema();
    // `get_mut` throughout: indexing a JSON object mutably would insert nulls for absent keys.
    let parameters = doc
        .get_mut("paths")
        .and_then(|p| p.as_object_mut())
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("parameters").and_then(|p| p.as_array_mut()))
        .flatten();
    for p in parameters {
        if p.get("required") != Some(&serde_json::Value::Bool(true)) {
            if let Some(schema) = p.get_mut("schema") {
                not_null(schema);
            }
        }
    }
    doc
}

/// utoipa declares an `Option` parameter as nullable, but a URL or header cannot carry a null:
/// an optional parameter is simply left out.
fn not_null(schema: &mut serde_json::Value) {
    let Some(schema) = schema.as_object_mut() else {
        return;
    };
    if let Some(types) = schema.get_mut("type").and_then(|t| t.as_array_mut()) {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            schema.insert("type".into(), only);
        }
    }
    for key in ["oneOf", "anyOf"] {
        let Some(branches) = schema.get_mut(key).and_then(|b| b.as_array_mut()) else {
            continue;
        };
        branches.retain(|b| b.get("type").and_then(|t| t.as_str()) != Some("null"));
        if branches.len() == 1 {
            let only = branches.remove(0);
            schema.remove(key);
            for (k, v) in only.as_object().into_iter().flatten() {
                schema.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

/// JSON Schema of an event (schema version 1) as clients send it, generated from the schema
/// registry (`tally_event::fields`): every field a client may send, nested under its container
/// (`actor`, `resource`); the fields the server writes (`received_at`, `key_id`) are not
/// accepted, so they are not in it.
fn event_schema() -> serde_json::Value {
    use tally_event::fields::{Input, FIELDS};

    /// An object holding fields (`actor`, `resource`), not a field itself.
    struct Container {
        name: &'static str,
        properties: serde_json::Map<String, serde_json::Value>,
        required: Vec<&'static str>,
        /// The event must carry it: one of its members is required.
        needed: bool,
    }

    let mut properties = serde_json::Map::new();
    let mut required: Vec<&str> = Vec::new();
    // In order of first appearance, so that `required` lists fields in schema order.
    let mut containers: Vec<Container> = Vec::new();
    for f in FIELDS.iter().filter(|f| f.input != Input::Server) {
        let schema = field_schema(f);
        let Some((parent, member)) = f.name.split_once('.') else {
            properties.insert(f.name.into(), schema);
            if f.input == Input::Required {
                required.push(f.name);
            }
            continue;
        };
        let at = match containers.iter().position(|c| c.name == parent) {
            Some(at) => at,
            None => {
                containers.push(Container {
                    name: parent,
                    properties: serde_json::Map::new(),
                    required: Vec::new(),
                    needed: false,
                });
                containers.len() - 1
            }
        };
        let container = &mut containers[at];
        container.properties.insert(member.into(), schema);
        if matches!(f.input, Input::Required | Input::RequiredInParent) {
            container.required.push(member);
        }
        if f.input == Input::Required && !container.needed {
            container.needed = true;
            required.push(parent);
        }
    }
    for c in containers {
        let object = json!({
            "type": "object", "additionalProperties": false, "required": c.required,
            "properties": c.properties,
        });
        properties.insert(
            c.name.into(),
            if c.needed { object } else { nullable(object) },
        );
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "description": "An audit event, schema version 1. Unknown fields are rejected.",
        "properties": properties,
    })
}

/// The JSON Schema of one field's value.
fn field_schema(f: &tally_event::FieldSpec) -> serde_json::Value {
    use tally_event::fields::{
        FieldType, Input, TextRule, PLAIN_TEXT_PATTERN, PROSE_PATTERN, UUID_PATTERN,
    };

    let text = |max: usize, pattern: &str| json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": pattern});
    let mut schema = match f.ty {
        FieldType::Integer(values) => json!({"type": "integer", "enum": values}),
        FieldType::Uuid => json!({"type": "string", "pattern": UUID_PATTERN}),
        FieldType::Text(TextRule::Plain { max }) => text(max, PLAIN_TEXT_PATTERN),
        FieldType::Text(TextRule::Prose { max }) => text(max, PROSE_PATTERN),
        FieldType::Text(TextRule::Pattern { pattern, max }) => {
            let mut s = json!({"type": "string", "pattern": pattern});
            if let Some(max) = max {
                s["maxLength"] = json!(max);
            }
            s
        }
        FieldType::Text(TextRule::Unchecked) | FieldType::Ip => json!({"type": "string"}),
        FieldType::Enum(values) => json!({"type": "string", "enum": values}),
        FieldType::Time => json!({"type": "string", "format": "date-time"}),
        // Any JSON value: the empty schema.
        FieldType::Json => json!({}),
        FieldType::JsonObject => json!({"type": "object"}),
    };
    schema["description"] = json!(f.description);
    match f.input {
        Input::Required | Input::RequiredInParent => schema,
        Input::Optional | Input::Server => nullable(schema),
    }
}

/// Optional fields may also be null, which is the same as leaving them out (clients often
/// serialise an absent value so). A schema without a type already admits null.
fn nullable(mut schema: serde_json::Value) -> serde_json::Value {
    let Some(ty) = schema.get("type").cloned() else {
        return schema;
    };
    schema["type"] = json!([ty, "null"]);
    if let Some(values) = schema.get_mut("enum").and_then(|e| e.as_array_mut()) {
        values.push(serde_json::Value::Null);
    }
    schema
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_builds_and_names_the_event_schema() {
        let doc = super::document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(doc["components"]["schemas"]["Event"]["required"][0], "time");
        assert!(doc["paths"]["/v1/events"]["post"].is_object());
    }
}
