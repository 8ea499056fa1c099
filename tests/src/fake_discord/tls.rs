//! The fake's REST API over TLS as `discord.com` (certificates in `fixtures/tls/`), for a bot
//! whose serenity runs with its rate limiter on: that path ignores serenity's proxy setting and
//! always calls `https://discord.com`, so the bot resolves that name to this listener.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

/// The CA the bot must trust to talk to the TLS listener.
pub fn ca_file() -> PathBuf {
    fixture("ca.pem")
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(fixture("discord.com.pem"))
        .expect("fake Discord: read the test certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("fake Discord: parse the test certificate");
    let key = PrivateKeyDer::from_pem_file(fixture("discord.com.key.pem"))
        .expect("fake Discord: read the test key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("fake Discord: TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("fake Discord: TLS certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Serves `app` over TLS on `listener` until `cancel`; each connection is its own task.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config());
    loop {
        let (tcp, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        tracker.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}
