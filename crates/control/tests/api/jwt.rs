//! Sign-in with identity-provider JWTs: RS256, ES256 and EdDSA accepted;
//! expired, wrongly signed, `alg: none`, HS256, `crit`, wrong issuer or
//! audience refused; `email_verified` decides the org; no linking to
//! unverified password accounts; `iss`/`aud` required at startup.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

const RSA_PKCS8: &[u8] = include_bytes!("../fixtures/rsa2048-test-only.pk8");
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "tandem-app";

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct Keys {
    rsa: Signer,
    ec: Signer,
    ed: Signer,
    /// A second Ed25519 key, not in the JWKS.
    stranger: Signer,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ed25519() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

impl Keys {
    fn new() -> Keys {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Keys {
            rsa: Signer::Rsa(RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap()),
            ec: Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, ec_pkcs8.as_ref(), &rng).unwrap()),
            ed: Signer::Ed(ed25519()),
            stranger: Signer::Ed(ed25519()),
        }
    }

    fn jwks(&self) -> Value {
        let (Signer::Rsa(rsa), Signer::Ec(ec), Signer::Ed(ed)) = (&self.rsa, &self.ec, &self.ed)
        else {
            unreachable!()
        };
        let point = ec.public_key().as_ref();
        let rsa_pub = signature::RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
        json!({"keys": [
            {"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig",
             "n": b64(&rsa_pub.n),
             "e": b64(&rsa_pub.e)},
            {"kty": "EC", "kid": "ec1", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
            {"kty": "OKP", "kid": "ed1", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())},
            {"kty": "oct", "kid": "hmac1", "k": b64(b"shared-secret")}
        ]})
    }
}

impl Signer {
    fn alg(&self) -> &'static str {
        match self {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .unwrap();
                sig
            }
            Signer::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    fn token(&self, kid: &str, claims: &Value) -> String {
        self.token_with_header(
            &json!({"alg": self.alg(), "typ": "JWT", "kid": kid}),
            claims,
        )
    }

    fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&sig))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str, email: &str) -> Value {
    json!({"sub": sub, "email": email, "name": "Idp User", "iss": ISSUER, "azp": AUDIENCE,
           "email_verified": true, "iat": now(), "nbf": now() - 5, "exp": now() + 300})
}

async fn app_with_keys(
    backend: Backend,
    keys: &Keys,
    jwks_location: Option<String>,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, keys.jwks().to_string()).unwrap();
    let location = jwks_location.unwrap_or_else(|| path.display().to_string());
    let app = TestApp::spawn_with(backend, |c| {
        c.jwks = Some(location);
        c.jwt_issuer = Some(ISSUER.into());
        c.jwt_audience = vec![AUDIENCE.into()];
    })
    .await;
    (app, dir)
}

both_backends!(
    jwt_sign_in_with_each_algorithm,
    jwt_refusals,
    unverified_idp_email_stays_personal,
    idp_never_links_to_unverified_password_accounts,
);

async fn jwt_sign_in_with_each_algorithm(backend: Backend) {
    let keys = Keys::new();
    let (app, _dir) = app_with_keys(backend, &keys, None).await;
    for (signer, kid, sub, email) in [
        (&keys.rsa, "rsa1", "user_rsa", "rita@idp-corp.com"),
        (&keys.ed, "ed1", "user_ed", "ed@idp-corp.com"),
        (&keys.ec, "ec1", "user_ec", "eve@gmail.com"),
    ] {
        let token = signer.token(kid, &claims(sub, email));
        let s = app.get("/auth/session", &token).await;
        assert_eq!(
            s.status,
            StatusCode::OK,
            "{} sign-in: {}",
            signer.alg(),
            s.body
        );
        assert_eq!(s.body["user"]["email"], email);
        assert_eq!(s.body["user"]["displayName"], "Idp User");
        // The same subject signs in as the same user.
        let again = app
            .get("/auth/session", &signer.token(kid, &claims(sub, email)))
            .await;
        assert_eq!(again.body["user"]["id"], s.body["user"]["id"]);
    }
    // First sign-in rules apply to IdP users too: rita owns idp-corp.com, ed joins it.
    let rita = app
        .get(
            "/auth/session",
            &keys
                .rsa
                .token("rsa1", &claims("user_rsa", "rita@idp-corp.com")),
        )
        .await;
    let ed = app
        .get(
            "/auth/session",
            &keys.ed.token("ed1", &claims("user_ed", "ed@idp-corp.com")),
        )
        .await;
    assert_eq!(rita.body["user"]["orgRole"], "owner");
    assert_eq!(ed.body["user"]["orgRole"], "member");
    assert_eq!(rita.body["org"]["id"], ed.body["org"]["id"]);
}

async fn jwt_refusals(backend: Backend) {
    let keys = Keys::new();
    let (app, _dir) = app_with_keys(backend, &keys, None).await;
    let good = claims("user_x", "x@refuse.dev");
    let mut cases: Vec<(&str, String)> = Vec::new();

    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    cases.push(("expired", keys.ed.token("ed1", &expired)));

    let mut early = good.clone();
    early["nbf"] = json!(now() + 3600);
    cases.push(("not yet valid", keys.ed.token("ed1", &early)));

    cases.push((
        "signed by a key not in the JWKS",
        keys.stranger.token("ed1", &good),
    ));
    cases.push(("unknown kid", keys.ed.token("nope", &good)));

    let mut other_iss = good.clone();
    other_iss["iss"] = json!("https://evil.test");
    cases.push(("wrong issuer", keys.rsa.token("rsa1", &other_iss)));

    let mut other_aud = good.clone();
    other_aud["azp"] = json!("other-app");
    cases.push(("wrong audience", keys.rsa.token("rsa1", &other_aud)));

    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", keys.ed.token("ed1", &no_exp)));

    let payload = b64(good.to_string().as_bytes());
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    cases.push(("alg none", format!("{none_header}.{payload}.")));
    cases.push((
        "alg none with a signature",
        format!("{none_header}.{payload}.c2ln"),
    ));

    // HS256 signed with the `oct` key the JWKS publishes: an alg-confusion attempt.
    let hs_header = b64(br#"{"alg":"HS256","typ":"JWT","kid":"hmac1"}"#);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"shared-secret");
    let tag = ring::hmac::sign(&key, format!("{hs_header}.{payload}").as_bytes());
    cases.push((
        "HS256",
        format!("{hs_header}.{payload}.{}", b64(tag.as_ref())),
    ));

    // The RSA-signed token relabelled as ES256.
    let rs = keys.rsa.token("rsa1", &good);
    let parts: Vec<&str> = rs.split('.').collect();
    let relabelled = b64(br#"{"alg":"ES256","kid":"rsa1"}"#);
    cases.push((
        "alg swapped",
        format!("{relabelled}.{}.{}", parts[1], parts[2]),
    ));

    let mut tampered_claims = good.clone();
    tampered_claims["sub"] = json!("someone_else");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(tampered_claims.to_string().as_bytes()),
        parts[2]
    );
    cases.push(("tampered payload", tampered));
    cases.push(("garbage", "a.b.c".to_string()));

    // A critical header extension, in any form.
    for crit in [json!(["exp"]), json!([]), Value::Null] {
        let header = json!({"alg": "EdDSA", "kid": "ed1", "crit": crit, "exp": 1});
        cases.push(("crit", keys.ed.token_with_header(&header, &good)));
    }

    for (what, token) in cases {
        let a = app.get("/auth/session", &token).await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "{what} was accepted: {}",
            a.body
        );
        assert_eq!(a.code(), "unauthorized", "{what}");
    }
    // And nothing above created a user.
    let ok = app.get("/auth/session", &keys.ed.token("ed1", &good)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.body["user"]["orgRole"], "owner",
        "user_x is the first of refuse.dev"
    );
}

/// Keys can come from a JWKS URL (as Clerk publishes them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_from_a_url() {
    let keys = Keys::new();
    let body = keys.jwks().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let res = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(res.as_bytes()).await;
        }
    });
    let (app, _dir) = app_with_keys(Backend::Sqlite, &keys, Some(url)).await;
    let token = keys.ec.token("ec1", &claims("url_user", "u@url.dev"));
    let a = app.get("/auth/session", &token).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// An IdP that does not vouch for the address gets the user a solo org;
/// once it does, they join their domain like a verified password user.
async fn unverified_idp_email_stays_personal(backend: Backend) {
    let keys = Keys::new();
    let (app, _dir) = app_with_keys(backend, &keys, None).await;
    let owner = app
        .get(
            "/auth/session",
            &keys
                .ed
                .token("ed1", &claims("owner_sub", "owner@vouch.dev")),
        )
        .await;
    assert_eq!(owner.body["user"]["orgRole"], "owner");
    let team = owner.body["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["type"] == "team")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    for flag in [json!(false), json!("false"), Value::Null] {
        let mut c = claims("shady_sub", "shady@vouch.dev");
        c["email_verified"] = flag.clone();
        let token = keys.ed.token("ed1", &c);
        let s = app.get("/auth/session", &token).await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        assert_eq!(s.body["user"]["emailVerified"], false, "{flag}");
        assert_eq!(
            s.body["org"]["domain"],
            format!("personal-{}", s.body["user"]["id"].as_str().unwrap())
        );
        let peek = app
            .get(&format!("/workspaces/{team}/projects"), &token)
            .await;
        assert_eq!(peek.status, StatusCode::NOT_FOUND, "{flag}");
    }
    // The provider now vouches (as the string some providers send).
    let mut c = claims("shady_sub", "shady@vouch.dev");
    c["email_verified"] = json!("true");
    let s = app.get("/auth/session", &keys.ed.token("ed1", &c)).await;
    assert_eq!(s.body["user"]["emailVerified"], true);
    assert_eq!(s.body["user"]["orgRole"], "member");
    assert_eq!(s.body["org"]["id"], owner.body["org"]["id"]);
}

/// An IdP identity never takes over a password account by email alone.
async fn idp_never_links_to_unverified_password_accounts(backend: Backend) {
    let keys = Keys::new();
    let (app, _dir) = app_with_keys(backend, &keys, None).await;
    let pw = app.signup_unverified("pat@link.dev", "Pat").await;
    let jwt = keys.ed.token("ed1", &claims("pat_sub", "pat@link.dev"));
    let refused = app.get("/auth/session", &jwt).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not verified"),
        "{}",
        refused.body
    );
    let link = |password: &'static str| {
        app.post("/auth/link-identity", &jwt, json!({ "password": password }))
    };
    // Not even with the password while the address is unverified.
    let a = link("password123").await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);

    assert_eq!(app.verify(&pw).await.status, StatusCode::OK);
    let still = app.get("/auth/session", &jwt).await;
    assert_eq!(still.status, StatusCode::CONFLICT, "no silent linking");
    assert!(still.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/auth/link-identity"));
    assert_eq!(
        link("wrong-password").await.status,
        StatusCode::UNAUTHORIZED
    );
    let linked = link("password123").await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    assert_eq!(linked.body["user"]["id"], pw.id.as_str());
    let s = app.get("/auth/session", &jwt).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.body["user"]["id"], pw.id.as_str());
    // Linked once: another subject with the same email is refused.
    let other = keys.ed.token("ed1", &claims("other_sub", "pat@link.dev"));
    assert_eq!(
        app.get("/auth/session", &other).await.status,
        StatusCode::CONFLICT
    );
    // Without a JWT there is nothing to link.
    let a = app
        .post(
            "/auth/link-identity",
            &pw.token,
            json!({ "password": "password123" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

/// With `TANDEM_JWKS` set, control does not start without both issuer and
/// audience, unless explicitly told to accept any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_required_at_startup() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, keys.jwks().to_string()).unwrap();
    let db = crate::helpers::TestDb::new(Backend::Sqlite);
    let config = |issuer: Option<&str>, audience: &[&str], allow: bool| {
        let mut c = tandem_control::ControlConfig::for_tests(&db.url);
        c.jwks = Some(jwks.display().to_string());
        c.jwt_issuer = issuer.map(String::from);
        c.jwt_audience = audience.iter().map(|a| a.to_string()).collect();
        c.jwt_allow_any_issuer_audience = allow;
        c
    };
    for (issuer, audience) in [
        (None, vec![]),
        (Some(ISSUER), vec![]),
        (None, vec![AUDIENCE]),
    ] {
        let err = tandem_control::Application::build(config(issuer, &audience, false))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("TANDEM_JWT_ISSUER"), "{err}");
    }
    let waived = tandem_control::Application::build(config(None, &[], true)).await;
    assert!(waived.is_ok(), "the explicit opt-out starts");
    let full = tandem_control::Application::build(config(Some(ISSUER), &[AUDIENCE], false)).await;
    assert!(full.is_ok());
}
