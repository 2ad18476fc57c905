//! Not an actor program: the tool that records `assets/` from a real run. It starts
//! `actor-tui demo` on a real PTY, drives it with keystrokes like a user would, writes the
//! whole session as an asciicast v2 recording (`assets/demo.cast`, play it with
//! `asciinema play`) and renders screenshots of the real screen as SVG.
//!
//!     cargo build --release && cargo run --release --example record_demo

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use actor_tui::runtime::pty::{Mirror, SpawnSpec};

const ROWS: u16 = 32;
const COLS: u16 = 120;

fn color(c: vt100::Color, fg: bool) -> String {
    const BASE: [&str; 16] = [
        "#1e1e1e", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
        "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
    ];
    match c {
        vt100::Color::Default => (if fg { "#d4d4d4" } else { "#1e1e1e" }).into(),
        vt100::Color::Idx(i) if i < 16 => BASE[usize::from(i)].into(),
        vt100::Color::Idx(i) if i >= 232 => {
            let v = 8 + 10 * u32::from(i - 232);
            format!("#{v:02x}{v:02x}{v:02x}")
        }
        vt100::Color::Idx(i) => {
            let i = u32::from(i - 16);
            let lvl = |x: u32| if x == 0 { 0 } else { 55 + 40 * x };
            format!(
                "#{:02x}{:02x}{:02x}",
                lvl(i / 36),
                lvl(i / 6 % 6),
                lvl(i % 6)
            )
        }
        vt100::Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders a vt100 screen as SVG: one rect per background run, one text per style run.
fn svg(screen: &vt100::Screen) -> String {
    let (cw, ch) = (8.4_f64, 17.0_f64);
    let (rows, cols) = screen.size();
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"14\">\n<rect width=\"100%\" height=\"100%\" fill=\"#1e1e1e\"/>\n",
        f64::from(cols) * cw + 16.0,
        f64::from(rows) * ch + 16.0
    );
    for r in 0..rows {
        let y = 8.0 + f64::from(r) * ch;
        let mut c = 0;
        while c < cols {
            let Some(cell) = screen.cell(r, c) else { break };
            let (mut fg, mut bg) = (color(cell.fgcolor(), true), color(cell.bgcolor(), false));
            if cell.inverse() {
                std::mem::swap(&mut fg, &mut bg);
            }
            let bold = cell.bold();
            let start = c;
            let mut text = String::new();
            while c < cols {
                let Some(k) = screen.cell(r, c) else { break };
                let (mut f2, mut b2) = (color(k.fgcolor(), true), color(k.bgcolor(), false));
                if k.inverse() {
                    std::mem::swap(&mut f2, &mut b2);
                }
                if f2 != fg || b2 != bg || k.bold() != bold {
                    break;
                }
                let s = k.contents();
                text.push_str(if s.is_empty() { " " } else { s });
                c += 1;
            }
            let x = 8.0 + f64::from(start) * cw;
            let w = f64::from(c - start) * cw;
            if bg != "#1e1e1e" {
                let _ = writeln!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{ch:.1}\" fill=\"{bg}\"/>"
                );
            }
            if !text.trim().is_empty() {
                let weight = if bold { " font-weight=\"bold\"" } else { "" };
                let _ = writeln!(
                    out,
                    "<text x=\"{x:.1}\" y=\"{:.1}\" fill=\"{fg}\"{weight} textLength=\"{w:.1}\" lengthAdjust=\"spacingAndGlyphs\" xml:space=\"preserve\">{}</text>",
                    y + 13.0,
                    esc(&text)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

fn main() {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("actor-tui")))
        .filter(|p| p.exists())
        .expect("build actor-tui first (cargo build --release)");
    let bin = bin.to_string_lossy().into_owned();
    let dir = std::env::temp_dir().join(format!("actor-tui-record-{}", std::process::id()));
    let args: Vec<String> = vec![
        "--socket".into(),
        dir.join("root.sock").to_string_lossy().into_owned(),
        "--log-file".into(),
        dir.join("log").to_string_lossy().into_owned(),
        "demo".into(),
    ];
    let env = vec![("TERM".to_owned(), "xterm-256color".to_owned())];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let term = rt
        .block_on(async {
            Mirror::spawn(&SpawnSpec {
                program: &bin,
                args: &args,
                env: &env,
                cwd: None,
                rows: ROWS,
                cols: COLS,
            })
        })
        .expect("start actor-tui");
    // Shared by the helpers below and the exit check at the end.
    let term = std::cell::RefCell::new(term);
    let contents = || term.borrow().contents();
    let wait = |pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pred(&contents()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let keys = |s: &str, pause_ms: u64| {
        for ch in s.chars() {
            rt.block_on(term.borrow().write(ch.to_string().as_bytes()))
                .expect("keys");
            std::thread::sleep(Duration::from_millis(70));
        }
        std::thread::sleep(Duration::from_millis(pause_ms));
    };
    let shot = |name: &str| {
        let s = term.borrow().with_screen(svg);
        std::fs::write(format!("assets/{name}.svg"), s).expect("write svg");
    };
    wait(&|c| c.contains("› ") && c.contains("queued"));
    std::thread::sleep(Duration::from_millis(800));
    keys("p round\r", 900);
    shot("console");
    keys("c\r", 900);
    keys("locals\r", 900);
    keys("c\r", 900);
    // Navigate to the crasher and ask for its task dump.
    keys("\x1b", 300);
    keys("jjj", 300);
    rt.block_on(term.borrow().write(b"\x1b[15~")).expect("F5");
    std::thread::sleep(Duration::from_millis(1200));
    shot("dump");
    keys("i", 200);
    for _ in 0..6 {
        wait(&|c| c.contains("› "));
        std::thread::sleep(Duration::from_millis(700));
        if contents().contains("crashed at") {
            shot("post-mortem");
        }
        keys("c\r", 600);
        if term.borrow_mut().child.try_wait().ok().flatten().is_some() {
            break;
        }
    }
    let mut term = term.into_inner();
    let child = &mut term.child;
    let _ =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), child.wait()).await });
    let mut cast = format!(
        "{{\"version\": 2, \"width\": {COLS}, \"height\": {ROWS}, \"title\": \"actor-tui demo\"}}\n"
    );
    for (at, bytes) in term.output() {
        let line = serde_json::json!([at.as_secs_f64(), "o", String::from_utf8_lossy(&bytes)]);
        let _ = writeln!(cast, "{line}");
    }
    std::fs::write("assets/demo.cast", cast).expect("cast");
    let _ = std::fs::remove_dir_all(&dir);
    println!("wrote assets/demo.cast and assets/*.svg");
}
