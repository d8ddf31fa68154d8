//! The OCI distribution API (`/v2/`), spec v1.1, over the [`MetadataStore`] and
//! [`BlobStore`] seams. Handlers never see a storage path or SQL; they parse the
//! request, ask the stores, and shape the response.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use wharf_blob::BlobStore;
use wharf_meta::{MetadataStore, Millis, Namespaced};
use wharf_oci::Digest;

pub mod access;
mod blobs;
pub mod error;
mod listing;
mod manifests;
mod route;
mod uploads;
pub mod util;

pub use access::{AccessRequest, Gate, Grant, OpenGate};
pub use error::{ApiError, ApiResult, Code};
use route::Route;

/// Behaviour switches of the registry API.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Create a repository on first push instead of answering NAME_UNKNOWN.
    pub create_on_push: bool,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Upload sessions idle for longer are discarded.
    pub upload_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            create_on_push: true,
            max_manifest_bytes: 4 * 1024 * 1024,
            max_blob_bytes: 52_000 * 1024 * 1024,
            upload_timeout: Duration::from_secs(24 * 3600),
        }
    }
}

/// The registry: its stores and configuration. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// The whole store (all accounts).
    store: Arc<dyn MetadataStore>,
    /// What handlers read and write: one account's namespace of `store` while a
    /// request is handled, `store` itself otherwise.
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    config: RegistryConfig,
    gate: Arc<dyn Gate>,
    /// The account `meta` is scoped to, if any.
    account: Option<String>,
    pulls: Arc<PullLog>,
}

/// Pulls not yet written to the database: (account, repository) → digest → time.
type PullLog = Mutex<HashMap<(String, String), HashMap<Digest, Millis>>>;

impl Registry {
    /// A registry over the given stores.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        config: RegistryConfig,
        gate: Arc<dyn Gate>,
    ) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                store: meta.clone(),
                meta,
                blobs,
                config,
                gate,
                account: None,
                pulls: Arc::new(Mutex::new(HashMap::new())),
            }),
        }
    }

    /// This registry as seen by requests addressing `account`.
    fn scoped(&self, account: &str) -> Registry {
        let i = &self.inner;
        Registry {
            inner: Arc::new(Inner {
                store: i.store.clone(),
                meta: Arc::new(Namespaced::new(i.store.clone(), account)),
                blobs: i.blobs.clone(),
                config: i.config.clone(),
                gate: i.gate.clone(),
                account: Some(account.to_string()),
                pulls: i.pulls.clone(),
            }),
        }
    }

    pub(crate) fn gate(&self) -> &dyn Gate {
        self.inner.gate.as_ref()
    }

    /// Notes that `digest` was pulled from `repository` now; written to the database
    /// in batches by [`Registry::flush_pulls`].
    pub(crate) fn note_pull(&self, repository: &str, digest: &Digest) {
        let Some(account) = &self.inner.account else {
            return;
        };
        let mut log = self
            .inner
            .pulls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        log.entry((account.clone(), repository.to_string()))
            .or_default()
            .insert(digest.clone(), wharf_meta::now_millis());
    }

    /// Writes the pull times noted since the last flush (ECR's
    /// `lastRecordedPullTime`). Returns how many images were updated.
    pub async fn flush_pulls(&self) -> ApiResult<usize> {
        let batch = std::mem::take(
            &mut *self
                .inner
                .pulls
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let mut n = 0;
        for ((account, repository), pulls) in batch {
            let pulls: Vec<(Digest, Millis)> = pulls.into_iter().collect();
            n += pulls.len();
            self.inner
                .store
                .record_pulls(&wharf_meta::qualified_name(&account, &repository), &pulls)
                .await?;
        }
        Ok(n)
    }

    pub(crate) fn meta(&self) -> &dyn MetadataStore {
        self.inner.meta.as_ref()
    }

    pub(crate) fn blobs(&self) -> &dyn BlobStore {
        self.inner.blobs.as_ref()
    }

    pub(crate) fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The `/v2/` routes, to be merged into the server's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2", any(dispatch))
            .route("/v2/", any(dispatch))
            .route("/v2/{*path}", any(dispatch))
            .with_state(self.clone())
    }

    /// Discards upload sessions idle for longer than the configured timeout, and
    /// staging areas that no session refers to. Returns how many were removed.
    pub async fn expire_uploads(&self) -> ApiResult<usize> {
        let timeout = self.config().upload_timeout.as_millis() as i64;
        let cutoff = wharf_meta::now_millis() - timeout;
        let mut removed = 0;
        let store = self.inner.store.as_ref();
        for upload in store.stale_uploads(cutoff).await? {
            self.blobs().abort_upload(&upload.id).await?;
            store.delete_upload(&upload.id).await?;
            removed += 1;
        }
        // Staging areas without a session row: the row is written before the staging
        // area is created, so such an area is left over from a crash or a failed start.
        for id in self.blobs().list_uploads().await? {
            if store.get_upload(&id).await?.is_none() {
                self.blobs().abort_upload(&id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = match route::parse(&path) {
        Ok(route) => admit_and_handle(&reg, route, req).await,
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// The client's address, when the server records it.
pub(crate) fn peer(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn admit_and_handle(reg: &Registry, route: Route, req: Request) -> ApiResult<Response> {
    let grant = reg
        .gate()
        .admit(&AccessRequest {
            headers: req.headers(),
            peer: peer(&req),
            query: req.uri().query(),
            repository: route.repository(),
            actions: route.actions(req.method()),
        })
        .await?;
    tracing::trace!(principal = %grant.principal, account = %grant.account, "admitted");
    handle(&reg.scoped(&grant.account), route, req).await
}

async fn handle(reg: &Registry, route: Route, req: Request) -> ApiResult<Response> {
    let method = req.method().clone();
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok((
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from("{}"),
        )
            .into_response()),
        (Route::Catalog, Method::GET) => listing::catalog(reg, req).await,
        (Route::Tags { name }, Method::GET) => listing::tags(reg, &name, req).await,
        (Route::Referrers { name, digest }, Method::GET) => {
            listing::referrers(reg, &name, &digest, req).await
        }
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            manifests::get(reg, &name, &reference, req).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            manifests::put(reg, &name, &reference, req).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            manifests::delete(reg, &name, &reference).await
        }
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            blobs::get(reg, &name, &digest, req).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => blobs::delete(reg, &name, &digest).await,
        (Route::UploadStart { name }, Method::POST) => uploads::start(reg, &name, req).await,
        (Route::Upload { name, id }, Method::GET) => uploads::status(reg, &name, &id).await,
        (Route::Upload { name, id }, Method::PATCH) => uploads::patch(reg, &name, &id, req).await,
        (Route::Upload { name, id }, Method::PUT) => uploads::finish(reg, &name, &id, req).await,
        (Route::Upload { name, id }, Method::DELETE) => uploads::cancel(reg, &name, &id).await,
        (route, method) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            format!("{method} is not supported on {}", route.describe()),
        )),
    }
}
