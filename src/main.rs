//! The `actor-tui` binary: CLI, logging, runtime, front end, exit code. Thin on purpose.

mod plain;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use actor_tui::demo;
use actor_tui::runtime::{self, RuntimeConfig};

/// A terminal console for debugging multi-process programs (actor trees).
#[derive(Debug, Parser)]
#[command(name = "actor-tui", version, about)]
struct Cli {
    /// JSON lines on stdout (events) and stdin (commands) instead of the console.
    #[arg(long)]
    headless: bool,
    /// Line-mode front end: events as text lines, typed lines go to the REPL (for dumb
    /// terminals and screen readers).
    #[arg(long, conflicts_with = "headless")]
    plain: bool,
    /// Socket path (default: a per-run path under $XDG_RUNTIME_DIR/actor-tui).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Grace period in ms between Cancel, SIGTERM and SIGKILL during teardown (default
    /// 2000, or the config file's `grace_ms`).
    #[arg(long)]
    grace_ms: Option<u64>,
    /// Read this config file alone (default: $XDG_CONFIG_HOME/actor-tui/actor-tui.toml,
    /// then the nearest actor-tui.toml from the working directory up). `actor-tui config`
    /// prints the configuration in force.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log file (default: $XDG_STATE_HOME/actor-tui/actor-tui.log).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Display name of the first actor (default: the program's file name).
    #[arg(long)]
    name: Option<String>,
    /// Accept remote actors and viewers over TLS at IP:PORT (port 0: any free port); the
    /// tickets are printed (headless: the `listening` event) and written to 0600 files.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// The HOST:PORT written into tickets (default: the bound address).
    #[arg(long, value_name = "HOST:PORT", requires = "listen")]
    advertise: Option<String>,
    /// A remote link whose peer vanished is given up after this many ms (its lock
    /// released, its requests dropped).
    #[arg(long, default_value_t = 5000)]
    link_timeout_ms: u64,
    /// An actor with no CPU, output or frame for this many seconds while others depend on
    /// it is marked possibly hung (shown, never acted on). Default 30, or the config's
    /// `hang_after_s`.
    #[arg(long, value_name = "SECS")]
    hang_after: Option<u64>,
    /// When the whole tree has been still this many seconds, take a tree-wide snapshot by
    /// itself (saved under the state directory; its path is printed).
    #[arg(long, value_name = "SECS")]
    dump_on_hang: Option<u64>,
    /// Write each REPL session's transcript, and the run's report (report.html), into DIR
    /// (made 0700 if missing; refused unless it is ours and private). Default: a directory
    /// per run under $XDG_STATE_HOME/actor-tui/transcripts.
    #[arg(long, value_name = "DIR", conflicts_with = "no_transcripts")]
    transcript_dir: Option<PathBuf>,
    /// Keep transcripts in memory only (the console's session list); write no files.
    #[arg(long)]
    no_transcripts: bool,
    /// The program to run as the first actor, and its arguments; `demo` runs the built-in
    /// demo tree.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The log file: `--log-file`, else `$XDG_STATE_HOME/actor-tui/actor-tui.log`, else
/// `~/.local/state/actor-tui/actor-tui.log`. With neither variable set (cron, some systemd
/// units) there is no log: a shared fallback such as `/tmp` is a place other users can
/// plant a symlink in.
fn log_path(cli: &Cli) -> Option<PathBuf> {
    if let Some(p) = &cli.log_file {
        return Some(p.clone());
    }
    Some(state_dir()?.join("actor-tui.log"))
}

/// `$XDG_STATE_HOME/actor-tui`, else `~/.local/state/actor-tui`; none without either.
fn state_dir() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(state.join("actor-tui"))
}

/// Starts logging to `path`, opened without following a symlink. An explicit `--log-file`
/// that cannot be opened is an error; the default one is skipped silently.
fn init_logging(
    path: &std::path::Path,
) -> std::io::Result<tracing_appender::non_blocking::WorkerGuard> {
    let file = actor_tui::runtime::private_dir::open_log(path)?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACTOR_TUI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
    Ok(guard)
}

/// Opens a console (or the JSON stream) on a run started elsewhere.
#[derive(Debug, Parser)]
#[command(name = "actor-tui attach", version)]
struct AttachCli {
    /// Ask to drive (type into sessions, release, cancel, quit); observer otherwise.
    #[arg(long)]
    driver: bool,
    /// Drive even if another viewer drives now (it becomes an observer). Implies --driver.
    #[arg(long)]
    take_over: bool,
    /// JSON lines on stdout and stdin, as `actor-tui --headless`, plus {"cmd":"detach"}.
    #[arg(long)]
    headless: bool,
    /// The name other consoles show for this viewer (default: user@host).
    #[arg(long)]
    name: Option<String>,
    /// The root: its socket path, its pid (see `actor-tui ls`), or a viewer's ticket (or a
    /// ticket file) of a root started with --listen; default: the only local root.
    target: Option<String>,
}

/// Lists the runs of this user that `attach` can reach.
#[derive(Debug, Parser)]
#[command(name = "actor-tui ls", version)]
struct LsCli {}

fn main() {
    // The binary doubles as the demo tree's actors: `actor-tui __demo ROLE`.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(demo::ROLE_FLAG) {
        std::process::exit(demo::run_role(argv.get(2).map_or("", String::as_str)));
    }
    // Subcommands come first: a program called `attach` or `ls` runs as `actor-tui -- ls`
    // (or `./ls`).
    match argv.get(1).map(String::as_str) {
        Some("attach") => {
            let cli = AttachCli::parse_from(&argv[1..]);
            std::process::exit(attach(cli));
        }
        Some("config") => {
            std::process::exit(print_config(&argv[2..]));
        }
        Some("ls") => {
            LsCli::parse_from(&argv[1..]);
            std::process::exit(ls());
        }
        _ => {}
    }
    let cli = Cli::parse();
    let log_guard = match log_path(&cli).map(|p| (init_logging(&p), p)) {
        Some((Ok(guard), _)) => Some(guard),
        Some((Err(e), p)) if cli.log_file.is_some() => {
            eprintln!("actor-tui: cannot open the log file {}: {e}", p.display());
            std::process::exit(2);
        }
        _ => None,
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("actor-tui: {e}");
            2
        }
    };
    // `exit` runs no destructors: flush the log first.
    drop(log_guard);
    std::process::exit(code);
}

/// `actor-tui config [--config FILE]`: the configuration in force, as TOML.
fn print_config(args: &[String]) -> i32 {
    let explicit = match args {
        [] => None,
        [flag, file] if flag == "--config" => Some(PathBuf::from(file)),
        _ => {
            eprintln!("usage: actor-tui config [--config FILE]");
            return 2;
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match actor_tui::config::Config::load(explicit.as_deref(), &cwd) {
        Ok(c) => {
            print!("{}", c.to_toml());
            0
        }
        Err(e) => {
            eprintln!("actor-tui: {e}");
            2
        }
    }
}

fn run(cli: Cli) -> Result<i32, Box<dyn std::error::Error>> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let conf = actor_tui::config::Config::load(cli.config.as_deref(), &cwd)?;
    let (program, args, name) = if cli.command.len() == 1 && cli.command[0] == "demo" {
        let exe = std::env::current_exe()?;
        (
            exe.to_string_lossy().into_owned(),
            vec![demo::ROLE_FLAG.to_owned(), "top".to_owned()],
            Some("demo".to_owned()),
        )
    } else {
        let mut it = cli.command.iter().cloned();
        let program = it.next().ok_or("no program given")?;
        (program, it.collect(), cli.name.clone())
    };
    let mut cfg = RuntimeConfig::new(program, args);
    cfg.name = name;
    cfg.socket = cli.socket.clone();
    cfg.grace = Duration::from_millis(cli.grace_ms.unwrap_or(conf.grace_ms));
    cfg.rules = conf.admission_rules();
    // Snapshots go next to the log (the same state directory), not to a --log-file's.
    cfg.state_dir = state_dir();
    let dir = cli
        .transcript_dir
        .clone()
        .or_else(|| conf.transcript_dir.clone());
    cfg.transcripts = match (dir, cli.no_transcripts || !conf.transcripts) {
        (_, true) => runtime::Transcripts::Off,
        (Some(d), false) => runtime::Transcripts::Dir(d),
        (None, false) => runtime::Transcripts::Default,
    };
    cfg.hang_after = Duration::from_secs(cli.hang_after.unwrap_or(conf.hang_after_s).max(1));
    cfg.dump_on_hang = cli.dump_on_hang.map(|s| Duration::from_secs(s.max(1)));
    cfg.listen = cli.listen.clone();
    cfg.advertise = cli.advertise.clone();
    cfg.link_timeout = Duration::from_millis(cli.link_timeout_ms.max(1000));
    use actor_tui::config::FrontEnd;
    let front = match (cli.headless, cli.plain) {
        (true, _) => FrontEnd::Headless,
        (_, true) => FrontEnd::Plain,
        _ => conf.front_end,
    };
    let console = front == FrontEnd::Console;
    let opts = actor_tui::console::Options {
        keys: actor_tui::console::keymap(&conf.keys),
        scrollback: Some(conf.scrollback),
        mono: conf.theme == actor_tui::config::ThemeName::Mono,
    };
    if console && let Ok((cols, rows)) = crossterm::terminal::size() {
        // Start actors at the size their output pane will have, not at 80x24.
        let (out, _) = actor_tui::console::pane_sizes(cols, rows);
        (cfg.rows, cfg.cols) = out;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let runtime = runtime::start(cfg).await?;
        let code = match front {
            FrontEnd::Headless => actor_tui::headless::run(runtime).await,
            FrontEnd::Plain => plain::run(runtime).await,
            FrontEnd::Console => actor_tui::console::run_with(runtime, opts).await,
        };
        Ok::<_, Box<dyn std::error::Error>>(code)
    });
    // A blocking stdin read may still be in flight: do not wait for it.
    rt.shutdown_background();
    result
}

fn ls() -> i32 {
    let roots = actor_tui::attach::list_roots();
    if roots.is_empty() {
        println!(
            "no running roots in {}",
            actor_tui::runtime::server::default_socket_dir().display()
        );
        return 0;
    }
    println!("{:>8}  {:<40}  COMMAND", "PID", "SOCKET");
    for r in roots {
        println!(
            "{:>8}  {:<40}  {}",
            r.pid,
            r.socket.display(),
            r.command.as_deref().unwrap_or("?")
        );
    }
    0
}

fn attach(cli: AttachCli) -> i32 {
    use actor_tui::attach::{self, AttachOptions};
    let ticket = match cli.target.as_deref().and_then(attach::ticket_target) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("actor-tui attach: {e}");
            return 2;
        }
        None => None,
    };
    let socket = match &ticket {
        Some(_) => std::path::PathBuf::new(),
        None => match attach::resolve(cli.target.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("actor-tui attach: {e}");
                return 2;
            }
        },
    };
    let opts = AttachOptions {
        name: cli.name.unwrap_or_else(attach::default_name),
        driver: cli.driver || cli.take_over,
        take_over: cli.take_over,
        quit_detaches: !cli.headless,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("actor-tui attach: {e}");
            return 2;
        }
    };
    let code = rt.block_on(async move {
        let connected = match &ticket {
            Some(t) => attach::connect_ticket(t, opts).await,
            None => attach::connect(&socket, opts).await,
        };
        let runtime = match connected {
            Ok(r) => r,
            Err(e) => {
                eprintln!("actor-tui attach: {e}");
                return 2;
            }
        };
        if cli.headless {
            actor_tui::headless::run_attached(runtime).await
        } else {
            actor_tui::console::run(runtime).await
        }
    });
    rt.shutdown_background();
    code
}
