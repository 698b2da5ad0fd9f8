//! The `tally.Tally` implementation.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{BinaryMetadataValue, MetadataMap};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::pb::tally_server;
use crate::proto::{AddRequest, Chunk, Total, UploadSummary, WatchRequest};

/// Largest filler a `Watch` message may ask for (bad input never allocates
/// without bound).
const MAX_PAYLOAD: u32 = 4 << 20;
/// Most messages one `Watch` may ask for.
const MAX_COUNT: u32 = 100_000;

/// The service: counters and per-operation try counts, in memory.
#[derive(Clone, Default)]
pub struct Tally {
    pod: Arc<str>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    totals: HashMap<String, i64>,
    tries: HashMap<String, u32>,
}

impl Tally {
    /// A service answering as pod `pod`.
    pub fn new(pod: impl Into<Arc<str>>) -> Self {
        Self {
            pod: pod.into(),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn text(meta: &MetadataMap, key: &str) -> String {
    meta.get(key)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// An injected failure: `code`, `message`, and [`crate::DETAIL`] as binary
/// metadata.
fn injected(code: Code, message: &str) -> Status {
    let mut status = Status::new(code, message);
    status.metadata_mut().insert_bin(
        crate::DETAIL_KEY,
        BinaryMetadataValue::from_bytes(crate::DETAIL),
    );
    status
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl tally_server::Tally for Tally {
    async fn add(&self, request: Request<AddRequest>) -> Result<Response<Total>, Status> {
        let grpc_timeout = text(request.metadata(), "grpc-timeout");
        let shard = text(request.metadata(), "x-shardmesh-shard");
        let req = request.into_inner();
        if req.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(req.sleep_ms.min(60_000).into())).await;
        }
        let (total, attempts) = {
            let mut state = self.lock();
            let attempts = if req.op.is_empty() {
                1
            } else {
                let n = state.tries.entry(req.op.clone()).or_default();
                *n = n.saturating_add(1);
                *n
            };
            if attempts <= req.fail_times {
                return Err(injected(req.fail_code.into(), &req.fail_message));
            }
            let total = state.totals.entry(req.key.clone()).or_default();
            *total = total.saturating_add(req.amount);
            (*total, attempts)
        };
        Ok(Response::new(Total {
            key: req.key,
            total,
            served_by: self.pod.to_string(),
            attempts,
            grpc_timeout,
            shard,
            payload: Vec::new(),
        }))
    }

    type WatchStream = BoxStream<Total>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        if req.payload_bytes > MAX_PAYLOAD || req.count > MAX_COUNT {
            return Err(Status::invalid_argument("count or payload too large"));
        }
        let total = self.lock().totals.get(&req.key).copied().unwrap_or(0);
        let pod = self.pod.to_string();
        let filler = vec![0x5a_u8; req.payload_bytes as usize];
        let stream = tokio_stream::iter(0..req.count).map(move |i| {
            Ok(Total {
                key: req.key.clone(),
                total: total.saturating_add(i.into()),
                served_by: pod.clone(),
                payload: filler.clone(),
                ..Total::default()
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn upload(
        &self,
        request: Request<Streaming<Chunk>>,
    ) -> Result<Response<UploadSummary>, Status> {
        let mut stream = request.into_inner();
        let mut summary = UploadSummary {
            served_by: self.pod.to_string(),
            ..UploadSummary::default()
        };
        while let Some(chunk) = stream.message().await? {
            summary.messages = summary.messages.saturating_add(1);
            summary.bytes = summary.bytes.saturating_add(chunk.data.len() as u64);
        }
        Ok(Response::new(summary))
    }

    type ChatStream = BoxStream<Chunk>;

    async fn chat(
        &self,
        request: Request<Streaming<Chunk>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let mut served_by = MetadataMap::new();
        if let Ok(v) = self.pod.parse() {
            served_by.insert("tally-served-by", v);
        }
        // A message `fail` ends the call with INTERNAL and binary metadata,
        // in the trailers after the messages echoed so far.
        let echo = request.into_inner().map(|m| match m {
            Ok(chunk) if chunk.data == b"fail" => Err(injected(Code::Internal, "asked to fail")),
            other => other,
        });
        let mut rsp = Response::new(Box::pin(echo) as Self::ChatStream);
        *rsp.metadata_mut() = served_by;
        Ok(rsp)
    }
}
