//! OpenID Connect login: discovery, authorization code with PKCE, state and nonce, ID
//! token validation (signature, issuer, audience, expiry, nonce), then the user is created
//! or updated from the claims and their role mapped from a configurable claim.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::auth::identity::Role;
use crate::config::WebArgs;

/// How long discovered provider metadata (and its signing keys) is trusted before it is
/// fetched again, so a key rotation at the provider is picked up.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// How long a login may sit at the provider's page.
pub const LOGIN_TTL_MINUTES: i32 = 10;

pub struct Oidc {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    /// Shown on the login button.
    pub name: String,
    role_claim: String,
    admin_values: Vec<String>,
    scientist_values: Vec<String>,
    affiliation_claim: String,
    http: reqwest::Client,
    metadata: RwLock<Option<(CoreProviderMetadata, Instant)>>,
}

/// A failed login, as the user is told about it.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this login link has expired or was already used; please log in again")]
    UnknownState,
    #[error("the identity provider refused the login: {0}")]
    Provider(String),
    #[error("the identity provider's answer could not be verified")]
    BadToken(#[source] anyhow::Error),
    #[error("your account is disabled")]
    Disabled,
    #[error("the identity provider cannot be reached")]
    Unreachable(#[source] anyhow::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Oidc {
    pub fn from_config(web: &WebArgs) -> Option<Self> {
        let issuer = web.oidc_issuer.as_ref()?;
        let client_id = web.oidc_client_id.clone()?;
        let redirect = web.public_url.join("/login/oidc/callback").ok()?;
        let http = reqwest::Client::builder()
            // The token endpoint must answer directly: following redirects invites SSRF.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        Some(Self {
            issuer: IssuerUrl::new(issuer.as_str().trim_end_matches('/').to_string()).ok()?,
            client_id: ClientId::new(client_id),
            client_secret: web.oidc_client_secret.as_ref().map(|s| ClientSecret::new(s.0.clone())),
            redirect: RedirectUrl::new(redirect.to_string()).ok()?,
            name: web.oidc_name.clone(),
            role_claim: web.oidc_role_claim.clone(),
            admin_values: web.oidc_admin_values.clone(),
            scientist_values: web.oidc_scientist_values.clone(),
            affiliation_claim: web.oidc_affiliation_claim.clone(),
            http,
            metadata: RwLock::new(None),
        })
    }

    async fn metadata(&self, refresh: bool) -> anyhow::Result<CoreProviderMetadata> {
        if !refresh {
            if let Some((metadata, at)) = &*self.metadata.read().await {
                if at.elapsed() < METADATA_TTL {
                    return Ok(metadata.clone());
                }
            }
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .with_context(|| format!("OIDC discovery at {} failed", self.issuer.as_str()))?;
        *self.metadata.write().await = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// Starts a login: remembers state, nonce and PKCE verifier, and returns the provider's
    /// authorization URL to redirect the browser to.
    pub async fn start_login(&self, db: &PgPool, return_to: &str) -> anyhow::Result<url::Url> {
        let metadata = self.metadata(false).await?;
        let client = CoreClient::from_provider_metadata(metadata, self.client_id.clone(), self.client_secret.clone())
            .set_redirect_uri(self.redirect.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            // 256-bit state and nonce (the crate's defaults are 128-bit).
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new(super::tokens::generate("").0),
                || Nonce::new(super::tokens::generate("").0),
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let mut tx = db.begin().await?;
        sqlx::query("delete from oidc_logins where created_at < now() - make_interval(mins => $1)")
            .bind(LOGIN_TTL_MINUTES)
            .execute(&mut *tx)
            .await?;
        sqlx::query("insert into oidc_logins (state, nonce, pkce_verifier, return_to) values ($1, $2, $3, $4)")
            .bind(state.secret())
            .bind(nonce.secret())
            .bind(verifier.secret())
            .bind(return_to)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(url)
    }

    /// Finishes a login at the callback: the state must be one we issued and not used yet;
    /// the code is exchanged (with the PKCE verifier) and the ID token verified. Returns
    /// the user (created or updated from the claims) and where to go next.
    pub async fn finish_login(&self, db: &PgPool, state: &str, code: &str) -> Result<(Uuid, String), LoginError> {
        let pending: Option<(String, String, String)> = sqlx::query_as(
            "delete from oidc_logins where state = $1 and created_at > now() - make_interval(mins => $2)
             returning nonce, pkce_verifier, return_to",
        )
        .bind(state)
        .bind(LOGIN_TTL_MINUTES)
        .fetch_optional(db)
        .await?;
        let (nonce, verifier, return_to) = pending.ok_or(LoginError::UnknownState)?;
        let metadata = self.metadata(false).await.map_err(LoginError::Unreachable)?;
        let client = CoreClient::from_provider_metadata(metadata, self.client_id.clone(), self.client_secret.clone())
            .set_redirect_uri(self.redirect.clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| LoginError::Unreachable(e.into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    LoginError::Provider(r.error_description().cloned().unwrap_or_else(|| r.error().to_string()))
                }
                other => LoginError::Unreachable(anyhow::anyhow!("{other}")),
            })?;
        let id_token = response.id_token().ok_or_else(|| LoginError::BadToken(anyhow::anyhow!("no ID token")))?;
        let nonce = Nonce::new(nonce);
        let verifier = client.id_token_verifier();
        let verified = id_token.claims(&verifier, &nonce).map(|c| c.subject().to_string());
        let subject = match verified {
            Ok(subject) => subject,
            Err(first) => {
                // Perhaps the provider rotated its keys: fetch them once more, then give up.
                let metadata = self.metadata(true).await.map_err(LoginError::Unreachable)?;
                let client =
                    CoreClient::from_provider_metadata(metadata, self.client_id.clone(), self.client_secret.clone());
                let verifier = client.id_token_verifier();
                id_token
                    .claims(&verifier, &nonce)
                    .map(|c| c.subject().to_string())
                    .map_err(|_| LoginError::BadToken(anyhow::anyhow!("{first}")))?
            }
        };
        // The signature is verified: the payload can be read for the claims daas maps.
        let payload = id_token.to_string();
        let claims: Value = payload
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| LoginError::BadToken(anyhow::anyhow!("unreadable payload")))?;
        let user = self.upsert_user(db, &subject, &claims).await?;
        Ok((user, return_to))
    }

    fn role_of(&self, claims: &Value) -> Option<Role> {
        let values: Vec<&str> = match claims.get(&self.role_claim)? {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => return None,
        };
        let has = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v));
        Some(if has(&self.admin_values) {
            Role::Admin
        } else if has(&self.scientist_values) {
            Role::Scientist
        } else {
            Role::User
        })
    }

    /// Finds the user by subject; else links an account imported from the user office
    /// with the same username and no subject yet; else creates one.
    async fn upsert_user(&self, db: &PgPool, subject: &str, claims: &Value) -> Result<Uuid, LoginError> {
        let text = |key: &str| claims.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        let preferred = text("preferred_username").or_else(|| text("email").and_then(|e| e.split('@').next()));
        let username = username_from(preferred.unwrap_or(subject));
        let name = text("name").unwrap_or(&username).to_string();
        let email = text("email").filter(|e| e.contains('@') && !e.contains(char::is_whitespace));
        let affiliation = text(&self.affiliation_claim);
        let role = self.role_of(claims).map(Role::as_str);

        let mut tx = db.begin().await?;
        let mut existing: Option<(Uuid, bool)> =
            sqlx::query_as("select id, enabled from users where subject = $1 for update")
                .bind(subject)
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_none() {
            existing =
                sqlx::query_as("select id, enabled from users where subject is null and username = $1 for update")
                    .bind(&username)
                    .fetch_optional(&mut *tx)
                    .await?;
        }
        let id = match existing {
            Some((_, false)) => return Err(LoginError::Disabled),
            Some((id, true)) => {
                sqlx::query(
                    "update users set subject = $2, display_name = $3, email = coalesce($4, email),
                         affiliation = coalesce($5, affiliation), role = coalesce($6, role), updated_at = now()
                     where id = $1",
                )
                .bind(id)
                .bind(subject)
                .bind(&name)
                .bind(email)
                .bind(affiliation)
                .bind(role)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                // A taken username gets a numbered suffix.
                let taken: Vec<String> = sqlx::query_scalar("select username from users where username like $1 || '%'")
                    .bind(&username)
                    .fetch_all(&mut *tx)
                    .await?;
                let free = std::iter::once(username.clone())
                    .chain((2..).map(|n| format!("{}-{n}", &username[..username.len().min(58)])))
                    .find(|u| !taken.contains(u))
                    .expect("an unbounded sequence has a free name");
                sqlx::query_scalar(
                    "insert into users (username, subject, display_name, email, affiliation, role)
                     values ($1, $2, $3, $4, $5, coalesce($6, 'user')) returning id",
                )
                .bind(free)
                .bind(subject)
                .bind(&name)
                .bind(email)
                .bind(affiliation)
                .bind(role)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok(id)
    }
}

/// A valid daas username from whatever the provider offers.
fn username_from(raw: &str) -> String {
    let mut name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name = format!("u{}", &name[..name.len().min(63)]);
    }
    name
}

#[cfg(test)]
mod tests {
    #[test]
    fn usernames_are_made_valid() {
        assert_eq!(super::username_from("Alice.Martin"), "alice.martin");
        assert_eq!(super::username_from("_x y"), "u_x-y");
        assert_eq!(super::username_from("Zoë"), "zo-");
        assert!(crate::auth::users::check_username(&super::username_from(&"é".repeat(80))).is_ok());
    }
}
