//! One TLS crypto provider for the whole process: ring.
//!
//! reqwest is built without a default provider (its `rustls` feature would
//! pull aws-lc, a second C crypto library next to the ring that sqlx's
//! rustls uses). The provider is installed once, before the first client.

/// Installs ring as rustls's process-wide provider (idempotent).
pub(crate) fn install_crypto_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
