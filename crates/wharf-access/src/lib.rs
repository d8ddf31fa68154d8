//! Who may do what: the one place where Wharf authenticates callers and authorizes
//! what they do, for the AWS APIs on `POST /` and for `/v2/` alike (DESIGN.md §7).
//!
//! - API calls are signed with SigV4 ([`Authority::authenticate_sigv4`]).
//! - `/v2/` requests carry HTTP Basic credentials ([`Authority::authenticate_basic`]):
//!   user `AWS` with a registry token from `GetAuthorizationToken` ([`token`]), or an
//!   access key id with its secret.
//! - Every action is then authorized for the caller ([`Authority::authorize`]); refusals
//!   name the principal, the action, the resource and the reason.
//! - [`RegistryGate`] puts `/v2/` behind all of this.

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;
use wharf_auth::{sigv4, Caller, Principal};
use wharf_meta::{AccessKey, IamStore, IdentityPolicy, MetaError, MetadataStore, PrincipalRef};
use wharf_registry::{AccessRequest, ApiError, Code, Gate, Grant};

pub mod token;

use wharf_policy::{
    evaluate, managed, PolicyDocument, PolicyKind, PolicySource, PrincipalInfo, RequestContext,
};

/// Name of the administrator user an account is created with.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Parses a policy stored earlier (validated when it was written).
fn parse_stored(text: &str, kind: PolicyKind, what: &str) -> Result<PolicyDocument, Refusal> {
    PolicyDocument::parse(text, kind).map_err(|e| {
        Refusal::new(
            500,
            "ServerException",
            format!("the stored policy of {what} no longer parses: {e}"),
        )
    })
}

/// How long authentication and identity-policy lookups are reused.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Access keys and identity policies looked up in the last [`CACHE_TTL`], so that a
/// burst of requests does not read the same rows for each one. IAM and STS calls
/// handled by this process clear it ([`Authority::invalidate`]), so changes made
/// here apply to the next request; changes made through another replica apply
/// within the TTL.
#[derive(Default)]
struct AuthCache {
    credentials: std::sync::Mutex<HashMap<String, (Instant, CachedCredential)>>,
    policies: std::sync::Mutex<HashMap<String, (Instant, CachedPolicies)>>,
    repositories: std::sync::Mutex<HashMap<String, (Instant, Option<String>)>>,
}

type CachedPolicies = Arc<Vec<Identity>>;

type CachedCredential = (String, Caller, Option<String>);

impl AuthCache {
    fn credential(&self, id: &str) -> Option<CachedCredential> {
        let map = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    fn put_credential(&self, id: &str, c: &CachedCredential) {
        let mut map = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        map.insert(id.to_string(), (Instant::now(), c.clone()));
    }

    fn policies(&self, key: &str) -> Option<Arc<Vec<Identity>>> {
        let map = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, p)| p.clone())
    }

    fn put_policies(&self, key: &str, p: &Arc<Vec<Identity>>) {
        let mut map = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        map.insert(key.to_string(), (Instant::now(), p.clone()));
    }

    fn repository_policy(&self, key: &str) -> Option<Option<String>> {
        let map = self.repositories.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, p)| p.clone())
    }

    fn put_repository_policy(&self, key: &str, p: &Option<String>) {
        let mut map = self.repositories.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        map.insert(key.to_string(), (Instant::now(), p.clone()));
    }

    fn clear(&self) {
        self.repositories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// An identity-based policy of a caller.
enum Identity {
    /// An AWS managed policy (parsed once per process).
    Managed(&'static (String, String, PolicyDocument)),
    /// A policy of the caller's own: (label, text, parsed).
    Own(String, String, PolicyDocument),
}

impl Identity {
    fn parts(&self) -> (&str, &str, &PolicyDocument) {
        match self {
            Identity::Managed((label, text, doc)) | Identity::Own(label, text, doc) => {
                (label, text, doc)
            }
        }
    }
}

/// An AWS managed policy by ARN, parsed once per process.
fn aws_managed(arn: &str) -> Option<&'static (String, String, PolicyDocument)> {
    type Parsed = Vec<(&'static str, (String, String, PolicyDocument))>;
    static PARSED: std::sync::OnceLock<Parsed> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            managed::all()
                .iter()
                .filter_map(|m| {
                    let doc = PolicyDocument::parse(m.document, PolicyKind::Identity).ok()?;
                    Some((m.arn, (m.label(), m.document.to_string(), doc)))
                })
                .collect()
        })
        .iter()
        .find(|(a, _)| *a == arn)
        .map(|(_, p)| p)
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// The policy engine's view of a caller.
fn principal_info(caller: &Caller) -> PrincipalInfo {
    match &caller.principal {
        Principal::User { name, path } => PrincipalInfo::user(&caller.account_id, path, name),
        Principal::AssumedRole {
            role,
            path,
            session,
        } => PrincipalInfo::assumed_role(&caller.account_id, path, role, session),
        Principal::Anonymous => PrincipalInfo::anonymous(),
    }
}

pub use token::{TokenError, TokenKey};

/// Query parameter carrying a registry token in `GetDownloadUrlForLayer` URLs.
pub const TOKEN_QUERY_PARAM: &str = "wharf-token";

/// Registry tokens are valid this long (as ECR's).
pub const TOKEN_LIFETIME_SECS: i64 = 12 * 3600;
/// Name of the server secret that signs registry tokens.
const TOKEN_SECRET: &str = "registry-token-hmac";

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// SigV4 and registry credentials are verified and IAM policies decide (default).
    #[default]
    Iam,
    /// Development only: any well-formed credentials, or none, act as the default
    /// account's administrator.
    Permissive,
}

/// Settings of the authority.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Region name (SigV4 scope, ARNs).
    pub region: String,
    /// The account of anonymous and permissive-mode requests.
    pub default_account: String,
    /// Authentication mode.
    pub mode: AuthMode,
    /// How long registry tokens are valid, in seconds ([`TOKEN_LIFETIME_SECS`] unless
    /// configured).
    pub token_lifetime_secs: i64,
}

/// A refusal in AWS terms: HTTP status, error code, and a message saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// AWS error code (`UnrecognizedClientException`, `AccessDeniedException`, ...).
    pub code: &'static str,
    /// Why.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<MetaError> for Refusal {
    fn from(e: MetaError) -> Refusal {
        Refusal::new(500, "ServerException", e.to_string())
    }
}

/// Authenticates callers and authorizes their actions.
pub struct Authority {
    cache: AuthCache,
    meta: Arc<dyn MetadataStore>,
    iam: Arc<dyn IamStore>,
    tokens: TokenKey,
    config: AccessConfig,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Authority {
    /// An authority over `meta`; loads (or creates, once for all replicas) the token
    /// signing secret.
    pub async fn new(
        meta: Arc<dyn MetadataStore>,
        iam: Arc<dyn IamStore>,
        config: AccessConfig,
    ) -> Result<Authority, MetaError> {
        let secret = meta
            .server_secret(TOKEN_SECRET, &wharf_auth::ids::random_bytes(32))
            .await?;
        if config.mode == AuthMode::Permissive {
            tracing::warn!(
                "authentication is PERMISSIVE: any credentials, or none, act as the administrator of account {}; never use this outside development",
                config.default_account
            );
        }
        Ok(Authority {
            cache: AuthCache::default(),
            meta,
            iam,
            tokens: TokenKey::new(secret),
            config,
        })
    }

    /// The policy of repository `name` of `account` (`None`: no policy, or no such
    /// repository), cached like credentials.
    async fn repository_policy(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<String>, Refusal> {
        let key = wharf_meta::qualified_name(account, name);
        if let Some(p) = self.cache.repository_policy(&key) {
            return Ok(p);
        }
        let policy = self.meta.get_repository(&key).await?.and_then(|r| r.policy);
        self.cache.put_repository_policy(&key, &policy);
        Ok(policy)
    }

    /// Forgets cached credentials, identity policies and repository policies: called
    /// after every IAM or STS call, and every ECR call that changes a repository,
    /// this process handles, so what it changed applies at once.
    pub fn invalidate(&self) {
        self.cache.clear();
    }

    /// The settings.
    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    fn admin(&self, access_key_id: Option<String>, source_ip: Option<IpAddr>) -> Caller {
        Caller {
            account_id: self.config.default_account.clone(),
            principal: Principal::User {
                name: "admin".into(),
                path: "/".into(),
            },
            access_key_id,
            source_ip,
        }
    }

    /// The active key `id`, or why not.
    async fn active_key(&self, id: &str) -> Result<AccessKey, Refusal> {
        match self.meta.get_access_key(id).await? {
            Some(k) if k.active => Ok(k),
            Some(_) => Err(Refusal::new(
                403,
                "UnrecognizedClientException",
                format!("The security token included in the request is invalid: access key {id} is inactive"),
            )),
            None => Err(Refusal::new(
                403,
                "UnrecognizedClientException",
                format!("The security token included in the request is invalid: access key {id} does not exist in this registry (deleted, or never created here)"),
            )),
        }
    }

    /// The caller signing with long-term `key`: its IAM user (with the user's path,
    /// part of its ARN).
    async fn caller_of(
        &self,
        key: &AccessKey,
        source_ip: Option<IpAddr>,
    ) -> Result<Caller, Refusal> {
        let path = match self.iam.get_user(&key.account_id, &key.user_name).await? {
            Some(user) => user.path,
            None if self.config.mode == AuthMode::Permissive => "/".to_string(),
            None => {
                return Err(Refusal::new(
                    403,
                    "UnrecognizedClientException",
                    format!(
                        "The security token included in the request is invalid: access key {} belongs to user {} of account {}, which no longer exists",
                        key.access_key_id, key.user_name, key.account_id
                    ),
                ))
            }
        };
        Ok(Caller {
            account_id: key.account_id.clone(),
            principal: Principal::User {
                name: key.user_name.clone(),
                path,
            },
            access_key_id: Some(key.access_key_id.clone()),
            source_ip,
        })
    }

    /// Authenticates a SigV4-signed request for `service`.
    #[allow(clippy::too_many_arguments)]
    pub async fn authenticate_sigv4(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        service: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<Caller, Refusal> {
        let req = sigv4::Request {
            method,
            path,
            query,
            headers,
            body,
        };
        let sig_error = |e: sigv4::SigV4Error| Refusal::new(e.status(), e.code(), e.to_string());
        let parsed = sigv4::parse(&req).map_err(sig_error)?;
        if self.config.mode == AuthMode::Permissive {
            return Ok(self.admin(Some(parsed.access_key_id), source_ip));
        }
        let (secret, caller, session_token) =
            self.credential(&parsed.access_key_id, source_ip).await?;
        if let Some(expected) = session_token {
            let given = parsed.security_token.as_deref().unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(Refusal::new(
                    403,
                    "InvalidClientTokenId",
                    format!(
                        "The security token included in the request is invalid: temporary credentials {} need the session token AssumeRole returned with them (X-Amz-Security-Token / AWS_SESSION_TOKEN)",
                        parsed.access_key_id
                    ),
                ));
            }
        }
        // IAM and STS are global services: the CLI may sign them for us-east-1.
        let region = if (service == "iam" || service == "sts") && parsed.region == "us-east-1" {
            "us-east-1"
        } else {
            self.config.region.as_str()
        };
        let expect = sigv4::Expect {
            service,
            region,
            now: time::OffsetDateTime::now_utc(),
        };
        sigv4::verify(&req, &parsed, &secret, &expect).map_err(sig_error)?;
        Ok(caller)
    }

    /// The secret, the caller and (for temporary credentials) the session token of
    /// access key `id`, or why it cannot be used.
    async fn credential(
        &self,
        id: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<(String, Caller, Option<String>), Refusal> {
        if let Some((secret, mut caller, token)) = self.cache.credential(id) {
            caller.source_ip = source_ip;
            return Ok((secret, caller, token));
        }
        let found = self.credential_uncached(id, source_ip).await?;
        self.cache.put_credential(id, &found);
        Ok(found)
    }

    async fn credential_uncached(
        &self,
        id: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<(String, Caller, Option<String>), Refusal> {
        if id.starts_with("ASIA") {
            let Some(session) = self.iam.get_session(id).await? else {
                return Err(Refusal::new(
                    403,
                    "InvalidClientTokenId",
                    format!("The security token included in the request is invalid: temporary credentials {id} were never issued here, or their role was deleted"),
                ));
            };
            if session.expires_at <= wharf_meta::now_millis() {
                return Err(Refusal::new(
                    400,
                    "ExpiredTokenException",
                    format!(
                        "The security token included in the request is expired: the session {} of role {} expired at {}",
                        session.session_name,
                        session.role_name,
                        rfc3339(session.expires_at / 1000)
                    ),
                ));
            }
            let caller = Caller {
                account_id: session.account_id.clone(),
                principal: Principal::AssumedRole {
                    role: session.role_name.clone(),
                    path: session.role_path.clone(),
                    session: session.session_name.clone(),
                },
                access_key_id: Some(id.to_string()),
                source_ip,
            };
            return Ok((
                session.secret_access_key,
                caller,
                Some(session.session_token),
            ));
        }
        let key = self.active_key(id).await?;
        let caller = self.caller_of(&key, source_ip).await?;
        Ok((key.secret_access_key, caller, None))
    }

    /// Authenticates `/v2/` credentials: `Authorization: Basic` with user `AWS` and a
    /// registry token, or an access key id and its secret. No `Authorization` header
    /// is the anonymous caller.
    pub async fn authenticate_basic(
        &self,
        headers: &HeaderMap,
        source_ip: Option<IpAddr>,
    ) -> Result<Caller, Refusal> {
        let anonymous = Caller {
            account_id: String::new(),
            principal: Principal::Anonymous,
            access_key_id: None,
            source_ip,
        };
        let Some(value) = headers.get("authorization") else {
            if self.config.mode == AuthMode::Permissive {
                return Ok(self.admin(None, source_ip));
            }
            return Ok(anonymous);
        };
        let unauthorized = |m: String| Refusal::new(401, "UNAUTHORIZED", m);
        let value = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not ASCII".into()))?;
        let Some(b64) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return Err(unauthorized(
                "this registry takes HTTP Basic credentials: user AWS with the password from aws ecr get-login-password, or an access key id and its secret".into(),
            ));
        };
        let decoded = STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                unauthorized("the Basic credentials are not valid base64 text".into())
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            unauthorized("the Basic credentials have no ':' between user and password".into())
        })?;
        if self.config.mode == AuthMode::Permissive {
            return Ok(self.admin(None, source_ip));
        }
        if user == "AWS" {
            return self.authenticate_token(password, source_ip).await;
        }
        let (secret, caller, session) = self
            .credential(user, source_ip)
            .await
            .map_err(|r| unauthorized(r.message))?;
        if session.is_some() {
            return Err(unauthorized(format!(
                "temporary credentials ({user}) cannot log in with their secret alone; use user AWS with the password from aws ecr get-login-password"
            )));
        }
        if !bool::from(secret.as_bytes().ct_eq(password.as_bytes())) {
            return Err(unauthorized(format!(
                "the password is not the secret of access key {user}"
            )));
        }
        Ok(caller)
    }

    /// Authenticates a registry token: the caller is the principal of the key it was
    /// issued to, if that key is still valid.
    pub async fn authenticate_token(
        &self,
        token: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<Caller, Refusal> {
        let unauthorized = |m: String| Refusal::new(401, "UNAUTHORIZED", m);
        let claims = self
            .tokens
            .verify(token, now_secs())
            .map_err(|e| unauthorized(e.to_string()))?;
        let (_, caller, _) = self
            .credential(&claims.access_key_id, source_ip)
            .await
            .map_err(|r| {
                unauthorized(format!(
                    "the registry token was issued to credentials that are no longer valid: {}",
                    r.message
                ))
            })?;
        Ok(caller)
    }

    /// A registry token for `caller` (who must hold an access key) and its expiry in
    /// epoch seconds.
    pub fn issue_token(&self, caller: &Caller) -> Result<(String, i64), Refusal> {
        let expires_at = now_secs() + self.config.token_lifetime_secs;
        match &caller.access_key_id {
            Some(id) => Ok((self.tokens.issue(id, expires_at), expires_at)),
            None => Err(Refusal::new(
                400,
                "InvalidParameterException",
                "registry tokens are issued to callers signing with an access key",
            )),
        }
    }

    /// The ARN of a repository (or, for `None`, of all repositories) of `account`.
    pub fn repository_arn(&self, account: &str, repository: Option<&str>) -> String {
        format!(
            "arn:aws:ecr:{}:{account}:repository/{}",
            self.config.region,
            repository.unwrap_or("*")
        )
    }

    /// The identity-based policies of `caller`, parsed, with labels naming them.
    async fn identity_policies(&self, caller: &Caller) -> Result<Arc<Vec<Identity>>, Refusal> {
        let key = match &caller.principal {
            Principal::User { name, .. } => format!("{}/user/{name}", caller.account_id),
            Principal::AssumedRole { role, .. } => format!("{}/role/{role}", caller.account_id),
            Principal::Anonymous => return Ok(Arc::new(Vec::new())),
        };
        if let Some(p) = self.cache.policies(&key) {
            return Ok(p);
        }
        let found = Arc::new(self.identity_policies_uncached(caller).await?);
        self.cache.put_policies(&key, &found);
        Ok(found)
    }

    async fn identity_policies_uncached(&self, caller: &Caller) -> Result<Vec<Identity>, Refusal> {
        let (principal, who) = match &caller.principal {
            Principal::User { name, .. } => (PrincipalRef::User(name.clone()), "user"),
            Principal::AssumedRole { role, .. } => (PrincipalRef::Role(role.clone()), "role"),
            Principal::Anonymous => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for (label, policy) in self
            .iam
            .identity_policies(&caller.account_id, &principal)
            .await?
        {
            match policy {
                IdentityPolicy::Inline { document, .. } => {
                    let doc = parse_stored(&document, PolicyKind::Identity, &label)?;
                    out.push(Identity::Own(label, document, doc));
                }
                IdentityPolicy::Managed {
                    document: Some(document),
                    ..
                } => {
                    let doc = parse_stored(&document, PolicyKind::Identity, &label)?;
                    out.push(Identity::Own(label, document, doc));
                }
                IdentityPolicy::Managed {
                    arn,
                    document: None,
                } => match aws_managed(&arn) {
                    Some(m) => out.push(Identity::Managed(m)),
                    None => tracing::warn!(
                        "{who} {} has {arn} attached, which this Wharf does not know; ignored",
                        caller.arn()
                    ),
                },
            }
        }
        Ok(out)
    }

    /// AWS's evaluation of `action` on `resource` (of `resource_account`) for
    /// `caller`, with its identity policies and an optional resource policy
    /// (label, parsed).
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        caller: &Caller,
        identity: &[Identity],
        action: &str,
        resource: &str,
        resource_account: &str,
        resource_policy: Option<(String, &PolicyDocument)>,
        tags: &[(String, String)],
        request_keys: &[(String, Vec<String>)],
    ) -> wharf_policy::Decision {
        let mut ctx = RequestContext::new(principal_info(caller), action, resource);
        if let Some(ip) = caller.source_ip {
            ctx = ctx.with_key("aws:SourceIp", [ip.to_string()]);
        }
        for (k, v) in tags {
            ctx = ctx.with_key(&format!("aws:ResourceTag/{k}"), [v.clone()]);
        }
        for (k, v) in request_keys {
            ctx = ctx.with_key(k, v.iter().cloned());
        }
        let ctx = ctx.with_standard_keys();
        let sources: Vec<PolicySource<'_>> = identity
            .iter()
            .map(|i| {
                let (label, _, doc) = i.parts();
                PolicySource::new(label, doc)
            })
            .collect();
        let resource_source = resource_policy.map(|(label, doc)| PolicySource::new(label, doc));
        evaluate(&ctx, &sources, resource_source.as_ref(), resource_account)
    }

    /// May `caller` perform the IAM or STS `action` on `resource`? (Identity policies
    /// only; IAM resources have no resource policies.)
    pub async fn authorize_iam(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
    ) -> Result<(), String> {
        if self.config.mode == AuthMode::Permissive {
            return Ok(());
        }
        let account = resource.split(':').nth(4).unwrap_or("").to_string();
        let account = if account.is_empty() {
            caller.account_id.clone()
        } else {
            account
        };
        let identity = self
            .identity_policies(caller)
            .await
            .map_err(|r| r.message)?;
        let decision = self.decide(
            caller,
            &identity,
            action,
            resource,
            &account,
            None,
            &[],
            &[],
        );
        if decision.allowed {
            Ok(())
        } else {
            Err(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} because {decision}",
                caller.arn()
            ))
        }
    }

    /// May `caller` assume the role `role_arn` of `role_account`, whose trust policy
    /// is `trust`? The trust policy must allow it (and, across accounts or where it
    /// trusts only the account, the caller's identity policies too).
    pub async fn authorize_assume_role(
        &self,
        caller: &Caller,
        role_arn: &str,
        role_account: &str,
        trust: &str,
    ) -> Result<(), String> {
        if self.config.mode == AuthMode::Permissive {
            return Ok(());
        }
        let doc = PolicyDocument::parse(trust, PolicyKind::Trust)
            .map_err(|e| format!("the trust policy of {role_arn} does not parse: {e}"))?;
        let identity = self
            .identity_policies(caller)
            .await
            .map_err(|r| r.message)?;
        let decision = self.decide(
            caller,
            &identity,
            "sts:AssumeRole",
            role_arn,
            role_account,
            Some((format!("the trust policy of {role_arn}"), &doc)),
            &[],
            &[],
        );
        if decision.allowed {
            Ok(())
        } else {
            Err(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn} because {decision}",
                caller.arn()
            ))
        }
    }

    /// May `caller` perform `action` (e.g. `ecr:PutImage`) on `repository` of
    /// `account`'s registry? Evaluated with AWS's logic over the caller's identity
    /// policies and the repository's policy; a refusal says which statement denied,
    /// or that none allowed.
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        account: &str,
        repository: Option<&str>,
    ) -> Result<(), Refusal> {
        self.authorize_request(caller, action, account, repository, &[])
            .await
    }

    /// [`Authority::authorize`] with condition keys of the request itself, such as
    /// `aws:RequestTag/<key>` and `aws:TagKeys`.
    pub async fn authorize_request(
        &self,
        caller: &Caller,
        action: &str,
        account: &str,
        repository: Option<&str>,
        request_keys: &[(String, Vec<String>)],
    ) -> Result<(), Refusal> {
        if self.config.mode == AuthMode::Permissive {
            return Ok(());
        }
        let resource = self.repository_arn(account, repository);
        let policy_text = match repository {
            Some(name) => self.repository_policy(account, name).await?,
            None => None,
        };
        let repo_policy = match policy_text.as_deref() {
            Some(text) => Some(parse_stored(text, PolicyKind::Resource, &resource)?),
            None => None,
        };
        let identity = self.identity_policies(caller).await?;
        // Resource tags are read only when a policy could look at them.
        let mentions_tags = policy_text
            .as_deref()
            .into_iter()
            .chain(identity.iter().map(|i| i.parts().1))
            .any(|text| text.to_ascii_lowercase().contains("aws:resourcetag"));
        let mut tags = Vec::new();
        if let (Some(name), true) = (repository, mentions_tags) {
            tags = self
                .meta
                .repository_tags(&wharf_meta::qualified_name(account, name))
                .await?;
        }
        let resource_policy = match (&repo_policy, repository) {
            (Some(doc), Some(name)) => Some((format!("the repository policy of {name}"), doc)),
            _ => None,
        };
        let decision = self.decide(
            caller,
            &identity,
            action,
            &resource,
            account,
            resource_policy,
            &tags,
            request_keys,
        );
        if decision.allowed {
            return Ok(());
        }
        let who = caller.arn();
        if caller.is_anonymous() {
            return Err(Refusal::new(
                401,
                "UNAUTHORIZED",
                format!("anonymous access to {resource} is not allowed ({decision}); log in first"),
            ));
        }
        Err(Refusal::new(
            400,
            "AccessDeniedException",
            format!(
                "User: {who} is not authorized to perform: {action} on resource: {resource} because {decision}"
            ),
        ))
    }

    /// The account a `/v2/` request addresses through its host name
    /// (`<account>.dkr.ecr.<region>.<domain>`), if it names one.
    pub fn account_for_host(&self, headers: &HeaderMap) -> Option<String> {
        let host = headers.get("host")?.to_str().ok()?;
        let mut labels = host.split('.');
        let account = labels.next()?;
        let is_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        (is_account && labels.next() == Some("dkr")).then(|| account.to_string())
    }
}

/// Puts `/v2/` behind an [`Authority`].
#[derive(Debug, Clone)]
pub struct RegistryGate(pub Arc<Authority>);

fn challenge(headers: &HeaderMap, message: String) -> ApiError {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("wharf");
    ApiError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, message).header(
        "www-authenticate",
        format!(
            "Basic realm=\"{}\",service=\"ecr.amazonaws.com\"",
            host.replace('"', "")
        ),
    )
}

#[async_trait]
impl Gate for RegistryGate {
    async fn admit(&self, req: &AccessRequest<'_>) -> Result<Grant, ApiError> {
        let auth = &self.0;
        // Download URLs from GetDownloadUrlForLayer carry a token in the query.
        let url_token = req
            .query
            .filter(|_| {
                req.actions == ["ecr:GetDownloadUrlForLayer"]
                    && !req.headers.contains_key("authorization")
            })
            .and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(TOKEN_QUERY_PARAM)?.strip_prefix('='))
            });
        let authenticated = match url_token {
            Some(t) => auth.authenticate_token(t, req.peer).await,
            None => auth.authenticate_basic(req.headers, req.peer).await,
        };
        let caller = match authenticated {
            Ok(c) => c,
            Err(r) if r.status == 401 => return Err(challenge(req.headers, r.message)),
            Err(r) => return Err(ApiError::internal(r.message)),
        };
        let account = auth.account_for_host(req.headers).unwrap_or_else(|| {
            if caller.is_anonymous() {
                auth.config.default_account.clone()
            } else {
                caller.account_id.clone()
            }
        });
        if req.actions.is_empty() && caller.is_anonymous() {
            return Err(challenge(
                req.headers,
                "authentication required: docker login with user AWS and the password from aws ecr get-login-password".into(),
            ));
        }
        for action in req.actions {
            if let Err(r) = auth
                .authorize(&caller, action, &account, req.repository)
                .await
            {
                return Err(match r.status {
                    401 => challenge(req.headers, r.message),
                    500 => ApiError::internal(r.message),
                    _ => ApiError::new(StatusCode::FORBIDDEN, Code::Denied, r.message),
                });
            }
        }
        Ok(Grant {
            account,
            principal: caller.arn(),
        })
    }
}
