//! Generates the `tally.Tally` client and server with tonic-build's manual
//! builder: the messages are plain prost structs in `src/proto.rs`, so no
//! `.proto` compiler (protoc) is needed to build the workspace.

use tonic_build::manual::{Builder, Method, Service};

fn method(
    name: &str,
    route: &str,
    input: &str,
    output: &str,
) -> tonic_build::manual::MethodBuilder {
    Method::builder()
        .name(name)
        .route_name(route)
        .input_type(format!("crate::proto::{input}"))
        .output_type(format!("crate::proto::{output}"))
        .codec_path("tonic_prost::ProstCodec")
}

fn main() {
    let service = Service::builder()
        .name("Tally")
        .package("tally")
        .method(method("add", "Add", "AddRequest", "Total").build())
        .method(
            method("watch", "Watch", "WatchRequest", "Total")
                .server_streaming()
                .build(),
        )
        .method(
            method("upload", "Upload", "Chunk", "UploadSummary")
                .client_streaming()
                .build(),
        )
        .method(
            method("chat", "Chat", "Chunk", "Chunk")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .build();
    Builder::new().compile(&[service]);
}
