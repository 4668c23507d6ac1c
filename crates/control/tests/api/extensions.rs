//! Org extensions: malicious archives refused with their codes (built here
//! with the zip crate's writer, some patched by hand), and a good one
//! uploaded, upgraded, enabled with settings checked against its schema,
//! served with its safety headers, disabled and deleted; roles enforced.

use std::io::{Cursor, Write};

use reqwest::StatusCode;
use serde_json::{json, Value};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

use crate::both_backends;
use crate::helpers::{Answer, Backend, TestApp};

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn stored() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Stored)
}

/// A zip of the given entries, in order.
fn zip_of(entries: &[(&str, &[u8])], opts: SimpleFileOptions) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn manifest(version: &str, entry: &str) -> Vec<u8> {
    json!({
        "id": "acme.greeter",
        "name": "Greeter",
        "version": version,
        "kind": "plugin",
        "entry": entry,
        "settingsSchema": {
            "type": "object",
            "additionalProperties": false,
            "required": ["greeting"],
            "properties": {
                "greeting": {"type": "string", "maxLength": 20},
                "times": {"type": "integer", "minimum": 1, "maximum": 5},
                "tone": {"type": "string", "enum": ["warm", "dry"]}
            }
        }
    })
    .to_string()
    .into_bytes()
}

const MAIN_JS: &[u8] = b"export default function greet(s) { return s.greeting; }\n";

fn good_zip(version: &str) -> Vec<u8> {
    zip_of(
        &[
            ("tandem-extension.json", &manifest(version, "dist/main.js")),
            ("dist/main.js", MAIN_JS),
            ("dist/style.css", b"body { color: red }"),
            ("README.md", b"# greeter"),
        ],
        deflated(),
    )
}

/// Replaces every occurrence of `from` with `to` (same length).
fn patch(mut zip: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut i = 0;
    let mut n = 0;
    while i + from.len() <= zip.len() {
        if &zip[i..i + from.len()] == from {
            zip[i..i + from.len()].copy_from_slice(to);
            n += 1;
        }
        i += 1;
    }
    assert!(n >= 2, "patched {n} occurrences");
    zip
}

/// Bytes that do not compress (a simple LCG).
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

async fn upload(app: &TestApp, token: &str, org: &str, zip: Vec<u8>) -> Answer {
    upload_as(app, token, org, zip, "application/zip").await
}

async fn upload_as(app: &TestApp, token: &str, org: &str, zip: Vec<u8>, ct: &str) -> Answer {
    let res = app
        .client
        .post(format!("{}/orgs/{org}/extensions", app.base))
        .bearer_auth(token)
        .header("content-type", ct)
        .body(zip)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn refuses_malicious_archives(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.extensions_max_unpacked_bytes = 1024 * 1024).await;
    let owner = app.signup("owner@zips.test", "Owner").await;
    let org = app.org_of(&owner).await;
    let js: &[u8] = b"1";
    let m = manifest("1.0.0", "main.js");
    let with = |name: &'static str| {
        zip_of(
            &[("tandem-extension.json", &m), ("main.js", js), (name, js)],
            deflated(),
        )
    };

    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("slip", with("../x"), "unsafe_entry"),
        ("nested slip", with("a/../../x"), "unsafe_entry"),
        ("absolute", with("/etc/x"), "unsafe_entry"),
        ("drive letter", with("C:\\x"), "unsafe_entry"),
        ("drive letter, slash", with("C:/x"), "unsafe_entry"),
        ("backslash", with("a\\b"), "unsafe_entry"),
        (
            "not a zip",
            b"this is not a zip file at all".to_vec(),
            "invalid_archive",
        ),
    ];
    // A symlink entry (unix mode 0o120777 in the external attributes).
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("tandem-extension.json", deflated()).unwrap();
    w.write_all(&m).unwrap();
    w.start_file("main.js", deflated()).unwrap();
    w.write_all(js).unwrap();
    w.add_symlink("link.js", "/etc/passwd", deflated()).unwrap();
    cases.push(("symlink", w.finish().unwrap().into_inner(), "unsafe_entry"));
    // Two entries with one name (the writer refuses, so rename one after).
    let twice = zip_of(
        &[
            ("tandem-extension.json", &m),
            ("main.js", js),
            ("zzzz.js", js),
        ],
        deflated(),
    );
    cases.push((
        "duplicate",
        patch(twice, b"zzzz.js", b"main.js"),
        "unsafe_entry",
    ));
    // A bomb: 5 MiB of zeros deflate to a few KiB.
    let zeros = vec![0u8; 5 * 1024 * 1024];
    cases.push((
        "ratio bomb",
        zip_of(
            &[
                ("tandem-extension.json", &m),
                ("main.js", js),
                ("zeros.bin", &zeros),
            ],
            deflated(),
        ),
        "archive_too_large",
    ));
    // Too many entries.
    let names: Vec<String> = (0..1_001).map(|i| format!("f/{i}.txt")).collect();
    let mut many: Vec<(&str, &[u8])> = vec![("tandem-extension.json", &m), ("main.js", js)];
    many.extend(names.iter().map(|n| (n.as_str(), js)));
    cases.push((
        "too many files",
        zip_of(&many, stored()),
        "archive_too_large",
    ));
    // Too many bytes in all: 3 × 512 KiB of noise against a 1 MiB cap.
    let (a, b, c) = (
        noise(512 * 1024, 1),
        noise(512 * 1024, 2),
        noise(512 * 1024, 3),
    );
    cases.push((
        "too large in total",
        zip_of(
            &[
                ("tandem-extension.json", &m),
                ("main.js", js),
                ("a.bin", &a),
                ("b.bin", &b),
                ("c.bin", &c),
            ],
            stored(),
        ),
        "archive_too_large",
    ));
    // An entry that lies about its size: declared 5 bytes, holds 80.
    let body = [b'x'; 80];
    let lying = zip_of(
        &[("main.js", &body[..]), ("tandem-extension.json", &m)],
        stored(),
    );
    let lying = {
        let mut z = lying;
        // Local header of the first entry: uncompressed size at offset 22.
        z[22..26].copy_from_slice(&5u32.to_le_bytes());
        let cd = z
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        z[cd + 24..cd + 28].copy_from_slice(&5u32.to_le_bytes());
        z
    };
    cases.push(("lying size", lying, "invalid_archive"));
    // Manifests.
    let manifest_zip = |mf: &[u8]| {
        zip_of(
            &[("tandem-extension.json", mf), ("main.js", js)],
            deflated(),
        )
    };
    cases.push((
        "missing manifest",
        zip_of(&[("main.js", js)], deflated()),
        "invalid_manifest",
    ));
    cases.push((
        "manifest not JSON",
        manifest_zip(b"{not json"),
        "invalid_manifest",
    ));
    cases.push((
        "entry missing",
        manifest_zip(&manifest("1.0.0", "dist/none.js")),
        "invalid_manifest",
    ));
    let bad = |patch: Value| {
        let mut v: Value = serde_json::from_slice(&manifest("1.0.0", "main.js")).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.to_string().into_bytes()
    };
    cases.push((
        "bad kind",
        manifest_zip(&bad(json!({"kind": "widget"}))),
        "invalid_manifest",
    ));
    cases.push((
        "bad version",
        manifest_zip(&bad(json!({"version": "1.0"}))),
        "invalid_manifest",
    ));
    cases.push((
        "bad id",
        manifest_zip(&bad(json!({"id": "../evil"}))),
        "invalid_manifest",
    ));
    cases.push((
        "unsupported schema",
        manifest_zip(&bad(json!({"settingsSchema": {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}}))),
        "invalid_manifest",
    ));

    for (what, zip, code) in cases {
        let a = upload(&app, &owner.token, &org, zip).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            a.body
        );
        assert_eq!(a.code(), code, "{what}: {}", a.body);
    }
    // Not a zip media type.
    let a = upload_as(
        &app,
        &owner.token,
        &org,
        good_zip("1.0.0"),
        "application/json",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", a.body);
    // Nothing was installed.
    let list = app
        .get(&format!("/orgs/{org}/extensions"), &owner.token)
        .await;
    assert_eq!(list.body["items"], json!([]), "{}", list.body);
    // The good archive passes on the same server.
    let a = upload(&app, &owner.token, &org, good_zip("1.0.0")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

async fn put_ext(app: &TestApp, token: &str, ws: &str, body: Value) -> Answer {
    app.call(
        reqwest::Method::PUT,
        &format!("/workspaces/{ws}/extensions/acme.greeter"),
        Some(token),
        Some(body),
    )
    .await
}

async fn get_file(
    app: &TestApp,
    token: &str,
    ws: &str,
    path: &str,
    etag: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!(
            "{}/workspaces/{ws}/extensions/acme.greeter/files/{path}",
            app.base
        ))
        .bearer_auth(token);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    req.send().await.unwrap()
}

async fn installs_enables_and_serves(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let o = app.org("owner@acme.test", "Owner").await;
    let (owner, org, ws) = (&o.owner, o.id.clone(), o.team.clone());
    let member = app.signup("member@acme.test", "Member").await;
    let outsider = app.signup("someone@other.test", "Outsider").await;
    assert_eq!(app.org_of(&member).await, org);

    // Only the org's owners install; outsiders do not see the org.
    let a = upload(&app, &member.token, &org, good_zip("1.0.0")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = upload(&app, &outsider.token, &org, good_zip("1.0.0")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let a = upload(&app, &owner.token, &org, good_zip("1.0.0")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["id"], "acme.greeter");
    assert_eq!(a.body["kind"], "plugin");
    assert_eq!(a.body["fileCount"], 4);
    // The same version again is a conflict; a newer one upgrades.
    let a = upload(&app, &owner.token, &org, good_zip("1.0.0")).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    let a = upload(&app, &owner.token, &org, good_zip("1.1.0")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["version"], "1.1.0");
    let list = app
        .get(&format!("/orgs/{org}/extensions"), &member.token)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // Not enabled yet: nothing listed, files hidden.
    let wl = app
        .get(&format!("/workspaces/{ws}/extensions"), &member.token)
        .await;
    assert_eq!(wl.body["items"], json!([]), "{}", wl.body);
    assert_eq!(
        get_file(&app, &member.token, &ws, "dist/main.js", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Members (editors of the team workspace) may not enable.
    let a = put_ext(
        &app,
        &member.token,
        &ws,
        json!({"enabled": true, "settings": {"greeting": "hi"}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    // Settings are checked against the schema.
    for bad in [
        json!({"enabled": true}),
        json!({"enabled": true, "settings": {}}),
        json!({"enabled": true, "settings": {"greeting": 3}}),
        json!({"enabled": true, "settings": {"greeting": "hi", "times": 9}}),
        json!({"enabled": true, "settings": {"greeting": "hi", "tone": "loud"}}),
        json!({"enabled": true, "settings": {"greeting": "hi", "extra": true}}),
    ] {
        let a = put_ext(&app, &owner.token, &ws, bad.clone()).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            a.body
        );
        assert_eq!(a.code(), "invalid_settings", "{bad}");
    }
    let settings = json!({"greeting": "hello", "times": 2, "tone": "warm"});
    let a = put_ext(
        &app,
        &owner.token,
        &ws,
        json!({"enabled": true, "settings": settings}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["settings"], settings);

    // Members see it and load its files, with the safety headers.
    let wl = app
        .get(&format!("/workspaces/{ws}/extensions"), &member.token)
        .await;
    let items = wl.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", wl.body);
    assert_eq!(items[0]["settings"], settings);
    assert_eq!(items[0]["extension"]["version"], "1.1.0");
    let entry_url = items[0]["entryUrl"].as_str().unwrap().to_string();
    let res = app
        .client
        .get(format!("{}{entry_url}", app.base))
        .bearer_auth(&member.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("connect-src 'none'"),
        "{csp}"
    );
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(res.bytes().await.unwrap().as_ref(), MAIN_JS);
    let again = get_file(&app, &member.token, &ws, "dist/main.js", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let css = get_file(&app, &member.token, &ws, "dist/style.css", None).await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        get_file(&app, &member.token, &ws, "dist/none.js", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Outsiders see nothing.
    let a = app
        .get(&format!("/workspaces/{ws}/extensions"), &outsider.token)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get_file(&app, &outsider.token, &ws, "dist/main.js", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Not in another workspace where it is not enabled.
    let personal = app.workspace(owner, "personal").await;
    assert_eq!(
        get_file(&app, &owner.token, &personal, "dist/main.js", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Disabled: gone from the list and the files 404; settings kept.
    let a = put_ext(&app, &owner.token, &ws, json!({"enabled": false})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["settings"], settings);
    assert_eq!(
        get_file(&app, &member.token, &ws, "dist/main.js", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let wl = app
        .get(&format!("/workspaces/{ws}/extensions"), &member.token)
        .await;
    assert_eq!(wl.body["items"], json!([]));

    // Deleted: only owners.
    let a = app
        .delete(
            &format!("/orgs/{org}/extensions/acme.greeter"),
            &member.token,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app
        .delete(
            &format!("/orgs/{org}/extensions/acme.greeter"),
            &owner.token,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = app
        .get(
            &format!("/orgs/{org}/extensions/acme.greeter"),
            &owner.token,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = put_ext(
        &app,
        &owner.token,
        &ws,
        json!({"enabled": true, "settings": settings}),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    app.assert_audited(
        &org,
        owner,
        &[
            "extension.install",
            "extension.upgrade",
            "extension.workspace_set",
            "extension.delete",
        ],
    )
    .await;
}

both_backends!(refuses_malicious_archives, installs_enables_and_serves);
