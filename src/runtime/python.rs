//! The bundled Python client (`python/` in the repository), embedded in the binary and
//! written out at run time, so `actor-tui python3 app.py` gets lock-serialised pdb sessions
//! with nothing installed: every spawned actor gets `PYTHONPATH` and `PYTHONBREAKPOINT`
//! pointing at it. Non-Python actors ignore both.

use std::path::{Path, PathBuf};

use super::private_dir::PrivateDir;

/// (path inside the package directory, contents).
const FILES: &[(&str, &str)] = &[
    (
        "sitecustomize.py",
        include_str!("../../python/sitecustomize.py"),
    ),
    (
        "actor_tui/__init__.py",
        include_str!("../../python/actor_tui/__init__.py"),
    ),
    (
        "actor_tui/_client.py",
        include_str!("../../python/actor_tui/_client.py"),
    ),
    (
        "actor_tui/_debugger.py",
        include_str!("../../python/actor_tui/_debugger.py"),
    ),
    (
        "actor_tui/_hooks.py",
        include_str!("../../python/actor_tui/_hooks.py"),
    ),
    (
        "actor_tui/pytest_plugin.py",
        include_str!("../../python/actor_tui/pytest_plugin.py"),
    ),
    (
        "actor_tui/_dump.py",
        include_str!("../../python/actor_tui/_dump.py"),
    ),
    (
        "actor_tui/_shield.py",
        include_str!("../../python/actor_tui/_shield.py"),
    ),
    (
        "actor_tui/_wire.py",
        include_str!("../../python/actor_tui/_wire.py"),
    ),
    (
        "actor_tui/_remote.py",
        include_str!("../../python/actor_tui/_remote.py"),
    ),
    (
        "actor_tui/ray.py",
        include_str!("../../python/actor_tui/ray.py"),
    ),
];

/// FNV-1a over every file: the directory name changes whenever the contents do, so a
/// directory left by another version is never picked up.
fn content_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, body) in FILES {
        for b in name.bytes().chain(body.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// True if `dir` is a package directory we can trust: a real directory (not a symlink)
/// owned by us that nobody else can write, holding exactly our files, each a regular file
/// of ours with our contents. Extra files (Python's `__pycache__`) live under the private
/// parent, which only we can write.
fn is_trusted_copy(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let ours = |p: &Path, want_dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.uid() == me && m.mode() & 0o022 == 0 && m.is_dir() == want_dir && !m.is_symlink()
        })
    };
    ours(dir, true)
        && ours(&dir.join("actor_tui"), true)
        && FILES.iter().all(|(name, body)| {
            let p = dir.join(name);
            ours(&p, false) && std::fs::read(&p).is_ok_and(|b| b == body.as_bytes())
        })
}

/// Writes the package into the verified private directory `parent` (once per version) and
/// returns its directory. A copy that fails `is_trusted_copy` is moved aside and removed,
/// never used.
pub fn extract(parent: &PrivateDir) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let parent = parent.path();
    let dir = parent.join(format!("python-{:016x}", content_hash()));
    if is_trusted_copy(&dir) {
        return Ok(dir);
    }
    // Write to a private temporary directory and rename, so a concurrent run never sees a
    // half-written package.
    let tmp = parent.join(format!(".python-{}-{}", std::process::id(), content_hash()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(tmp.join("actor_tui"))?;
    for (name, body) in FILES {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(tmp.join(name))?
            .write_all(body.as_bytes())?;
    }
    if std::fs::symlink_metadata(&dir).is_ok() && !is_trusted_copy(&dir) {
        // Ours to remove: it sits in our private directory. Moved first so the name is free
        // at once; `remove_dir_all` does not follow symlinks.
        let aside = parent.join(format!(".python-stale-{}", std::process::id()));
        std::fs::rename(&dir, &aside)?;
        tracing::warn!(dir = %dir.display(), "replaced a Python client copy that failed its checks");
        if let Err(e) = std::fs::remove_dir_all(&aside) {
            tracing::warn!(dir = %aside.display(), error = %e, "cannot remove the old copy");
        }
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another run won the race: use its copy if it is sound.
        Err(_) if is_trusted_copy(&dir) => {
            // Ours, in our private directory; a leftover only costs disk.
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

/// What a user's own `PYTHONBREAKPOINT` does under actor-tui, for the notice at spawn.
pub fn kept_breakpoint_notice(value: &str) -> String {
    format!(
        "PYTHONBREAKPOINT={} is yours and is kept: breakpoint() calls it. A debugger built on \
         pdb.Pdb still goes through the debug lock and the REPL pane; one that reads the \
         terminal itself (ipdb) prompts in the actor's own terminal (F6 types into it). \
         Unset it for actor-tui's own.",
        super::bounds::escape(value)
    )
}

/// The variables to add to an actor's environment, given the variables it would otherwise
/// get (`env` from the spawn request, then the root's own), and the user's own
/// `PYTHONBREAKPOINT` if one is kept.
pub fn env_for(dir: &Path, env: &[(String, String)]) -> (Vec<(String, String)>, Option<String>) {
    let lookup = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(k).ok())
    };
    let mut path = dir.to_string_lossy().into_owned();
    if let Some(old) = lookup("PYTHONPATH").filter(|p| !p.is_empty()) {
        path.push(':');
        path.push_str(&old);
    }
    let mut out = vec![("PYTHONPATH".to_owned(), path)];
    // A user's choice is kept: `0` (breakpoints off) or their debugger. pdb-based ones
    // still reach the lock through the pdb.Pdb hook; the caller says so in a notice.
    let ours = "actor_tui.set_trace";
    match lookup("PYTHONBREAKPOINT").filter(|v| !v.is_empty()) {
        Some(v) if v == ours => out.push(("PYTHONBREAKPOINT".to_owned(), v)),
        Some(v) if v == "0" => {}
        Some(v) => return (out, Some(v)),
        None => out.push(("PYTHONBREAKPOINT".to_owned(), ours.to_owned())),
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_once_and_prepends_to_pythonpath() {
        let base = tempfile::tempdir().expect("tempdir");
        let parent = PrivateDir::open_or_create(&base.path().join("p")).expect("private");
        let dir = extract(&parent).expect("extract");
        assert!(dir.join("actor_tui/_client.py").exists());
        assert_eq!(extract(&parent).expect("again"), dir);
        let (env, kept) = env_for(&dir, &[("PYTHONPATH".into(), "/x".into())]);
        assert_eq!(env[0].1, format!("{}:/x", dir.display()));
        assert_eq!(env[1].1, "actor_tui.set_trace");
        assert_eq!(kept, None);
        let (off, kept) = env_for(&dir, &[("PYTHONBREAKPOINT".into(), "0".into())]);
        assert_eq!((off.len(), kept), (1, None), "breakpoints stay off");
        let (env, kept) = env_for(
            &dir,
            &[("PYTHONBREAKPOINT".into(), "ipdb.set_trace".into())],
        );
        assert_eq!(env.len(), 1, "the user's debugger is not replaced");
        assert_eq!(kept.as_deref(), Some("ipdb.set_trace"));
    }

    #[test]
    fn a_tampered_copy_is_replaced_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().expect("tempdir");
        let parent = PrivateDir::open_or_create(&base.path().join("p")).expect("private");
        let dir = extract(&parent).expect("extract");
        std::fs::write(
            dir.join("sitecustomize.py"),
            "raise SystemExit('planted')\n",
        )
        .expect("tamper");
        assert_eq!(extract(&parent).expect("re-extract"), dir);
        let body = std::fs::read_to_string(dir.join("sitecustomize.py")).expect("read");
        assert!(!body.contains("planted"));
        // A copy others can write is not trusted either.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(!is_trusted_copy(&dir));
        extract(&parent).expect("re-extract");
        assert!(is_trusted_copy(&dir));
    }
}
