//! The container shim: `shardmesh-node-agent shim PLAN.json` runs inside the
//! pod's network namespace and a fresh mount and UTS namespace (made by
//! `nsenter --net=… unshare --mount --uts --propagation private`), sets the
//! hostname, makes every volume appear at its `mountPath` and then execs the
//! container's process (same PID, so signals and exit codes are the
//! process's own).
//!
//! The host's root filesystem is never changed: a mount path whose parent
//! does not exist on the host gets an overlay over its nearest existing
//! ancestor, with the upper layer on a tmpfs private to this mount namespace
//! (the ancestor's own submounts are bound back on top), and the directory
//! is made inside the overlay. When that ancestor is `/` itself, the overlay
//! is built beside it and the process chroots into it (a mount stacked on
//! `/` would not be seen through the process's root). Bind sources are
//! opened first and bound through `/proc/self/fd`, so they are always the
//! host's directories, shared with the other containers of the pod.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rustix::mount::{self, MountFlags};
use serde::{Deserialize, Serialize};

/// Everything the shim does, written by the agent before each start.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The pod's hostname.
    pub hostname: String,
    /// An empty directory (under the pod directory) for the tmpfs of overlay upper layers.
    pub scratch: PathBuf,
    /// Bind mounts, made in order of depth.
    pub mounts: Vec<Bind>,
    /// The process: argv[0] is a host path or a name looked up in `PATH`.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// `workingDir`.
    pub cwd: Option<PathBuf>,
    /// `runAsUser`.
    pub uid: Option<u32>,
    /// `runAsGroup`.
    pub gid: Option<u32>,
    /// A host file the shim writes to just before the exec: until then the
    /// namespaces are half set up and no hook or probe may enter them.
    pub ready: Option<PathBuf>,
}

/// One bind mount: a host path at a path inside the container's view.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bind {
    /// Host file or directory.
    pub source: PathBuf,
    /// Where it appears.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Runs the shim; only returns on failure (exit 128, the reason on stderr,
/// which is the container's log).
pub fn main(plan_file: &Path) -> ExitCode {
    let err = match std::fs::read(plan_file)
        .map_err(|e| format!("{}: {e}", plan_file.display()))
        .and_then(|b| {
            serde_json::from_slice::<Plan>(&b).map_err(|e| format!("{}: {e}", plan_file.display()))
        }) {
        Ok(plan) => run(&plan),
        Err(e) => e,
    };
    eprintln!("shardmesh-node-agent shim: {err}");
    ExitCode::from(128)
}

fn run(plan: &Plan) -> String {
    // Opened before any root change; closed by the exec (close-on-exec).
    let mut ready = match plan.ready.as_ref().map(std::fs::File::create).transpose() {
        Ok(r) => r,
        Err(e) => return format!("ready file: {e}"),
    };
    let Some((prog, args)) = plan.argv.split_first() else {
        return "empty argv".into();
    };
    // The directory of the image's binary is opened before the volumes are
    // mounted, and the binary run as /proc/self/fd/DIR/NAME: a volume over
    // one of its directories (an emptyDir at /tmp with the checkout under
    // /tmp) would hide it, and the magic link reaches the directory itself,
    // not whatever is mounted over its path now. NAME stays the last
    // component, so the process's name (`comm`, what ps and pgrep show) is
    // the binary's, and argv[0] is unchanged. The descriptor is closed by
    // the exec (close-on-exec); mapped binaries are ELF, so the kernel needs
    // no path to them after the exec.
    let program = Path::new(prog);
    let dir = program
        .is_absolute()
        .then(|| program.parent().zip(program.file_name()))
        .flatten()
        .and_then(|(dir, name)| std::fs::File::open(dir).ok().map(|d| (d, name.to_owned())));
    if let Err(e) = setup(plan) {
        return e;
    }
    let path = dir.as_ref().map_or_else(
        || prog.clone(),
        |(d, name)| format!("/proc/self/fd/{}/{}", d.as_raw_fd(), name.to_string_lossy()),
    );
    let mut cmd = std::process::Command::new(path);
    cmd.arg0(prog).args(args).env_clear();
    cmd.envs(plan.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &plan.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(gid) = plan.gid {
        cmd.gid(gid);
    }
    if let Some(uid) = plan.uid {
        cmd.uid(uid);
    }
    if let Some(f) = ready.as_mut() {
        use std::io::Write;
        let _ = f.write_all(b"exec\n");
    }
    let e = cmd.exec();
    format!("exec {prog}: {e}")
}

fn setup(plan: &Plan) -> Result<(), String> {
    if !plan.hostname.is_empty() {
        rustix::system::sethostname(plan.hostname.as_bytes())
            .map_err(|e| format!("sethostname: {e}"))?;
    }
    let mut mounts = plan.mounts.clone();
    mounts.sort_by_key(|m| m.target.components().count());
    // Sources are opened before any root change and bound through
    // /proc/self/fd, so they are the host's directories, never an overlay's copy.
    let mut sources = Vec::with_capacity(mounts.len());
    for m in &mounts {
        let f =
            std::fs::File::open(&m.source).map_err(|e| format!("{}: {e}", m.source.display()))?;
        let is_file = f.metadata().map(|md| md.is_file()).unwrap_or(false);
        sources.push((f, is_file));
    }
    let overlays = overlay_roots(mounts.iter().map(|m| m.target.as_path()));
    if !overlays.is_empty() {
        std::fs::create_dir_all(&plan.scratch)
            .map_err(|e| format!("{}: {e}", plan.scratch.display()))?;
        mount::mount("tmpfs", &plan.scratch, "tmpfs", MountFlags::empty(), None)
            .map_err(|e| format!("tmpfs at {}: {e}", plan.scratch.display()))?;
        let submounts = mount_points()?;
        for (i, dir) in overlays.iter().enumerate() {
            let work = plan.scratch.join(i.to_string());
            if dir == Path::new("/") {
                // A mount stacked on `/` is not seen through this process's
                // root: build the overlay elsewhere and chroot into it.
                let root = work.join("root");
                overlay(Path::new("/"), &root, &work, &plan.scratch, &submounts)?;
                rustix::process::chroot(&root)
                    .map_err(|e| format!("chroot {}: {e}", root.display()))?;
                std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
            } else {
                overlay(dir, dir, &work, &plan.scratch, &submounts)?;
            }
        }
    }
    for (m, (src, is_file)) in mounts.iter().zip(&sources) {
        if std::fs::symlink_metadata(&m.target).is_err() {
            let made = if *is_file {
                m.target
                    .parent()
                    .map(std::fs::create_dir_all)
                    .unwrap_or(Ok(()))
                    .and_then(|_| std::fs::write(&m.target, b""))
            } else {
                std::fs::create_dir_all(&m.target)
            };
            made.map_err(|e| format!("mount point {}: {e}", m.target.display()))?;
        }
        let fd_path = format!("/proc/self/fd/{}", src.as_raw_fd());
        mount::mount_bind_recursive(fd_path.as_str(), &m.target)
            .map_err(|e| format!("bind {} at {}: {e}", m.source.display(), m.target.display()))?;
        if m.read_only {
            mount::mount_remount(&m.target, MountFlags::BIND | MountFlags::RDONLY, "")
                .map_err(|e| format!("read-only {}: {e}", m.target.display()))?;
        }
    }
    Ok(())
}

/// The directories to overlay so that every missing target can be made:
/// the canonical nearest existing ancestor of each missing target, without
/// those inside another one.
fn overlay_roots<'a>(targets: impl Iterator<Item = &'a Path>) -> Vec<PathBuf> {
    let mut roots = BTreeSet::new();
    for t in targets {
        if std::fs::metadata(t).is_ok() {
            continue;
        }
        let mut anc = t.parent();
        while let Some(a) = anc {
            if std::fs::metadata(a).is_ok() {
                break;
            }
            anc = a.parent();
        }
        if let Some(a) = anc.and_then(|a| std::fs::canonicalize(a).ok()) {
            roots.insert(a);
        }
    }
    let all: Vec<PathBuf> = roots.into_iter().collect();
    all.iter()
        .filter(|r| !all.iter().any(|o| o != *r && r.starts_with(o)))
        .cloned()
        .collect()
}

/// Mounts at `at` an overlay of `dir` whose upper layer lives under `work`
/// (on the scratch tmpfs), and binds the submounts of `dir` back on top
/// (from a recursive bind of the original, as the overlay hides them).
fn overlay(
    dir: &Path,
    at: &Path,
    work: &Path,
    scratch: &Path,
    submounts: &[PathBuf],
) -> Result<(), String> {
    let (orig, upper, wd) = (work.join("orig"), work.join("upper"), work.join("work"));
    for d in [&orig, &upper, &wd, &at.to_path_buf()] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    mount::mount_bind_recursive(dir, &orig).map_err(|e| format!("bind {}: {e}", dir.display()))?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.display(),
        upper.display(),
        wd.display()
    );
    let opts = std::ffi::CString::new(opts).map_err(|e| e.to_string())?;
    mount::mount(
        "overlay",
        at,
        "overlay",
        MountFlags::empty(),
        Some(opts.as_c_str()),
    )
    .map_err(|e| format!("overlay on {}: {e}", dir.display()))?;
    let inside: Vec<&PathBuf> = submounts
        .iter()
        .filter(|m| m.as_path() != dir && m.starts_with(dir) && !m.starts_with(scratch))
        .collect();
    let top: Vec<&PathBuf> = inside
        .iter()
        .filter(|m| !inside.iter().any(|o| o != *m && m.starts_with(o)))
        .copied()
        .collect();
    for m in top {
        let Ok(rel) = m.strip_prefix(dir) else {
            continue;
        };
        // A mount point missing from the lower layer cannot be bound back; skip it.
        let _ = mount::mount_bind_recursive(orig.join(rel), at.join(rel));
    }
    Ok(())
}

/// Every mount point of this mount namespace (`/proc/self/mountinfo`).
fn mount_points() -> Result<Vec<PathBuf>, String> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("mountinfo: {e}"))?;
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Decodes mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn overlays_the_nearest_existing_ancestor_once() {
        let roots = overlay_roots(
            [
                Path::new("/etc/shardmesh-nope/a"),
                Path::new("/etc/shardmesh-nope/b/c"),
                Path::new("/etc/hostname"),
                Path::new("/shardmesh-nope"),
            ]
            .into_iter(),
        );
        assert_eq!(roots, vec![PathBuf::from("/")], "/ holds /etc");
        let roots = overlay_roots([Path::new("/etc/shardmesh-nope/a")].into_iter());
        assert_eq!(roots, vec![std::fs::canonicalize("/etc").unwrap()]);
    }
}
