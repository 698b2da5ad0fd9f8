//! The `shardmesh-operator` command line: `run`, `crd`, `render FILE`, `local`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::crd::ShardedService;
use crate::render::{self, Settings};
use crate::Error;

/// Largest manifest `render` reads; a ShardedService is a few KiB.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Stand-ins for fields the API server sets, so `render` works on a plain file.
const RENDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// The operator of shardmesh, a service mesh for sharded stateful services.
#[derive(Debug, Parser)]
#[command(name = "shardmesh-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (in a cluster, or against $KUBECONFIG).
    Run(Box<RunArgs>),
    /// Print the ShardedService CustomResourceDefinition as YAML.
    Crd,
    /// Print the children the operator would create for a ShardedService file, as YAML.
    Render {
        /// A ShardedService manifest (YAML).
        file: PathBuf,
        /// Sidecar image when the spec names none.
        #[arg(long)]
        sidecar_image: Option<String>,
        /// Render mutual TLS as `run --identity-listen` would, with pods
        /// obtaining certificates from this URL (the CA ConfigMap holds a
        /// placeholder: the real certificate exists only in the cluster).
        #[arg(long)]
        identity_url: Option<String>,
        /// Trust domain (with `--identity-url`).
        #[arg(long, default_value = crate::render::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
    /// Run ShardedServices as a local mesh of processes, without Kubernetes.
    Local {
        /// `up`, `status` or `scale`.
        #[command(subcommand)]
        command: crate::local::LocalCommand,
    },
}

/// Flags of `run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Sidecar image when a spec names none.
    #[arg(long, env = "SHARDMESH_SIDECAR_IMAGE")]
    pub sidecar_image: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SHARDMESH_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the leader-election Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity in the Lease (default: the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader's Lease stays valid without renewal; a standby takes
    /// over at most this long after the leader stops.
    #[arg(long, default_value_t = crate::leader::LEASE_SECONDS, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_seconds: u64,
    /// Run without leader election (one replica only).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Most ShardedServices reconciled at once (0: unbounded). Bounds the
    /// operator's requests in flight, so a start with thousands of services
    /// does not swamp the API server (docs/benchmarks/operator.md).
    #[arg(long, env = "SHARDMESH_MAX_CONCURRENT_RECONCILES", default_value_t = crate::reconcile::DEFAULT_CONCURRENCY)]
    pub max_concurrent_reconciles: u16,
    /// Serve the identity endpoint (sidecar CSRs, HTTPS) on this address;
    /// off when absent. Every replica serves it (the CA is in a Secret).
    #[arg(long, env = "SHARDMESH_IDENTITY_LISTEN")]
    pub identity_listen: Option<SocketAddr>,
    /// Trust domain of mesh identities (`spiffe://TRUST-DOMAIN/ns/NS/sa/SA`).
    #[arg(long, env = "SHARDMESH_TRUST_DOMAIN", default_value = crate::render::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// Secret (in the operator's namespace) holding the mesh CA
    /// (`ca.crt`, `ca.key`): generated once when absent, or supplied by you.
    #[arg(long, default_value = crate::identity::CA_SECRET)]
    pub ca_secret: String,
    /// DNS names of the identity endpoint's certificate (comma separated;
    /// default: `shardmesh-operator.LEASE-NAMESPACE.svc`).
    #[arg(long, value_delimiter = ',')]
    pub identity_dns: Vec<String>,
    /// URL pods reach the identity endpoint at (default:
    /// `https://shardmesh-operator.LEASE-NAMESPACE.svc:PORT`, PORT from
    /// `--identity-listen`). With `--identity-listen` set, every pod gets
    /// mutual TLS in issuer mode.
    #[arg(long, env = "SHARDMESH_IDENTITY_URL")]
    pub identity_url: Option<String>,
    /// Audience of the ServiceAccount token projected into pods; the
    /// endpoint's TokenReview accepts only tokens for it.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    pub identity_audience: String,
    /// OTLP/gRPC collector (`http://HOST:4317`) for the sidecars of every
    /// ShardedService without its own `spec.sidecar.tracing`.
    #[arg(long, env = "SHARDMESH_DEFAULT_TRACING_ENDPOINT")]
    pub tracing_endpoint: Option<String>,
    /// Sampling ratio (0.0–1.0) of new traces with `--tracing-endpoint`.
    #[arg(long, env = "SHARDMESH_DEFAULT_TRACING_SAMPLING_RATIO", value_parser = parse_ratio)]
    pub tracing_sampling_ratio: Option<f64>,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a ratio between 0.0 and 1.0")),
    }
}

/// What `render --identity-url` puts in the CA ConfigMap (output must be
/// reproducible; the operator writes the real CA certificate).
const PLACEHOLDER_CA: &str = "# the mesh CA certificate (PEM), written by the operator\n";

/// Default audience of the projected ServiceAccount token.
pub const DEFAULT_AUDIENCE: &str = "shardmesh";

impl RunArgs {
    /// The render settings these flags select, without mutual TLS.
    pub fn settings(&self) -> Settings {
        let mut s = settings(self.sidecar_image.clone());
        s.tracing_endpoint = self.tracing_endpoint.clone().filter(|e| !e.is_empty());
        s.tracing_sampling_ratio = self.tracing_sampling_ratio.map(|r| r.to_string());
        s
    }

    /// The identity endpoint's URL as pods see it; `None` when it is off.
    pub fn identity_url(&self) -> Option<String> {
        let addr = self.identity_listen?;
        Some(self.identity_url.clone().unwrap_or_else(|| {
            format!(
                "https://{}:{}",
                default_identity_host(&self.lease_namespace),
                addr.port()
            )
        }))
    }

    /// The render settings with mutual TLS for pods trusting `ca_pem`
    /// (when the identity endpoint is on).
    pub fn settings_with_ca(&self, ca_pem: Option<&str>) -> Settings {
        let mut s = self.settings();
        if let (Some(url), Some(pem)) = (self.identity_url(), ca_pem) {
            s.mesh_tls = Some(render::MeshTls {
                trust_domain: self.trust_domain.clone(),
                issuer_url: url,
                audience: self.identity_audience.clone(),
                ca_pem: pem.to_string(),
            });
        }
        s
    }
}

/// The identity endpoint's Service DNS name in `namespace` (the chart's
/// Service is `shardmesh-operator`).
pub fn default_identity_host(namespace: &str) -> String {
    format!("shardmesh-operator.{namespace}.svc")
}

fn settings(image: Option<String>) -> Settings {
    let mut s = Settings::default();
    if let Some(image) = image {
        s.sidecar_image = image;
    }
    s
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print_or_fail(crate::crd::crd_yaml()),
        Command::Render {
            file,
            sidecar_image,
            identity_url,
            trust_domain,
        } => {
            let mut s = settings(sidecar_image);
            s.mesh_tls = identity_url.map(|url| render::MeshTls {
                trust_domain,
                issuer_url: url,
                audience: DEFAULT_AUDIENCE.into(),
                ca_pem: PLACEHOLDER_CA.into(),
            });
            print_or_fail(render_file(&file, &s))
        }
        Command::Local { command } => crate::local::main(command),
        Command::Run(args) => crate::run::main(*args),
    }
}

fn print_or_fail(result: Result<String, Error>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shardmesh-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a ShardedService manifest and renders its children as a YAML stream.
pub fn render_file(path: &std::path::Path, settings: &Settings) -> Result<String, Error> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::Render(format!(
            "{} is larger than {MAX_MANIFEST_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)?;
    let svc = sharded_service_from_yaml(&text)
        .map_err(|e| Error::Render(format!("{}: {e}", path.display())))?;
    render_manifests(svc, settings)
}

/// The one ShardedService of a manifest. A manifest may carry what the
/// service needs beside it (examples/bank.yaml declares its
/// PersistentVolumeClaim): those documents are skipped, as `local up` does.
pub fn sharded_service_from_yaml(text: &str) -> Result<ShardedService, String> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("not a ShardedService: {e}"))?;
    let mut found: Vec<serde_json::Value> = Vec::new();
    let single = docs.len() == 1;
    for doc in docs {
        let kind = doc.get("kind").and_then(|k| k.as_str());
        // A lone document is read as a ShardedService whatever it says, so
        // its errors name the fields that are wrong.
        if single || kind == Some("ShardedService") {
            found.push(doc);
        }
    }
    match found.len() {
        1 => serde_json::from_value(found.remove(0))
            .map_err(|e| format!("not a ShardedService: {e}")),
        0 => Err("not a ShardedService: no document of kind ShardedService".into()),
        n => Err(format!("{n} ShardedService documents; render takes one")),
    }
}

/// Renders every child of `svc` (and the namespace's shared objects) as a
/// YAML stream, filling in the namespace and uid the API server would set.
pub fn render_manifests(mut svc: ShardedService, settings: &Settings) -> Result<String, Error> {
    svc.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    svc.metadata.uid.get_or_insert_with(|| RENDER_UID.into());
    crate::validate(&svc, settings.trust_domain())?;
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let children = render::desired(&svc, settings)?;
    let mut docs = vec![
        to_yaml(&children.config_map)?,
        to_yaml(&children.stateful_set)?,
        to_yaml(&children.client_service)?,
        to_yaml(&children.gossip_service)?,
        // A fixed key: rendered output must be reproducible; the real one is random.
        to_yaml(&render::gossip_secret(&namespace, &[0u8; 32]))?,
    ];
    if let Some(ca) = &children.ca_config_map {
        docs.push(to_yaml(ca)?);
    }
    if let Some(pdb) = &children.disruption_budget {
        docs.push(to_yaml(pdb)?);
    }
    Ok(docs.iter().map(|d| format!("---\n{d}")).collect())
}

fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_saphyr::to_string(value).map_err(|e| Error::Render(e.to_string()))
}
