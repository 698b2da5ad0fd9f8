//! The local runner as certificate authority: one CA per run directory
//! (`ca.crt`, `ca.key` 0600), and for every pod a key and a 24 h
//! certificate naming `spiffe://shardmesh.local/ns/local/sa/SERVICE` and the
//! pod's DNS-style name, written into the pod's directory. The runner
//! rewrites them at half their lifetime; the sidecar re-reads them at 70 %.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use shardmesh_config::TlsConfig;
use shardmesh_identity::ca::LeafSpec;
use shardmesh_identity::{Authority, LeafKey, SpiffeId, DEFAULT_LIFETIME};

use super::plan::PodPlan;
use super::LocalError;

/// Trust domain of local meshes.
pub const TRUST_DOMAIN: &str = "shardmesh.local";

/// Namespace written into local identities.
pub const NAMESPACE: &str = "local";

/// File names inside a pod's directory.
const CERT_FILE: &str = "tls.crt";
const KEY_FILE: &str = "tls.key";

/// The run's CA and when each pod's certificate was last issued.
pub struct LocalPki {
    ca: Authority,
    ca_file: PathBuf,
    issued: HashMap<String, Instant>,
}

impl LocalPki {
    /// A fresh CA written to `run_dir/ca.crt` and `run_dir/ca.key`.
    pub fn create(run_dir: &Path) -> Result<Self, LocalError> {
        let ca = Authority::generate(TRUST_DOMAIN)
            .map_err(|e| LocalError::State(format!("cannot create the local CA: {e}")))?;
        let ca_file = run_dir.join("ca.crt");
        write(&ca_file, ca.cert_pem(), 0o644)?;
        write(&run_dir.join("ca.key"), ca.key_pem(), 0o600)?;
        Ok(Self {
            ca,
            ca_file,
            issued: HashMap::new(),
        })
    }

    /// Points `plan`'s sidecar config at its certificate files (call before
    /// the config is written).
    pub fn configure(&self, plan: &mut PodPlan) {
        plan.sidecar.tls = Some(TlsConfig {
            trust_domain: TRUST_DOMAIN.to_string(),
            ca_file: self.ca_file.display().to_string(),
            cert_file: Some(plan.dir.join(CERT_FILE).display().to_string()),
            key_file: Some(plan.dir.join(KEY_FILE).display().to_string()),
            issuer: None,
            allowed_identities: Vec::new(),
            handshake_timeout_ms: shardmesh_config::tls::DEFAULT_HANDSHAKE_TIMEOUT_MS,
        });
    }

    /// Issues `plan`'s key and certificate into its directory.
    pub fn issue(&mut self, plan: &PodPlan, now: Instant) -> Result<(), LocalError> {
        let err = |e: shardmesh_identity::IdentityError| {
            LocalError::State(format!("{}: cannot issue its certificate: {e}", plan.name))
        };
        std::fs::create_dir_all(&plan.dir)
            .map_err(|e| LocalError::io(format!("cannot create {}", plan.dir.display()), e))?;
        let id = SpiffeId::new(TRUST_DOMAIN, NAMESPACE, &plan.service).map_err(err)?;
        let key = LeafKey::generate().map_err(err)?;
        let dns = format!("{}.{}.{NAMESPACE}", plan.name, plan.service);
        let cert = self
            .ca
            .issue_for_key(
                key.key_pair(),
                &LeafSpec::new(id, vec![dns], DEFAULT_LIFETIME),
            )
            .map_err(err)?;
        // Key first: the sidecar reads the pair at renewal, and a new key
        // with an old certificate is refused (it retries), never misused.
        write(&plan.dir.join(KEY_FILE), &key.key_pem(), 0o600)?;
        write(&plan.dir.join(CERT_FILE), &cert, 0o644)?;
        self.issued.insert(plan.name.clone(), now);
        Ok(())
    }

    /// Re-issues certificates past half their lifetime (long local runs).
    pub fn refresh(&mut self, plan: &PodPlan, now: Instant) -> Result<(), LocalError> {
        let due = self
            .issued
            .get(&plan.name)
            .is_none_or(|t| now.duration_since(*t) >= DEFAULT_LIFETIME / 2);
        if due {
            self.issue(plan, now)?;
        }
        Ok(())
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), LocalError> {
    super::state::write_atomic(path, text.as_bytes(), Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardmesh_identity::CertStore;

    #[test]
    fn issues_pod_certificates_that_chain_to_the_run_ca() {
        let dir = std::env::temp_dir().join(format!("shardmesh-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut pki = LocalPki::create(&dir).unwrap();
        let mut plan = PodPlan {
            name: "bank-0".into(),
            service: "bank".into(),
            ordinal: 0,
            net: super::super::addr::PodNet {
                ip: std::net::Ipv4Addr::LOCALHOST,
                netns: None,
            },
            sidecar: Default::default(),
            command: vec![],
            env: vec![],
            dir: dir.join("bank-0"),
        };
        pki.configure(&mut plan);
        pki.issue(&plan, Instant::now()).unwrap();
        let tls = plan.sidecar.tls.clone().unwrap();
        let cert = std::fs::read(tls.cert_file.unwrap()).unwrap();
        let key = std::fs::read(tls.key_file.unwrap()).unwrap();
        let store = CertStore::from_pem(&cert, &key).unwrap();
        assert_eq!(
            store.info().id.uri(),
            "spiffe://shardmesh.local/ns/local/sa/bank"
        );
        let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        let key_pem = std::fs::read_to_string(dir.join("ca.key")).unwrap();
        Authority::from_pem(&ca, &key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
