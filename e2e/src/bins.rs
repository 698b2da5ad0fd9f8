//! The release binaries the scenarios run. `CARGO_BIN_EXE_*` only covers the
//! test's own package, so the first scenario of each test binary runs
//! `cargo build --workspace --release --bins` (a no-op after
//! `scripts/test` built them; building only three packages would resolve
//! features differently and rebuild) and every scenario then uses
//! `target/release/`. With `SHARDMESH_E2E_PREBUILT=1` the build is skipped
//! (when other builds share the target directory and would make this one wait).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the parent of this crate).
pub fn workspace() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// `target/` of the workspace (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace().join(p)
            }
        })
        .unwrap_or_else(|| workspace().join("target"))
}

/// Set to `1` to use the binaries already in `target/release` as they are.
pub const PREBUILT_ENV: &str = "SHARDMESH_E2E_PREBUILT";

/// Builds the binaries once per process; panics with cargo's output on failure.
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var(PREBUILT_ENV).as_deref() == Ok("1") {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // `cargo test` gives this process the e2e package's own variables;
        // a build script that tracks one (ring's reruns on
        // CARGO_MANIFEST_DIR) would make this build, and the next one from
        // a shell, rebuild everything that depends on it.
        for (name, _) in std::env::vars_os() {
            if is_test_package_var(&name.to_string_lossy()) {
                build.env_remove(name);
            }
        }
        let out = build
            .current_dir(workspace())
            // The same selection as scripts/test.d/10-rust.sh, so the
            // features resolve alike and this is a no-op after it.
            .args(["build", "--workspace", "--release", "--bins"])
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build --release failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Whether `name` is one of the variables `cargo test` sets for the package
/// under test (not inherited from the user's environment).
fn is_test_package_var(name: &str) -> bool {
    const EXACT: [&str; 6] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "RUST_RECURSION_COUNT",
    ];
    EXACT.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_")
}

/// Path of the release binary `name`, built first if needed.
pub fn bin(name: &str) -> PathBuf {
    ensure_built();
    target_dir().join("release").join(name)
}
