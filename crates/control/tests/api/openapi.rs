//! The OpenAPI document: checked in and current, served, internally
//! consistent, and in step with the route table both ways (every route is
//! documented, every documented operation is routed).

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tandem_control::openapi;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(served_and_every_operation_routed);

const REGENERATE: &str = "TANDEM_UPDATE_OPENAPI=1 cargo test -p tandem-control --test api openapi";

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn checked_in_document_is_current() {
    let path = repo_file("proto-docs/openapi.json");
    let generated = openapi::json();
    if std::env::var_os("TANDEM_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "proto-docs/openapi.json is stale (or missing): the API changed. Regenerate it with\n  {REGENERATE}\nand commit it."
    );
}

/// Every `$ref` points at a component that exists; the basics of 3.1 are there.
#[test]
fn document_is_consistent() {
    let doc: Value = serde_json::from_str(openapi::json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for scheme in ["user", "relay", "collaborationToken", "relaySecretHeader"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 100, "{}", refs.len());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    // Operation ids are unique; user operations say 401; errors are envelopes.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(ids.insert(id.clone()), "duplicate operationId {id}");
            if op.get("security").is_some() {
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
            }
        }
    }
    let error = &doc["components"]["responses"]["NotFound"]["content"]["application/json"];
    assert_eq!(error["schema"]["$ref"], "#/components/schemas/ErrorBody");
    let detail = &doc["components"]["schemas"]["ErrorDetail"]["properties"];
    assert!(detail["requestId"].is_object(), "{detail}");
    let sse = &doc["paths"]["/conversations/{id}/events"]["get"]["responses"]["200"]["content"];
    assert!(sse["text/event-stream"].is_object(), "{sse}");
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The routes of `src/http/mod.rs`, read from its source: each `at(PATH)`
/// with the `.route(METHOD()…)` calls that follow it, `{kind:a|b}` style
/// segments expanded into one path per alternative.
fn route_table() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(repo_file("crates/control/src/http/mod.rs")).unwrap();
    let consts: Vec<(String, String)> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("const "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let value = rest.split('"').nth(1)?;
            Some((format!("{{{}}}", name.trim()), value.to_string()))
        })
        .collect();
    let starts: Vec<usize> = src
        .match_indices("at(")
        .map(|(i, _)| i)
        .filter(|&i| {
            i > 0 && !src.as_bytes()[i - 1].is_ascii_alphanumeric() && src.as_bytes()[i - 1] != b'_'
        })
        .filter(|&i| !src[..i].ends_with("fn "))
        .collect();
    let mut routes = BTreeSet::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(src.len());
        let chunk = &src[start..end];
        let mut path = chunk.split('"').nth(1).unwrap().to_string();
        if chunk.starts_with("at(&format!") {
            path = path.replace("{{", "\u{1}").replace("}}", "\u{2}");
            for (name, value) in &consts {
                path = path.replace(name, value);
            }
            path = path.replace('\u{1}', "{").replace('\u{2}', "}");
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if chunk.contains(&format!(".route({method}()")) {
                for concrete in expand(&path) {
                    routes.insert((method.to_ascii_uppercase(), concrete));
                }
            }
        }
    }
    routes
}

/// `/{kind:documents|tasks}/{id}` → `/documents/{id}`, `/tasks/{id}`.
fn expand(path: &str) -> Vec<String> {
    let mut from = 0;
    while let Some(open) = path[from..].find('{').map(|i| from + i) {
        let close = open + path[open..].find('}').unwrap();
        if let Some((name, choices)) = path[open + 1..close].split_once(':') {
            // `{path:.+}`: a pattern, not alternatives.
            if !choices
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '|')
            {
                let plain = format!("{}{{{name}}}{}", &path[..open], &path[close + 1..]);
                return expand(&plain);
            }
            return choices
                .split('|')
                .flat_map(|c| expand(&format!("{}{c}{}", &path[..open], &path[close + 1..])))
                .collect();
        }
        from = close;
    }
    vec![path.to_string()]
}

#[test]
fn every_route_is_documented_and_every_operation_is_a_route() {
    let table = route_table();
    assert!(
        table.len() > 60,
        "the route table parser found only {table:?}"
    );
    let documented: BTreeSet<(String, String)> = openapi::documented_routes().into_iter().collect();
    let missing: Vec<_> = table.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without an entry in openapi::operations: {missing:?}\n(then: {REGENERATE})"
    );
    let extra: Vec<_> = documented.difference(&table).collect();
    assert!(
        extra.is_empty(),
        "documented operations not in the route table: {extra:?}"
    );
}

async fn served_and_every_operation_routed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), openapi::json());

    // Anonymous calls reach each documented operation's route: its answer
    // is anything but the app's "no such path" 404 or a 405.
    for (method, path) in openapi::documented_routes() {
        let concrete: String = path
            .split('{')
            .enumerate()
            .map(|(i, part)| match (i, part.split_once('}')) {
                (0, _) | (_, None) => part.to_string(),
                (_, Some((_, rest))) => format!("doc-x1{rest}"),
            })
            .collect();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let res = app
            .client
            .request(method.clone(), format!("{}{concrete}", app.base))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        assert!(
            status != StatusCode::NOT_FOUND || body["error"]["message"] != "no such path",
            "{method} {concrete}: {body}"
        );
    }
}
