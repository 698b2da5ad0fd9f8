//! `shardmesh-operator {run | crd | render FILE | local ...}`.
fn main() -> std::process::ExitCode {
    shardmesh_operator::cli::main()
}
