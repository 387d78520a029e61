//! Process plumbing shared by `quotestream-operator` and `quotestream-worker`: the shutdown
//! signal, logging, the TLS crypto provider, and the server behind their HTTP endpoints. Each
//! binary keeps its own routes; this crate only runs them.

pub mod redact;

pub use redact::redact_url;

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C). Call it
/// inside the tokio runtime.
pub fn shutdown_on_signal(what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutdown requested: {what}");
        cancel.cancel();
    });
    token
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default_filter`): JSON when `json` says so or,
/// when it does not, inside Kubernetes (`KUBERNETES_SERVICE_HOST` set); human-readable elsewhere.
/// Terminal colour codes only when stderr is a terminal: a log file or a pipe gets plain text.
pub fn init_logging(json: Option<bool>, default_filter: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = json.unwrap_or_else(|| std::env::var_os("KUBERNETES_SERVICE_HOST").is_some());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Installs rustls' ring crypto provider for the process (HTTPS, rediss://, the Kubernetes API
/// connection and every reqwest client need one). Idempotent.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves `app` on `addr` until `shutdown`; returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let stop = async move { shutdown.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok((bound, task))
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn metrics_text(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for the text format.
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A Prometheus text-exposition response.
pub fn metrics_response(text: String) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
