//! The image table: an image repository (tag and digest ignored) maps to a
//! host binary that plays the image's entrypoint, and to the user the image
//! configures (its `User`), which a container runs as unless its
//! securityContext names one. There are no images here, only the
//! workspace's release binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The user of the workspace's OCI images (`scripts/images/build` sets
/// `User 65532:65532`): on a real cluster the bank runs as this user, so here
/// too.
pub const IMAGE_USER: (u32, u32) = (65532, 65532);

/// Repository → what it resolves to, and where the table came from (for
/// messages).
#[derive(Clone, Debug)]
pub struct ImageTable {
    entries: BTreeMap<String, Resolved>,
    source: String,
}

/// The YAML file: `images: {REPOSITORY: PATH}` (relative paths are taken
/// from the workspace root) and, optionally, `users: {REPOSITORY: "UID:GID"}`
/// for images whose config names a user (default: root, as an image without
/// `User`).
#[derive(Deserialize)]
struct TableFile {
    images: BTreeMap<String, String>,
    #[serde(default)]
    users: BTreeMap<String, String>,
}

/// What an image resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The host binary standing in for the image's entrypoint.
    pub binary: PathBuf,
    /// The image's `User` (uid, gid); `None`: root.
    pub user: Option<(u32, u32)>,
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
            entries.insert(
                repo.to_string(),
                Resolved {
                    binary: release.join(bin),
                    user: Some(IMAGE_USER),
                },
            );
        }
        entries.insert(
            "shardmesh.test/sh".into(),
            Resolved {
                binary: PathBuf::from("/bin/sh"),
                user: None,
            },
        );
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
        let mut users = BTreeMap::new();
        for (repo, user) in &file.users {
            let parsed = parse_user(user).ok_or_else(|| {
                format!(
                    "{}: users.{repo}: {user:?} is not UID:GID (numbers)",
                    path.display()
                )
            })?;
            users.insert(repository(repo).to_string(), parsed);
        }
        let entries = file
            .images
            .into_iter()
            .map(|(repo, bin)| {
                let bin = PathBuf::from(bin);
                let binary = if bin.is_absolute() {
                    bin
                } else {
                    root.join(bin)
                };
                let repo = repository(&repo).to_string();
                let user = users.get(&repo).copied();
                (repo, Resolved { binary, user })
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
        let Some(resolved) = self.entries.get(repo) else {
            let known: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            return Err(format!(
                "image {image:?}: repository {repo:?} is not in {} (known: {}); the node agent runs no images, only mapped host binaries",
                self.source,
                known.join(", ")
            ));
        };
        if !resolved.binary.exists() {
            return Err(format!(
                "image {image:?} maps to {} which does not exist (cargo build --release?)",
                resolved.binary.display()
            ));
        }
        Ok(resolved.clone())
    }
}

/// `UID:GID`, both numbers (an image's `User` as the agent understands it).
fn parse_user(text: &str) -> Option<(u32, u32)> {
    let (uid, gid) = text.split_once(':')?;
    Some((uid.trim().parse().ok()?, gid.trim().parse().ok()?))
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
    fn shardmesh_images_carry_their_non_root_user() {
        let table = ImageTable::builtin();
        let user = |image: &str| table.entries.get(repository(image)).and_then(|r| r.user);
        assert_eq!(user("ghcr.io/shardmesh/bank:0.1.0"), Some(IMAGE_USER));
        assert_eq!(user("ghcr.io/shardmesh/sidecar:0.1.0"), Some(IMAGE_USER));
        assert_eq!(user("shardmesh.test/sh"), None, "a host shell runs as root");
    }

    #[test]
    fn table_files_name_users_as_uid_gid() {
        assert_eq!(parse_user("65532:65532"), Some((65532, 65532)));
        assert_eq!(parse_user("1000:0"), Some((1000, 0)));
        assert_eq!(parse_user("nobody"), None);
        assert_eq!(parse_user("1000:x"), None);
        let dir = std::env::temp_dir().join(format!("images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("table.yaml");
        std::fs::write(
            &file,
            "images:\n  r.example/app:1: /bin/true\nusers:\n  r.example/app: \"7:8\"\n",
        )
        .unwrap();
        let table = ImageTable::load(&file).unwrap();
        assert_eq!(table.resolve("r.example/app:2").unwrap().user, Some((7, 8)));
        std::fs::write(&file, "images: {}\nusers:\n  r.example/app: root\n").unwrap();
        let err = ImageTable::load(&file).unwrap_err();
        assert!(err.contains("not UID:GID"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
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
