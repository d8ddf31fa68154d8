//! `wharf serve`: opens the stores, builds the router, listens, shuts down gracefully.

use crate::config::{ServeArgs, Settings};
use anyhow::{Context, Result};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wharf_meta::JobStore;
use wharf_registry::Registry;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often pull times are written to the database.
const PULL_FLUSH: Duration = Duration::from_secs(5);

/// The named lease under which one replica at a time expires upload sessions.
const UPLOAD_EXPIRY_LEASE: &str = "upload-expiry";

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::resolve(args)?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    let stores = crate::stores::open_metadata(&settings.metadata).await?;
    let meta = stores.meta.clone();
    let keyring = match &settings.encryption_key_file {
        Some(path) => Some(crate::stores::open_keyring(path)?),
        None => None,
    };
    let encrypted = keyring.is_some();
    let encryption_keys = keyring
        .as_ref()
        .map(|k| k.ids().into_iter().map(str::to_string).collect::<Vec<_>>());
    let blobs = crate::stores::open_blobs(&settings.blobs, keyring).await?;
    let bootstrap = wharf_ecr::bootstrap::ensure_admin(
        meta.as_ref(),
        &settings.account_id,
        settings.admin_key.clone(),
    )
    .await
    .context("setting up the administrator access key")?;
    wharf_iam::bootstrap_admin(
        stores.iam.as_ref(),
        &settings.account_id,
        wharf_access::BOOTSTRAP_ADMIN,
    )
    .await
    .context("setting up the administrator user")?;
    let authority = Arc::new(
        wharf_access::Authority::new(
            meta.clone(),
            stores.iam.clone(),
            wharf_access::AccessConfig {
                region: settings.region.clone(),
                default_account: settings.account_id.clone(),
                mode: settings.auth,
                token_lifetime_secs: settings.token_lifetime_secs,
            },
        )
        .await
        .context("setting up authentication")?,
    );
    let iam_store = stores.iam.clone();
    let registry = Registry::new(
        meta.clone(),
        blobs.clone(),
        settings.registry.clone(),
        Arc::new(wharf_access::RegistryGate(authority.clone())),
    );

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let iam = wharf_iam::IamApi::new(
        stores.iam.clone(),
        meta.clone(),
        Arc::new(crate::api::IamGuard(authority.clone())),
        wharf_iam::IamConfig {
            region: settings.region.clone(),
        },
    )
    .with_managed_documents(Arc::new(|arn: &str| {
        wharf_policy::managed::by_arn(arn).map(|m| m.document.to_string())
    }));
    let draining = Arc::new(AtomicBool::new(false));
    let health = crate::health::Health {
        meta: meta.clone(),
        blobs: blobs.clone(),
        draining: draining.clone(),
    };
    let ecr = wharf_ecr::EcrApi::new(
        meta,
        blobs,
        authority.clone(),
        wharf_ecr::EcrConfig {
            region: settings.region.clone(),
            registry_host: addr.to_string(),
            proxy_endpoint: format!("{scheme}://{addr}"),
            registry_domain: settings.registry_domain.clone(),
            encryption_keys,
        },
    );
    let app = registry
        .router()
        .merge(crate::api::router(crate::api::Apis {
            ecr,
            iam,
            authority,
        }))
        .merge(crate::health::router(health));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "wharf listening on {scheme}://{addr}")?;
        writeln!(
            out,
            "  metadata: {}; blobs: {}{}; create-on-push: {}",
            settings.metadata.describe(),
            settings.blobs.describe(),
            if encrypted {
                " (encrypted at rest)"
            } else {
                ""
            },
            if settings.registry.create_on_push {
                "on"
            } else {
                "off"
            }
        )?;
        let tls_flag = if settings.tls.is_some() {
            ""
        } else {
            " --tls-verify=false"
        };
        let region = &settings.region;
        let host = match &settings.registry_domain {
            Some(d) => format!(
                "{}.dkr.ecr.{region}.{d}:{}",
                settings.account_id,
                addr.port()
            ),
            None => addr.to_string(),
        };
        writeln!(
            out,
            "  ECR API: aws ecr describe-repositories --endpoint-url {scheme}://{addr} --region {region}"
        )?;
        writeln!(
            out,
            "  log in:  aws ecr get-login-password --endpoint-url {scheme}://{addr} --region {region} | docker login --username AWS --password-stdin {host}"
        )?;
        writeln!(
            out,
            "           (or any client: user = access key id, password = its secret)"
        )?;
        writeln!(
            out,
            "  push:    docker push {host}/myapp:latest   (podman push{tls_flag} ...)"
        )?;
        writeln!(out, "  pull:    docker pull {host}/myapp:latest")?;
        if settings.auth == wharf_access::AuthMode::Permissive {
            writeln!(
                out,
                "  auth: PERMISSIVE (development only): any credentials, or none, act as the administrator"
            )?;
        }
        if let wharf_ecr::bootstrap::Bootstrap::Created(key) = &bootstrap {
            writeln!(
                out,
                "  administrator of account {} (shown once, keep it):",
                key.account_id
            )?;
            writeln!(out, "    export AWS_ACCESS_KEY_ID={}", key.access_key_id)?;
            writeln!(
                out,
                "    export AWS_SECRET_ACCESS_KEY={}",
                key.secret_access_key
            )?;
        }
        out.flush()?;
    }

    let janitor = tokio::spawn(expire_loop(
        registry.clone(),
        stores.jobs.clone(),
        settings.registry.upload_timeout,
    ));
    let pull_recorder = tokio::spawn(pull_loop(registry.clone(), iam_store));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = match settings.tls {
        None => tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(wait_stop(stop_rx))
            .await
            .map_err(anyhow::Error::from)
        }),
        Some((cert, key)) => {
            tokio::spawn(crate::serve::tls::serve(listener, app, cert, key, stop_rx))
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    draining.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    janitor.abort();
    pull_recorder.abort();
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(joined) => joined.context("server task")??,
        Err(_) => tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; exiting"),
    }
    Ok(())
}

/// Writes noted pull times to the database every few seconds, and forgets expired
/// role sessions every minute.
async fn pull_loop(registry: Registry, iam: Arc<dyn wharf_meta::IamStore>) {
    let mut tick = tokio::time::interval(PULL_FLUSH);
    let mut n: u32 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = registry.flush_pulls().await {
            tracing::warn!("recording pull times failed: {}", e.message);
        }
        n += 1;
        if n == 12 {
            n = 0;
            // Kept a day after expiry, so their refusals can still say when they expired.
            match iam
                .purge_expired_sessions(wharf_meta::now_millis() - 24 * 3600 * 1000)
                .await
            {
                Ok(0) => {}
                Ok(k) => tracing::info!("forgot {k} expired role session(s)"),
                Err(e) => tracing::warn!("purging expired sessions failed: {e}"),
            }
        }
    }
}

async fn wait_stop(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Expires idle upload sessions, checking a few times per timeout period (at most
/// once a second, at least once a minute). Replicas sharing a database take turns
/// under a named lease, so each round runs once, on one of them.
async fn expire_loop(registry: Registry, jobs: Arc<dyn JobStore>, timeout: Duration) {
    let period = (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let holder = replica_id();
    let lease_ms = (2 * period).as_millis() as i64;
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        match jobs
            .acquire_lease(
                UPLOAD_EXPIRY_LEASE,
                &holder,
                wharf_meta::now_millis(),
                lease_ms,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!("taking the upload-expiry lease failed: {e}");
                continue;
            }
        }
        match registry.expire_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("discarded {n} expired upload(s)"),
            Err(e) => tracing::warn!("expiring uploads failed: {}", e.message),
        }
    }
}

/// This process's name among replicas: host, process id and a random part.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "wharf".to_string());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        wharf_auth::ids::new_id("R")
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

mod tls {
    use anyhow::{Context, Result};
    use std::path::PathBuf;
    use std::time::Duration;

    /// Serves HTTPS with rustls on an already bound listener until `stop` turns true.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        app: axum::Router,
        cert: PathBuf,
        key: PathBuf,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
            .await
            .with_context(|| {
                format!(
                    "loading TLS certificate {} and key {}",
                    cert.display(),
                    key.display()
                )
            })?;
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            h.graceful_shutdown(Some(Duration::from_secs(30)));
        });
        let std_listener = listener.into_std()?;
        axum_server::from_tcp_rustls(std_listener, config)?
            .handle(handle)
            .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
            .context("serving HTTPS")
    }
}
