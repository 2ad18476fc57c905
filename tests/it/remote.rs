//! Remote actors and viewers over TLS (issue 11): the real root with `--listen`, the real
//! `remote_worker` example and `attach` binary as the other host's processes, and hand-made
//! clients for what a hostile peer would try. `rm02` puts the remote actor in a network
//! namespace joined by a veth pair (made here, addresses only inside the pair) and cuts the
//! link mid-session.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use actor_tui::proto::{self, ToActor, ToRoot};
use actor_tui::remote::{self, Ticket};

use crate::harness::{Run, example, is_notice, wait_timeout};

fn tickets(root: &mut Run) -> Value {
    root.wait_event("listening")
}

fn ticket(l: &Value, field: &str) -> Ticket {
    l[field]
        .as_str()
        .expect(field)
        .parse()
        .expect("ticket parses")
}

/// The remote worker: no local socket, only the ticket.
fn worker(ticket: &str, pauses: u32) -> std::process::Child {
    Command::new(example("remote_worker"))
        .arg(pauses.to_string())
        .env_remove("ACTOR_TUI_SOCKET")
        .env_remove("ACTOR_TUI_ACTOR")
        .env("ACTOR_TUI_TICKET", ticket)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start remote_worker")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// TLS to the root with the ticket's pin; returns the stream and the challenge's nonce.
async fn tls_challenge(
    t: &Ticket,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    [u8; 32],
) {
    let tcp = tokio::net::TcpStream::connect(&t.addr).await.expect("tcp");
    let config = remote::client_config(t.fingerprint).expect("config");
    let name = rustls::pki_types::ServerName::try_from(remote::SERVER_NAME).expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("tls");
    let Some(ToActor::Challenge { nonce }) = proto::read_frame(&mut tls).await.expect("frame")
    else {
        panic!("no challenge");
    };
    (tls, remote::unhex32(&nonce).expect("nonce"))
}

#[test]
fn rm01_remote_actor_and_viewers_over_tls_and_what_is_refused() {
    let mut root = Run::start_flags(&["--listen", "127.0.0.1:0"], "sleep", &["120"]);
    let l = tickets(&mut root);
    let actor_t = l["ticket"].as_str().expect("ticket").to_owned();
    for f in l["ticket_files"].as_array().expect("files") {
        let f = f.as_str().expect("path");
        let meta = std::fs::symlink_metadata(f).expect("ticket file");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }

    // Lock, REPL, dump over TLS.
    let mut w = worker(&actor_t, 2);
    let started = root.wait_for("the remote actor", |e| {
        e["event"] == "actor_started"
            && e["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("remote_worker@127.0.0.1:"))
    });
    assert_eq!(started["pid"], 0, "a remote pid is not ours");
    // Under its host's node.
    let host = root.seen_or_wait("the host node", |e| {
        e["event"] == "actor_started" && e["name"] == "host 127.0.0.1"
    });
    assert_eq!(started["parent"], host["actor"]);
    let id = started["actor"].as_str().expect("id").to_owned();
    root.wait_for("its prompt", |e| {
        e["event"] == "repl_ready" && e["actor"] == id.as_str()
    });
    root.input("p round\n");
    root.wait_for("pdb-like answer", |e| {
        e["event"] == "repl_output" && e["data"].as_str().is_some_and(|d| d.contains('1'))
    });
    root.send(json!({"cmd": "dump", "actor": id}));
    root.wait_for("its dump", |e| {
        e["event"] == "dump" && e["actor"] == id.as_str()
    });

    // Viewers by ticket: the observer cannot type, even asking to drive; the driver can.
    let mut obs = crate::harness::Run::attach(
        std::path::Path::new(l["observer_ticket"].as_str().expect("t")),
        &["--driver"],
    );
    obs.wait_for("observer attached", |e| {
        e["event"] == "viewer" && e["role"] == "observer"
    });
    obs.send(json!({"cmd": "drive", "take_over": true}));
    obs.wait_for("cannot drive", |e| is_notice(e, "observer's ticket"));
    let mut drv = crate::harness::Run::attach(
        std::path::Path::new(l["driver_ticket"].as_str().expect("t")),
        &["--driver"],
    );
    drv.wait_for("driver attached", |e| {
        e["event"] == "viewer" && e["role"] == "driver"
    });
    assert!(
        !drv.events.iter().any(|e| e["event"] == "listening"),
        "tickets never go to viewers"
    );
    drv.send(json!({"cmd": "input", "data": "c\n"}));
    root.wait_for("second pause", |e| {
        e["event"] == "lock_granted" && e["actor"] == id.as_str() && e["epoch"] == 2
    });

    // What a hostile peer tries; each is refused and the run goes on.
    let good = ticket(&l, "ticket");
    let rt = rt();
    let wrong_secret = Ticket {
        secret: [0x55; 32],
        ..good.clone()
    };
    let e = rt
        .block_on(remote::connect(&wrong_secret))
        .expect_err("wrong secret");
    assert!(e.to_string().contains("does not match"), "{e}");
    root.wait_for("a notice of the refusal", |e| {
        is_notice(e, "the proof does not match")
    });
    let wrong_pin = Ticket {
        fingerprint: [0x66; 32],
        ..good.clone()
    };
    let e = rt
        .block_on(remote::connect(&wrong_pin))
        .expect_err("wrong certificate");
    assert!(e.to_string().contains("not the one in the ticket"), "{e}");
    // A proof recorded on one connection, replayed on another.
    let replayed = rt.block_on(async {
        let (first, nonce1) = tls_challenge(&good).await;
        let mut exp = [0u8; 32];
        first
            .get_ref()
            .1
            .export_keying_material(&mut exp, remote::EXPORTER_LABEL, None)
            .expect("exporter");
        let recorded = ToRoot::Proof {
            kind: "actor".into(),
            binding: "exporter".into(),
            mac: remote::hex(&remote::mac(&good.secret, good.kind, &nonce1, &exp)),
        };
        let (mut second, _) = tls_challenge(&good).await;
        proto::write_frame(&mut second, &recorded)
            .await
            .expect("send");
        proto::read_frame::<_, ToActor>(&mut second)
            .await
            .expect("answer")
    });
    assert!(
        matches!(&replayed, Some(ToActor::Error { message }) if message.contains("does not match")),
        "{replayed:?}"
    );
    // A plain-TCP client gets nothing in clear text, just a closed connection.
    {
        use std::io::{Read, Write};
        let mut plain = std::net::TcpStream::connect(&good.addr).expect("tcp");
        plain
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let hello = proto::frame_bytes(&ToRoot::Hello {
            protocol: proto::PROTOCOL_VERSION,
            agent: "plain".into(),
        })
        .expect("frame");
        let _ = plain.write_all(&hello);
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf);
        assert!(
            !String::from_utf8_lossy(&buf).contains("hello"),
            "a plain client must not get protocol frames"
        );
    }
    // The remote session is untouched by all that.
    root.input("p round\n");
    root.wait_for("still answering", |e| {
        e["event"] == "repl_output" && e["data"].as_str().is_some_and(|d| d.contains('2'))
    });

    // Cancel over the link: the Cancel frame ends it (no signal can reach another host).
    root.input("c\n");
    let status = wait_timeout(&mut w, Duration::from_secs(30)).expect("worker exits");
    assert!(status.success(), "{status:?}");
    root.wait_for("remote actor gone", |e| {
        e["event"] == "actor_exited" && e["actor"] == id.as_str()
    });
    // Three pauses: whether the cancel or the revoked session ends its first one, the
    // worker is still there for the Cancel frame.
    let mut w2 = worker(&actor_t, 3);
    let s2 = root.wait_for("second remote actor", |e| {
        e["event"] == "actor_started"
            && e["name"].as_str().is_some_and(|n| n.contains('@'))
            && e["actor"] != id.as_str()
    });
    let id2 = s2["actor"].as_str().expect("id").to_owned();
    root.wait_for("its lock", |e| {
        e["event"] == "lock_granted" && e["actor"] == id2.as_str()
    });
    root.send(json!({"cmd": "cancel", "actor": id2, "force": true}));
    root.wait_for("its teardown", |e| {
        e["event"] == "cancelling" && e["actor"] == id2.as_str()
    });
    // Ended by the Cancel frame (143), or by its program running out once the revoked
    // session let it go on (0): either way it is gone, and promptly.
    let status = wait_timeout(&mut w2, Duration::from_secs(30)).expect("cancelled worker exits");
    assert!(matches!(status.code(), Some(0 | 143)), "{status:?}");
    root.seen_or_wait("the cancelled actor gone", |e| {
        e["event"] == "actor_exited" && e["actor"] == id2.as_str()
    });

    root.send(json!({"cmd": "quit"}));
    obs.wait_event("exit");
    drv.wait_event("exit");
    root.finish();
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace and veth pair for one test, removed on drop.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    /// `None` (with the reason printed) where namespaces cannot be made; under CI that is a
    /// failure, because `.ci/run` installs what this needs and CI runs as root.
    fn new(tag: &str) -> Option<Self> {
        let why = if !nix::unistd::geteuid().is_root() {
            Some("not root".to_owned())
        } else if Command::new("ip").arg("-V").output().is_err() {
            Some("no `ip` (iproute2)".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            assert!(
                std::env::var_os("CI").is_none(),
                "network namespace test cannot run under CI: {why}"
            );
            println!("SKIPPED: network namespace test: {why}");
            return None;
        }
        let n = std::process::id() % 200 + 20;
        let ns = Self {
            name: format!("atui-{tag}-{}", std::process::id()),
            host_if: format!("atui{n}h"),
        };
        let peer = format!("atui{n}p");
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("10.231.{n}.1/30"),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("10.231.{n}.2/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &ns.name, "link", "set", &peer, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        Some(ns)
    }

    fn host_addr(&self) -> String {
        let n = std::process::id() % 200 + 20;
        format!("10.231.{n}.1")
    }

    /// Cuts the link: the veth pair goes away at once, with no FIN or RST for anyone.
    fn cut(&self) {
        ip(&["link", "del", &self.host_if]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn rm02_a_host_that_vanishes_mid_session_loses_its_lock_within_the_link_timeout() {
    let Some(ns) = Netns::new("cut") else { return };
    let listen = format!("{}:0", ns.host_addr());
    let mut root = Run::start_flags(
        &["--listen", &listen, "--link-timeout-ms", "3000"],
        "sleep",
        &["120"],
    );
    let l = tickets(&mut root);
    let t = l["ticket"].as_str().expect("ticket").to_owned();
    // The worker runs "on another host": inside the namespace, reaching the root only
    // over the veth pair.
    let mut w = Command::new("ip")
        .args(["netns", "exec", &ns.name, &example("remote_worker"), "1"])
        .env_remove("ACTOR_TUI_SOCKET")
        .env("ACTOR_TUI_TICKET", &t)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker in the namespace");
    let started = root.wait_for("the remote actor", |e| {
        e["event"] == "actor_started" && e["name"].as_str().is_some_and(|n| n.contains('@'))
    });
    let id = started["actor"].as_str().expect("id").to_owned();
    root.wait_for("its session", |e| {
        e["event"] == "repl_ready" && e["actor"] == id.as_str()
    });
    // The session and a dump work across the namespace boundary.
    root.input("p round\n");
    root.wait_for("the session answers", |e| {
        e["event"] == "repl_output"
            && e["actor"] == id.as_str()
            && e["data"].as_str().is_some_and(|d| d.contains('1'))
    });
    root.send(json!({"cmd": "dump", "actor": id}));
    root.wait_for("its dump", |e| {
        e["event"] == "dump" && e["actor"] == id.as_str()
    });
    // And a waiter on the root's host (over its Unix socket: the cut takes the veth
    // addresses with it), queued behind the remote holder.
    let mut local = Command::new(example("remote_worker"))
        .arg("1")
        .env("ACTOR_TUI_SOCKET", &root.socket)
        .env_remove("ACTOR_TUI_TICKET")
        .stdout(Stdio::null())
        .spawn()
        .expect("local worker");
    root.wait_for("the local waiter", |e| {
        e["event"] == "lock_requested" && e["actor"] != id.as_str()
    });

    let cut_at = Instant::now();
    ns.cut();
    // Bounded: released (cause disconnect) within the link timeout plus its probes' slack.
    let released = root.wait_for("the vanished holder's release", |e| {
        e["event"] == "lock_released" && e["actor"] == id.as_str()
    });
    let took = cut_at.elapsed();
    assert_eq!(released["cause"], "disconnect", "{}", root.log());
    println!("rm02: the lock was released {took:?} after the link was cut (link timeout 3 s)");
    assert!(took < Duration::from_secs(15), "released after {took:?}");
    root.wait_for("the vanished actor shown as lost", |e| {
        e["event"] == "actor_exited" && e["actor"] == id.as_str() && e["reason"] == "lost"
    });
    root.seen_or_wait("the waiter's grant", |e| {
        e["event"] == "lock_granted" && e["actor"] != id.as_str()
    });
    root.input("c\n");
    let status = wait_timeout(&mut local, Duration::from_secs(30)).expect("local worker");
    assert!(status.success());
    // The remote actor, cut off from the root, does not hang: its session ends and it goes on.
    let status = wait_timeout(&mut w, Duration::from_secs(30)).expect("the cut-off worker exits");
    assert!(status.success(), "{status:?}");
    root.send(json!({"cmd": "quit"}));
    root.finish();
}

/// The venv `.ci/run` makes with `pip install ./python` (no binary, no PYTHONPATH): the
/// client as a remote host would have it. Outside CI without it: skipped, with the reason.
fn installed_python() -> Option<String> {
    match std::env::var("ACTOR_TUI_TEST_REMOTE_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "under CI, .ci/run must provide ACTOR_TUI_TEST_REMOTE_PYTHON"
            );
            println!(
                "SKIPPED: rm03 needs ACTOR_TUI_TEST_REMOTE_PYTHON (a venv with `pip install ./python`; .ci/run makes one)"
            );
            None
        }
    }
}

#[test]
fn rm03_a_pip_installed_python_client_debugs_over_tls_with_stock_pdb() {
    let Some(py) = installed_python() else { return };
    let mut root = Run::start_flags(&["--listen", "127.0.0.1:0"], "sleep", &["120"]);
    let l = tickets(&mut root);
    let script = "import actor_tui\nprint('client from', actor_tui.__file__, flush=True)\nx = 41\nbreakpoint()\nprint('after', x + 1, flush=True)\n";
    let dir = crate::harness::tempdir();
    let child = Command::new(&py)
        .args(["-c", script])
        .current_dir(dir.path())
        .env_remove("ACTOR_TUI_SOCKET")
        .env_remove("PYTHONPATH")
        .env("PYTHONBREAKPOINT", "actor_tui.set_trace")
        .env("ACTOR_TUI_TICKET", l["ticket"].as_str().expect("ticket"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the installed client");
    let started = root.wait_for("the remote Python actor", |e| {
        e["event"] == "actor_started" && e["name"].as_str().is_some_and(|n| n.contains('@'))
    });
    let id = started["actor"].as_str().expect("id").to_owned();
    root.wait_for("pdb's prompt", |e| {
        e["event"] == "repl_ready" && e["actor"] == id.as_str() && e["prompt"] == "(Pdb) "
    });
    root.input("p x\n");
    root.wait_for("p x", |e| {
        e["event"] == "repl_output" && e["data"].as_str().is_some_and(|d| d.contains("41"))
    });
    root.input("c\n");
    let out = child.wait_with_output().expect("client ends");
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("site-packages"),
        "the installed copy ran: {text}"
    );
    assert!(text.contains("after 42"), "{text}");
    root.send(json!({"cmd": "quit"}));
    root.finish();
}

/// A private sshd on a loopback port for one test (its own host key, config and
/// authorized key), stopped on drop.
struct Sshd {
    child: std::process::Child,
    port: u16,
    key: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Option<Self> {
        let why = if !nix::unistd::geteuid().is_root() {
            Some("not root (sshd needs it for its privilege separation)")
        } else if !std::path::Path::new("/usr/sbin/sshd").exists() {
            Some("no /usr/sbin/sshd (openssh-server)")
        } else if Command::new("ssh").arg("-V").output().is_err() {
            Some("no ssh (openssh-client)")
        } else {
            None
        };
        if let Some(why) = why {
            assert!(
                std::env::var_os("CI").is_none(),
                "the SSH test cannot run under CI: {why}"
            );
            println!("SKIPPED: SSH route test: {why}");
            return None;
        }
        let dir = crate::harness::tempdir();
        let d = dir.path();
        let keygen = |path: &std::path::Path| {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .expect("ssh-keygen")
                .success();
            assert!(ok, "ssh-keygen");
        };
        keygen(&d.join("host"));
        keygen(&d.join("user"));
        std::fs::copy(d.join("user.pub"), d.join("authorized_keys")).expect("authorized_keys");
        // Privilege separation wants this directory; create it if the system has none.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
             PidFile {pid}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nStreamLocalBindUnlink yes\n\
             AllowStreamLocalForwarding yes\n",
            host = d.join("host").display(),
            auth = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        // Ready when it accepts on its port.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            port,
            key: d.join("user"),
            _dir: dir,
        })
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rm04_over_ssh_a_forwarded_unix_socket_and_no_tcp_port_of_ours() {
    let Some(sshd) = Sshd::start() else { return };
    let mut root = Run::start("sleep", &["120"]);
    root.wait_event("actor_started");
    // "The remote host" sees the root's socket at a path of its own, through ssh -R.
    let far = crate::harness::tempdir();
    let far_sock = far.path().join("root.sock");
    let mut ssh = Command::new("ssh")
        .args([
            "-N",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "LogLevel=ERROR",
        ])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .arg("-i")
        .arg(&sshd.key)
        .args(["-p", &sshd.port.to_string()])
        .arg("-R")
        .arg(format!("{}:{}", far_sock.display(), root.socket.display()))
        .arg("root@127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ssh -R");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !far_sock.exists() {
        assert!(Instant::now() < deadline, "ssh did not forward the socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut w = Command::new(example("remote_worker"))
        .arg("1")
        .env("ACTOR_TUI_SOCKET", &far_sock)
        .env_remove("ACTOR_TUI_TICKET")
        .env_remove("ACTOR_TUI_ACTOR")
        .stdout(Stdio::null())
        .spawn()
        .expect("worker through the forwarded socket");
    let started = root.wait_for("the actor through ssh", |e| {
        e["event"] == "actor_started" && e["name"] == "remote_worker"
    });
    let id = started["actor"].as_str().expect("id").to_owned();
    root.wait_for("its session", |e| {
        e["event"] == "repl_ready" && e["actor"] == id.as_str()
    });
    // Nothing of the root's listens on TCP: its only socket is the Unix one.
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let root_inodes: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", root.pid()))
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()
                .and_then(|s| s.strip_prefix("socket:["))
                .map(|s| s.trim_end_matches(']').to_owned())
        })
        .collect();
    let listening_tcp = tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(3) == Some(&"0A") && f.get(9).is_some_and(|i| root_inodes.iter().any(|r| r == i))
    });
    assert!(!listening_tcp, "the root listens on TCP");
    root.input("c\n");
    let status = wait_timeout(&mut w, Duration::from_secs(30)).expect("worker exits");
    assert!(status.success());
    let _ = ssh.kill();
    let _ = ssh.wait();
    root.send(json!({"cmd": "quit"}));
    root.finish();
}
