//! The wire contract: golden bytes of encoded frames, and bad bytes against a live root.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use actor_tui::proto::{self, PROTOCOL_VERSION, Reason, ReleaseHow, ToActor, ToRoot};
use proptest::prelude::*;

use crate::harness::{Run, example, repl_text};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pins the encoding: named fields, `type` first, snake_case tags. The expected bytes were
/// produced independently by Python's `msgpack.packb` on the same maps. If this changes, the
/// protocol document and every client in another language break.
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
            })
            .expect("encode"),
            "0000004785a474797065ac6c6f636b5f72657175657374a47461736b07a97461736b5f6e616d65a46d61696ea6726561736f6ea56372617368a86c6f636174696f6ea8612e72733a313a32",
        ),
        (
            proto::frame_bytes(&ToRoot::LockRelease {
                task: 7,
                epoch: 3,
                how: ReleaseHow::Quit,
            })
            .expect("encode"),
            "0000002984a474797065ac6c6f636b5f72656c65617365a47461736b07a565706f636803a3686f77a471756974",
        ),
        (
            proto::frame_bytes(&ToActor::LockGranted { task: 7, epoch: 3 }).expect("encode"),
            "0000002083a474797065ac6c6f636b5f6772616e746564a47461736b07a565706f636803",
        ),
    ];
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

/// Reads until the root closes the connection (or 10 s pass).
fn closed_by_root(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
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
