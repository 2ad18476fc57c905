//! Every REPL session of the run, read from the runtime events: who held the lock, for
//! what, from where, how long it waited and held, and every line in and out. The core keeps
//! one log (for the transcript files and the run's report), the console another (its list
//! of past sessions, opened read-only, and the lock timeline). Pure: the time of each event
//! comes in as an argument, so every rule here is unit-tested.
//!
//! Bounded: a session keeps at most [`MAX_SESSION_TEXT`] bytes of text (the oldest pieces
//! go first, counted), the log at most [`MAX_SESSIONS`] sessions, and ended sessions' text
//! at most the log's budget in total (the oldest sessions lose their text first; their
//! summary stays).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use crate::proto::{ActorId, Reason};
use crate::runtime::RuntimeEvent;
use crate::runtime::lock::ReleaseCause;

/// Text kept of one session.
pub const MAX_SESSION_TEXT: usize = 1 << 20;
/// Sessions kept (summaries); the oldest are forgotten past this.
pub const MAX_SESSIONS: usize = 10_000;
/// Requests whose arrival time is remembered until they are granted or leave.
const MAX_PENDING: usize = 100_000;

/// One piece of a session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// What the debugger printed (prompts included).
    Out(String),
    /// A line sent into the session.
    In(String),
}

/// One grant of the lock, from request to release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// 1 for the run's first session.
    pub n: u64,
    pub actor: ActorId,
    pub actor_name: String,
    pub task: u64,
    pub task_name: String,
    pub epoch: u64,
    pub reason: Reason,
    /// Where it paused (the request's location; `moved_to` is where its last step stopped).
    pub location: String,
    pub moved_to: Option<String>,
    /// Times since the start of the run.
    pub requested: Duration,
    pub granted: Duration,
    pub ended: Option<Duration>,
    pub cause: Option<ReleaseCause>,
    pub pieces: VecDeque<Piece>,
    text_bytes: usize,
    /// Bytes of the session's start that are not kept (over [`MAX_SESSION_TEXT`], or the
    /// log's budget took all of it).
    pub dropped: usize,
    /// Lines sent into it.
    pub lines_in: u64,
}

impl Session {
    pub fn waited(&self) -> Duration {
        self.granted.saturating_sub(self.requested)
    }

    /// How long it held the lock (until `now` if it still does).
    pub fn held(&self, now: Duration) -> Duration {
        self.ended.unwrap_or(now).saturating_sub(self.granted)
    }

    /// Its text has been let go (only the summary is kept).
    pub fn evicted(&self) -> bool {
        self.pieces.is_empty() && self.dropped > 0
    }

    fn push(&mut self, piece: Piece) {
        let len = match &piece {
            Piece::Out(s) | Piece::In(s) => s.len(),
        };
        if len == 0 {
            return;
        }
        if let Piece::In(_) = piece {
            self.lines_in += 1;
        }
        self.pieces.push_back(piece);
        self.text_bytes += len;
        while self.text_bytes > MAX_SESSION_TEXT && self.pieces.len() > 1 {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(Piece::Out(s) | Piece::In(s)) = self.pieces.pop_front() {
            self.text_bytes -= s.len();
            self.dropped += s.len();
        }
    }

    fn evict(&mut self) -> usize {
        let freed = self.text_bytes;
        self.dropped += freed;
        self.pieces.clear();
        self.text_bytes = 0;
        freed
    }

    /// The session as it read on screen, after a header saying what it was.
    pub fn transcript(&self) -> String {
        let mut out = String::with_capacity(self.text_bytes + 512);
        let _ = writeln!(
            out,
            "# actor-tui session {}: actor {} ({}), task {} ({}), {} at {}",
            self.n,
            self.actor,
            self.actor_name,
            self.task,
            self.task_name,
            self.reason.as_str(),
            self.location
        );
        let _ = writeln!(
            out,
            "# requested at +{}, granted at +{} (waited {}), {}",
            secs(self.requested),
            secs(self.granted),
            secs(self.waited()),
            match (self.ended, self.cause) {
                (Some(e), Some(c)) => format!(
                    "ended at +{} (held {}): {}",
                    secs(e),
                    secs(self.held(e)),
                    c.as_str()
                ),
                _ => "still open".into(),
            }
        );
        if let Some(m) = &self.moved_to {
            let _ = writeln!(out, "# last stopped at {m}");
        }
        if self.dropped > 0 {
            let _ = writeln!(out, "# ({} bytes of its start not kept)", self.dropped);
        }
        out.push('\n');
        for p in &self.pieces {
            match p {
                Piece::Out(s) | Piece::In(s) => out.push_str(s),
            }
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// Seconds with millisecond precision, as the transcript and the report show times.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[derive(Debug)]
struct Pending {
    at: Duration,
    reason: Reason,
    task_name: String,
    location: String,
    /// Requests with this key not yet answered (a refused double request is one of them).
    count: u32,
}

/// The run's sessions.
#[derive(Debug)]
pub struct SessionLog {
    sessions: VecDeque<Session>,
    /// The open session's index in `sessions`, by epoch.
    open: Option<u64>,
    pending: HashMap<(ActorId, u64), Pending>,
    names: HashMap<ActorId, String>,
    next: u64,
    /// Text of ended sessions kept in total.
    budget: usize,
    ended_bytes: usize,
}

impl SessionLog {
    /// A log that keeps up to `budget` bytes of ended sessions' text (0: only the open
    /// session's text is kept, as the core does once it has written the transcript).
    pub fn new(budget: usize) -> Self {
        Self {
            sessions: VecDeque::new(),
            open: None,
            pending: HashMap::new(),
            names: HashMap::new(),
            next: 0,
            budget,
            ended_bytes: 0,
        }
    }

    pub fn sessions(&self) -> impl DoubleEndedIterator<Item = &Session> + ExactSizeIterator {
        self.sessions.iter()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session numbered `n`, if it is still kept.
    pub fn get(&self, n: u64) -> Option<&Session> {
        self.sessions.get(self.index(n)?)
    }

    /// Where session `n` is in `sessions` (numbers are consecutive from the oldest kept).
    fn index(&self, n: u64) -> Option<usize> {
        let first = self.sessions.front()?.n;
        usize::try_from(n.checked_sub(first)?).ok()
    }

    /// The session open now.
    pub fn current(&self) -> Option<&Session> {
        let epoch = self.open?;
        self.sessions.iter().rev().find(|s| s.epoch == epoch)
    }

    fn current_mut(&mut self) -> Option<&mut Session> {
        let epoch = self.open?;
        self.sessions.iter_mut().rev().find(|s| s.epoch == epoch)
    }

    /// Applies one event seen `at` into the run. Returns the number of the session it
    /// ended, if it ended one.
    pub fn apply(&mut self, ev: &RuntimeEvent, at: Duration) -> Option<u64> {
        match ev {
            // A name is needed until its actor's last grant (each session keeps its own
            // copy), so an exit lets it go: a long run of short-lived actors stays bounded.
            RuntimeEvent::ActorStarted { actor, name, .. } => {
                self.names.insert(*actor, name.clone());
            }
            RuntimeEvent::ActorExited { actor, .. } => {
                self.names.remove(actor);
            }
            RuntimeEvent::LockRequested {
                actor,
                task,
                task_name,
                reason,
                location,
                ..
            } => {
                if let Some(p) = self.pending.get_mut(&(*actor, *task)) {
                    p.count += 1;
                } else if self.pending.len() < MAX_PENDING {
                    self.pending.insert(
                        (*actor, *task),
                        Pending {
                            at,
                            reason: *reason,
                            task_name: task_name.clone(),
                            location: location.clone(),
                            count: 1,
                        },
                    );
                }
            }
            RuntimeEvent::LockRefused { actor, task, .. } => {
                if let Some(p) = self.pending.get_mut(&(*actor, *task)) {
                    p.count -= 1;
                    if p.count == 0 {
                        self.pending.remove(&(*actor, *task));
                    }
                }
            }
            RuntimeEvent::LockDropped { actor, task, .. }
            | RuntimeEvent::RequestSkipped { actor, task, .. } => {
                self.pending.remove(&(*actor, *task));
            }
            RuntimeEvent::LockGranted { actor, task, epoch } => {
                let p = self.pending.remove(&(*actor, *task));
                self.next += 1;
                let (requested, reason, task_name, location) = match p {
                    Some(p) => (p.at, p.reason, p.task_name, p.location),
                    None => (at, Reason::Pause, String::new(), String::new()),
                };
                self.sessions.push_back(Session {
                    n: self.next,
                    actor: *actor,
                    actor_name: self.names.get(actor).cloned().unwrap_or_default(),
                    task: *task,
                    task_name,
                    epoch: *epoch,
                    reason,
                    location,
                    moved_to: None,
                    requested,
                    granted: at,
                    ended: None,
                    cause: None,
                    pieces: VecDeque::new(),
                    text_bytes: 0,
                    dropped: 0,
                    lines_in: 0,
                });
                self.open = Some(*epoch);
                while self.sessions.len() > MAX_SESSIONS {
                    if let Some(old) = self.sessions.pop_front() {
                        self.ended_bytes -= old.text_bytes;
                    }
                }
            }
            RuntimeEvent::LockMoved { location, .. } => {
                if let Some(s) = self.current_mut() {
                    s.moved_to = Some(location.clone());
                }
            }
            RuntimeEvent::ReplOutput { actor, data, .. } => {
                if let Some(s) = self.current_mut().filter(|s| s.actor == *actor) {
                    s.push(Piece::Out(data.clone()));
                }
            }
            RuntimeEvent::ReplReady { actor, prompt, .. } => {
                if let Some(s) = self.current_mut().filter(|s| s.actor == *actor) {
                    s.push(Piece::Out(prompt.clone()));
                }
            }
            RuntimeEvent::ReplInput { actor, data, .. } => {
                if let Some(s) = self.current_mut().filter(|s| s.actor == *actor) {
                    s.push(Piece::In(data.clone()));
                }
            }
            RuntimeEvent::LockReleased { epoch, cause, .. } => {
                if self.open != Some(*epoch) {
                    return None;
                }
                self.open = None;
                let s = self.sessions.iter_mut().rev().find(|s| s.epoch == *epoch)?;
                s.ended = Some(at);
                s.cause = Some(*cause);
                let n = s.n;
                self.ended_bytes += s.text_bytes;
                self.keep_budget(n);
                return Some(n);
            }
            _ => {}
        }
        None
    }

    /// Lets go of the text of session `n` (it has been written out).
    pub fn evict(&mut self, n: u64) {
        let Some(i) = self.index(n) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(i).filter(|s| s.ended.is_some()) {
            self.ended_bytes -= s.evict();
        }
    }

    /// Lets go of the oldest ended sessions' text until the budget holds, except the one
    /// that just ended (`spare`): its owner still reads it (then evicts it if it wants).
    fn keep_budget(&mut self, spare: u64) {
        for s in self.sessions.iter_mut() {
            if self.ended_bytes <= self.budget {
                break;
            }
            if s.ended.is_some() && s.n != spare {
                self.ended_bytes -= s.evict();
            }
        }
    }

    /// Who held the lock over `[0, now)`, in `width` equal slices: each slice names the
    /// actor that held it longest in that slice (`None`: nobody held it).
    pub fn timeline(&self, now: Duration, width: usize) -> Vec<Option<ActorId>> {
        let mut out = vec![None; width];
        if width == 0 || now.is_zero() {
            return out;
        }
        let slice = now.as_secs_f64() / width as f64;
        let mut best = vec![0f64; width];
        for s in &self.sessions {
            let (a, b) = (
                s.granted.as_secs_f64(),
                s.ended.unwrap_or(now).as_secs_f64(),
            );
            let first = ((a / slice) as usize).min(width - 1);
            let last = ((b / slice) as usize).min(width - 1);
            for (i, cell) in out.iter_mut().enumerate().take(last + 1).skip(first) {
                let (lo, hi) = (i as f64 * slice, (i + 1) as f64 * slice);
                let overlap = b.min(hi) - a.max(lo);
                if overlap > best[i] {
                    best[i] = overlap;
                    *cell = Some(s.actor);
                }
            }
        }
        out
    }

    /// A self-contained HTML page of the run's sessions: a timeline (one row per actor,
    /// waiting and holding as bars) and a table with each session's times and transcript
    /// file (named by `file_of`). `now` is the run's length.
    pub fn report_html(
        &self,
        title: &str,
        now: Duration,
        file_of: impl Fn(&Session) -> String,
    ) -> String {
        // One row per actor, in the order they first held the lock, named as they were then.
        let mut rows: Vec<(ActorId, &str)> = Vec::new();
        let mut row_of: HashMap<ActorId, usize> = HashMap::new();
        for s in &self.sessions {
            row_of.entry(s.actor).or_insert_with(|| {
                rows.push((s.actor, s.actor_name.as_str()));
                rows.len() - 1
            });
        }
        let span = now.as_secs_f64().max(0.001);
        let (left, width, row_h) = (180.0, 900.0, 18.0);
        let x = |d: Duration| left + d.as_secs_f64() / span * width;
        let height = 30.0 + row_h * rows.len() as f64;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="12">"#,
            left + width + 20.0
        );
        let _ = write!(
            svg,
            r##"<text x="{left}" y="14">0 s</text><text x="{}" y="14" text-anchor="end">{}</text>"##,
            left + width,
            esc(&secs(now))
        );
        for (i, (actor, name)) in rows.iter().enumerate() {
            let y = 22.0 + row_h * i as f64;
            let _ = write!(
                svg,
                r#"<text x="4" y="{}">{}</text>"#,
                y + 12.0,
                esc(&format!("{actor} {name}"))
            );
        }
        for s in &self.sessions {
            let i = row_of.get(&s.actor).copied().unwrap_or(0);
            let y = 22.0 + row_h * i as f64;
            let end = s.ended.unwrap_or(now);
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{y}" width="{:.1}" height="14" fill="#ddd"><title>session {} waited {}</title></rect>"##,
                x(s.requested),
                (x(s.granted) - x(s.requested)).max(0.5),
                s.n,
                esc(&secs(s.waited()))
            );
            let fill = if s.reason == Reason::Crash {
                "#c33"
            } else {
                "#36c"
            };
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="14" fill="{fill}"><title>session {} at {} held {}</title></rect>"#,
                x(s.granted),
                (x(end) - x(s.granted)).max(1.0),
                s.n,
                esc(&s.location),
                esc(&secs(s.held(end)))
            );
        }
        svg.push_str("</svg>");
        let mut table = String::from(
            "<table><tr><th>#</th><th>actor</th><th>task</th><th>reason</th><th>location</th>\
             <th>requested</th><th>waited</th><th>held</th><th>ended by</th><th>lines in</th>\
             <th>transcript</th></tr>",
        );
        for s in &self.sessions {
            let file = file_of(s);
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{} {}</td><td>{} {}</td><td>{}</td><td>{}</td><td>+{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{}\">{}</a></td></tr>",
                s.n,
                s.actor,
                esc(&s.actor_name),
                s.task,
                esc(&s.task_name),
                s.reason.as_str(),
                esc(&s.location),
                esc(&secs(s.requested)),
                esc(&secs(s.waited())),
                esc(&secs(s.held(now))),
                s.cause.map_or("(open)", |c| c.as_str()),
                s.lines_in,
                esc(&file),
                esc(&file)
            );
        }
        table.push_str("</table>");
        let waited: Duration = self.sessions.iter().map(Session::waited).sum();
        let held: Duration = self.sessions.iter().map(|s| s.held(now)).sum();
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
             <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}</style></head>\
             <body><h1>{t}</h1><p>{} sessions in {}; the lock was held {} in all, and requests \
             waited {} in all. Grey: waiting for the lock; blue: a pause; red: a crash.</p>\
             {svg}{table}</body></html>\n",
            self.sessions.len(),
            esc(&secs(now)),
            esc(&secs(held)),
            esc(&secs(waited)),
            t = esc(title),
        )
    }
}

/// Text made safe for HTML (element text and quoted attributes).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn a(n: u64) -> ActorId {
        ActorId(n)
    }

    fn request(actor: u64, location: &str) -> RuntimeEvent {
        RuntimeEvent::LockRequested {
            actor: a(actor),
            task: 1,
            task_name: "main".into(),
            reason: Reason::Pause,
            location: location.into(),
            peek: None,
        }
    }

    fn granted(actor: u64, epoch: u64) -> RuntimeEvent {
        RuntimeEvent::LockGranted {
            actor: a(actor),
            task: 1,
            epoch,
        }
    }

    fn released(actor: u64, epoch: u64) -> RuntimeEvent {
        RuntimeEvent::LockReleased {
            actor: a(actor),
            task: 1,
            epoch,
            cause: ReleaseCause::Continue,
        }
    }

    fn out(actor: u64, s: &str) -> RuntimeEvent {
        RuntimeEvent::ReplOutput {
            actor: a(actor),
            task: 1,
            data: s.into(),
        }
    }

    fn input(actor: u64, s: &str) -> RuntimeEvent {
        RuntimeEvent::ReplInput {
            actor: a(actor),
            task: 1,
            data: s.into(),
        }
    }

    #[test]
    fn a_session_keeps_who_where_when_and_every_line_in_and_out() {
        let mut log = SessionLog::new(usize::MAX);
        let started = RuntimeEvent::ActorStarted {
            actor: a(2),
            name: "worker".into(),
            pid: 9,
            parent: None,
        };
        log.apply(&started, ms(0));
        log.apply(&request(2, "w.py:3"), ms(100));
        log.apply(&request(3, "w.py:3"), ms(150));
        assert_eq!(log.apply(&granted(2, 1), ms(130)), None);
        log.apply(&out(2, "> w.py(3)\n"), ms(131));
        log.apply(
            &RuntimeEvent::ReplReady {
                actor: a(2),
                task: 1,
                prompt: "(Pdb) ".into(),
            },
            ms(132),
        );
        // Another actor's output is not this session's.
        log.apply(&out(3, "stray"), ms(133));
        log.apply(&input(2, "p x\n"), ms(140));
        log.apply(&out(2, "1\n"), ms(141));
        assert_eq!(log.apply(&released(2, 1), ms(1130)), Some(1));
        log.apply(&granted(3, 2), ms(1131));
        let s = log.get(1).expect("session 1");
        assert_eq!(
            (s.actor_name.as_str(), s.location.as_str(), s.lines_in),
            ("worker", "w.py:3", 1)
        );
        assert_eq!((s.waited(), s.held(ms(0))), (ms(30), ms(1000)));
        let t = s.transcript();
        assert!(t.contains("session 1: actor 2 (worker)"), "{t}");
        assert!(
            t.contains("waited 0.030 s") && t.contains("held 1.000 s): continue"),
            "{t}"
        );
        assert!(t.ends_with("> w.py(3)\n(Pdb) p x\n1\n"), "{t}");
        let s2 = log.current().expect("open");
        assert_eq!((s2.n, s2.waited()), (2, ms(981)));
    }

    #[test]
    fn text_is_bounded_per_session_and_by_the_budget_oldest_first() {
        let mut log = SessionLog::new(3 * MAX_SESSION_TEXT / 2);
        let chunk = "x".repeat(MAX_SESSION_TEXT / 4);
        for epoch in 1..=3 {
            log.apply(&request(2, "l"), ms(epoch));
            log.apply(&granted(2, epoch), ms(epoch));
            for _ in 0..5 {
                log.apply(&out(2, &chunk), ms(epoch));
            }
            log.apply(&released(2, epoch), ms(epoch));
        }
        let s: Vec<&Session> = log.sessions().collect();
        // Five quarter chunks are more than one session keeps: the first went.
        assert_eq!(s[2].pieces.len(), 4);
        assert_eq!(s[2].dropped, chunk.len());
        // Each session keeps 1 MiB and the budget is 1.5 MiB: only the newest keeps its text.
        assert!(s[0].evicted() && s[1].evicted());
        assert!(!s[2].evicted());
        log.evict(3);
        assert!(log.get(3).expect("kept").evicted());
        // Core-style log: nothing of an ended session is kept once evicted.
        let mut core = SessionLog::new(0);
        core.apply(&granted(2, 9), ms(1));
        core.apply(&out(2, "hi"), ms(1));
        assert_eq!(core.current().expect("open").pieces.len(), 1);
        core.apply(&released(2, 9), ms(2));
        assert!(!core.get(1).expect("kept").evicted(), "readable once ended");
        core.evict(1);
        assert!(core.get(1).expect("kept").evicted());
    }

    #[test]
    fn a_refused_double_request_keeps_the_first_ones_arrival() {
        let mut log = SessionLog::new(0);
        log.apply(&request(2, "l"), ms(10));
        log.apply(&request(2, "l"), ms(20));
        log.apply(
            &RuntimeEvent::LockRefused {
                actor: a(2),
                task: 1,
                error: "double".into(),
            },
            ms(20),
        );
        log.apply(&granted(2, 1), ms(50));
        assert_eq!(log.current().expect("open").requested, ms(10));
        // A stale release names another epoch: nothing ends.
        assert_eq!(log.apply(&released(2, 7), ms(60)), None);
    }

    #[test]
    fn the_timeline_names_the_holder_of_each_slice() {
        let mut log = SessionLog::new(0);
        log.apply(&granted(2, 1), ms(0));
        log.apply(&released(2, 1), ms(500));
        log.apply(&granted(3, 2), ms(700));
        let line = log.timeline(ms(1000), 10);
        assert_eq!(&line[..5], &[Some(a(2)); 5]);
        assert_eq!(line[5], None);
        assert_eq!(&line[7..], &[Some(a(3)); 3]);
        assert!(log.timeline(ms(0), 4).iter().all(Option::is_none));
    }

    #[test]
    fn the_report_escapes_what_peers_named() {
        let mut log = SessionLog::new(0);
        log.apply(&request(2, "<script>x</script>"), ms(0));
        log.apply(&granted(2, 1), ms(10));
        log.apply(&released(2, 1), ms(20));
        let html = log.report_html("run", ms(30), |s| format!("{:04}.txt", s.n));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;") && html.contains("0001.txt"));
        assert!(html.contains("1 sessions") && html.contains("<svg"));
    }
}
