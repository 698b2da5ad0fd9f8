//! The identity endpoint against the in-memory API server: TokenReview
//! decides the identity, the CA Secret is created once, and the HTTPS
//! listener answers a CSR.

use std::sync::Arc;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use shardmesh_identity::{CertStore, LeafKey, SpiffeId};

use super::*;
use crate::testing::fake_api::FakeApi;

const TD: &str = "cluster.local";

async fn service(fake: &FakeApi) -> IdentityService {
    let ca = load_or_create_ca(&fake.client(), "shardmesh-system", CA_SECRET, TD)
        .await
        .unwrap();
    IdentityService::new(ca, fake.client(), TD)
}

fn csr(key: &LeafKey) -> String {
    // The CSR asks for an identity it is not: the CA must ignore that.
    let wish = SpiffeId::new(TD, "kube-system", "admin").unwrap();
    key.csr_pem(&wish, &["evil.example".into()]).unwrap()
}

#[tokio::test]
async fn token_review_decides_the_identity_in_the_certificate() {
    let fake = FakeApi::new();
    fake.add_token("tok-bank-0", "shop", "bank", Some("bank-0"));
    let svc = service(&fake).await;
    let key = LeafKey::generate().unwrap();
    let pem = svc
        .issue(Some("Bearer tok-bank-0"), csr(&key).as_bytes())
        .await
        .unwrap();
    let store = CertStore::from_pem(pem.as_bytes(), key.key_pem().as_bytes()).unwrap();
    let info = store.info();
    assert_eq!(info.id.uri(), "spiffe://cluster.local/ns/shop/sa/bank");
    let life = info.not_after - info.not_before;
    assert!((24 * 3600..=24 * 3600 + 600).contains(&life), "{life}");
    let text = String::from_utf8_lossy(pem.as_bytes()).to_string();
    assert!(!text.is_empty());
    assert!(fake
        .calls()
        .iter()
        .any(|c| c.method == Method::POST && c.path.ends_with("/tokenreviews")));
}

#[tokio::test]
async fn bad_tokens_and_csrs_are_refused() {
    let fake = FakeApi::new();
    fake.add_token("good", "shop", "bank", None);
    let svc = service(&fake).await;
    let key = LeafKey::generate().unwrap();
    let csr = csr(&key);
    for (auth, body, status) in [
        (None, csr.as_str(), StatusCode::UNAUTHORIZED),
        (Some("Basic abc"), csr.as_str(), StatusCode::UNAUTHORIZED),
        (Some("Bearer nope"), csr.as_str(), StatusCode::UNAUTHORIZED),
        (Some("Bearer good"), "not a csr", StatusCode::BAD_REQUEST),
    ] {
        let rsp = svc
            .respond(&Method::POST, CERTIFICATE_PATH, auth, body.as_bytes())
            .await;
        assert_eq!(rsp.status(), status, "{auth:?}");
    }
    let rsp = svc
        .respond(&Method::GET, CERTIFICATE_PATH, Some("Bearer good"), b"")
        .await;
    assert_eq!(rsp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let big = vec![b'a'; MAX_CSR_BYTES + 1];
    let rsp = svc
        .respond(&Method::POST, CERTIFICATE_PATH, Some("Bearer good"), &big)
        .await;
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_ca_secret_is_created_once_and_reused() {
    let fake = FakeApi::new();
    let a = load_or_create_ca(&fake.client(), "ns", CA_SECRET, TD)
        .await
        .unwrap();
    let b = load_or_create_ca(&fake.client(), "ns", CA_SECRET, TD)
        .await
        .unwrap();
    assert_eq!(a.cert_pem(), b.cert_pem());
    assert_eq!(fake.writes_to("/secrets"), 1);
    // A user-supplied CA is used as is.
    let mine = Authority::generate(TD).unwrap();
    fake.put(
        "v1/secrets",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mine", "namespace": "ns"},
            "data": {
                "ca.crt": base64_of(mine.cert_pem()),
                "ca.key": base64_of(mine.key_pem()),
            }
        }),
    );
    let loaded = load_or_create_ca(&fake.client(), "ns", "mine", TD)
        .await
        .unwrap();
    assert_eq!(loaded.cert_pem(), mine.cert_pem());
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn the_https_endpoint_answers_a_csr() {
    let fake = FakeApi::new();
    fake.add_token("tok", "shop", "bank", Some("bank-1"));
    let svc = Arc::new(service(&fake).await);
    let ca_pem = svc.ca().cert_pem().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        svc,
        vec!["localhost".into()],
        "shardmesh-system",
        async move {
            let _ = stopped.await;
        },
    ));
    let trust = shardmesh_identity::tls::Trust::from_pem(ca_pem.as_bytes(), TD).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(shardmesh_identity::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(trust.roots())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let key = LeafKey::generate().unwrap();
    let req = http::Request::post(CERTIFICATE_PATH)
        .header("host", "localhost")
        .header("authorization", "Bearer tok")
        .body(http_body_util::Full::new(bytes::Bytes::from(csr(&key))))
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    let pem = rsp.into_body().collect().await.unwrap().to_bytes();
    let store = CertStore::from_pem(&pem, key.key_pem().as_bytes()).unwrap();
    assert_eq!(
        store.info().id.uri(),
        "spiffe://cluster.local/ns/shop/sa/bank"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_audience_refuses_tokens_for_other_audiences() {
    let fake = FakeApi::new();
    fake.add_token("projected", "shop", "bank", Some("bank-0"));
    fake.set_token_audience("projected", "shardmesh");
    fake.add_token("api-token", "shop", "bank", None);
    fake.set_token_audience("api-token", "https://kubernetes.default.svc");
    let svc = service(&fake).await.with_audience("shardmesh");
    let key = LeafKey::generate().unwrap();
    let pem = svc
        .issue(Some("Bearer projected"), csr(&key).as_bytes())
        .await
        .unwrap();
    assert!(!pem.is_empty());
    let refused = svc
        .issue(Some("Bearer api-token"), csr(&key).as_bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IssueError::Unauthenticated(_)),
        "{refused}"
    );
    let sent = fake
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/tokenreviews"))
        .count();
    assert_eq!(sent, 2);
}
