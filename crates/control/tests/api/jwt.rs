//! Sign-in with identity-provider JWTs: RS256, ES256 and EdDSA accepted;
//! expired, wrongly signed, `alg: none`, HS256, wrong issuer or audience refused.

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
        let header = json!({"alg": self.alg(), "typ": "JWT", "kid": kid});
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
           "iat": now(), "nbf": now() - 5, "exp": now() + 300})
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

both_backends!(jwt_sign_in_with_each_algorithm, jwt_refusals);

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
