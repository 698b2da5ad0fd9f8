//! Mutual TLS of this sidecar: its certificate (from files written by the
//! local runner, or from the operator's identity endpoint), the inbound
//! acceptor and the peer client config built on it, renewal at 70 % of the
//! lifetime, and the per-service list of allowed client identities.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shardmesh_config::{PodConfig, TlsConfig};
use shardmesh_identity::store::CertInfo;
use shardmesh_identity::tls::{client_config, server_config, Trust};
use shardmesh_identity::CertStore;
use tokio_rustls::TlsAcceptor;

use crate::issuer::IssuerClient;
use crate::metrics::Metrics;

/// Largest PEM file read (a chain of a few certificates is a few KiB).
const MAX_PEM_BYTES: u64 = 256 * 1024;

/// Shortest wait between renewal attempts (a failing issuer is retried, not hammered).
const RETRY_MIN: Duration = Duration::from_secs(5);

/// Longest wait between renewal attempts after failures.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// The identity a peer proved in the TLS handshake, attached to each of its
/// requests as an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity(pub Arc<str>);

/// Where the certificate comes from.
enum Source {
    /// PEM files, re-read at renewal (local mode: the runner rewrites them).
    Files { cert: PathBuf, key: PathBuf },
    /// A CSR to the operator's identity endpoint.
    Issuer(Box<IssuerClient>),
}

/// This sidecar's TLS state, shared by the inbound listener, the peer client
/// and gossip push-pull.
pub struct MeshTls {
    store: Arc<CertStore>,
    acceptor: TlsAcceptor,
    client: Arc<rustls::ClientConfig>,
    allowed: Option<HashSet<String>>,
    source: Source,
    handshake_timeout: Duration,
    metrics: Metrics,
    /// `notAfter` of the current certificate; wakes the renewal loop when a
    /// certificate is swapped in by hand.
    changed: tokio::sync::watch::Sender<i64>,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls")
            .field("cert", &self.store.info())
            .finish_non_exhaustive()
    }
}

impl MeshTls {
    /// Loads the trust anchor and obtains the first certificate.
    pub async fn start(
        config: &TlsConfig,
        pod: &PodConfig,
        metrics: Metrics,
    ) -> Result<Arc<Self>, String> {
        let ca = read_bounded_pem(Path::new(&config.ca_file))?;
        let trust = Trust::from_pem(&ca, &config.trust_domain)
            .map_err(|e| format!("tls.caFile {}: {e}", config.ca_file))?;
        let source = match (&config.cert_file, &config.key_file, &config.issuer) {
            (Some(cert), Some(key), _) => Source::Files {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            },
            (_, _, Some(issuer)) => {
                Source::Issuer(Box::new(IssuerClient::new(issuer, &trust, pod)?))
            }
            _ => return Err("tls: set either certFile and keyFile, or issuer".into()),
        };
        let store = Arc::new(obtain_first(&source).await?);
        let info = store.info();
        if info.id.trust_domain != config.trust_domain {
            return Err(format!(
                "tls: this sidecar's certificate names {}, outside trust domain {:?}",
                info.id, config.trust_domain
            ));
        }
        let acceptor =
            TlsAcceptor::from(server_config(store.clone(), &trust).map_err(|e| e.to_string())?);
        let client = client_config(store.clone(), &trust).map_err(|e| e.to_string())?;
        let allowed = (!config.allowed_identities.is_empty()).then(|| {
            let mut set: HashSet<String> = config.allowed_identities.iter().cloned().collect();
            // Members of this service forward to each other.
            set.insert(info.id.uri());
            set
        });
        metrics.tls_cert_expiry.set(info.not_after);
        for reason in shardmesh_identity::tls::FAILURE_REASONS {
            metrics.tls_handshake_failures.with_label_values(&[reason]);
        }
        tracing::info!(identity = %info.id, not_after = info.not_after, "mesh certificate loaded");
        Ok(Arc::new(Self {
            store,
            acceptor,
            client,
            allowed,
            source,
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
            metrics,
            changed: tokio::sync::watch::Sender::new(info.not_after),
        }))
    }

    /// The acceptor of the inbound listener (client certificates required).
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The config of connections to peers.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }

    /// Time a peer gets to finish its handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The current certificate's identity and validity.
    pub fn info(&self) -> CertInfo {
        self.store.info()
    }

    /// The metrics handshakes are counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether a caller with `identity` may call this pod's service.
    pub fn allows(&self, identity: Option<&PeerIdentity>) -> bool {
        match (&self.allowed, identity) {
            (None, _) => true,
            (Some(set), Some(id)) => set.contains(&*id.0),
            (Some(_), None) => false,
        }
    }

    /// Obtains a fresh certificate and swaps it in; connections already
    /// open keep going, new handshakes present the new one.
    pub async fn renew(&self) -> Result<CertInfo, String> {
        let info = match &self.source {
            Source::Files { cert, key } => {
                let (cert, key) = (read_bounded_pem(cert)?, read_bounded_pem(key)?);
                self.store
                    .replace_pem(&cert, &key)
                    .map_err(|e| e.to_string())?
            }
            Source::Issuer(issuer) => {
                let (chain, key) = issuer.obtain().await?;
                self.store
                    .replace_der(chain, key)
                    .map_err(|e| e.to_string())?
            }
        };
        self.metrics.tls_cert_expiry.set(info.not_after);
        self.changed.send_replace(info.not_after);
        Ok(info)
    }

    /// Renews at 70 % of each certificate's lifetime until `self` is
    /// dropped by everyone else; failures retry with backoff.
    pub fn spawn_renewal(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retry = RETRY_MIN;
            let mut changed = match weak.upgrade() {
                Some(tls) => tls.changed.subscribe(),
                None => return,
            };
            loop {
                let Some(tls) = weak.upgrade() else { return };
                let current = tls.store.info();
                let wait = current
                    .renew_at()
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                drop(tls);
                changed.mark_unchanged();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    // Swapped by hand: wait for the new certificate's time.
                    r = changed.changed() => match r {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                }
                let Some(tls) = weak.upgrade() else { return };
                match tls.renew().await {
                    Ok(next) if next.not_after > current.not_after => {
                        tracing::info!(identity = %next.id, not_after = next.not_after, "mesh certificate renewed");
                        retry = RETRY_MIN;
                        continue;
                    }
                    Ok(_) => tracing::warn!("renewal returned no newer certificate; retrying"),
                    Err(e) => tracing::warn!(error = %e, "certificate renewal failed; retrying"),
                }
                drop(tls);
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        });
    }
}

async fn obtain_first(source: &Source) -> Result<CertStore, String> {
    match source {
        Source::Files { cert, key } => {
            CertStore::from_pem(&read_bounded_pem(cert)?, &read_bounded_pem(key)?)
                .map_err(|e| format!("tls certificate {}: {e}", cert.display()))
        }
        Source::Issuer(issuer) => {
            let (chain, key) = issuer.obtain().await?;
            CertStore::from_der(chain, key).map_err(|e| e.to_string())
        }
    }
}

fn read_bounded_pem(path: &Path) -> Result<Vec<u8>, String> {
    read_bounded(path, MAX_PEM_BYTES)
}

/// Reads at most `max` bytes of a file; a longer file is an error, never a
/// truncated read.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(buf)
}
