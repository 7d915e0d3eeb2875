//! sync-hostaway: a SQL mirror of Hostaway accounts kept fresh by webhooks and
//! reconciliation syncs. `app::Application` is the composition root; the binary
//! and the tests start the same code.

// The one exception, with its reasons: store::nodelay.
#![deny(unsafe_code)]

pub mod actors;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod context;
pub mod crypto;
pub mod directory;
pub mod errors;
pub mod events;
pub mod hostaway;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod paths;
pub mod store;
pub mod sync;
pub mod telemetry;

/// Installs rustls' ring crypto provider for every HTTPS client in the
/// process (Hostaway API, OTLP export). Idempotent.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
