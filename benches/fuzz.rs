//! A seeded mutation fuzzer for what a peer controls (stable Rust: no libFuzzer here):
//!
//! - **frames**: mutated encodings of real messages (every `ToRoot` and `ToActor` shape, the
//!   viewer frames, events and commands), decoded as each type a peer's bytes could be read
//!   as, and read through the length-prefixed framing;
//! - **handshake**: mutated tickets and proofs through `Ticket` parsing and `remote::verify`;
//! - **core**: random sequences of connections, decoded frames (mutated ones that still
//!   decode), closes and commands fed to the pure root core.
//!
//! Every input runs under `catch_unwind`; a panic prints its seed and input (hex) and the
//! run fails. Inputs that crashed once are kept as regression tests (the `regressions` list
//! at the bottom runs first on every run, and in `cargo test`).
//!
//!     cargo bench --bench fuzz [-- ITERATIONS [SEED]]     (default 1,000,000, seed 1)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use actor_tui::proto::{self, ActorId, Reason, ReleaseHow, RuntimeCommand, ToActor, ToRoot};
use actor_tui::remote::{self, Kind, Ticket};
use actor_tui::runtime::RuntimeEvent;
use actor_tui::runtime::core::{Core, Input};
use actor_tui::runtime::hub::ToViewer;

/// xorshift64*: small, fast, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let to_root = vec![
        ToRoot::Hello {
            protocol: 1,
            agent: "fuzz".into(),
        },
        ToRoot::Register {
            name: "a".into(),
            pid: 42,
            actor: Some("1".into()),
            group: None,
        },
        ToRoot::Spawn {
            req: 1,
            name: "c".into(),
            program: "/bin/true".into(),
            args: vec!["x".into()],
            env: Some(vec![("K".into(), "V".into())]),
            cwd: None,
        },
        ToRoot::Cancel {
            actor: "2".into(),
            force: true,
        },
        ToRoot::LockRequest {
            task: 1,
            task_name: "main".into(),
            reason: Reason::Crash,
            location: "x.rs:1".into(),
            peek: None,
        },
        ToRoot::LockRelease {
            task: 1,
            epoch: 1,
            how: ReleaseHow::Quit,
            step_timeout: true,
        },
        ToRoot::ReplOutput {
            task: 1,
            epoch: 1,
            data: "out".into(),
        },
        ToRoot::ReplWaiting {
            task: 1,
            epoch: 1,
            prompt: "(Pdb) ".into(),
        },
        ToRoot::DumpReply {
            req: 1,
            text: "t".into(),
        },
        ToRoot::CompleteReply {
            req: 1,
            matches: vec!["p a".into()],
        },
        ToRoot::Attach {
            name: "v".into(),
            driver: true,
            take_over: false,
        },
        ToRoot::Command {
            command: RuntimeCommand::Cancel {
                actor: ActorId(2),
                force: false,
            },
        },
        ToRoot::Proof {
            kind: "actor".into(),
            binding: "exporter".into(),
            mac: "00".repeat(32),
        },
    ];
    let to_actor = [
        ToActor::LockGranted { task: 1, epoch: 2 },
        ToActor::ReplInput {
            task: 1,
            epoch: 2,
            data: "c\n".into(),
        },
        ToActor::Challenge {
            nonce: "ab".repeat(32),
        },
        ToActor::ChildExited {
            actor: "3".into(),
            exit: proto::Exit {
                code: Some(1),
                signal: None,
                reason: None,
            },
        },
    ];
    let viewer = [
        ToViewer::Event {
            event: RuntimeEvent::Output {
                actor: ActorId(1),
                data: b"\x1b[31mred\xff".to_vec(),
            },
        },
        ToViewer::Event {
            event: RuntimeEvent::LockSuspect {
                actor: ActorId(1),
                task: 1,
                epoch: 1,
                why: actor_tui::runtime::suspect::Why::Silent,
                since: Duration::from_millis(5),
            },
        },
    ];
    let mut out: Vec<Vec<u8>> = to_root
        .iter()
        .map(|m| proto::encode(m).expect("enc"))
        .collect();
    out.extend(to_actor.iter().map(|m| proto::encode(m).expect("enc")));
    out.extend(viewer.iter().map(|m| proto::encode(m).expect("enc")));
    out
}

fn mutate(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len().max(1);
        match rng.below(8) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0x00, 0x7f, 0x80, 0xc0, 0xc1, 0xcc, 0xd9, 0xdb, 0xdf, 0xff][rng.below(10)];
            }
            2 => {
                let i = rng.below(len);
                b.insert(i.min(b.len()), rng.next() as u8);
            }
            3 if !b.is_empty() => {
                let i = rng.below(b.len());
                b.remove(i);
            }
            4 => b.truncate(rng.below(len)),
            5 => {
                let other = &others[rng.below(others.len())];
                let at = rng.below(len).min(b.len());
                let from = rng.below(other.len().max(1)).min(other.len());
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            6 if b.len() >= 5 => {
                // A huge declared length of a str/bin/array/map.
                let i = rng.below(b.len() - 4);
                b[i] = [0xdb, 0xc6, 0xdd, 0xdf][rng.below(4)];
                b[i + 1..i + 5].copy_from_slice(&(rng.next() as u32).to_be_bytes());
            }
            _ => {
                let i = rng.below(len).min(b.len());
                let n = rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, bytes);
            }
        }
    }
    b
}

/// Everything a peer's bytes can be decoded as. Errors are fine; panics are not.
fn decode_all(bytes: &[u8]) -> Option<ToRoot> {
    let _ = proto::decode::<ToActor>(bytes);
    let _ = proto::decode::<ToViewer>(bytes);
    let _ = proto::decode::<RuntimeEvent>(bytes);
    let _ = proto::decode::<RuntimeCommand>(bytes);
    let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    let _ = proto::read_frame_sync::<_, ToRoot>(&mut &framed[..]);
    let _ = proto::read_frame_sync::<_, ToRoot>(&mut &bytes[..]);
    proto::decode::<ToRoot>(bytes).ok()
}

fn handshake_case(rng: &mut Rng, good: &Ticket) {
    let text = good.to_string();
    let mut b = text.into_bytes();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len());
        match rng.below(3) {
            0 => b[i] = rng.next() as u8,
            1 => {
                b.remove(i);
            }
            _ => b.insert(i, b"@:0af"[rng.below(5)]),
        }
    }
    if let Ok(s) = std::str::from_utf8(&b)
        && let Ok(t) = s.parse::<Ticket>()
    {
        let nonce = remote::random32();
        let mac = remote::hex(&remote::mac(&t.secret, t.kind, &nonce, &[1; 32]));
        // A proof with anything changed must not verify against the real secret.
        let ok = remote::verify(&good.secret, good.kind, &nonce, &[1; 32], &mac);
        assert_eq!(ok, t.secret == good.secret && t.kind == good.kind, "{s}");
    }
}

fn core_case(rng: &mut Rng, frames: &[ToRoot]) {
    let mut core = Core::new(Duration::from_millis(100), Instant::now());
    let now = Instant::now();
    let first = core.first_spawn("f".into(), "f".into(), vec![], vec![]);
    let _ = core.handle(
        now,
        Input::Spawned {
            req: first,
            result: Ok(100),
        },
    );
    for step in 0..20 + rng.below(60) {
        let conn = 1 + rng.below(4) as u64;
        let t = now + Duration::from_millis(step as u64 * 10);
        let input = match rng.below(10) {
            0 => Input::Opened {
                conn,
                peer_pid: Some(100 + rng.below(3) as u32),
                signalable: rng.below(2) == 0,
                ancestry: vec![],
                remote: None,
            },
            1 => Input::Closed { conn, error: None },
            2 => Input::Command(match rng.below(4) {
                0 => RuntimeCommand::ForceRelease,
                1 => RuntimeCommand::Input { data: "c\n".into() },
                2 => RuntimeCommand::Cancel {
                    actor: ActorId(1 + rng.below(4) as u64),
                    force: rng.below(2) == 0,
                },
                _ => RuntimeCommand::Dump {
                    actor: ActorId(1 + rng.below(4) as u64),
                },
            }),
            3 => Input::Watch {
                holder_state: Some('S'),
            },
            _ => Input::Frame {
                conn,
                msg: frames[rng.below(frames.len())].clone(),
            },
        };
        let _ = core.handle(t, input);
    }
}

/// Inputs that once crashed a target (hex), run before the random ones.
const REGRESSIONS: &[&str] = &[];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let iterations: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    // Quiet: a caught panic is reported below with its input.
    std::panic::set_hook(Box::new(|_| {}));
    let corpus = corpus();
    for hex in REGRESSIONS {
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        assert!(
            catch_unwind(|| decode_all(&bytes)).is_ok(),
            "regression {hex} crashes again"
        );
    }
    let good = Ticket {
        kind: Kind::Driver,
        fingerprint: remote::random32(),
        secret: remote::random32(),
        addr: "10.0.0.1:7411".into(),
    };
    let mut rng = Rng(seed.max(1));
    let mut decoded: Vec<ToRoot> = Vec::new();
    let started = Instant::now();
    let (mut frames, mut ok_frames, mut handshakes, mut cores) = (0u64, 0u64, 0u64, 0u64);
    let mut crashes = 0;
    for i in 0..iterations {
        let case_seed = rng.0;
        let which = i % 100;
        let r = if which < 90 {
            let base = &corpus[rng.below(corpus.len())];
            let input = mutate(&mut rng, base, &corpus);
            frames += 1;
            let r = catch_unwind(|| decode_all(&input));
            match &r {
                Ok(Some(m)) => {
                    ok_frames += 1;
                    if decoded.len() < 4096 {
                        decoded.push(m.clone());
                    }
                }
                Ok(None) => {}
                Err(_) => eprintln!("CRASH decoding (seed {case_seed}): {}", remote::hex(&input)),
            }
            r.map(|_| ())
        } else if which < 98 {
            handshakes += 1;
            catch_unwind(AssertUnwindSafe(|| handshake_case(&mut rng, &good)))
        } else {
            if decoded.is_empty() {
                continue;
            }
            cores += 1;
            catch_unwind(AssertUnwindSafe(|| core_case(&mut rng, &decoded)))
        };
        if r.is_err() {
            crashes += 1;
            eprintln!("crash at iteration {i}, case seed {case_seed}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz: {iterations} inputs in {secs:.1} s ({:.0}/s): {frames} frames ({ok_frames} still decoded as ToRoot), {handshakes} tickets/proofs, {cores} core runs; {crashes} crashes (seed {seed})",
        iterations as f64 / secs
    );
    if crashes > 0 {
        std::process::exit(1);
    }
}
