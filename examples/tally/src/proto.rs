//! The messages of `tally.Tally`, written as prost structs (the `.proto`
//! equivalent is in `tally.proto` beside this crate, for other languages).

/// Adds `amount` to the counter `key` (the shard key, also sent as
/// `x-shardmesh-key` metadata). Test knobs: `sleep_ms` delays the answer;
/// `fail_times` > 0 answers the first `fail_times` tries of operation `op`
/// with status `fail_code` and `fail_message` (and binary metadata).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddRequest {
    /// The counter.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Added to the counter.
    #[prost(int64, tag = "2")]
    pub amount: i64,
    /// Delay before answering, milliseconds.
    #[prost(uint32, tag = "3")]
    pub sleep_ms: u32,
    /// gRPC status code of the injected failures.
    #[prost(int32, tag = "4")]
    pub fail_code: i32,
    /// How many tries of `op` fail before one succeeds.
    #[prost(uint32, tag = "5")]
    pub fail_times: u32,
    /// `grpc-message` of the injected failures.
    #[prost(string, tag = "6")]
    pub fail_message: String,
    /// Operation id: tries of one operation are counted together.
    #[prost(string, tag = "7")]
    pub op: String,
}

/// A counter's value and where it was computed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Total {
    /// The counter.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Its value after the call.
    #[prost(int64, tag = "2")]
    pub total: i64,
    /// The pod that answered (`SHARDMESH_POD_NAME`).
    #[prost(string, tag = "3")]
    pub served_by: String,
    /// Tries of this operation the server saw.
    #[prost(uint32, tag = "4")]
    pub attempts: u32,
    /// The `grpc-timeout` the server received (empty when none).
    #[prost(string, tag = "5")]
    pub grpc_timeout: String,
    /// The `x-shardmesh-shard` the sidecar sent (empty when none).
    #[prost(string, tag = "6")]
    pub shard: String,
    /// Filler bytes, for large messages.
    #[prost(bytes = "vec", tag = "7")]
    pub payload: Vec<u8>,
}

/// Streams `count` totals of `key`, each with `payload_bytes` of filler.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchRequest {
    /// The counter.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Messages to send.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// Filler bytes per message.
    #[prost(uint32, tag = "3")]
    pub payload_bytes: u32,
}

/// One message of a client stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// The counter the stream is about.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Payload.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// What an upload delivered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UploadSummary {
    /// Messages received.
    #[prost(uint32, tag = "1")]
    pub messages: u32,
    /// Payload bytes received.
    #[prost(uint64, tag = "2")]
    pub bytes: u64,
    /// The pod that answered.
    #[prost(string, tag = "3")]
    pub served_by: String,
}
