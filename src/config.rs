//! The config file, `actor-tui.toml`: defaults for the run (front end, grace period, hang
//! watch, transcripts), the console (scrollback, theme, key bindings) and admission rules.
//! Read from `$XDG_CONFIG_HOME/actor-tui/actor-tui.toml` (the user's), then the nearest
//! `actor-tui.toml` in the working directory or above it (the project's), which wins field
//! by field; `--config FILE` reads that file alone. Command-line flags win over both.
//!
//! Every mistake is an error naming the file and line: unknown keys, bad values, unknown
//! actions or keys. A config file must be ours (or root's) and writable by nobody else: a
//! file another user can write would let them choose our rules. A project's file may not
//! set `transcript_dir` (a cloned repository could send your sessions into its own tree).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::runtime::admission::{Action, Matcher, Rule};

/// The file name looked for.
pub const FILE_NAME: &str = "actor-tui.toml";

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    At {
        path: String,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrontEnd {
    Console,
    Headless,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThemeName {
    /// Colours (unless `NO_COLOR` is set).
    Color,
    /// No colours: bold and reverse video only.
    Mono,
}

/// One `[[rules]]` entry as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    /// `auto_continue`, `crash_limit` or `rate_limit`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// An actor's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// crash_limit: crashes per location that get a post-mortem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u32>,
    /// rate_limit: sessions per `per_s` seconds per location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_s: Option<f64>,
}

/// The file's contents (every field optional: what is not set keeps its default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    front_end: Option<FrontEnd>,
    grace_ms: Option<u64>,
    hang_after_s: Option<u64>,
    scrollback: Option<usize>,
    theme: Option<ThemeName>,
    transcripts: Option<bool>,
    transcript_dir: Option<Spanned<PathBuf>>,
    #[serde(default)]
    keys: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleEntry>>,
}

/// The effective configuration (what `actor-tui config` prints).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The files read, in order (later ones win).
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
    pub front_end: FrontEnd,
    pub grace_ms: u64,
    pub hang_after_s: u64,
    pub scrollback: usize,
    pub theme: ThemeName,
    pub transcripts: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript_dir: Option<PathBuf>,
    /// Key -> action, over the default bindings.
    pub keys: BTreeMap<String, String>,
    pub rules: Vec<RuleEntry>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            front_end: FrontEnd::Console,
            grace_ms: 2000,
            hang_after_s: 30,
            scrollback: crate::console::state::SCROLLBACK,
            theme: ThemeName::Color,
            transcripts: true,
            transcript_dir: None,
            keys: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

/// Actions a key can be bound to (`none` unbinds a key).
pub const KEY_ACTIONS: &[&str] = &[
    "help",
    "dump",
    "dump_all",
    "interrupt",
    "force_release",
    "cancel",
    "quit",
    "drive",
    "freeze",
    "promote",
    "defer",
    "skip",
    "continue_here",
    "auto_continue_here",
    "sessions",
    "crashes",
    "search",
    "editor",
    "rule",
    "none",
];

/// Whether `key` names a key a binding can use: `F1`..`F12`, or one printable character.
pub fn valid_key(key: &str) -> bool {
    if let Some(n) = key.strip_prefix('F') {
        return n.parse::<u8>().is_ok_and(|n| (1..=12).contains(&n));
    }
    let mut c = key.chars();
    matches!((c.next(), c.next()), (Some(ch), None) if !ch.is_control() && ch != ' ')
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |head| head.matches('\n').count() + 1)
}

impl RuleEntry {
    /// The rule it makes, or why not.
    pub fn to_rule(&self) -> Result<Rule, String> {
        let matcher = Matcher {
            location: self.location.clone(),
            actor: None,
            actor_name: self.actor.clone(),
        };
        if matcher.location.is_none() && matcher.actor_name.is_none() {
            return Err(
                "a rule needs `location` (a location, its tail, or \"*\") or `actor` (a name)"
                    .into(),
            );
        }
        let action = match self.action.as_str() {
            "auto_continue" => Action::AutoContinue,
            "crash_limit" => Action::CrashLimit {
                first: self.first.ok_or(
                    "crash_limit needs `first` (crashes per location that get a post-mortem)",
                )?,
            },
            "rate_limit" => {
                let at_most = self.at_most.ok_or("rate_limit needs `at_most`")?;
                let per_s = self.per_s.ok_or("rate_limit needs `per_s` (seconds)")?;
                if !(per_s.is_finite() && per_s > 0.0 && per_s < 1e9) {
                    return Err(format!(
                        "per_s must be a positive number of seconds, not {per_s}"
                    ));
                }
                Action::RateLimit {
                    at_most,
                    per_ms: (per_s * 1000.0).round().max(1.0) as u64,
                }
            }
            other => {
                return Err(format!(
                    "unknown action `{other}` (auto_continue, crash_limit or rate_limit)"
                ));
            }
        };
        Ok(Rule::new(matcher, action))
    }
}

impl Config {
    /// Parses one file's text onto `self` (its values win). `project`: a project's file,
    /// which may not set `transcript_dir`.
    pub fn merge_text(&mut self, path: &str, text: &str, project: bool) -> Result<(), ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            ConfigError::At {
                path: path.into(),
                line,
                message: e.message().to_owned(),
            }
        })?;
        let at = |span: std::ops::Range<usize>, message: String| ConfigError::At {
            path: path.into(),
            line: line_of(text, span.start),
            message,
        };
        if let Some(d) = file.transcript_dir {
            if project {
                return Err(at(
                    d.span(),
                    "transcript_dir may be set only in your own config file or with --config \
                     (a project's file could send your sessions into its tree)"
                        .into(),
                ));
            }
            self.transcript_dir = Some(d.into_inner());
        }
        for (k, v) in file.keys {
            if !valid_key(k.get_ref()) {
                return Err(at(
                    k.span(),
                    format!("`{}` is not a key (F1..F12, or one character)", k.get_ref()),
                ));
            }
            if !KEY_ACTIONS.contains(&v.get_ref().as_str()) {
                return Err(at(
                    v.span(),
                    format!(
                        "unknown action `{}`; one of: {}",
                        v.get_ref(),
                        KEY_ACTIONS.join(", ")
                    ),
                ));
            }
            self.keys.insert(k.into_inner(), v.into_inner());
        }
        for r in file.rules {
            let span = r.span();
            let entry = r.into_inner();
            entry.to_rule().map_err(|m| at(span, m))?;
            self.rules.push(entry);
        }
        if let Some(s) = file.scrollback {
            if !(100..=1_000_000).contains(&s) {
                return Err(ConfigError::Bad {
                    path: path.into(),
                    message: format!("scrollback must be 100..=1000000 lines, not {s}"),
                });
            }
            self.scrollback = s;
        }
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = file.$f { self.$f = v; })* };
        }
        set!(front_end, grace_ms, hang_after_s, theme, transcripts);
        self.sources.push(PathBuf::from(path));
        Ok(())
    }

    /// The admission rules it sets.
    pub fn admission_rules(&self) -> Vec<Rule> {
        self.rules.iter().filter_map(|r| r.to_rule().ok()).collect()
    }

    /// The effective configuration as TOML, after a comment naming the files read.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# actor-tui: the effective configuration\n");
        if self.sources.is_empty() {
            out.push_str("# no config file found: every value is the default\n");
        }
        for s in &self.sources {
            out.push_str(&format!("# read: {}\n", s.display()));
        }
        out.push_str(&toml::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n")));
        out
    }

    /// Reads the configuration: `explicit` alone, or the user's file then the project's.
    pub fn load(explicit: Option<&Path>, cwd: &Path) -> Result<Self, ConfigError> {
        let mut cfg = Self::default();
        if let Some(p) = explicit {
            let text = read_checked(p)?.ok_or_else(|| ConfigError::Bad {
                path: p.display().to_string(),
                message: "no such file".into(),
            })?;
            cfg.merge_text(&p.display().to_string(), &text, false)?;
            return Ok(cfg);
        }
        if let Some(user) = user_file()
            && let Some(text) = read_checked(&user)?
        {
            cfg.merge_text(&user.display().to_string(), &text, false)?;
        }
        for dir in cwd.ancestors() {
            let p = dir.join(FILE_NAME);
            if let Some(text) = read_checked(&p)? {
                cfg.merge_text(&p.display().to_string(), &text, true)?;
                break;
            }
        }
        Ok(cfg)
    }
}

/// `$XDG_CONFIG_HOME/actor-tui/actor-tui.toml`, else `~/.config/actor-tui/actor-tui.toml`.
pub fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("actor-tui").join(FILE_NAME))
}

/// The file's text, `None` if there is none; refused if it is a symlink, not a regular
/// file, not ours or root's, writable by group or others, or over 1 MiB.
fn read_checked(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let bad = |message: String| ConfigError::Bad {
        path: path.display().to_string(),
        message,
    };
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(bad(format!(
                "cannot open it ({e}); a config file must not be a symlink"
            )));
        }
    };
    let meta = f.metadata().map_err(|e| bad(e.to_string()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(bad(format!(
            "owned by uid {}, not by you (uid {me}) or root: not read",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(bad(format!(
            "writable by others (mode {:o}): not read; chmod go-w it",
            meta.mode() & 0o777
        )));
    }
    let mut text = String::new();
    f.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.merge_text("t.toml", text, true).map(|()| c)
    }

    #[test]
    fn a_full_file_sets_everything_and_prints_back() {
        let c = parse(
            "front_end = \"headless\"\ngrace_ms = 500\nscrollback = 5000\ntheme = \"mono\"\n\
             [keys]\nF4 = \"force_release\"\ng = \"dump_all\"\n\
             [[rules]]\nlocation = \"worker.py:42\"\naction = \"auto_continue\"\n\
             [[rules]]\nlocation = \"*\"\naction = \"crash_limit\"\nfirst = 3\n\
             [[rules]]\nactor = \"noisy\"\naction = \"rate_limit\"\nat_most = 1\nper_s = 2.5\n",
        )
        .expect("parses");
        assert_eq!(
            (c.front_end, c.grace_ms, c.scrollback),
            (FrontEnd::Headless, 500, 5000)
        );
        assert_eq!(c.keys.get("F4").map(String::as_str), Some("force_release"));
        let rules = c.admission_rules();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2].describe(), "rate_limit 1/2.5s actor \"noisy\"");
        let printed = c.to_toml();
        let mut again = Config::default();
        again
            .merge_text("again", &printed, false)
            .expect("what config prints parses back");
        assert_eq!(again.rules, c.rules);
    }

    #[test]
    fn mistakes_name_their_line() {
        let line = |text: &str| match parse(text) {
            Err(ConfigError::At { line, message, .. }) => (line, message),
            other => panic!("{other:?}"),
        };
        assert_eq!(line("grace_ms = 1\nnope = 2\n").0, 2);
        assert_eq!(line("grace_ms = \"soon\"\n").0, 1);
        let (l, m) = line("theme = \"mono\"\n\n[keys]\nF99 = \"quit\"\n");
        assert_eq!(l, 4, "{m}");
        let (l, m) = line("[keys]\nq = \"explode\"\n");
        assert_eq!(l, 2);
        assert!(m.contains("unknown action `explode`"), "{m}");
        let (l, m) = line("[[rules]]\nlocation = \"a\"\naction = \"crash_limit\"\n");
        assert_eq!(l, 1, "{m}");
        assert!(m.contains("needs `first`"), "{m}");
        let (l, m) = line("[[rules]]\naction = \"auto_continue\"\nlocation = \"a\"\nwhen = 1\n");
        assert_eq!(l, 4, "{m}");
        // A project's file cannot choose where transcripts go.
        let (l, m) = line("\ntranscript_dir = \"/tmp/x\"\n");
        assert_eq!(l, 2);
        assert!(m.contains("only in your own config"), "{m}");
    }

    #[test]
    fn the_project_file_wins_over_the_users_and_files_must_be_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path().join("home");
        let project = dir.path().join("proj").join("sub");
        std::fs::create_dir_all(home.join("actor-tui")).expect("mk");
        std::fs::create_dir_all(&project).expect("mk");
        std::fs::write(
            home.join("actor-tui").join(FILE_NAME),
            "grace_ms = 100\nscrollback = 300\n",
        )
        .expect("w");
        let proj_file = dir.path().join("proj").join(FILE_NAME);
        std::fs::write(&proj_file, "grace_ms = 900\n").expect("w");
        // The user's file first, then the project's over it, field by field.
        let mut c = Config::default();
        let text = std::fs::read_to_string(home.join("actor-tui").join(FILE_NAME)).expect("r");
        c.merge_text("user", &text, false).expect("user");
        c.merge_text("proj", "grace_ms = 900\n", true)
            .expect("proj");
        assert_eq!((c.grace_ms, c.scrollback), (900, 300));
        let loaded = Config::load(Some(&proj_file), &project).expect("explicit");
        assert_eq!(loaded.grace_ms, 900);
        // Nearest file upward from the working directory.
        let found = Config::load(None, &project).expect("found");
        assert!(
            found.sources.iter().any(|s| s == &proj_file),
            "{:?}",
            found.sources
        );
        assert_eq!(found.grace_ms, 900);
        // Writable by others: refused, with the reason.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&proj_file, std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
        let e = Config::load(None, &project).expect_err("group-writable");
        assert!(e.to_string().contains("writable by others"), "{e}");
        // A symlink is not followed.
        std::fs::remove_file(&proj_file).expect("rm");
        std::os::unix::fs::symlink(home.join("actor-tui").join(FILE_NAME), &proj_file).expect("ln");
        let e = Config::load(None, &project).expect_err("symlink");
        assert!(e.to_string().contains("symlink"), "{e}");
    }
}
