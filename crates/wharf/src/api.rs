//! `POST /`: the AWS APIs on Wharf's one port. Requests with `X-Amz-Target` are ECR
//! (AWS JSON 1.1); form-encoded query-protocol requests are IAM or STS, told apart by
//! the service of their SigV4 credential scope.

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use wharf_access::Authority;
use wharf_auth::{sigv4, Caller};
use wharf_ecr::EcrApi;
use wharf_iam::{ApiError, IamApi};
use wharf_meta::Role;

/// Largest IAM/STS request body (policy documents are at most a few KiB).
const MAX_QUERY_BODY: usize = 1024 * 1024;

/// The APIs behind `POST /`.
#[derive(Clone)]
pub struct Apis {
    /// ECR.
    pub ecr: EcrApi,
    /// IAM and STS.
    pub iam: IamApi,
    /// Authentication.
    pub authority: Arc<Authority>,
}

/// `POST /` for all three APIs.
pub fn router(apis: Apis) -> Router {
    Router::new().route("/", post(handle)).with_state(apis)
}

async fn handle(State(apis): State<Apis>, req: Request) -> Response {
    if let Some(target) = req.headers().get("x-amz-target") {
        // Calls that change what authorization reads (repository policies, the
        // repositories themselves, their tags) clear the authority's cache.
        let changes = target.to_str().is_ok_and(|t| {
            [
                "SetRepositoryPolicy",
                "DeleteRepositoryPolicy",
                "DeleteRepository",
                "CreateRepository",
                "TagResource",
                "UntagResource",
            ]
            .iter()
            .any(|op| t.ends_with(&format!(".{op}")))
        });
        let resp = apis.ecr.handle(req).await;
        if changes {
            apis.authority.invalidate();
        }
        return resp;
    }
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let body = match axum::body::to_bytes(body, MAX_QUERY_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return wharf_iam::error_response(
                "iam",
                &ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("request body unreadable or over {MAX_QUERY_BODY} bytes: {e}"),
                ),
            )
        }
    };
    let headers = &parts.headers;
    let signed = sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers,
        body: &body,
    };
    let service = match sigv4::parse(&signed) {
        Ok(p) => p.service,
        Err(e) => {
            return wharf_iam::error_response(
                "iam",
                &ApiError::new(e.status(), e.code(), format!("{e}; this endpoint serves ECR (X-Amz-Target), IAM and STS requests signed with SigV4")),
            )
        }
    };
    let caller = match apis
        .authority
        .authenticate_sigv4(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query(),
            headers,
            &body,
            &service,
            peer,
        )
        .await
    {
        Ok(c) => c,
        Err(r) => {
            return wharf_iam::error_response(&service, &ApiError::new(r.status, r.code, r.message))
        }
    };
    let mut params: Vec<(String, String)> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(form) => params.extend(form),
        Err(e) => {
            return wharf_iam::error_response(
                &service,
                &ApiError::new(
                    400,
                    "MalformedQueryString",
                    format!("the body is not form-encoded: {e}"),
                ),
            )
        }
    }
    // Query-signature parameters are not API parameters.
    params.retain(|(k, _)| !k.starts_with("X-Amz-"));
    let resp = apis.iam.handle(&caller, &service, &params).await;
    // Whatever the call changed (keys, users, policies, roles) applies to the next
    // request.
    apis.authority.invalidate();
    resp
}

/// IAM and STS authorization through the [`Authority`].
pub struct IamGuard(pub Arc<Authority>);

#[async_trait::async_trait]
impl wharf_iam::Guard for IamGuard {
    async fn check(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), String> {
        self.0.authorize_iam(caller, action, resource).await
    }

    async fn may_assume(&self, caller: &Caller, role: &Role) -> Result<(), String> {
        self.0
            .authorize_assume_role(
                caller,
                &role.arn(),
                &role.account_id,
                &role.assume_role_policy,
            )
            .await
    }
}
