//! The HTTPS listener of the identity endpoint: TLS 1.3 with a serving
//! certificate from the mesh CA (re-issued at half its lifetime), HTTP/1.1,
//! small bodies, bounded connections and header time.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shardmesh_identity::ca::{LeafSpec, MAX_CSR_BYTES};
use shardmesh_identity::{CertStore, LeafKey, SpiffeId, DEFAULT_LIFETIME};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::SharedIdentity;

/// Connections served at once (sidecars ask once a start and once a renewal).
const MAX_CONNECTIONS: usize = 256;
/// Time for the handshake and the request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the endpoint on `listener` as `dns_names` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    identity: SharedIdentity,
    dns_names: Vec<String>,
    namespace: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let (cert, key) = serving_cert(&identity, &dns_names, namespace)?;
    let store =
        Arc::new(CertStore::from_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| e.to_string())?);
    let acceptor = TlsAcceptor::from(
        shardmesh_identity::tls::endpoint_server_config(store.clone())
            .map_err(|e| e.to_string())?,
    );
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut renew = tokio::time::interval(DEFAULT_LIFETIME / 2);
    renew.tick().await;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "identity endpoint accept failed");
                    continue;
                }
            },
            _ = renew.tick() => {
                let renewed = serving_cert(&identity, &dns_names, namespace).and_then(|(cert, key)| {
                    store.replace_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| e.to_string())
                });
                if let Err(e) = renewed {
                    tracing::warn!(error = %e, "cannot renew the identity endpoint's certificate");
                }
                continue;
            }
            () = &mut shutdown => return Ok(()),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let acceptor = acceptor.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await
            else {
                tracing::debug!(%peer, "identity endpoint handshake failed");
                return;
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let identity = identity.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = match Limited::new(body, MAX_CSR_BYTES).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => bytes::Bytes::new(),
                    };
                    let auth = parts
                        .headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    Ok::<_, std::convert::Infallible>(
                        identity
                            .respond(&parts.method, parts.uri.path(), auth, &body)
                            .await,
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// Issues the endpoint's own certificate: (certificate PEM, key PEM).
fn serving_cert(
    identity: &SharedIdentity,
    dns_names: &[String],
    namespace: &str,
) -> Result<(String, String), String> {
    let id = SpiffeId::new(identity.trust_domain(), namespace, "shardmesh-operator")
        .map_err(|e| e.to_string())?;
    let key = LeafKey::generate().map_err(|e| e.to_string())?;
    let cert = identity
        .ca()
        .issue_for_key(
            key.key_pair(),
            &LeafSpec::new(id, dns_names.to_vec(), DEFAULT_LIFETIME),
        )
        .map_err(|e| e.to_string())?;
    Ok((cert, key.key_pem()))
}
