//! The served OpenAPI document, checked against the real server by independent tools:
//! `openapi-spec-validator` (the document is valid OpenAPI 3.1), schemathesis (every operation
//! fuzzed from the document, responses checked for status codes, content types, headers and
//! bodies against their schemas) and openapi-python-client (a client generated from the
//! document ingests, fetches a checkpoint, proves inclusion and searches).
//!
//! The tools are the pinned ones of `scripts/requirements-test.txt`, which `scripts/test`
//! installs into a virtualenv and puts on `PATH`. They are looked up on `PATH`, then in
//! `$TALLY_VENV/bin` (default `$HOME/.cache/tally-venv/bin`). A missing tool fails the test:
//! a check that silently did not run would let the document drift again.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_server::app::{AdminKey, App, AppSettings, IndexSettings, Running};
use tally_store::LogConfig;

const INSTALL_HINT: &str = "run scripts/test, which installs scripts/requirements-test.txt into \
     $HOME/.cache/tally-venv, or install that file with pip and put its bin directory on PATH";

/// The real server with a search index, on an ephemeral port.
struct Server {
    base: String,
    token: String,
    http: reqwest::Client,
    _running: Running,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = App::start(AppSettings {
        log: LogConfig {
            checkpoint_interval: Duration::from_millis(50),
            ..LogConfig::default()
        },
        index: Some(IndexSettings {
            commit_interval: Duration::from_millis(30),
            ..IndexSettings::default()
        }),
        admin: AdminKey::Create("openapi-test".into()),
        alerts: Some(tally_server::alerts::AlertSettings::default()),
        ..AppSettings::new(dir.path().join("data"))
    })
    .await
    .expect("start tally");
    let running = app.spawn("127.0.0.1:0").await.expect("serve");
    Server {
        base: running.url.clone(),
        token: running.admin_token.clone().expect("admin key"),
        http: reqwest::Client::new(),
        _running: running,
        _dir: dir,
    }
}

impl Server {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Stores `count` events in `tenant` and waits until a checkpoint covers them.
    async fn seed(&self, tenant: &str, count: usize) {
        let events: Vec<Value> = (0..count)
            .map(|i| {
                let action = ["user.login", "document.read"][i % 2];
                let outcome = ["SUCCESS", "FAILURE"][i % 2];
                json!({
                    "id": uuid::Uuid::new_v4().to_string(),
                    "time": "2026-01-02T03:04:05.678Z",
                    "actor": {"id": format!("user-{}", i % 5), "type": "user", "ip": "203.0.113.9"},
                    "action": action,
                    "resource": {"type": "DOCUMENT", "id": format!("d-{i}")},
                    "outcome": outcome,
                })
            })
            .collect();
        let response = self
            .http
            .post(format!("{}/v1/events?tenant={tenant}", self.base))
            .bearer_auth(&self.token)
            .json(&events)
            .send()
            .await
            .expect("POST /v1/events");
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = self.get(&format!("/v1/checkpoint?tenant={tenant}")).await;
            if response.status() == 200 {
                let note = response.text().await.unwrap();
                if note.lines().nth(1).and_then(|l| l.parse::<usize>().ok()) >= Some(count) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no checkpoint of {tenant}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn document(&self) -> Value {
        let response = self.get("/openapi.json").await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("the document is JSON")
    }
}

/// A tool of `scripts/requirements-test.txt`: on `PATH`, else in the test virtualenv.
fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("TALLY_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/tally-venv")));
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(venv.map(|v| v.join("bin")));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` was not found on PATH nor in the test virtualenv; {INSTALL_HINT}")
        })
}

/// `PATH` with the tool's own directory first, so that it finds its companions (the
/// generator runs `ruff` from the same virtualenv).
fn with_tool_dir(tool: &Path) -> std::ffi::OsString {
    let mut dirs = vec![tool.parent().expect("tool directory").to_path_buf()];
    dirs.extend(
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    std::env::join_paths(dirs).expect("PATH")
}

/// Runs a tool to completion (off the async workers, so the server keeps answering).
async fn run(mut command: std::process::Command) -> Output {
    let shown = format!("{command:?}");
    command.stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn report(output: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

fn parameter<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name} in {op}"))
}

#[tokio::test]
async fn issue_7_the_document_declares_query_parameters_tiles_tenants_and_auth_errors() {
    let server = start_server().await;
    let doc = server.document().await;

    // Query parameters are in the query, and optional where the handler treats them so.
    for (path, optional) in [
        (
            "/v1/proof/inclusion",
            &["tenant", "index", "id", "size"][..],
        ),
        ("/v1/proof/consistency", &["tenant", "to"][..]),
        ("/v1/checkpoint", &["tenant"][..]),
        ("/v1/events/{key}", &["tenant"][..]),
    ] {
        let op = &doc["paths"][path]["get"];
        for name in optional {
            let p = parameter(op, name);
            assert_eq!(p["in"], "query", "{path} {name}: {p}");
            assert_ne!(p["required"], true, "{path} {name}: {p}");
        }
    }
    let from = parameter(&doc["paths"]["/v1/proof/consistency"]["get"], "from");
    assert_eq!(
        (&from["in"], &from["required"]),
        (&json!("query"), &json!(true))
    );
    let tenant = parameter(&doc["paths"]["/v1/events"]["post"], "tenant");
    assert_eq!(tenant["in"], "query");
    assert_ne!(tenant["required"], true);
    let key = parameter(&doc["paths"]["/v1/events/{key}"]["get"], "key");
    assert_eq!(key["in"], "path");

    // The tile routes, with their content types.
    for path in [
        "/checkpoint",
        "/tile/{level}/{index}",
        "/tile/entries/{index}",
        "/logs/{tenant}/checkpoint",
        "/logs/{tenant}/tile/{level}/{index}",
        "/logs/{tenant}/tile/entries/{index}",
    ] {
        let ok = &doc["paths"][path]["get"]["responses"]["200"]["content"];
        assert!(ok.is_object(), "{path} is missing or has no 200 content");
        let wanted = if path.ends_with("checkpoint") {
            "text/plain"
        } else {
            "application/octet-stream"
        };
        assert!(ok[wanted].is_object(), "{path}: {ok}");
    }

    // `tenant` on every investigation call.
    for path in ["/v1/events", "/v1/stats", "/v1/events/stream", "/v1/export"] {
        let p = parameter(&doc["paths"][path]["get"], "tenant");
        assert_eq!(p["in"], "query", "{path}");
    }

    // Content types of bodies that are not JSON.
    let ingest = &doc["paths"]["/v1/events"]["post"]["requestBody"]["content"];
    assert!(ingest["application/x-ndjson"].is_object(), "{ingest}");
    let stream = &doc["paths"]["/v1/events/stream"]["get"]["responses"]["200"]["content"];
    assert!(stream["text/event-stream"].is_object(), "{stream}");
    let export = &doc["paths"]["/v1/export"]["get"]["responses"]["200"]["content"];
    assert!(export["application/x-ndjson"].is_object(), "{export}");

    // Every authenticated operation declares its 401 and 403 answers with the JSON error body,
    // and every integer parameter its bounds.
    let error_ref = json!("#/components/schemas/ErrorBody");
    let mut secured = 0;
    for (path, method, op) in operations(&doc) {
        if op["security"].is_array() {
            secured += 1;
            for status in ["401", "403"] {
                let schema = &op["responses"][status]["content"]["application/json"]["schema"];
                assert_eq!(schema["$ref"], error_ref, "{method} {path} {status}: {op}");
            }
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            let schema = &p["schema"];
            let integer = schema["type"] == "integer"
                || schema["type"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("integer")));
            if integer {
                assert!(
                    schema["minimum"].is_number() && schema["maximum"].is_number(),
                    "{method} {path} parameter {}: no bounds in {schema}",
                    p["name"]
                );
            }
        }
    }
    assert!(secured >= 19, "only {secured} operations are authenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_out_of_range_numbers_are_a_400_naming_the_parameter() {
    let server = start_server().await;
    server.seed("default", 3).await;
    // 2^63: the first value above int64.
    let too_big = "9223372036854775808";
    // (request path, extra headers, the parameter the 400 must name)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (format!("/v1/events/stream?from={too_big}"), vec![], "from"),
        (
            "/v1/events/stream".into(),
            vec![("Last-Event-ID", too_big)],
            "Last-Event-ID",
        ),
        (
            "/v1/events/stream".into(),
            vec![("Last-Event-ID", "9223372036854775807")],
            "Last-Event-ID",
        ),
        // u64::MAX: `last + 1` must not wrap around to a replay from index 0.
        (
            "/v1/events/stream".into(),
            vec![("Last-Event-ID", "18446744073709551615")],
            "Last-Event-ID",
        ),
        (
            "/v1/events/stream".into(),
            vec![("Last-Event-ID", "x")],
            "Last-Event-ID",
        ),
        (format!("/v1/events/{too_big}"), vec![], "key"),
        (
            format!("/v1/proof/inclusion?index={too_big}"),
            vec![],
            "index",
        ),
        (
            format!("/v1/proof/inclusion?index=0&size={too_big}"),
            vec![],
            "size",
        ),
        (
            format!("/v1/proof/consistency?from={too_big}"),
            vec![],
            "from",
        ),
        (
            format!("/v1/proof/consistency?from=1&to={too_big}"),
            vec![],
            "to",
        ),
        (format!("/v1/export?from={too_big}"), vec![], "from"),
        (format!("/v1/export?to={too_big}"), vec![], "to"),
        ("/v1/export?to=-1".into(), vec![], "to"),
        ("/v1/stats?interval=99999999999w".into(), vec![], "interval"),
        (format!("/v1/events?limit={too_big}"), vec![], "limit"),
    ];
    for (path, headers, name) in cases {
        let response =
            tokio::time::timeout(Duration::from_secs(10), server.get_with(&path, &headers))
                .await
                .unwrap_or_else(|_| panic!("{path}: no answer"));
        let status = response.status();
        assert_eq!(status, 400, "{path} {headers:?} was accepted ({status})");
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(
            body["error"]["details"][0]["field"], name,
            "{path} {headers:?}: {body}"
        );
    }
    // The largest int64 is still a well-formed index: beyond the log, so not found.
    let response = server.get("/v1/events/9223372036854775807").await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1() {
    let validator = tool("openapi-spec-validator");
    let server = start_server().await;
    let doc = server.document().await;
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let mut command = std::process::Command::new(validator);
    command.arg(&file);
    let output = run(command).await;
    assert!(
        output.status.success(),
        "openapi-spec-validator: {}",
        report(&output)
    );
}

/// Fuzzes every operation from the document against a live server. The settings (examples per
/// operation, time limits, and the few places where JSON Schema cannot state what the server
/// accepts) are in `tests/schemathesis.toml`, with the reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_problem_in_any_operation() {
    let st = tool("schemathesis");
    let server = start_server().await;
    // A full tile (256 leaves) exists, so the tile examples of the document find data.
    server.seed("default", 300).await;
    server.seed("acme", 5).await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let reports = tempfile::tempdir().unwrap();
    // Read from a file: loaded from its URL, schemathesis would leave out the operation that
    // serves the document.
    let spec = reports.path().join("openapi.json");
    std::fs::write(&spec, serde_json::to_vec(&server.document().await).unwrap()).unwrap();
    let mut command = std::process::Command::new(st);
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&spec)
        .arg("--url")
        .arg(&server.base)
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", server.token))
        .arg("--report")
        .arg("junit")
        .arg("--report-junit-path")
        .arg(reports.path().join("junit.xml"))
        .arg("--no-color")
        .current_dir(reports.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .env("PYTHONUNBUFFERED", "1");
    let started = Instant::now();
    let output = run(command).await;
    eprintln!(
        "schemathesis ran for {:.0} s\n{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(output.status.success(), "schemathesis: {}", report(&output));
    // Every operation of the document was exercised, none filtered out or unparsed.
    let junit = std::fs::read_to_string(reports.path().join("junit.xml")).expect("JUnit report");
    let untested: Vec<String> = operations(&server.document().await)
        .into_iter()
        .map(|(path, method, _)| format!("{} {path}", method.to_uppercase()))
        .filter(|name| !junit.contains(&format!("name=\"{name}\"")))
        .collect();
    assert!(untested.is_empty(), "not tested: {untested:?}\n{junit}");
}

/// What the generated client does: ingest one event, fetch the signed checkpoint, prove the
/// event's inclusion, and find it with a search. Printed JSON is checked by the test.
const CLIENT_SCRIPT: &str = r#"
import json, sys, time, uuid
from tally_client import AuthenticatedClient
from tally_client.api.events import ingest
from tally_client.api.proofs import checkpoint, inclusion
from tally_client.api.investigation import search
from tally_client.models import Event

base, token = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)
event_id = str(uuid.uuid4())
event = Event.from_dict({
    "id": event_id,
    "time": "2026-01-02T03:04:05.678Z",
    "actor": {"id": "generated-client", "type": "service"},
    "action": "client.generated.call",
    "outcome": "SUCCESS",
})
stored = ingest.sync(client=client, body=event, tenant="clients")
index = stored.events[0].index
assert stored.events[0].id == event_id, stored

# A new tenant's first checkpoint is of the empty tree: wait for one that covers the event.
note = None
for _ in range(200):
    response = checkpoint.sync_detailed(client=client, tenant="clients")
    # A new tenant's empty tree is signed at once: wait for one that holds the event.
    if response.status_code == 200 and int(response.content.decode().splitlines()[1]) > index:
        note = response.content.decode()
        break
    time.sleep(0.05)
assert note is not None, "no checkpoint covers the event"

proof = inclusion.sync(client=client, tenant="clients", id=event_id)
hits = None
for _ in range(200):
    page = search.sync(client=client, tenant="clients", q="actor:generated-client")
    hits = [h.index for h in page.events]
    if hits:
        break
    time.sleep(0.05)
print(json.dumps({
    "index": index,
    "checkpoint_size": int(note.splitlines()[1]),
    "proof": {"index": proof.index, "size": proof.size, "root": proof.root, "hashes": len(proof.proof)},
    "hits": hits,
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_document_ingests_proves_and_searches() {
    let generator = tool("openapi-python-client");
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, serde_json::to_vec(&server.document().await).unwrap()).unwrap();
    let package = dir.path().join("tally_client");
    let mut command = std::process::Command::new(&generator);
    command
        .arg("generate")
        .arg("--path")
        .arg(&spec)
        .arg("--output-path")
        .arg(&package)
        .arg("--meta")
        .arg("none")
        .env("PATH", with_tool_dir(&generator))
        .current_dir(dir.path());
    let output = run(command).await;
    assert!(
        output.status.success(),
        "openapi-python-client: {}",
        report(&output)
    );
    // The generator skips what it has no code for (NDJSON bodies: the ingest variant and the
    // export stream) with a warning; any other problem means it misread the document.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for problem in ["Unable to process", "Failure to process", "Traceback"] {
        assert!(
            !said.contains(problem),
            "openapi-python-client: {}",
            report(&output)
        );
    }
    let warnings = said.matches("WARNING parsing").count();
    let ndjson = said.matches("application/x-ndjson").count();
    assert!(
        warnings <= 2 && ndjson >= warnings,
        "openapi-python-client: {}",
        report(&output)
    );

    // The generator's own interpreter has the client's dependencies (httpx, attrs).
    let python = generator.with_file_name("python");
    let mut command = std::process::Command::new(python);
    command
        .arg("-c")
        .arg(CLIENT_SCRIPT)
        .arg(&server.base)
        .arg(&server.token)
        .env("PYTHONPATH", dir.path())
        .current_dir(dir.path());
    let output = run(command).await;
    assert!(
        output.status.success(),
        "the generated client failed: {}",
        report(&output)
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    let index = result["index"].as_u64().expect("index");
    assert!(result["checkpoint_size"].as_u64() > Some(index), "{result}");
    assert_eq!(result["proof"]["index"], index, "{result}");
    assert!(result["proof"]["size"].as_u64() > Some(index), "{result}");
    assert!(
        result["hits"]
            .as_array()
            .is_some_and(|h| h.contains(&json!(index))),
        "{result}"
    );
}

/// The JSON types a schema admits (`"type"` as a string or a list); empty for none.
fn json_types(schema: &Value) -> Vec<String> {
    match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a schema's `required` list names `member`.
fn requires(schema: &Value, member: &str) -> bool {
    schema["required"]
        .as_array()
        .is_some_and(|r| r.iter().any(|m| m == member))
}

/// The served Event schema is the schema registry's (`tally_event::fields`): every field a
/// client may send, at its place (nested under its container), with the registry's type,
/// format, values and bounds, required exactly when the registry says so and nullable
/// otherwise; the fields the server writes are absent, and there is nothing else.
#[tokio::test]
async fn the_event_schema_is_the_schema_registrys() {
    use tally_event::fields::{FieldType, Input, TextRule, FIELDS, UUID_PATTERN};

    let server = start_server().await;
    let doc = server.document().await;
    let event = &doc["components"]["schemas"]["Event"];
    assert_eq!(event["additionalProperties"], false, "{event}");

    // The document's fields: top-level properties, and the members of nested objects.
    let mut served: Vec<(String, Value)> = Vec::new();
    for (name, schema) in event["properties"].as_object().expect("properties") {
        match schema["properties"].as_object() {
            Some(members) => {
                assert_eq!(schema["additionalProperties"], false, "{name}: {schema}");
                assert!(json_types(schema).contains(&"object".to_string()), "{name}");
                for (member, s) in members {
                    served.push((format!("{name}.{member}"), s.clone()));
                }
            }
            None => served.push((name.clone(), schema.clone())),
        }
    }
    let mut served_names: Vec<&str> = served.iter().map(|(n, _)| n.as_str()).collect();
    let mut client_names: Vec<&str> = FIELDS
        .iter()
        .filter(|f| f.input != Input::Server)
        .map(|f| f.name)
        .collect();
    served_names.sort_unstable();
    client_names.sort_unstable();
    assert_eq!(
        served_names, client_names,
        "the Event schema's fields must be exactly the registry's client fields"
    );

    for f in FIELDS {
        let Some((_, schema)) = served.iter().find(|(n, _)| n == f.name) else {
            assert_eq!(f.input, Input::Server, "{} is missing", f.name);
            continue;
        };
        // Where the field's `required` is decided: the event, or its container.
        let (holder, member) = match f.name.split_once('.') {
            Some((parent, member)) => (&event["properties"][parent], member),
            None => (event, f.name),
        };
        let parent_required = f
            .name
            .split_once('.')
            .map(|(parent, _)| requires(event, parent));
        match f.input {
            Input::Required => {
                assert!(requires(holder, member), "{} must be required", f.name);
                assert_ne!(parent_required, Some(false), "{}'s container", f.name);
            }
            Input::RequiredInParent => {
                assert!(requires(holder, member), "{} must be required", f.name);
                assert_eq!(parent_required, Some(false), "{}'s container", f.name);
            }
            Input::Optional => assert!(!requires(holder, member), "{} is optional", f.name),
            Input::Server => unreachable!("checked above"),
        }
        let (json_type, format) = match f.ty {
            FieldType::Integer(_) => (Some("integer"), None),
            FieldType::Time => (Some("string"), Some("date-time")),
            FieldType::Uuid | FieldType::Text(_) | FieldType::Enum(_) | FieldType::Ip => {
                (Some("string"), None)
            }
            FieldType::JsonObject => (Some("object"), None),
            FieldType::Json => (None, None),
        };
        let mut expected_types: Vec<String> = json_type.into_iter().map(String::from).collect();
        if json_type.is_some() && f.input == Input::Optional {
            expected_types.push("null".into());
        }
        assert_eq!(json_types(schema), expected_types, "{}: {schema}", f.name);
        assert_eq!(schema["format"].as_str(), format, "{}: {schema}", f.name);
        assert_eq!(schema["description"], f.description, "{}", f.name);
        let values: Option<Vec<Value>> = schema["enum"]
            .as_array()
            .map(|v| v.iter().filter(|x| !x.is_null()).cloned().collect());
        match f.ty {
            FieldType::Enum(names) => assert_eq!(
                values,
                Some(names.iter().map(|n| json!(n)).collect()),
                "{}",
                f.name
            ),
            FieldType::Integer(ns) => assert_eq!(
                values,
                Some(ns.iter().map(|n| json!(n)).collect()),
                "{}",
                f.name
            ),
            _ => assert_eq!(values, None, "{}", f.name),
        }
        match f.ty {
            FieldType::Uuid => assert_eq!(schema["pattern"], UUID_PATTERN, "{}", f.name),
            FieldType::Text(TextRule::Plain { max } | TextRule::Prose { max }) => {
                assert_eq!(
                    (&schema["minLength"], &schema["maxLength"]),
                    (&json!(1), &json!(max)),
                    "{}",
                    f.name
                );
            }
            FieldType::Text(TextRule::Pattern { pattern, max }) => {
                assert_eq!(schema["pattern"], pattern, "{}", f.name);
                assert_eq!(
                    schema["maxLength"].as_u64(),
                    max.map(|m| m as u64),
                    "{}",
                    f.name
                );
            }
            _ => {}
        }
    }
}
