//! The gRPC sample (`examples/tally`) as the e2e tests drive it: its
//! manifest for a local mesh, a request keyed through the mesh, and a tonic
//! client on a sidecar's outbound listener. One copy for the gRPC, replay
//! memory and tracing tests.

use std::time::Duration;

use shardmesh_tally::TallyClient;
use tonic::transport::Channel;
use tonic::Request;

use crate::bins;

/// `replicas` pods of the release `tally`, with `spec_extra` (YAML lines
/// indented by two spaces) appended to the spec.
pub fn manifest(replicas: u32, spec_extra: &str) -> String {
    format!(
        "apiVersion: shardmesh.io/v1alpha1\n\
         kind: ShardedService\n\
         metadata:\n  name: tally\n  annotations:\n    shardmesh.io/local-command: \"{}\"\n\
         spec:\n  replicas: {replicas}\n  appPort: 8080\n\
         {spec_extra}\
         \n  template:\n    spec:\n      containers:\n        - name: tally\n          image: ghcr.io/shardmesh/tally:0.1.0\n",
        bins::bin("tally").display()
    )
}

/// A request to `tally` for `key` (the mesh's service and key metadata).
pub fn keyed<T>(msg: T, key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    let md = r.metadata_mut();
    md.insert("x-shardmesh-service", "tally".parse().expect("ASCII"));
    md.insert(
        "x-shardmesh-key",
        key.parse().expect("a key that is valid metadata"),
    );
    r
}

/// A client over one HTTP/2 connection to the sidecar listener `outbound`.
pub async fn client(outbound: &str) -> TallyClient<Channel> {
    let channel = Channel::from_shared(format!("http://{outbound}"))
        .expect("a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the outbound listener");
    TallyClient::new(channel)
}
