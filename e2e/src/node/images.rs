//! The image table: an image repository (tag and digest ignored) maps to a
//! host binary that plays the image's entrypoint. There are no images here,
//! only the workspace's release binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Repository → binary, and where the table came from (for messages).
#[derive(Clone, Debug)]
pub struct ImageTable {
    entries: BTreeMap<String, PathBuf>,
    source: String,
}

/// The YAML file: `images: {REPOSITORY: PATH}`; relative paths are taken
/// from the workspace root.
#[derive(Deserialize)]
struct TableFile {
    images: BTreeMap<String, String>,
}

/// What an image resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The host binary standing in for the image's entrypoint.
    pub binary: PathBuf,
}

impl ImageTable {
    /// The built-in table: the workspace's release binaries, and `sh` for tests.
    pub fn builtin() -> Self {
        let release = crate::bins::target_dir().join("release");
        let mut entries = BTreeMap::new();
        for (repo, bin) in [
            ("ghcr.io/shardmesh/sidecar", "shardmesh-sidecar"),
            ("ghcr.io/shardmesh/operator", "shardmesh-operator"),
            ("ghcr.io/shardmesh/bank", "bank"),
            ("ghcr.io/shardmesh/bank-load", "bank-load"),
            ("ghcr.io/shardmesh/tally", "tally"),
        ] {
            entries.insert(repo.to_string(), release.join(bin));
        }
        entries.insert("shardmesh.test/sh".into(), PathBuf::from("/bin/sh"));
        Self {
            entries,
            source: "the built-in image table".into(),
        }
    }

    /// Reads a table file (see [`TableFile`]).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: TableFile =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let root = crate::bins::workspace();
        let entries = file
            .images
            .into_iter()
            .map(|(repo, bin)| {
                let bin = PathBuf::from(bin);
                let bin = if bin.is_absolute() {
                    bin
                } else {
                    root.join(bin)
                };
                (repository(&repo).to_string(), bin)
            })
            .collect();
        Ok(Self {
            entries,
            source: path.display().to_string(),
        })
    }

    /// The binary for `image`, or the `ErrImagePull` message.
    pub fn resolve(&self, image: &str) -> Result<Resolved, String> {
        let repo = repository(image);
        let Some(binary) = self.entries.get(repo) else {
            let known: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            return Err(format!(
                "image {image:?}: repository {repo:?} is not in {} (known: {}); the node agent runs no images, only mapped host binaries",
                self.source,
                known.join(", ")
            ));
        };
        if !binary.exists() {
            return Err(format!(
                "image {image:?} maps to {} which does not exist (cargo build --release?)",
                binary.display()
            ));
        }
        Ok(Resolved {
            binary: binary.clone(),
        })
    }
}

/// The repository of an image reference: without `@digest` and `:tag`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The argv of a container: `command` (its first word standing for the
/// image's entrypoint when it names the mapped binary, else a host command)
/// followed by `args`; without `command`, the mapped binary with `args`.
pub fn argv(binary: &Path, command: &[String], args: &[String]) -> Vec<String> {
    let bin = binary.display().to_string();
    let mut out = Vec::new();
    match command.split_first() {
        None => out.push(bin),
        Some((first, rest)) => {
            let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
            if base(first) == base(&bin) {
                out.push(bin);
            } else {
                out.push(first.clone());
            }
            out.extend(rest.iter().cloned());
        }
    }
    out.extend(args.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_drops_tag_and_digest_but_not_a_registry_port() {
        assert_eq!(
            repository("ghcr.io/shardmesh/sidecar:0.1.0"),
            "ghcr.io/shardmesh/sidecar"
        );
        assert_eq!(
            repository("ghcr.io/shardmesh/sidecar@sha256:abc"),
            "ghcr.io/shardmesh/sidecar"
        );
        assert_eq!(repository("localhost:5000/bank"), "localhost:5000/bank");
        assert_eq!(repository("localhost:5000/bank:1"), "localhost:5000/bank");
    }

    #[test]
    fn unknown_images_say_what_is_known() {
        let table = ImageTable::builtin();
        let err = table.resolve("docker.io/library/nginx:1").unwrap_err();
        assert!(err.contains("not in the built-in image table"), "{err}");
        assert!(err.contains("ghcr.io/shardmesh/sidecar"), "{err}");
        assert!(table.resolve("shardmesh.test/sh:latest").is_ok());
    }

    #[test]
    fn argv_maps_the_entrypoint() {
        let bin = Path::new("/w/target/release/shardmesh-operator");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            argv(bin, &[], &s(&["run"])),
            s(&["/w/target/release/shardmesh-operator", "run"])
        );
        assert_eq!(
            argv(bin, &s(&["/shardmesh-operator", "run"]), &s(&["--x"])),
            s(&["/w/target/release/shardmesh-operator", "run", "--x"])
        );
        assert_eq!(
            argv(bin, &s(&["sh", "-c"]), &s(&["true"])),
            s(&["sh", "-c", "true"])
        );
    }
}
