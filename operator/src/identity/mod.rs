//! The identity endpoint: the operator as the mesh's certificate authority.
//! The CA lives in a Secret (generated once; a user may supply their own
//! `ca.crt` + `ca.key`). A sidecar POSTs a CSR to `/v1/certificate` over
//! HTTPS with its ServiceAccount token as bearer; a TokenReview
//! (authentication.k8s.io/v1) says which ServiceAccount it is, and the
//! answer is a 24 h certificate naming
//! `spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT` and, for a bound
//! token, the pod's DNS name. The CSR's own names are ignored.

mod serve;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use shardmesh_identity::ca::{LeafSpec, MAX_CSR_BYTES};
use shardmesh_identity::{Authority, SpiffeId, DEFAULT_LIFETIME};

pub use serve::serve;

pub use shardmesh_identity::CERTIFICATE_PATH;
use shardmesh_identity::MAX_TOKEN_BYTES;

/// Default name of the CA Secret in the operator's namespace.
pub const CA_SECRET: &str = "shardmesh-ca";

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// No or malformed bearer token, or TokenReview said no.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Authenticated, but not as a ServiceAccount.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The CSR is malformed, too large or badly signed.
    #[error("bad CSR: {0}")]
    BadCsr(String),
    /// The API server could not be asked.
    #[error("token review failed: {0}")]
    Api(String),
}

impl IssueError {
    fn status(&self) -> StatusCode {
        match self {
            IssueError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            IssueError::Forbidden(_) => StatusCode::FORBIDDEN,
            IssueError::BadCsr(_) => StatusCode::BAD_REQUEST,
            IssueError::Api(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Who a token belongs to, per TokenReview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reviewed {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: String,
    /// The pod a bound token was issued for.
    pub pod: Option<String>,
}

/// The CA and the API client that checks tokens.
pub struct IdentityService {
    ca: Authority,
    client: kube::Client,
    trust_domain: String,
    lifetime: Duration,
    audience: Option<String>,
}

impl IdentityService {
    /// A service signing with `ca` for `trust_domain`.
    pub fn new(ca: Authority, client: kube::Client, trust_domain: &str) -> Self {
        Self {
            ca,
            client,
            trust_domain: trust_domain.to_string(),
            lifetime: DEFAULT_LIFETIME,
            audience: None,
        }
    }

    /// Accepts only tokens for `audience` (the projected token the operator
    /// mounts into pods), so a pod's default API token is refused.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_string());
        self
    }

    /// The CA (to issue the endpoint's own serving certificate).
    pub fn ca(&self) -> &Authority {
        &self.ca
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Asks the API server who `token` is.
    pub async fn review(&self, token: &str) -> Result<Reviewed, IssueError> {
        let review = TokenReview {
            metadata: ObjectMeta::default(),
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: self.audience.clone().map(|a| vec![a]),
            },
            status: None,
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| IssueError::Api(e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(IssueError::Unauthenticated(
                status
                    .error
                    .unwrap_or_else(|| "token not authenticated".into()),
            ));
        }
        if let Some(audience) = &self.audience {
            // An authenticator that ignores audiences answers without them.
            if !status.audiences.iter().flatten().any(|a| a == audience) {
                return Err(IssueError::Unauthenticated(format!(
                    "token not valid for audience {audience:?}"
                )));
            }
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let Some(rest) = username.strip_prefix("system:serviceaccount:") else {
            return Err(IssueError::Forbidden(format!(
                "{username:?} is not a ServiceAccount"
            )));
        };
        let Some((namespace, service_account)) = rest.split_once(':') else {
            return Err(IssueError::Forbidden(format!(
                "malformed username {username:?}"
            )));
        };
        let pod = user
            .extra
            .unwrap_or_default()
            .get("authentication.kubernetes.io/pod-name")
            .and_then(|v| v.first().cloned());
        Ok(Reviewed {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            pod,
        })
    }

    /// Checks the token, then signs the CSR for the token's identity.
    pub async fn issue(&self, bearer: Option<&str>, csr: &[u8]) -> Result<String, IssueError> {
        let token = bearer
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
            .ok_or_else(|| IssueError::Unauthenticated("missing bearer token".into()))?;
        if csr.len() > MAX_CSR_BYTES {
            return Err(IssueError::BadCsr(format!(
                "larger than {MAX_CSR_BYTES} bytes"
            )));
        }
        let csr = std::str::from_utf8(csr).map_err(|_| IssueError::BadCsr("not PEM".into()))?;
        let who = self.review(token).await?;
        let id = SpiffeId::new(&self.trust_domain, &who.namespace, &who.service_account)
            .map_err(|e| IssueError::Forbidden(e.to_string()))?;
        let dns = who
            .pod
            .iter()
            .map(|pod| {
                format!(
                    "{pod}.{}.{}.svc",
                    crate::render::GOSSIP_SERVICE,
                    who.namespace
                )
            })
            .collect();
        let cert = self
            .ca
            .issue_from_csr(csr, &LeafSpec::new(id.clone(), dns, self.lifetime))
            .map_err(|e| IssueError::BadCsr(e.to_string()))?;
        tracing::info!(identity = %id, pod = ?who.pod, "issued a mesh certificate");
        Ok(cert)
    }

    /// Answers one HTTP request to the endpoint.
    pub async fn respond(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String, kind: &'static str| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, kind)
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_default()
        };
        if path != CERTIFICATE_PATH {
            return text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain");
        }
        if method != Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST a CSR\n".into(),
                "text/plain",
            );
        }
        match self.issue(authorization, body).await {
            Ok(pem) => text(StatusCode::OK, pem, "application/x-pem-file"),
            Err(e) => {
                tracing::warn!(error = %e, "certificate refused");
                text(e.status(), format!("{e}\n"), "text/plain")
            }
        }
    }
}

/// Loads the CA from Secret `name` in `namespace`, creating it (once, even
/// with two replicas racing) when absent.
pub async fn load_or_create_ca(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    trust_domain: &str,
) -> Result<Authority, String> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        if let Some(secret) = api.get_opt(name).await.map_err(|e| e.to_string())? {
            return ca_from_secret(&secret).map_err(|e| format!("Secret {namespace}/{name}: {e}"));
        }
        let ca = Authority::generate(trust_domain).map_err(|e| e.to_string())?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    "ca.crt".to_string(),
                    ByteString(ca.cert_pem().as_bytes().to_vec()),
                ),
                (
                    "ca.key".to_string(),
                    ByteString(ca.key_pem().as_bytes().to_vec()),
                ),
            ])),
            ..Secret::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(%namespace, %name, "created the mesh CA Secret");
                return Ok(ca);
            }
            // Another replica won the race: read theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("cannot create or read Secret {namespace}/{name}"))
}

fn ca_from_secret(secret: &Secret) -> Result<Authority, String> {
    let data = secret.data.clone().unwrap_or_default();
    let field = |k: &str| -> Result<String, String> {
        let v = data.get(k).ok_or_else(|| format!("no {k}"))?;
        String::from_utf8(v.0.clone()).map_err(|_| format!("{k} is not PEM"))
    };
    Authority::from_pem(&field("ca.crt")?, &field("ca.key")?).map_err(|e| e.to_string())
}

/// Shared handle for the HTTPS server.
pub type SharedIdentity = Arc<IdentityService>;

#[cfg(test)]
mod tests;
