//! Handshakes between two endpoints holding mesh certificates: a
//! certificate from the mesh CA is accepted, one from another CA or an
//! expired one is refused, and renewal through the store changes what new
//! handshakes present.

use std::sync::Arc;
use std::time::Duration;

use shardmesh_identity::ca::LeafSpec;
use shardmesh_identity::tls::{client_config, failure_reason, peer_identity, server_config, Trust};
use shardmesh_identity::{Authority, CertStore, LeafKey, SpiffeId};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TD: &str = "mesh.test";

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "default", sa).expect("valid id")
}

/// A store with a certificate for `sa` issued by `ca` through a CSR.
fn store(ca: &Authority, sa: &str, spec: Option<LeafSpec>) -> Arc<CertStore> {
    let key = LeafKey::generate().expect("key");
    let csr = key
        .csr_pem(&id(sa), &[format!("{sa}.default.svc")])
        .expect("csr");
    let spec = spec.unwrap_or_else(|| {
        LeafSpec::new(
            id(sa),
            vec![format!("{sa}.default.svc")],
            Duration::from_secs(3600),
        )
    });
    let cert = ca.issue_from_csr(&csr, &spec).expect("issue");
    Arc::new(CertStore::from_pem(cert.as_bytes(), key.key_pem().as_bytes()).expect("store"))
}

fn trust(ca: &Authority) -> Trust {
    Trust::from_pem(ca.cert_pem().as_bytes(), TD).expect("trust")
}

/// A mesh server on loopback that accepts one TLS handshake; its outcome
/// comes back through the task.
async fn one_accept() -> (
    Trust,
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<(), std::io::Error>>,
) {
    let ca = Authority::generate(TD).expect("ca");
    let t = trust(&ca);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor =
        TlsAcceptor::from(server_config(store(&ca, "server", None), &t).expect("config"));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        acceptor.accept(tcp).await.map(|_| ())
    });
    (t, addr, server)
}

struct Outcome {
    client: Result<(), std::io::Error>,
    server: Result<Option<SpiffeId>, std::io::Error>,
}

/// One handshake plus a byte each way over loopback TCP.
async fn handshake(
    server_store: Arc<CertStore>,
    server_trust: &Trust,
    client_store: Arc<CertStore>,
    client_trust: &Trust,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor =
        TlsAcceptor::from(server_config(server_store, server_trust).expect("server config"));
    let connector =
        TlsConnector::from(client_config(client_store, client_trust).expect("client config"));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let who = peer_identity(tls.get_ref().1.peer_certificates());
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        tls.write_all(&b).await?;
        tls.flush().await?;
        Ok::<_, std::io::Error>(who)
    });
    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"x").await?;
        tls.flush().await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok(())
    }
    .await;
    let server = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server finishes")
        .expect("server task");
    Outcome { client, server }
}

#[tokio::test]
async fn certificate_from_the_mesh_ca_is_accepted_both_ways() {
    let ca = Authority::generate(TD).expect("ca");
    let t = trust(&ca);
    let out = handshake(
        store(&ca, "server", None),
        &t,
        store(&ca, "client", None),
        &t,
    )
    .await;
    out.client.expect("client handshake");
    assert_eq!(out.server.expect("server handshake"), Some(id("client")));
}

#[tokio::test]
async fn client_with_a_certificate_from_another_ca_is_refused() {
    let ca = Authority::generate(TD).expect("ca");
    let other = Authority::generate(TD).expect("other ca");
    let t = trust(&ca);
    let out = handshake(
        store(&ca, "server", None),
        &t,
        store(&other, "intruder", None),
        &t,
    )
    .await;
    let err = out.server.expect_err("server refuses");
    assert_eq!(failure_reason(&err), "unknown-ca", "{err}");
}

#[tokio::test]
async fn server_with_a_certificate_from_another_ca_is_refused() {
    let ca = Authority::generate(TD).expect("ca");
    let other = Authority::generate(TD).expect("other ca");
    let out = handshake(
        store(&other, "impostor", None),
        &trust(&other),
        store(&ca, "client", None),
        &trust(&ca),
    )
    .await;
    let err = out.client.expect_err("client refuses");
    assert_eq!(failure_reason(&err), "unknown-ca", "{err}");
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let ca = Authority::generate(TD).expect("ca");
    let t = trust(&ca);
    let now = OffsetDateTime::now_utc();
    let spec = LeafSpec {
        id: id("old"),
        dns_names: vec![],
        not_before: now - Duration::from_secs(7200),
        not_after: now - Duration::from_secs(60),
    };
    let out = handshake(
        store(&ca, "server", None),
        &t,
        store(&ca, "old", Some(spec)),
        &t,
    )
    .await;
    let err = out.server.expect_err("server refuses");
    assert_eq!(failure_reason(&err), "expired", "{err}");
}

#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    let (t, addr, server) = one_accept().await;
    let config = rustls::ClientConfig::builder_with_provider(shardmesh_identity::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(t.roots())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("server.default.svc").expect("name");
    // The client may finish its side before the server's alert arrives.
    let _ = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let err = server.await.expect("task").expect_err("server refuses");
    assert_eq!(failure_reason(&err), "no-client-certificate", "{err}");
}

#[tokio::test]
async fn plaintext_is_refused() {
    let (_, addr, server) = one_accept().await;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let err = server.await.expect("task").expect_err("server refuses");
    assert_eq!(failure_reason(&err), "not-tls", "{err}");
}

#[tokio::test]
async fn renewal_changes_what_new_handshakes_present() {
    let ca = Authority::generate(TD).expect("ca");
    let t = trust(&ca);
    let client = store(&ca, "client", None);
    let before = client.info();
    let key = LeafKey::generate().expect("key");
    let cert = ca
        .issue_from_csr(
            &key.csr_pem(&id("client"), &[]).expect("csr"),
            &LeafSpec::new(id("client"), vec![], Duration::from_secs(7200)),
        )
        .expect("issue");
    let after = client
        .replace_pem(cert.as_bytes(), key.key_pem().as_bytes())
        .expect("replace");
    assert!(after.not_after > before.not_after);
    let out = handshake(store(&ca, "server", None), &t, client, &t).await;
    out.client.expect("client handshake");
    out.server.expect("server handshake");
}

#[test]
fn ca_round_trips_through_pem_and_refuses_a_foreign_key() {
    let ca = Authority::generate(TD).expect("ca");
    let loaded = Authority::from_pem(ca.cert_pem(), ca.key_pem()).expect("load");
    let key = LeafKey::generate().expect("key");
    let csr = key.csr_pem(&id("a"), &[]).expect("csr");
    loaded
        .issue_from_csr(
            &csr,
            &LeafSpec::new(id("a"), vec![], Duration::from_secs(60)),
        )
        .expect("issue with loaded CA");
    let other = Authority::generate(TD).expect("other");
    assert!(Authority::from_pem(ca.cert_pem(), other.key_pem()).is_err());
    assert!(Authority::from_pem("garbage", ca.key_pem()).is_err());
}

#[test]
fn ca_ignores_the_names_a_csr_asks_for() {
    let ca = Authority::generate(TD).expect("ca");
    let key = LeafKey::generate().expect("key");
    let csr = key
        .csr_pem(&id("admin"), &["evil.example".into()])
        .expect("csr");
    let cert = ca
        .issue_from_csr(
            &csr,
            &LeafSpec::new(
                id("bank"),
                vec!["bank-0.bank".into()],
                Duration::from_secs(60),
            ),
        )
        .expect("issue");
    let store = CertStore::from_pem(cert.as_bytes(), key.key_pem().as_bytes()).expect("store");
    assert_eq!(store.info().id, id("bank"));
    assert!(ca
        .issue_from_csr(
            "not a csr",
            &LeafSpec::new(id("bank"), vec![], Duration::from_secs(60))
        )
        .is_err());
}
