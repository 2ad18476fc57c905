//! The wire contract: golden bytes of encoded frames, and bad bytes against a live root.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use actor_tui::proto::{self, ExitReason, PROTOCOL_VERSION, Reason, ReleaseHow, ToActor, ToRoot};
use proptest::prelude::*;

use crate::harness::{Run, closed_by_root, example, repl_text};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pins the encoding of every message type both ways: named fields, `type` first,
/// snake_case tags, optional fields written as nil. The expected bytes were produced
/// independently by Python's `msgpack.packb` on the same maps (fields in section 5's order).
/// If this changes, the protocol document and every client in another language break.
#[test]
fn golden_frames() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            proto::frame_bytes(&ToRoot::Hello {
                protocol: 1,
                agent: "x".into(),
            })
            .expect("encode"),
            "0000001e83a474797065a568656c6c6fa870726f746f636f6c01a56167656e74a178",
        ),
        (
            proto::frame_bytes(&ToRoot::LockRequest {
                task: 7,
                task_name: "main".into(),
                reason: Reason::Crash,
                location: "a.rs:1:2".into(),
                peek: None,
            })
            .expect("encode"),
            "0000004785a474797065ac6c6f636b5f72657175657374a47461736b07a97461736b5f6e616d65a46d61696ea6726561736f6ea56372617368a86c6f636174696f6ea8612e72733a313a32",
        ),
        (
            proto::frame_bytes(&ToRoot::LockRelease {
                task: 7,
                epoch: 3,
                how: ReleaseHow::Quit,
                step_timeout: false,
            })
            .expect("encode"),
            "0000002984a474797065ac6c6f636b5f72656c65617365a47461736b07a565706f636803a3686f77a471756974",
        ),
        (
            proto::frame_bytes(&ToActor::LockGranted { task: 7, epoch: 3 }).expect("encode"),
            "0000002083a474797065ac6c6f636b5f6772616e746564a47461736b07a565706f636803",
        ),
        (
            proto::frame_bytes(&ToRoot::Register {
                name: "w".into(),
                pid: 42,
                actor: Some("3".into()),
                group: None,
            })
            .expect("encode"),
            "0000002384a474797065a87265676973746572a46e616d65a177a37069642aa56163746f72a133",
        ),
        (
            proto::frame_bytes(&ToRoot::Spawn {
                req: 1,
                name: "n".into(),
                program: "p".into(),
                args: vec!["a".into()],
                env: Some(vec![("K".into(), "V".into())]),
                cwd: Some("/".into()),
            })
            .expect("encode"),
            "0000003a87a474797065a5737061776ea372657101a46e616d65a16ea770726f6772616da170a46172677391a161a3656e769192a14ba156a3637764a12f",
        ),
        (
            proto::frame_bytes(&ToRoot::Cancel {
                actor: "2".into(),
                force: true,
            })
            .expect("encode"),
            "0000001c83a474797065a663616e63656ca56163746f72a132a5666f726365c3",
        ),
        (
            proto::frame_bytes(&ToRoot::ReplOutput {
                task: 7,
                epoch: 3,
                data: "hi\n".into(),
            })
            .expect("encode"),
            "0000002884a474797065ab7265706c5f6f7574707574a47461736b07a565706f636803a464617461a368690a",
        ),
        (
            proto::frame_bytes(&ToRoot::ReplWaiting {
                task: 7,
                epoch: 3,
                prompt: "(Pdb) ".into(),
            })
            .expect("encode"),
            "0000002e84a474797065ac7265706c5f77616974696e67a47461736b07a565706f636803a670726f6d7074a6285064622920",
        ),
        (
            proto::frame_bytes(&ToRoot::DumpReply {
                req: 5,
                text: "t".into(),
            })
            .expect("encode"),
            "0000001d83a474797065aa64756d705f7265706c79a372657105a474657874a174",
        ),
        (
            proto::frame_bytes(&ToRoot::CompleteReply {
                req: 5,
                matches: vec!["p x".into()],
            })
            .expect("encode"),
            "0000002783a474797065ae636f6d706c6574655f7265706c79a372657105a76d61746368657391a3702078",
        ),
        (
            proto::frame_bytes(&ToRoot::Exiting {
                code: 143,
                reason: ExitReason::Cancelled,
            })
            .expect("encode"),
            "0000002683a474797065a765786974696e67a4636f6465cc8fa6726561736f6ea963616e63656c6c6564",
        ),
        (
            proto::frame_bytes(&ToActor::Hello {
                protocol: 1,
                agent: "x".into(),
            })
            .expect("encode"),
            "0000001e83a474797065a568656c6c6fa870726f746f636f6c01a56167656e74a178",
        ),
        (
            proto::frame_bytes(&ToActor::Registered {
                actor: "3".into(),
                parent: Some("1".into()),
            })
            .expect("encode"),
            "0000002283a474797065aa72656769737465726564a56163746f72a133a6706172656e74a131",
        ),
        (
            proto::frame_bytes(&ToActor::Spawned {
                req: 1,
                actor: "4".into(),
                pid: 99,
            })
            .expect("encode"),
            "0000002084a474797065a7737061776e6564a372657101a56163746f72a134a370696463",
        ),
        (
            proto::frame_bytes(&ToActor::SpawnFailed {
                req: 1,
                error: "e".into(),
            })
            .expect("encode"),
            "0000002083a474797065ac737061776e5f6661696c6564a372657101a56572726f72a165",
        ),
        (
            proto::frame_bytes(&ToActor::LockRefused {
                task: 7,
                error: "e".into(),
                skipped: false,
            })
            .expect("encode"),
            "0000002183a474797065ac6c6f636b5f72656675736564a47461736b07a56572726f72a165",
        ),
        (
            proto::frame_bytes(&ToActor::LockRevoked { task: 7, epoch: 3 }).expect("encode"),
            "0000002083a474797065ac6c6f636b5f7265766f6b6564a47461736b07a565706f636803",
        ),
        (
            proto::frame_bytes(&ToActor::ReplInput {
                task: 7,
                epoch: 3,
                data: "c\n".into(),
            })
            .expect("encode"),
            "0000002684a474797065aa7265706c5f696e707574a47461736b07a565706f636803a464617461a2630a",
        ),
        (
            proto::frame_bytes(&ToActor::DumpRequest { req: 5 }).expect("encode"),
            "0000001882a474797065ac64756d705f72657175657374a372657105",
        ),
        (
            proto::frame_bytes(&ToActor::CompleteRequest {
                task: 7,
                epoch: 3,
                req: 5,
                line: "p ".into(),
            })
            .expect("encode"),
            "0000003185a474797065b0636f6d706c6574655f72657175657374a47461736b07a565706f636803a372657105a46c696e65a27020",
        ),
        (
            proto::frame_bytes(&ToActor::Cancel { force: false }).expect("encode"),
            "0000001482a474797065a663616e63656ca5666f726365c2",
        ),
        (
            proto::frame_bytes(&ToActor::ChildExited {
                actor: "4".into(),
                exit: proto::Exit {
                    code: None,
                    signal: Some(9),
                    reason: None,
                },
            })
            .expect("encode"),
            "0000003185a474797065ac6368696c645f657869746564a56163746f72a134a4636f6465c0a67369676e616c09a6726561736f6ec0",
        ),
        (
            proto::frame_bytes(&ToActor::Error {
                message: "m".into(),
            })
            .expect("encode"),
            "0000001682a474797065a56572726f72a76d657373616765a16d",
        ),
    ];
    assert_eq!(cases.len(), 24, "every message type but the two `unknown`s");
    // The flattened exit decodes back from the same bytes, nil fields and all.
    let bytes = proto::frame_bytes(&ToActor::ChildExited {
        actor: "4".into(),
        exit: proto::Exit {
            code: Some(3),
            signal: None,
            reason: Some(ExitReason::Crash),
        },
    })
    .expect("encode");
    let back: Option<ToActor> = proto::read_frame_sync(&mut bytes.as_slice()).expect("decode");
    assert!(matches!(back, Some(ToActor::ChildExited { exit, .. }) if exit.code == Some(3)));
    for (bytes, want) in cases {
        assert_eq!(hex(&bytes), want);
    }
}

proptest! {
    /// Every frame decodes back to itself, and the length prefix is exact.
    #[test]
    fn frames_round_trip(task in any::<u64>(), epoch in any::<u64>(), data in ".{0,200}") {
        let msg = ToRoot::ReplOutput { task, epoch, data };
        let bytes = proto::frame_bytes(&msg).expect("encode");
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        prop_assert_eq!(len, bytes.len() - 4);
        let back: ToRoot = proto::decode(&bytes[4..]).expect("decode");
        prop_assert_eq!(back, msg);
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = proto::decode::<ToRoot>(&bytes);
        let _ = proto::read_frame_sync::<_, ToRoot>(&mut bytes.as_slice());
    }
}

fn connect(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn hello(s: &mut UnixStream, version: u32) -> Option<ToActor> {
    proto::write_frame_sync(
        s,
        &ToRoot::Hello {
            protocol: version,
            agent: "test".into(),
        },
    )
    .expect("hello");
    proto::read_frame_sync(s).expect("read hello")
}

#[test]
fn s18_bad_bytes_drop_only_that_connection() {
    let mut run = Run::start(&example("scenarios"), &["pause_once"]);
    run.wait_event("repl_ready");
    let sock = run.socket.clone();

    // Garbage instead of a frame.
    let mut s = connect(&sock);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    assert!(closed_by_root(&mut s), "garbage");

    // Oversized length prefix: refused before any allocation.
    let mut s = connect(&sock);
    assert!(matches!(
        hello(&mut s, PROTOCOL_VERSION),
        Some(ToActor::Hello { .. })
    ));
    s.write_all(&u32::MAX.to_be_bytes()).expect("write");
    assert!(closed_by_root(&mut s), "oversized");

    // A valid prefix and a payload that is not msgpack of any message.
    let mut s = connect(&sock);
    hello(&mut s, PROTOCOL_VERSION);
    s.write_all(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]).expect("write");
    assert!(closed_by_root(&mut s), "undecodable");

    // Truncated frame, then hang up.
    let mut s = connect(&sock);
    hello(&mut s, PROTOCOL_VERSION);
    s.write_all(&[0, 0, 0, 100, 1, 2, 3]).expect("write");
    drop(s);

    // Wrong protocol version: a clear error frame, then the root closes.
    let mut s = connect(&sock);
    assert!(matches!(hello(&mut s, 999), Some(ToActor::Hello { .. })));
    match proto::read_frame_sync::<_, ToActor>(&mut s).expect("error frame") {
        Some(ToActor::Error { message }) => assert!(message.contains("mismatch"), "{message}"),
        other => panic!("expected error frame, got {other:?}"),
    }

    // A frame before register.
    let mut s = connect(&sock);
    hello(&mut s, PROTOCOL_VERSION);
    proto::write_frame_sync(
        &mut s,
        &ToRoot::DumpReply {
            req: 1,
            text: "x".into(),
        },
    )
    .expect("write");
    assert!(matches!(
        proto::read_frame_sync::<_, ToActor>(&mut s).expect("read"),
        Some(ToActor::Error { .. })
    ));

    // The session that was open all along still works, and the run ends normally.
    run.input("p answer\n");
    run.wait_event("repl_ready");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(repl_text(&events, "1").contains("answer = 42"));
    let dropped = events
        .iter()
        .filter(|e| e["event"] == "notice")
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains("dropped")))
        .count();
    assert!(dropped >= 2, "dropped connections are reported");
}

/// A `register` frame whose `name` is msgpack bin with these bytes.
fn register_with_bin_name(name: &[u8]) -> Vec<u8> {
    let mut p = vec![0x83, 0xa4];
    p.extend_from_slice(b"type");
    p.push(0xa8);
    p.extend_from_slice(b"register");
    p.push(0xa4);
    p.extend_from_slice(b"name");
    p.extend_from_slice(&[0xc4, name.len() as u8]);
    p.extend_from_slice(name);
    p.push(0xa3);
    p.extend_from_slice(b"pid");
    p.push(0x01);
    let mut frame = (p.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&p);
    frame
}

#[test]
fn a_str_field_sent_as_bin_is_taken_only_if_it_is_utf8_as_documented() {
    let mut run = Run::start(&example("scenarios"), &["pause_once"]);
    run.wait_event("repl_ready");
    let mut s = connect(&run.socket);
    hello(&mut s, PROTOCOL_VERSION);
    s.write_all(&register_with_bin_name(b"bin-name"))
        .expect("write");
    match proto::read_frame_sync::<_, ToActor>(&mut s).expect("reply") {
        Some(ToActor::Registered { .. }) => {}
        other => panic!("valid UTF-8 in bin is accepted (PROTOCOL.md 3): {other:?}"),
    }
    let mut s = connect(&run.socket);
    hello(&mut s, PROTOCOL_VERSION);
    s.write_all(&register_with_bin_name(&[0xff, 0xfe]))
        .expect("write");
    assert!(
        closed_by_root(&mut s),
        "bin that is not UTF-8 closes the connection"
    );
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

#[test]
fn a_peer_that_never_registers_is_closed() {
    let mut run = Run::start(&example("scenarios"), &["pause_once"]);
    run.wait_event("repl_ready");
    let mut s = connect(&run.socket);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    assert!(matches!(
        hello(&mut s, PROTOCOL_VERSION),
        Some(ToActor::Hello { .. })
    ));
    // No register: the root gives up on the connection after its handshake timeout.
    assert!(
        closed_by_root(&mut s),
        "an idle unregistered peer is dropped"
    );
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}
