//! `shardmesh-operator`: placeholder until the operator issue lands.
fn main() {
    eprintln!("shardmesh-operator: not built yet");
    std::process::exit(2);
}
