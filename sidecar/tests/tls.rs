//! Mutual TLS between real sidecars on loopback: requests cross the mesh
//! over h2 on TLS 1.3; plaintext, another CA's certificate and an expired
//! certificate are refused at the inbound port; a disallowed identity gets
//! 403 `forbidden`; renewal under steady traffic loses no request.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use shardmesh_config::TlsConfig;
use shardmesh_identity::ca::LeafSpec;
use shardmesh_identity::{Authority, LeafKey, SpiffeId};
use support::*;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

const TD: &str = "mesh.test";

/// A scratch directory for one test's PEM files.
fn scratch(test: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "shardmesh-tls-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "default", sa).unwrap()
}

/// Writes `dir/NAME.crt` and `dir/NAME.key` for identity `sa`, valid for `spec_life`.
fn write_leaf(ca: &Authority, dir: &Path, name: &str, sa: &str, life: Duration) {
    let key = LeafKey::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    let spec = LeafSpec {
        id: id(sa),
        dns_names: vec![format!("{name}.{sa}.default.svc")],
        not_before: now - Duration::from_secs(1),
        not_after: now + life,
    };
    let cert = ca.issue_for_key(key.key_pair(), &spec).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.key_pem()).unwrap();
}

/// The tls section of pod `name` (files in `dir`, CA in `dir/ca.crt`).
fn tls_config(dir: &Path, name: &str, allowed: &[&str]) -> TlsConfig {
    TlsConfig {
        trust_domain: TD.into(),
        ca_file: dir.join("ca.crt").display().to_string(),
        cert_file: Some(dir.join(format!("{name}.crt")).display().to_string()),
        key_file: Some(dir.join(format!("{name}.key")).display().to_string()),
        issuer: None,
        allowed_identities: allowed.iter().map(|s| s.to_string()).collect(),
        handshake_timeout_ms: 2_000,
    }
}

struct Mesh {
    _apps: Vec<TestApp>,
    members: Vec<Member>,
    ca: Authority,
    dir: PathBuf,
}

/// `bank-0..n` (service bank, identity sa/bank) and `web-0` (service web,
/// identity sa/web), all with certificates from one CA. `allowed` restricts
/// who may call bank.
async fn mesh(test: &str, banks: usize, allowed: &'static [&'static str]) -> Mesh {
    let dir = scratch(test);
    let ca = Authority::generate(TD).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    let mut apps = Vec::new();
    let mut specs = Vec::new();
    let mut names: Vec<(String, &str)> =
        (0..banks).map(|i| (format!("bank-{i}"), "bank")).collect();
    names.push(("web-0".into(), "web"));
    for (name, service) in &names {
        write_leaf(&ca, &dir, name, service, Duration::from_secs(3600));
        let app = start_app(
            name,
            |_req| async move { (StatusCode::OK, "ok".to_string()) },
        )
        .await;
        specs.push(MemberSpec {
            name: name.clone(),
            service: service.to_string(),
            app: app.addr,
        });
        apps.push(app);
    }
    let d = dir.clone();
    let members = start_mesh(
        specs,
        vec![service("bank", 16), service("web", 1)],
        move |c| {
            let allowed = if c.pod.service == "bank" {
                allowed
            } else {
                &[]
            };
            c.tls = Some(tls_config(&d, &c.pod.name, allowed));
        },
    )
    .await;
    Mesh {
        _apps: apps,
        members,
        ca,
        dir,
    }
}

async fn get_account(m: &Member, key: &str) -> Got {
    send(
        m.addrs.outbound,
        "GET",
        &format!("/accounts/{key}"),
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await
}

#[tokio::test]
async fn requests_cross_the_mesh_over_mutual_tls() {
    let mesh = mesh("cross", 2, &[]).await;
    let mut served = std::collections::BTreeSet::new();
    for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        for m in &mesh.members {
            let got = get_account(m, key).await;
            assert_eq!(got.status, StatusCode::OK, "{}", got.body);
            served.insert(got.header("x-shardmesh-served-by").unwrap().to_string());
        }
    }
    assert_eq!(served.len(), 2, "both bank members served: {served:?}");
    let text = metrics(&mesh.members[0]).await;
    assert!(
        metric_value(&text, "shardmesh_tls_handshakes_total") >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("shardmesh_tls_peer_identities_total{identity=\"spiffe://mesh.test/ns/default/sa/web\"}"),
        "{text}"
    );
    assert!(metric_value(&text, "shardmesh_tls_cert_expiry_timestamp_seconds") > 1.0e9);
}

#[tokio::test]
async fn plaintext_to_the_inbound_port_fails() {
    let mesh = mesh("plain", 1, &[]).await;
    let bank = &mesh.members[0];
    // HTTP/1.1 and h2c prior knowledge both: the connection is dropped.
    let (read, buf) = send_plaintext(
        bank.addrs.inbound,
        b"GET /accounts/a HTTP/1.1\r\nhost: bank\r\nx-shardmesh-service: bank\r\n\r\n",
    )
    .await;
    assert!(
        read.is_err() || !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
        "plaintext got an answer: {:?}",
        String::from_utf8_lossy(&buf)
    );
    let h2c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::get(format!("http://{}/accounts/a", bank.addrs.inbound))
        .header("x-shardmesh-service", "bank")
        .body(Default::default())
        .unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(10), h2c.request(req))
        .await
        .expect("h2c attempt ends");
    assert!(rsp.is_err(), "h2c got an answer: {rsp:?}");
    let text = metrics(bank).await;
    assert!(
        metric_value(
            &text,
            "shardmesh_tls_handshake_failures_total{reason=\"not-tls\"}"
        ) >= 2.0,
        "{text}"
    );
}

/// Restarts `web-0`'s certificate as one from `ca` with `life`, then asks
/// it to call bank.
async fn call_with_certificate(mesh: &Mesh, ca: &Authority, life: Option<Duration>) -> Got {
    let web = mesh.members.last().unwrap();
    let tls = web.tls.as_ref().unwrap();
    match life {
        Some(life) => write_leaf(ca, &mesh.dir, "web-0", "web", life),
        None => {
            // Already expired: valid an hour ago for a minute.
            let key = LeafKey::generate().unwrap();
            let now = OffsetDateTime::now_utc();
            let spec = LeafSpec {
                id: id("web"),
                dns_names: vec![],
                not_before: now - Duration::from_secs(3600),
                not_after: now - Duration::from_secs(3540),
            };
            std::fs::write(
                mesh.dir.join("web-0.crt"),
                ca.issue_for_key(key.key_pair(), &spec).unwrap(),
            )
            .unwrap();
            std::fs::write(mesh.dir.join("web-0.key"), key.key_pem()).unwrap();
        }
    }
    tls.renew().await.unwrap();
    get_account(web, "a").await
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let mesh = mesh("otherca", 1, &[]).await;
    let other = Authority::generate(TD).unwrap();
    let got = call_with_certificate(&mesh, &other, Some(Duration::from_secs(3600))).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
    assert_eq!(got.header("x-shardmesh-error"), Some("unavailable"));
    let text = metrics(&mesh.members[0]).await;
    assert!(
        metric_value(
            &text,
            "shardmesh_tls_handshake_failures_total{reason=\"unknown-ca\"}"
        ) >= 1.0,
        "{text}"
    );
    // Back to a certificate of the mesh CA: served again, no restart needed.
    let got = call_with_certificate(&mesh, &mesh.ca, Some(Duration::from_secs(3600))).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let mesh = mesh("expired", 1, &[]).await;
    let got = call_with_certificate(&mesh, &mesh.ca, None).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
    let text = metrics(&mesh.members[0]).await;
    assert!(
        metric_value(
            &text,
            "shardmesh_tls_handshake_failures_total{reason=\"expired\"}"
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_disallowed_identity_gets_403_forbidden() {
    static FRONTEND_ONLY: &[&str] = &["spiffe://mesh.test/ns/default/sa/frontend"];
    let mesh = mesh("forbidden", 2, FRONTEND_ONLY).await;
    let web = mesh.members.last().unwrap();
    let got = get_account(web, "a").await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert_eq!(got.header("x-shardmesh-error"), Some("forbidden"));
    let json: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(json["error"], "forbidden");
    assert!(
        json["message"].as_str().unwrap().contains("sa/web"),
        "{json}"
    );
    let text = metrics(web).await;
    assert!(
        text.contains("shardmesh_requests_total{code=\"403\",direction=\"outbound\",reason=\"forbidden\",service=\"bank\"}"),
        "{text}"
    );
    // Members of bank itself stay allowed (forwards between members).
    for key in ["a", "b", "c", "d"] {
        let got = get_account(&mesh.members[0], key).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    }
    // The same caller is served where its identity is on the list.
    static WEB_ALLOWED: &[&str] = &["spiffe://mesh.test/ns/default/sa/web"];
    let allowed = self::mesh("allowed", 1, WEB_ALLOWED).await;
    let got = get_account(allowed.members.last().unwrap(), "a").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_under_steady_traffic_loses_no_request() {
    let mesh = Arc::new(mesh("renewal", 2, &[]).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let mesh = mesh.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) && i < 100_000 {
                let m = &mesh.members[(w + i) % mesh.members.len()];
                let got = get_account(m, &format!("k{i}")).await;
                if got.status == StatusCode::OK {
                    ok += 1;
                } else {
                    failed.push(format!("{} {}", got.status, got.body));
                }
                i += 1;
            }
            (ok, failed)
        }));
    }
    // Renew every member's certificate five times while traffic flows.
    let mut expiries = Vec::new();
    for round in 0..5u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for m in &mesh.members {
            let life = Duration::from_secs(3600 + 60 * (round + 1));
            let sa = if m.service == "bank" { "bank" } else { "web" };
            write_leaf(&mesh.ca, &mesh.dir, &m.name, sa, life);
            let info = m.tls.as_ref().unwrap().renew().await.unwrap();
            expiries.push(info.not_after);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 100, "steady traffic: only {ok} requests");
    let text = metrics(&mesh.members[0]).await;
    let gauge = metric_value(&text, "shardmesh_tls_cert_expiry_timestamp_seconds");
    assert!(gauge >= (*expiries.iter().max().unwrap() - 120) as f64);
    println!("renewal under traffic: {ok} requests, 0 failed, 5 renewals per member");
}

#[tokio::test]
async fn renewal_happens_at_seventy_percent_of_the_lifetime() {
    let mesh = mesh("seventy", 1, &[]).await;
    let bank = &mesh.members[0];
    let tls = bank.tls.as_ref().unwrap();
    // A 4 s certificate: renewal due 2.8 s after its start.
    write_leaf(
        &mesh.ca,
        &mesh.dir,
        "bank-0",
        "bank",
        Duration::from_secs(4),
    );
    let short = tls.renew().await.unwrap();
    // What the renewal will pick up.
    write_leaf(
        &mesh.ca,
        &mesh.dir,
        "bank-0",
        "bank",
        Duration::from_secs(3600),
    );
    let due = short.renew_at();
    wait_for("renewal", Duration::from_secs(20), async || {
        tls.info().not_after > short.not_after + 60
    })
    .await;
    let renewed_after = std::time::SystemTime::now();
    assert!(renewed_after >= due, "renewed before 70 % of the lifetime");
    assert_eq!(
        get_account(&mesh.members[1], "a").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_push_pull_runs_inside_mutual_tls() {
    let dir = scratch("gossip");
    let ca = Authority::generate(TD).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(
        dir.join("keyring"),
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n",
    )
    .unwrap();
    let mut apps = Vec::new();
    let mut admins = Vec::new();
    let mut gossip_addrs = Vec::new();
    let mut stops = Vec::new();
    for i in 0..2 {
        let name = format!("bank-{i}");
        write_leaf(&ca, &dir, &name, "bank", Duration::from_secs(3600));
        let app = start_app(&name, |_| async { (StatusCode::OK, "ok".to_string()) }).await;
        let mut c = shardmesh_config::SidecarConfig::default();
        c.pod.name = name.clone();
        c.pod.service = "bank".into();
        c.app.address = app.addr.to_string();
        c.listeners.outbound = "127.0.0.1:0".into();
        c.listeners.inbound = "127.0.0.1:0".into();
        c.listeners.admin = "127.0.0.1:0".into();
        c.listeners.gossip = "127.0.0.1:0".into();
        c.shutdown_grace_ms = 1000;
        c.services = vec![service("bank", 8)];
        let g = &mut c.membership.gossip;
        g.enabled = true;
        g.probe_interval_ms = 100;
        g.probe_timeout_ms = 50;
        g.push_pull_interval_ms = 200;
        g.keyring_file = Some(dir.join("keyring").display().to_string());
        c.membership.seeds.static_seeds = gossip_addrs
            .iter()
            .map(|a: &std::net::SocketAddr| a.to_string())
            .collect();
        c.tls = Some(tls_config(&dir, &name, &[]));
        let sidecar = shardmesh_sidecar::Sidecar::bind(c).await.unwrap();
        admins.push(sidecar.addrs().admin);
        gossip_addrs.push(sidecar.addrs().gossip.unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sidecar.run(async move {
            let _ = stopped.await;
        }));
        stops.push(stop);
        apps.push(app);
    }
    for admin in &admins {
        let admin = *admin;
        wait_for("2 alive members", Duration::from_secs(15), async || {
            let got = send(admin, "GET", "/debug/members", &[], "").await;
            let doc: serde_json::Value = serde_json::from_str(&got.body).unwrap_or_default();
            doc["members"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["health"] == "alive").count())
                == 2
        })
        .await;
    }
    // A plaintext push-pull frame gets no state back: the handshake fails.
    let (read, buf) = send_plaintext(gossip_addrs[0], &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]).await;
    assert!(
        read.is_err() || buf.is_empty() || buf[0] == 0x15,
        "plaintext push-pull answered: {buf:?}"
    );
    // Members still agree after several TLS push-pull rounds.
    let m = send(admins[1], "GET", "/ready", &[], "").await;
    assert_eq!(m.status, StatusCode::OK);
    drop(stops);
}

/// The handshake rate of a sidecar's inbound port: full TLS 1.3 handshakes
/// with a client certificate (no resumption), 4 clients in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test --release -p shardmesh-sidecar --test tls handshake_rate -- --ignored --nocapture"]
async fn handshake_rate() {
    const PER_CLIENT: usize = 500;
    let mesh = mesh("rate", 1, &[]).await;
    let bank = mesh.members[0].addrs.inbound;
    let cert = std::fs::read(mesh.dir.join("web-0.crt")).unwrap();
    let key = std::fs::read(mesh.dir.join("web-0.key")).unwrap();
    let store = Arc::new(shardmesh_identity::CertStore::from_pem(&cert, &key).unwrap());
    let ca = std::fs::read(mesh.dir.join("ca.crt")).unwrap();
    let trust = shardmesh_identity::tls::Trust::from_pem(&ca, TD).unwrap();
    let connector = tokio_rustls::TlsConnector::from(
        shardmesh_identity::tls::client_config(store, &trust).unwrap(),
    );
    let start = std::time::Instant::now();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let connector = connector.clone();
        clients.push(tokio::spawn(async move {
            for _ in 0..PER_CLIENT {
                let tcp = tokio::net::TcpStream::connect(bank).await.unwrap();
                let name = rustls::pki_types::ServerName::IpAddress(bank.ip().into());
                let mut tls = connector.connect(name, tcp).await.unwrap();
                // Wait for the server's session tickets so it has finished too.
                tls.shutdown().await.unwrap();
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    let n = 4 * PER_CLIENT;
    let text = metrics(&mesh.members[0]).await;
    let done = metric_value(&text, "shardmesh_tls_handshakes_total");
    println!(
        "handshake rate: {n} full mTLS handshakes in {took:.2} s = {:.0}/s; server counted {done}",
        n as f64 / took
    );
    assert!(done >= n as f64 * 0.99, "{text}");
}

/// Writes `bytes` in plaintext to a TLS-only port and reads until the peer
/// closes (within 10 s): the read result and whatever came back.
async fn send_plaintext(
    addr: std::net::SocketAddr,
    bytes: &[u8],
) -> (std::io::Result<usize>, Vec<u8>) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut buf),
    )
    .await
    .expect("the peer closes the connection within 10 s");
    (read, buf)
}
