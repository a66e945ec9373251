//! OpenID Connect login against a provider that daas must not trust blindly. The provider
//! here is a small stand-in served by the test, so that it can hand out ID tokens that are
//! tampered, expired, for another audience or with the wrong nonce; the end-to-end test
//! (tests/e2e) logs in through the real `oidc-provider` in a real browser.

use std::sync::{Arc, Mutex};

use axum::http::Method;
use axum::routing::{get, post};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    AdditionalClaims, Audience, EndUserEmail, EndUserName, EndUserUsername, IdToken, IdTokenClaims, IssuerUrl,
    JsonWebKeyId, LocalizedClaim, Nonce, PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::common::TestApp;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Extra {
    groups: Vec<String>,
    affiliation: String,
}
impl AdditionalClaims for Extra {}

type Token = IdToken<Extra, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

fn rsa_key(id: &str) -> CoreRsaPrivateSigningKey {
    let out = std::process::Command::new("openssl").args(["genrsa", "-traditional", "2048"]).output().expect("openssl");
    assert!(out.status.success(), "openssl genrsa failed");
    CoreRsaPrivateSigningKey::from_pem(std::str::from_utf8(&out.stdout).unwrap(), Some(JsonWebKeyId::new(id.into())))
        .unwrap()
}

/// What the provider saw and what it answers next.
#[derive(Default)]
struct Provider {
    /// The PKCE challenge of the last authorization request.
    challenge: String,
    /// The ID token the token endpoint hands out next.
    id_token: String,
    /// Whether the last token request carried a verifier matching the challenge.
    pkce_ok: bool,
}

struct Fixture {
    app: TestApp,
    issuer: String,
    key: CoreRsaPrivateSigningKey,
    provider: Arc<Mutex<Provider>>,
}

async fn fixture(db: PgPool) -> Fixture {
    let key = rsa_key("key-1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let provider = Arc::new(Mutex::new(Provider::default()));
    let jwks = serde_json::to_string(&CoreJsonWebKeySet::new(vec![key.as_verification_key()])).unwrap();
    let discovery = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let state = provider.clone();
    let router = axum::Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { axum::Json(discovery) }))
        .route("/jwks", get(move || async move { ([("content-type", "application/json")], jwks) }))
        .route(
            "/token",
            post(move |headers: axum::http::HeaderMap, body: String| async move {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
                let basic = format!("Basic {}", STANDARD.encode("daas:s3cret"));
                let authorised = headers.get("authorization").is_some_and(|v| v == basic.as_str());
                let mut p = state.lock().unwrap();
                p.pkce_ok = URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes())) == p.challenge;
                if !authorised || !p.pkce_ok || field("code") != "the-code" {
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        axum::Json(serde_json::json!({"error": "invalid_grant"})),
                    );
                }
                (
                    axum::http::StatusCode::OK,
                    axum::Json(serde_json::json!({
                        "access_token": "at", "token_type": "Bearer", "expires_in": 60, "id_token": p.id_token,
                    })),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let url = issuer.clone();
    let app = TestApp::with_config(db, move |c| {
        c.web.oidc_issuer = Some(url.parse().unwrap());
        c.web.oidc_client_id = Some("daas".into());
        c.web.oidc_client_secret = Some(daas::config::Secret("s3cret".into()));
    })
    .await;
    Fixture { app, issuer, key, provider }
}

struct Claims {
    sub: &'static str,
    username: &'static str,
    groups: Vec<String>,
    audience: &'static str,
    expires_in: i64,
    nonce: Option<String>,
}

impl Claims {
    fn new(sub: &'static str, username: &'static str) -> Self {
        Claims { sub, username, groups: vec![], audience: "daas", expires_in: 300, nonce: None }
    }
}

impl Fixture {
    fn sign(&self, c: &Claims, nonce: &str, key: &CoreRsaPrivateSigningKey) -> String {
        let now = chrono::Utc::now();
        let mut name = LocalizedClaim::new();
        name.insert(None, EndUserName::new(format!("{} (from the IdP)", c.username)));
        let standard = StandardClaims::new(SubjectIdentifier::new(c.sub.into()))
            .set_preferred_username(Some(EndUserUsername::new(c.username.into())))
            .set_email(Some(EndUserEmail::new(format!("{}@idp.example", c.username))))
            .set_name(Some(name));
        let claims = IdTokenClaims::new(
            IssuerUrl::new(self.issuer.clone()).unwrap(),
            vec![Audience::new(c.audience.into())],
            now + chrono::Duration::seconds(c.expires_in),
            now - chrono::Duration::seconds(600),
            standard,
            Extra { groups: c.groups.clone(), affiliation: "University of the IdP".into() },
        )
        .set_nonce(Some(Nonce::new(c.nonce.clone().unwrap_or_else(|| nonce.to_string()))));
        Token::new(claims, key, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, None, None).unwrap().to_string()
    }

    /// Goes through daas's login with the provider answering `token(nonce)`.
    async fn login(&self, token: impl FnOnce(&str) -> String) -> crate::common::Response {
        let start = self.app.browse(Method::GET, "/login/oidc?next=/proposals/20180101", None, None, &[]).await;
        assert_eq!(start.status, 303, "{}", start.text);
        let location = url::Url::parse(start.headers["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(&format!("{}/auth?", self.issuer)));
        let q = |k: &str| location.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned()).unwrap();
        assert_eq!(q("code_challenge_method"), "S256");
        assert_eq!(q("redirect_uri"), "http://localhost:8080/login/oidc/callback");
        let (state, nonce) = (q("state"), q("nonce"));
        {
            let mut p = self.provider.lock().unwrap();
            p.challenge = q("code_challenge");
            p.id_token = token(&nonce);
        }
        self.app
            .browse(Method::GET, &format!("/login/oidc/callback?code=the-code&state={state}"), None, None, &[])
            .await
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_valid_login_links_the_imported_account_and_maps_the_role(db: PgPool) {
    let f = fixture(db).await;
    let mut claims = Claims::new("sub-alice", "alice");
    claims.groups = vec!["staff".into(), "daas-scientist".into()];
    let response = f.login(|nonce| f.sign(&claims, nonce, &f.key)).await;
    assert_eq!(response.status, 303, "{}", response.text);
    assert_eq!(response.headers["location"], "/proposals/20180101");
    assert!(f.provider.lock().unwrap().pkce_ok, "daas sent the PKCE verifier");
    let (subject, role, name, affiliation): (String, String, String, String) =
        sqlx::query_as("select subject, role, display_name, affiliation from users where username = 'alice'")
            .fetch_one(&f.app.db)
            .await
            .unwrap();
    assert_eq!(subject, "sub-alice", "the user office's alice is now linked to the IdP's subject");
    assert_eq!(role, "scientist");
    assert_eq!(name, "alice (from the IdP)");
    assert_eq!(affiliation, "University of the IdP");
    let cookie = response.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_eq!(f.app.browse(Method::GET, "/proposals/20180101", Some(&cookie), None, &[]).await.status, 200);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_new_subject_becomes_a_new_user_with_a_free_username(db: PgPool) {
    let f = fixture(db).await;
    // "bob" is taken by a linked account? No: bob has no subject, so a different subject
    // with preferred_username bob would take over bob's account. Link bob first.
    sqlx::query("update users set subject = 'sub-bob' where username = 'bob'").execute(&f.app.db).await.unwrap();
    let claims = Claims::new("sub-other-bob", "bob");
    let response = f.login(|nonce| f.sign(&claims, nonce, &f.key)).await;
    assert_eq!(response.status, 303, "{}", response.text);
    let username: String = sqlx::query_scalar("select username from users where subject = 'sub-other-bob'")
        .fetch_one(&f.app.db)
        .await
        .unwrap();
    assert_eq!(username, "bob-2");
    let role: String =
        sqlx::query_scalar("select role from users where username = 'bob-2'").fetch_one(&f.app.db).await.unwrap();
    assert_eq!(role, "user");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn tampered_expired_foreign_and_replayed_tokens_are_refused(db: PgPool) {
    let f = fixture(db).await;
    let other_key = rsa_key("key-1");
    let refused = |response: &crate::common::Response| {
        assert_eq!(response.status, 401, "{}", response.text);
        assert!(response.headers.get("set-cookie").is_none(), "no session for a refused login");
    };
    // Tampered: the payload changed after signing.
    let tampered = f
        .login(|nonce| {
            let token = f.sign(&Claims::new("sub-alice", "alice"), nonce, &f.key);
            let parts: Vec<&str> = token.split('.').collect();
            let payload =
                String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap().replace("sub-alice", "sub-admin");
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload), parts[2])
        })
        .await;
    refused(&tampered);
    // Expired.
    let mut expired = Claims::new("sub-alice", "alice");
    expired.expires_in = -60;
    refused(&f.login(|nonce| f.sign(&expired, nonce, &f.key)).await);
    // Signed by a key the provider does not publish.
    refused(&f.login(|nonce| f.sign(&Claims::new("sub-alice", "alice"), nonce, &other_key)).await);
    // For another client.
    let mut foreign = Claims::new("sub-alice", "alice");
    foreign.audience = "another-app";
    refused(&f.login(|nonce| f.sign(&foreign, nonce, &f.key)).await);
    // With the nonce of another login.
    let mut replayed = Claims::new("sub-alice", "alice");
    replayed.nonce = Some("a-nonce-from-an-earlier-login-0123456789".into());
    refused(&f.login(|nonce| f.sign(&replayed, nonce, &f.key)).await);

    let linked: Option<String> =
        sqlx::query_scalar("select subject from users where username = 'alice'").fetch_one(&f.app.db).await.unwrap();
    assert_eq!(linked, None, "nothing was written for a refused login");
    let sessions: i64 = sqlx::query_scalar("select count(*) from browser_sessions").fetch_one(&f.app.db).await.unwrap();
    assert_eq!(sessions, 0);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_state_works_once(db: PgPool) {
    let f = fixture(db).await;
    let claims = Claims::new("sub-alice", "alice");
    let start = f.app.browse(Method::GET, "/login/oidc", None, None, &[]).await;
    let location = url::Url::parse(start.headers["location"].to_str().unwrap()).unwrap();
    let q = |k: &str| location.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned()).unwrap();
    {
        let mut p = f.provider.lock().unwrap();
        p.challenge = q("code_challenge");
        p.id_token = f.sign(&claims, &q("nonce"), &f.key);
    }
    let callback = format!("/login/oidc/callback?code=the-code&state={}", q("state"));
    assert_eq!(f.app.browse(Method::GET, &callback, None, None, &[]).await.status, 303);
    let again = f.app.browse(Method::GET, &callback, None, None, &[]).await;
    assert_eq!(again.status, 401);
    assert!(again.text.contains("expired or was already used"));
    let unknown = f.app.browse(Method::GET, "/login/oidc/callback?code=the-code&state=made-up", None, None, &[]).await;
    assert_eq!(unknown.status, 401);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_disabled_account_cannot_log_in_through_the_provider(db: PgPool) {
    let f = fixture(db).await;
    daas::auth::users::set_enabled(&f.app.db, "alice", false).await.unwrap();
    let response = f.login(|nonce| f.sign(&Claims::new("sub-alice", "alice"), nonce, &f.key)).await;
    assert_eq!(response.status, 401);
    assert!(response.text.contains("your account is disabled"));
}
