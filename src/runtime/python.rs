//! The bundled Python client (`python/` in the repository), embedded in the binary and
//! written out at run time, so `actor-tui python3 app.py` gets lock-serialised pdb sessions
//! with nothing installed: every spawned actor gets `PYTHONPATH` and `PYTHONBREAKPOINT`
//! pointing at it. Non-Python actors ignore both.

use std::path::{Path, PathBuf};

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

/// Writes the package under `parent` (once per version) and returns its directory.
pub fn extract(parent: &Path) -> std::io::Result<PathBuf> {
    let dir = parent.join(format!("python-{:016x}", content_hash()));
    if dir.join("actor_tui/__init__.py").exists() {
        return Ok(dir);
    }
    // Write to a private temporary directory and rename, so a concurrent run never sees a
    // half-written package.
    let tmp = parent.join(format!(".python-{}-{}", std::process::id(), content_hash()));
    std::fs::create_dir_all(tmp.join("actor_tui"))?;
    for (name, body) in FILES {
        std::fs::write(tmp.join(name), body)?;
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another run won the race: use its copy.
        Err(_) if dir.join("actor_tui/__init__.py").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

/// The variables to add to an actor's environment, given the variables it would otherwise
/// get (`env` from the spawn request, then the root's own).
pub fn env_for(dir: &Path, env: &[(String, String)]) -> Vec<(String, String)> {
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
    // `0` means "breakpoints off" and is kept; any other debugger would read a PTY nobody
    // types into, so ours replaces it.
    if lookup("PYTHONBREAKPOINT").as_deref() != Some("0") {
        out.push((
            "PYTHONBREAKPOINT".to_owned(),
            "actor_tui.set_trace".to_owned(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_once_and_prepends_to_pythonpath() {
        let tmp = std::env::temp_dir().join(format!("actor-tui-py-{}", std::process::id()));
        let dir = extract(&tmp).expect("extract");
        assert!(dir.join("actor_tui/_client.py").exists());
        assert_eq!(extract(&tmp).expect("again"), dir);
        let env = env_for(&dir, &[("PYTHONPATH".into(), "/x".into())]);
        assert_eq!(env[0].1, format!("{}:/x", dir.display()));
        assert_eq!(env[1].1, "actor_tui.set_trace");
        let off = env_for(&dir, &[("PYTHONBREAKPOINT".into(), "0".into())]);
        assert_eq!(off.len(), 1, "breakpoints stay off");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
