//! gRPC through a local mesh (docs/grpc.md): the `tally` sample's tonic
//! client calls its sidecar's outbound listener over h2c; every call kind
//! reaches the key's owner through both sidecars and comes back with its
//! trailers; mesh failures come back as gRPC statuses; `grpc-timeout` is
//! the deadline; UNAVAILABLE is retried; the breaker counts INTERNAL, not
//! application statuses.

use std::time::Duration;

use shardmesh_e2e::tally::{client, keyed};
use shardmesh_e2e::{mesh, tally};
use shardmesh_tally::proto::{AddRequest, Chunk, WatchRequest};
use tonic::{Code, Request, Status};

/// `replicas` pods of the release `tally`.
fn mesh_reason(status: &Status) -> String {
    status
        .metadata()
        .get("x-shardmesh-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_call_kind_crosses_the_mesh_with_trailers_deadlines_retries_and_breakers() {
    let m = mesh::Mesh::up("grpc", &tally::manifest(3, ""), 110, &[]);
    m.wait_ready(Duration::from_secs(30));
    let outbound: Vec<String> = ["tally-0", "tally-1", "tally-2"]
        .iter()
        .map(|p| m.pod_field(p, "outbound"))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let timeout = Duration::from_secs(120);
        tokio::time::timeout(timeout, scenario(&outbound))
            .await
            .expect("scenario finished in time");
    });
}

async fn scenario(outbound: &[String]) {
    let mut a = client(&outbound[0]).await;
    let mut b = client(&outbound[1]).await;

    // Unary: one owner per key, whichever sidecar the app calls.
    for i in 0..20 {
        let key = format!("k{i}");
        let via_a = a
            .add(keyed(
                AddRequest {
                    key: key.clone(),
                    amount: 1,
                    ..Default::default()
                },
                &key,
            ))
            .await
            .expect("unary through the mesh");
        let served_header = via_a
            .metadata()
            .get("x-shardmesh-served-by")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let via_a = via_a.into_inner();
        let via_b = b
            .add(keyed(
                AddRequest {
                    key: key.clone(),
                    amount: 2,
                    ..Default::default()
                },
                &key,
            ))
            .await
            .expect("unary through the mesh")
            .into_inner();
        assert_eq!(via_a.served_by, via_b.served_by, "key {key} has one owner");
        assert_eq!(served_header.as_deref(), Some(via_a.served_by.as_str()));
        assert_eq!(via_b.total, 3, "both adds reached the same counter");
        assert!(
            !via_a.shard.is_empty(),
            "the owner's sidecar names the shard"
        );
    }

    // Server streaming, large messages: 8 x 1 MiB, far over the replay limit.
    let mut watch = a
        .watch(keyed(
            WatchRequest {
                key: "big".into(),
                count: 8,
                payload_bytes: 1 << 20,
            },
            "big",
        ))
        .await
        .expect("server streaming")
        .into_inner();
    let mut got = 0usize;
    while let Some(msg) = watch.message().await.expect("stream message") {
        assert_eq!(msg.payload.len(), 1 << 20);
        got += 1;
    }
    assert_eq!(got, 8);

    // Client streaming, large messages.
    let chunks = (0..8).map(|_| Chunk {
        key: "up".into(),
        data: vec![7u8; 1 << 20],
    });
    let summary = a
        .upload(keyed(tokio_stream::iter(chunks), "up"))
        .await
        .expect("client streaming")
        .into_inner();
    assert_eq!(summary.messages, 8);
    assert_eq!(summary.bytes, 8 << 20);

    // Bidirectional, ping-pong: each message is sent only after the echo of
    // the one before, so nothing on the path may wait for the whole stream.
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
    let outgoing = tokio_stream::wrappers::ReceiverStream::new(rx);
    tx.send(Chunk {
        key: "chat".into(),
        data: b"0".to_vec(),
    })
    .await
    .unwrap();
    let rsp = a.chat(keyed(outgoing, "chat")).await.expect("bidi call");
    assert!(
        rsp.metadata().get("tally-served-by").is_some(),
        "response metadata"
    );
    let mut incoming = rsp.into_inner();
    for i in 0..10u8 {
        let echo = incoming.message().await.expect("echo").expect("an echo");
        assert_eq!(echo.data, vec![b'0' + i]);
        if i < 9 {
            tx.send(Chunk {
                key: "chat".into(),
                data: vec![b'0' + i + 1],
            })
            .await
            .unwrap();
        }
    }
    // A status in the trailers, after messages, with binary metadata.
    tx.send(Chunk {
        key: "chat".into(),
        data: b"fail".to_vec(),
    })
    .await
    .unwrap();
    let status = loop {
        match incoming.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the call ended without its error status"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "asked to fail");
    let detail = status
        .metadata()
        .get_bin(shardmesh_tally::DETAIL_KEY)
        .expect("binary trailer");
    assert_eq!(detail.to_bytes().unwrap().as_ref(), shardmesh_tally::DETAIL);
    drop(tx);

    // An application status in a trailers-only answer, with binary metadata.
    let status = a
        .add(keyed(
            AddRequest {
                key: "nf".into(),
                fail_code: 5,
                fail_times: 1,
                fail_message: "no such counter".into(),
                op: "nf-1".into(),
                ..Default::default()
            },
            "nf",
        ))
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such counter");
    let detail = status
        .metadata()
        .get_bin(shardmesh_tally::DETAIL_KEY)
        .expect("binary metadata");
    assert_eq!(detail.to_bytes().unwrap().as_ref(), shardmesh_tally::DETAIL);

    // Mesh failures as gRPC statuses.
    let mut r = Request::new(AddRequest::default());
    r.metadata_mut()
        .insert("x-shardmesh-service", "nope".parse().unwrap());
    let status = a.add(r).await.expect_err("unknown service");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(mesh_reason(&status), "unknown-service");
    assert!(
        status.message().starts_with("unknown-service"),
        "{status:?}"
    );
    let status = a
        .add(Request::new(AddRequest::default()))
        .await
        .expect_err("no service");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(mesh_reason(&status), "bad-request");

    // grpc-timeout is the deadline, and reaches the app reduced.
    let mut r = keyed(
        AddRequest {
            key: "t".into(),
            ..Default::default()
        },
        "t",
    );
    r.set_timeout(Duration::from_secs(5));
    let seen = a.add(r).await.expect("in time").into_inner().grpc_timeout;
    let ms: u64 = seen
        .strip_suffix('m')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("grpc-timeout at the app: {seen:?}"));
    // The remaining budget, rounded up to whole milliseconds: on loopback
    // the path takes well under one.
    assert!(ms <= 5000 && ms > 3000, "forwarded reduced: {seen}");
    let mut r = keyed(
        AddRequest {
            key: "t".into(),
            sleep_ms: 3000,
            ..Default::default()
        },
        "t",
    );
    // The mesh's deadline (300 ms, `x-shardmesh-timeout-ms` wins over
    // `grpc-timeout`) passes first: tonic's own timer would race a mesh
    // deadline taken from the same `grpc-timeout`, and win by the path's
    // latency, answering CANCELLED itself.
    r.set_timeout(Duration::from_secs(3));
    r.metadata_mut()
        .insert("x-shardmesh-timeout-ms", "300".parse().unwrap());
    let started = std::time::Instant::now();
    let status = a.add(r).await.expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(mesh_reason(&status), "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // UNAVAILABLE before any message is retried (3 tries by default)...
    let ok = a
        .add(keyed(
            AddRequest {
                key: "r".into(),
                amount: 1,
                fail_code: 14,
                fail_times: 2,
                op: "retry-1".into(),
                ..Default::default()
            },
            "r",
        ))
        .await
        .expect("succeeds on the third try")
        .into_inner();
    assert_eq!(ok.attempts, 3);
    // ...and given up after the last try, as the app's status.
    let status = a
        .add(keyed(
            AddRequest {
                key: "r".into(),
                fail_code: 14,
                fail_times: 10,
                fail_message: "down".into(),
                op: "retry-2".into(),
                ..Default::default()
            },
            "r",
        ))
        .await
        .expect_err("still unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "down");

    // The breaker: application statuses are successes...
    for i in 0..10 {
        let status = b
            .add(keyed(
                AddRequest {
                    key: "brk".into(),
                    fail_code: 5,
                    fail_times: 1,
                    op: format!("nf-b{i}"),
                    ..Default::default()
                },
                "brk",
            ))
            .await
            .expect_err("NOT_FOUND");
        assert_eq!(status.code(), Code::NotFound);
    }
    b.add(keyed(
        AddRequest {
            key: "brk".into(),
            ..Default::default()
        },
        "brk",
    ))
    .await
    .expect("the breaker stayed closed");
    // ...INTERNAL is a failure: 5 in a row open the owner's breaker.
    for i in 0..5 {
        let status = b
            .add(keyed(
                AddRequest {
                    key: "brk".into(),
                    fail_code: 13,
                    fail_times: 1,
                    op: format!("int-{i}"),
                    ..Default::default()
                },
                "brk",
            ))
            .await
            .expect_err("INTERNAL");
        assert_eq!(status.code(), Code::Internal, "{status:?}");
    }
    let status = b
        .add(keyed(
            AddRequest {
                key: "brk".into(),
                ..Default::default()
            },
            "brk",
        ))
        .await
        .expect_err("circuit open");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(mesh_reason(&status), "circuit-open");
}
