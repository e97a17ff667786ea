//! Request body parsing: framing, limits, and the position or path of every error.

mod common;

use common::MINIMAL;
use tally_event::{parse_body, BodyError, BodyFormat};

fn json(body: &str) -> Result<Vec<tally_event::EventInput>, BodyError> {
    parse_body(body.as_bytes(), BodyFormat::Json, 100)
}

fn ndjson(body: &str) -> Result<Vec<tally_event::EventInput>, BodyError> {
    parse_body(body.as_bytes(), BodyFormat::Ndjson, 100)
}

fn event_with_action(action: &str) -> String {
    MINIMAL.replace("user.login", action)
}

fn actions(events: &[tally_event::EventInput]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.action.as_deref().unwrap())
        .collect()
}

#[test]
fn single_object() {
    let events = json(MINIMAL).unwrap();
    assert_eq!(events, vec![common::minimal()]);
    let events = json(&format!("\n  {MINIMAL}\r\n")).unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
fn array_of_objects() {
    let body = format!(
        "[{},\n {},{}]",
        event_with_action("a"),
        event_with_action("b"),
        event_with_action("c")
    );
    assert_eq!(actions(&json(&body).unwrap()), ["a", "b", "c"]);
}

#[test]
fn ndjson_skips_blank_lines_and_accepts_crlf() {
    let body = format!(
        "\n{}\r\n\r\n   \n{}\n\t\n{}",
        event_with_action("a"),
        event_with_action("b"),
        event_with_action("c")
    );
    assert_eq!(actions(&ndjson(&body).unwrap()), ["a", "b", "c"]);
    let trailing_newline = format!("{}\n", event_with_action("a"));
    assert_eq!(ndjson(&trailing_newline).unwrap().len(), 1);
}

#[test]
fn empty_bodies() {
    for body in ["", "  \n\t", "[]", " [ ] "] {
        assert_eq!(json(body), Err(BodyError::Empty), "{body:?}");
    }
    for body in ["", "\n\n", " \r\n \n"] {
        assert_eq!(ndjson(body), Err(BodyError::Empty), "{body:?}");
    }
    assert_eq!(BodyError::Empty.status(), 400);
}

#[test]
fn too_many_events() {
    let three = format!("[{MINIMAL},{MINIMAL},{MINIMAL}]");
    assert_eq!(
        parse_body(three.as_bytes(), BodyFormat::Json, 3)
            .unwrap()
            .len(),
        3
    );
    let err = parse_body(three.as_bytes(), BodyFormat::Json, 2).unwrap_err();
    assert_eq!(err, BodyError::TooManyEvents { max: 2 });
    assert_eq!(err.status(), 413);

    let lines = format!("{MINIMAL}\n\n{MINIMAL}\n{MINIMAL}\n");
    assert_eq!(
        parse_body(lines.as_bytes(), BodyFormat::Ndjson, 3)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        parse_body(lines.as_bytes(), BodyFormat::Ndjson, 2),
        Err(BodyError::TooManyEvents { max: 2 })
    );
    assert_eq!(
        parse_body(MINIMAL.as_bytes(), BodyFormat::Json, 0),
        Err(BodyError::TooManyEvents { max: 0 })
    );
}

#[test]
fn too_many_events_stops_before_parsing_the_rest() {
    // The third event and everything after it are garbage: the limit must be reported, which
    // proves the parser stopped at the start of the third event.
    let array = format!("[{MINIMAL},{MINIMAL},{{\"action\": nonsense ]]]");
    assert_eq!(
        parse_body(array.as_bytes(), BodyFormat::Json, 2),
        Err(BodyError::TooManyEvents { max: 2 })
    );
    let lines = format!("{MINIMAL}\n{MINIMAL}\n{{\"action\": nonsense\n");
    assert_eq!(
        parse_body(lines.as_bytes(), BodyFormat::Ndjson, 2),
        Err(BodyError::TooManyEvents { max: 2 })
    );
}

#[test]
fn syntax_error_inside_an_event_has_its_index_and_position() {
    // Event 1 starts on line 2; its broken value `tru}` is on line 3, detected at the `}`.
    let body = format!("[{MINIMAL},\n{{\"action\":\"a\",\n  \"time\": tru}}]");
    let err = json(&body).unwrap_err();
    assert_eq!(err.status(), 400);
    match err {
        BodyError::Syntax {
            event,
            line,
            column,
            message,
        } => {
            assert_eq!(event, Some(1));
            assert_eq!((line, column), (3, 14));
            assert_eq!(message, "expected ident");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_error_in_a_single_object() {
    let err = json(r#"{"action": }"#).unwrap_err();
    assert!(
        matches!(
            err,
            BodyError::Syntax {
                event: Some(0),
                line: 1,
                column: 12,
                ..
            }
        ),
        "{err:?}"
    );
    // Truncated body.
    let err = json(&MINIMAL[..40]).unwrap_err();
    assert!(
        matches!(
            err,
            BodyError::Syntax {
                event: Some(0),
                line: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let err = json(&format!("[{MINIMAL}")).unwrap_err();
    assert!(
        matches!(err, BodyError::Syntax { event: None, .. }),
        "{err:?}"
    );
}

#[test]
fn syntax_errors_outside_events() {
    for body in [
        "hello",
        "[",
        &format!("{MINIMAL} trailing"),
        &format!("{MINIMAL}\n{MINIMAL}"),
    ] {
        let err = json(body).unwrap_err();
        assert!(
            matches!(err, BodyError::Syntax { event: None, .. }),
            "{body}: {err:?}"
        );
    }
    // Missing comma between array elements: between events, on line 2.
    let err = json(&format!("[{MINIMAL}\n {MINIMAL}]")).unwrap_err();
    assert!(
        matches!(
            err,
            BodyError::Syntax {
                event: None,
                line: 2,
                column: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn ndjson_syntax_error_positions_are_relative_to_the_body() {
    // Events 0 and 1, a blank line, then event 2 broken on body line 4, column 11.
    let body = format!("{MINIMAL}\n{MINIMAL}\n\n{{\"action\":}}\n");
    match ndjson(&body).unwrap_err() {
        BodyError::Syntax {
            event,
            line,
            column,
            ..
        } => assert_eq!((event, line, column), (Some(2), 4, 11)),
        other => panic!("{other:?}"),
    }
    // Two objects on one line.
    let err = ndjson(&format!("{MINIMAL} {MINIMAL}")).unwrap_err();
    assert!(
        matches!(
            err,
            BodyError::Syntax {
                event: Some(0),
                line: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn syntax_error_messages_have_no_position_suffix() {
    let err = json("{\"action\" 1}").unwrap_err();
    let BodyError::Syntax { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(message, "expected `:`");
    assert_eq!(
        err.to_string(),
        "event 0: syntax error at line 1 column 11: expected `:`"
    );
}

#[test]
fn invalid_utf8_and_bad_escapes_are_syntax_errors() {
    let mut body = MINIMAL.as_bytes().to_vec();
    let at = MINIMAL.find("alice").unwrap();
    body[at] = 0xff;
    let err = parse_body(&body, BodyFormat::Json, 10).unwrap_err();
    assert!(
        matches!(err, BodyError::Syntax { event: Some(0), .. }),
        "{err:?}"
    );
    let err = json(r#"{"action":"\ud800"}"#).unwrap_err();
    assert!(
        matches!(err, BodyError::Syntax { event: Some(0), .. }),
        "{err:?}"
    );
}

#[test]
fn unknown_fields_are_schema_errors_with_their_path() {
    let cases = [
        (r#"{"action":"a","colour":"red"}"#, "colour"),
        (r#"{"actor":{"id":"a","email":"x"}}"#, "actor.email"),
        (r#"{"resource":{"type":"t","owner":"x"}}"#, "resource.owner"),
        // Near-misses are not silently accepted either.
        (r#"{"Action":"a"}"#, "Action"),
        (r#"{"actor":{"Type":"user"}}"#, "actor.Type"),
    ];
    for (body, path) in cases {
        let err = json(body).unwrap_err();
        assert_eq!(err.status(), 422);
        match err {
            BodyError::Schema {
                event,
                field,
                message,
            } => {
                assert_eq!(event, 0);
                assert_eq!(field, path, "{body}");
                assert!(message.starts_with("unknown field"), "{message}");
                assert!(!message.contains(" at line "), "{message}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn wrong_types_are_schema_errors_with_their_path() {
    let cases = [
        (
            r#"{"actor":{"ip":5}}"#,
            "actor.ip",
            "invalid type: integer `5`, expected a string",
        ),
        (r#"{"actor":"alice"}"#, "actor", "expected an actor object"),
        (
            r#"{"resource":[]}"#,
            "resource",
            "expected a resource object",
        ),
        (r#"{"metadata":[1]}"#, "metadata", "invalid type: sequence"),
        (
            r#"{"schema_version":"1"}"#,
            "schema_version",
            "invalid type: string",
        ),
        (
            r#"{"schema_version":-1}"#,
            "schema_version",
            "invalid value",
        ),
        (r#"{"time":1714557600}"#, "time", "invalid type: integer"),
        (r#"{"outcome":true}"#, "outcome", "invalid type: boolean"),
        (
            r#"42"#,
            "",
            "expected an audit event object or an array of them",
        ),
        (
            r#""event""#,
            "",
            "expected an audit event object or an array of them",
        ),
    ];
    for (body, path, message_part) in cases {
        match json(body).unwrap_err() {
            BodyError::Schema {
                event,
                field,
                message,
            } => {
                assert_eq!(event, 0, "{body}");
                assert_eq!(field, path, "{body}");
                assert!(message.contains(message_part), "{body}: {message}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn schema_errors_in_batches_name_the_event() {
    let body = format!("[{MINIMAL},{MINIMAL},{{\"actor\":{{\"session_id\":[]}}}}]");
    assert_eq!(
        json(&body).unwrap_err(),
        BodyError::Schema {
            event: 2,
            field: "actor.session_id".into(),
            message: "invalid type: sequence, expected a string".into(),
        }
    );
    let body = format!("[{MINIMAL},7]");
    assert!(
        matches!(json(&body).unwrap_err(), BodyError::Schema { event: 1, ref field, ref message }
            if field.is_empty() && message.contains("expected an audit event object")),
    );

    let lines = format!("{MINIMAL}\n\n{{\"actor\":{{\"id\":\"a\",\"nick\":\"b\"}}}}\n");
    assert_eq!(
        ndjson(&lines).unwrap_err(),
        BodyError::Schema {
            event: 1,
            field: "actor.nick".into(),
            message: "unknown field `nick`, expected one of `id`, `type`, `ip`, `user_agent`, `session_id`".into(),
        }
    );
    let lines = format!("{MINIMAL}\n[{MINIMAL}]\n");
    assert!(matches!(
        ndjson(&lines).unwrap_err(),
        BodyError::Schema { event: 1, ref field, .. } if field.is_empty()
    ));
}

#[test]
fn objects_are_never_read_from_arrays() {
    // serde's derived structs would read `["alice"]` as an actor with id "alice".
    for (body, path, expected) in [
        (
            r#"{"actor":["alice"]}"#,
            "actor",
            "invalid type: sequence, expected an actor object",
        ),
        (
            r#"{"resource":["user"]}"#,
            "resource",
            "invalid type: sequence, expected a resource object",
        ),
        (
            r#"[[1,null,"2024-05-01T10:00:00Z"]]"#,
            "",
            "invalid type: sequence, expected an audit event object",
        ),
    ] {
        assert_eq!(
            json(body).unwrap_err(),
            BodyError::Schema {
                event: 0,
                field: path.into(),
                message: expected.into()
            },
            "{body}"
        );
    }
    assert_eq!(
        ndjson(r#"[1,null,"2024-05-01T10:00:00Z"]"#).unwrap_err(),
        BodyError::Schema {
            event: 0,
            field: String::new(),
            message: "invalid type: sequence, expected an audit event object".into()
        }
    );
}

#[test]
fn duplicate_fields_are_schema_errors() {
    let err = json(r#"{"action":"a","action":"b"}"#).unwrap_err();
    assert!(
        matches!(err, BodyError::Schema { event: 0, ref message, .. } if message.contains("duplicate field `action`")),
        "{err:?}"
    );
}

#[test]
fn content_types() {
    use BodyFormat::{Json, Ndjson};
    for (ct, expected) in [
        ("application/json", Some(Json)),
        ("application/json; charset=utf-8", Some(Json)),
        ("APPLICATION/JSON;charset=UTF-8", Some(Json)),
        ("  application/json  ", Some(Json)),
        ("application/x-ndjson", Some(Ndjson)),
        ("application/ndjson", Some(Ndjson)),
        ("application/jsonl", Some(Ndjson)),
        ("application/x-jsonlines; charset=utf-8", Some(Ndjson)),
        ("Application/X-NDJSON", Some(Ndjson)),
        ("text/plain", None),
        ("application/xml", None),
        ("application/json-patch+json", None),
        ("application/jsonx", None),
        ("", None),
    ] {
        assert_eq!(BodyFormat::from_content_type(ct), expected, "{ct:?}");
    }
}

#[test]
fn statuses_and_messages() {
    let schema = BodyError::Schema {
        event: 3,
        field: "actor.ip".into(),
        message: "invalid type: integer `5`, expected a string".into(),
    };
    assert_eq!(schema.status(), 422);
    assert_eq!(
        schema.to_string(),
        "event 3: field `actor.ip`: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        BodyError::TooManyEvents { max: 5 }.to_string(),
        "the body contains more than 5 events"
    );
    let syntax = BodyError::Syntax {
        event: None,
        line: 2,
        column: 7,
        message: "trailing characters".into(),
    };
    assert_eq!(syntax.status(), 400);
    assert_eq!(
        syntax.to_string(),
        "syntax error at line 2 column 7: trailing characters"
    );
}

#[test]
fn free_form_values_keep_their_content() {
    let body =
        r#"{"before":{"b":[1,2.5,"x",null],"a":{}},"after":"text","metadata":{"k":{"n":-1}}}"#;
    let event = &json(body).unwrap()[0];
    assert_eq!(event.before.as_ref().unwrap()["b"][1], 2.5);
    assert_eq!(event.after.as_ref().unwrap(), "text");
    assert_eq!(event.metadata.as_ref().unwrap()["k"]["n"], -1);
}
