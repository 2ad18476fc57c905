//! The dump ladder's pure part: what each step found, the text a user reads, which step
//! answered, and the merging of many actors' stacks into groups for a tree-wide snapshot.
//! The steps themselves (reading `/proc`, running py-spy or a native unwinder, waiting for
//! the actor's own answer) are the shell's, in `inspect`.
//!
//! The ladder, each step with its own timeout: free facts from `/proc` and the root's own
//! books (always); the actor's cooperative dump; when that does not come, a read from outside
//! as the actor's ancestor: py-spy for Python, then a native unwinder for every thread.

use std::time::Duration;

use crate::proto::ActorId;

/// What the actor's own client said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coop {
    /// No connection: it does not link a client, or it is gone.
    NotConnected,
    Answered {
        text: String,
        took: Duration,
    },
    TimedOut(Duration),
}

/// A read from outside: which tool, and what it printed or why it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub result: Result<String, String>,
}

/// Everything one dump found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `(label, value)` lines: state, wchan, CPU, threads, last output, last frame, lock.
    pub facts: Vec<(String, String)>,
    pub coop: Coop,
    pub tools: Vec<Tool>,
}

impl Report {
    /// The step whose answer is the stacks shown: `cooperative`, `py-spy`, `native`, or
    /// `facts` when nothing else answered.
    pub fn answered_by(&self) -> &'static str {
        if matches!(self.coop, Coop::Answered { .. }) {
            return "cooperative";
        }
        self.tools
            .iter()
            .find(|t| t.result.is_ok())
            .map_or("facts", |t| t.name)
    }

    /// The stacks shown, if any step produced them.
    pub fn stacks(&self) -> Option<&str> {
        if let Coop::Answered { text, .. } = &self.coop {
            return Some(text);
        }
        self.tools
            .iter()
            .find_map(|t| t.result.as_ref().ok().map(String::as_str))
    }

    /// The answer first (which step, then the stacks: what fits in a small pane), then
    /// the facts and what every other step said.
    pub fn render(&self) -> String {
        let mut out = format!("answered by: {}", self.answered_by());
        if let Coop::Answered { took, .. } = &self.coop {
            out.push_str(&format!(" (in {} ms)", took.as_millis()));
        }
        out.push('\n');
        if let Some(stacks) = self.stacks() {
            out.push_str(stacks.trim_end());
            out.push('\n');
        }
        out.push_str("\n--- facts\n");
        for (k, v) in &self.facts {
            out.push_str(&format!("  {k:<12} {v}\n"));
        }
        match &self.coop {
            Coop::NotConnected => out.push_str("cooperative dump: not connected (no client)\n"),
            Coop::Answered { .. } => {}
            Coop::TimedOut(after) => out.push_str(&format!(
                "cooperative dump: no answer within {} ms (its client thread is stuck, or the GIL is held)\n",
                after.as_millis()
            )),
        }
        for t in &self.tools {
            match &t.result {
                Ok(_) => out.push_str(&format!("{}: read from outside\n", t.name)),
                Err(why) => out.push_str(&format!("{}: {why}\n", t.name)),
            }
        }
        out
    }

    /// The stacks with what differs between identical processes taken out (pids, thread
    /// ids, addresses, timings), so that twenty workers blocked at one line compare equal.
    pub fn signature(&self) -> Option<String> {
        let stacks = self.stacks()?;
        let lines: Vec<String> = stacks
            .lines()
            .filter(|l| {
                let t = l.trim();
                !t.is_empty()
                    && !t.contains("pid ")
                    && !t.starts_with("Process ")
                    && !t.starts_with("PID ")
                    && !t.starts_with("Python v")
                    && !t.starts_with("actor ")
            })
            .map(normalize)
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

/// Hex addresses and long numbers (thread ids, pids) become `_`.
fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for word in line.split_inclusive(char::is_whitespace) {
        // The token inside its punctuation: `(tid 7417]` -> `7417`, `0x7f..:` -> `0x7f..`.
        let start = word.len()
            - word
                .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
                .len();
        let end = word
            .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            .len()
            .max(start);
        let core = &word[start..end];
        let hexish = core.len() > 2
            && core.starts_with("0x")
            && core[2..].bytes().all(|b| b.is_ascii_hexdigit());
        let long_number = core.len() >= 4 && core.bytes().all(|b| b.is_ascii_digit());
        out.push_str(&word[..start]);
        out.push_str(if hexish || long_number { "_" } else { core });
        out.push_str(&word[end..]);
    }
    out
}

/// Actors whose stacks are the same, with that stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub actors: Vec<ActorId>,
    pub signature: String,
}

/// Groups actors by stack signature, biggest group first; actors without stacks are left
/// out (the snapshot lists them with the step that answered).
fn group(items: impl Iterator<Item = (ActorId, Option<String>)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (id, sig) in items {
        let Some(sig) = sig else { continue };
        match groups.iter_mut().find(|g| g.signature == sig) {
            Some(g) => g.actors.push(id),
            None => groups.push(Group {
                actors: vec![id],
                signature: sig,
            }),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.actors.len()));
    groups
}

/// The first frame line of a signature, for a one-line summary ("blocked at ...").
pub fn headline(signature: &str) -> &str {
    let mut lines = signature.lines();
    signature
        .lines()
        .find(|l| l.contains(".py:") || l.contains(".rs:"))
        // A native frame of the program itself (a Rust path), not of libc.
        .or_else(|| {
            signature.lines().find(|l| {
                l.trim_start().starts_with('#') && l.contains("::") && !l.contains("std::")
            })
        })
        .or_else(|| signature.lines().find(|l| l.contains(" in ")))
        .or_else(|| lines.next())
        .unwrap_or("")
        .trim()
}

/// One actor's answer in a tree-wide snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub actor: ActorId,
    pub name: String,
    /// The step that answered (see [`Report::answered_by`]).
    pub step: String,
    pub signature: Option<String>,
    /// The whole dump as shown for this actor alone.
    pub text: String,
}

/// A tree-wide snapshot as text (a summary line per actor, then the merged stacks, then
/// every actor's dump) and as JSON (the entries and the groups).
pub fn snapshot(entries: &[Entry]) -> (String, String) {
    let groups = group(entries.iter().map(|e| (e.actor, e.signature.clone())));
    let mut text = format!("snapshot of {} actors\n\n", entries.len());
    for e in entries {
        text.push_str(&format!(
            "  {:>5} {:<24} {}\n",
            e.actor.to_string(),
            e.name,
            e.step
        ));
    }
    text.push_str("\nstacks, identical ones merged:\n");
    for g in &groups {
        let ids: Vec<String> = g.actors.iter().map(ToString::to_string).collect();
        let who = if g.actors.len() == 1 {
            format!("1 actor ({})", ids[0])
        } else {
            format!("{} actors ({})", g.actors.len(), ids.join(", "))
        };
        text.push_str(&format!("\n{who} at {}:\n", headline(&g.signature)));
        for l in g.signature.lines() {
            text.push_str(&format!("    {l}\n"));
        }
    }
    text.push_str("\nevery actor:\n");
    for e in entries {
        text.push_str(&format!("\n== {} {} ==\n{}", e.actor, e.name, e.text));
    }
    let json = serde_json::json!({
        "actors": entries,
        "groups": groups.iter().map(|g| serde_json::json!({
            "actors": g.actors,
            "headline": headline(&g.signature),
            "stack": g.signature,
        })).collect::<Vec<_>>(),
    })
    .to_string();
    (text, json)
}

/// What changed between two snapshots, a line per actor that differs: new, gone, another
/// step answering, or other stacks (the stacks are compared by signature, so a pid or an
/// address does not count as a change).
pub fn diff(before: &[Entry], after: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    for a in after {
        match before.iter().find(|b| b.actor == a.actor) {
            None => out.push(format!("{} {}: new", a.actor, a.name)),
            Some(b) if b.step != a.step => out.push(format!(
                "{} {}: answered by {} (was {})",
                a.actor, a.name, a.step, b.step
            )),
            Some(b) if b.signature != a.signature => {
                let at = a.signature.as_deref().map_or("(no stacks)", headline);
                out.push(format!(
                    "{} {}: stacks changed, now at {at}",
                    a.actor, a.name
                ));
            }
            Some(_) => {}
        }
    }
    for b in before {
        if !after.iter().any(|a| a.actor == b.actor) {
            out.push(format!("{} {}: gone", b.actor, b.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(coop: Coop, tools: Vec<Tool>) -> Report {
        Report {
            facts: vec![("state".into(), "S (sleeping)".into())],
            coop,
            tools,
        }
    }

    #[test]
    fn the_step_that_answered_is_named_and_its_stacks_shown() {
        let r = report(
            Coop::Answered {
                text: "threads:\n  main at a.py:3".into(),
                took: Duration::from_millis(4),
            },
            vec![],
        );
        assert_eq!(r.answered_by(), "cooperative");
        let text = r.render();
        assert!(
            text.starts_with("answered by: cooperative (in 4 ms)\nthreads:\n  main at a.py:3\n"),
            "{text}"
        );
        assert!(text.contains("state        S (sleeping)"), "{text}");

        let r = report(
            Coop::TimedOut(Duration::from_secs(2)),
            vec![
                Tool {
                    name: "py-spy",
                    result: Err("not installed (pip install py-spy)".into()),
                },
                Tool {
                    name: "native",
                    result: Ok("Thread 1 (LWP 42):\n#0 0x00007f in nanosleep ()".into()),
                },
            ],
        );
        assert_eq!(r.answered_by(), "native");
        let text = r.render();
        assert!(text.contains("no answer within 2000 ms"), "{text}");
        assert!(text.contains("py-spy: not installed"), "{text}");
        assert!(text.contains("nanosleep"), "{text}");

        let r = report(Coop::NotConnected, vec![]);
        assert_eq!(r.answered_by(), "facts");
        assert_eq!(r.signature(), None);
    }

    #[test]
    fn identical_stacks_merge_whatever_their_pids_and_addresses() {
        let spy = |pid: u32, tid: &str| {
            report(
                Coop::TimedOut(Duration::from_secs(2)),
                vec![Tool {
                    name: "py-spy",
                    result: Ok(format!(
                        "Process {pid}: python w.py\nPython v3.11.7\n\nThread {tid} (idle): \"MainThread\"\n    get (queue.py:171)\n    work (w.py:9)\n"
                    )),
                }],
            )
        };
        let a = spy(101, "0x7F00AA");
        let b = spy(202, "0x7F00BB");
        let c = report(
            Coop::Answered {
                text: "threads:\n  main at other.py:1".into(),
                took: Duration::ZERO,
            },
            vec![],
        );
        let groups = group(
            [(ActorId(2), &a), (ActorId(3), &c), (ActorId(4), &b)]
                .into_iter()
                .map(|(id, r)| (id, r.signature())),
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].actors, vec![ActorId(2), ActorId(4)]);
        assert_eq!(headline(&groups[0].signature), "get (queue.py:171)");
        // Rust's cooperative dump names threads by id in brackets: still the same stack.
        assert_eq!(
            normalize("#2 bg [thread tid 7417] waiting at a.rs:5"),
            normalize("#2 bg [thread tid 9031] waiting at a.rs:5")
        );
        assert_eq!(normalize("Thread 0x7F00AA (idle):"), "Thread _ (idle):");
        // Native stacks: the program's own frame, not libc's.
        assert_eq!(
            headline(
                "TID _:\n#0  _ __futex_abstimed_wait_common\n#3  _ deadlock::lock_a_then_b::h_"
            ),
            "#3  _ deadlock::lock_a_then_b::h_"
        );
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn twenty_identical_workers_are_one_entry() {
        let entries: Vec<Entry> = (2..22)
            .map(|i| Entry {
                actor: ActorId(i),
                name: format!("w{i}"),
                step: "py-spy".into(),
                signature: Some(
                    "Thread _ (idle)\n    get (queue.py:171)\n    work (w.py:9)".into(),
                ),
                text: "answered by: py-spy\n".into(),
            })
            .chain(std::iter::once(Entry {
                actor: ActorId(1),
                name: "top".into(),
                step: "cooperative".into(),
                signature: Some("main at top.py:3".into()),
                text: "answered by: cooperative\n".into(),
            }))
            .collect();
        let (text, json) = snapshot(&entries);
        assert!(text.contains("20 actors (2, 3,"), "{text}");
        assert!(text.contains("at get (queue.py:171):"), "{text}");
        assert!(text.contains("1 actor (1) at main at top.py:3"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["groups"][0]["actors"].as_array().map(Vec::len), Some(20));
        assert_eq!(v["actors"].as_array().map(Vec::len), Some(21));
    }
}

#[cfg(test)]
mod diff_tests {
    use super::*;

    fn e(id: u64, step: &str, sig: &str) -> Entry {
        Entry {
            actor: ActorId(id),
            name: format!("a{id}"),
            step: step.into(),
            signature: Some(sig.into()),
            text: String::new(),
        }
    }

    #[test]
    fn diff_names_what_moved() {
        let before = vec![
            e(1, "cooperative", "x.py:1"),
            e(2, "cooperative", "y.py:2"),
            e(3, "py-spy", "z.py:3"),
        ];
        let after = vec![
            e(1, "cooperative", "x.py:1"),
            e(2, "cooperative", "y.py:9"),
            e(4, "native", "#0 read"),
        ];
        assert_eq!(
            diff(&before, &after),
            vec![
                "2 a2: stacks changed, now at y.py:9".to_owned(),
                "4 a4: new".to_owned(),
                "3 a3: gone".to_owned(),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }
}
