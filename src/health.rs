//! `/metrics`, `/healthz` and `/readyz` on one small HTTP listener.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;

/// What `/readyz` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    Starting = 0,
    /// Waiting for the Lease: healthy, ready to take over.
    Standby = 1,
    /// Reconciling, caches synced.
    Serving = 2,
}

/// Shared readiness state.
#[derive(Clone, Default)]
pub struct Health {
    state: Arc<AtomicU8>,
}

impl Health {
    pub fn set(&self, readiness: Readiness) {
        self.state.store(readiness as u8, Ordering::SeqCst);
    }

    pub fn get(&self) -> Readiness {
        match self.state.load(Ordering::SeqCst) {
            1 => Readiness::Standby,
            2 => Readiness::Serving,
            _ => Readiness::Starting,
        }
    }
}

/// Serves until the process ends. Errors binding the address are returned at once.
pub async fn serve(addr: &str, health: Health) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    crate::metrics::global().encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    match health.get() {
                        Readiness::Serving => (StatusCode::OK, "ready: reconciling, caches synced"),
                        Readiness::Standby => (StatusCode::OK, "ready: standby, waiting to lead"),
                        Readiness::Starting => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "starting: caches not synced yet",
                        ),
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
    Ok(())
}
