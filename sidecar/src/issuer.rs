//! The sidecar's side of the operator's identity endpoint: a fresh key in
//! memory, its CSR POSTed over HTTPS (the endpoint's certificate chains to
//! the trust anchor) with the pod's ServiceAccount token as bearer, and the
//! signed chain back.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shardmesh_config::{IssuerConfig, PodConfig};
use shardmesh_identity::tls::Trust;
use shardmesh_identity::LeafKey;

use shardmesh_identity::CERTIFICATE_PATH;
use shardmesh_identity::MAX_TOKEN_BYTES;

/// Largest answer read (a chain of a few certificates).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Time for one issuing request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client of the identity endpoint.
pub struct IssuerClient {
    url: Uri,
    token_file: PathBuf,
    pod: String,
    client: HttpsClient,
}

impl IssuerClient {
    /// A client of `config.url`, trusting only the mesh's anchor.
    pub fn new(config: &IssuerConfig, trust: &Trust, pod: &PodConfig) -> Result<Self, String> {
        let base = config.url.trim_end_matches('/');
        let url: Uri = format!("{base}{CERTIFICATE_PATH}")
            .parse()
            .map_err(|e| format!("tls.issuer.url {:?}: {e}", config.url))?;
        let tls = rustls::ClientConfig::builder_with_provider(shardmesh_identity::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(trust.roots())
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            url,
            token_file: PathBuf::from(&config.token_file),
            pod: pod.name.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// A new key and the certificate the endpoint signs for it.
    pub async fn obtain(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let key = LeafKey::generate().map_err(|e| e.to_string())?;
        let csr = key
            .csr_pem_named(if self.pod.is_empty() {
                "sidecar"
            } else {
                &self.pod
            })
            .map_err(|e| e.to_string())?;
        let token = read_token(&self.token_file)?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/pkcs10")
            .body(Full::new(Bytes::from(csr)))
            .map_err(|e| e.to_string())?;
        let rsp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("identity endpoint {} timed out", self.url))?
            .map_err(|e| format!("identity endpoint {}: {e}", self.url))?;
        let status = rsp.status();
        let body = Limited::new(rsp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("identity endpoint answer: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!(
                "identity endpoint refused the CSR ({status}): {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            ));
        }
        let chain = CertificateDer::pem_slice_iter(&body)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("identity endpoint answer: {e}"))?;
        if chain.is_empty() {
            return Err("identity endpoint answered no certificate".into());
        }
        Ok((chain, key.private_key_der()))
    }
}

fn read_token(path: &std::path::Path) -> Result<String, String> {
    let bytes = crate::tls::read_bounded(path, MAX_TOKEN_BYTES as u64)
        .map_err(|e| format!("token: {e}"))?;
    let token = std::str::from_utf8(&bytes).unwrap_or_default().trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "token file {} is empty or not a token",
            path.display()
        ));
    }
    Ok(token.to_string())
}
