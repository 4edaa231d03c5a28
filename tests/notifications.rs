//! Notifications to a webhook (`--notify-url`) on the real engine: an applied release, a failed
//! one whose old version keeps serving (no secret in the message), a stack suspended while
//! `run` runs; and a receiver that accepts and never answers does not hold up the loop.
mod common;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A webhook receiver on loopback: records each JSON body; answers 200, or, while `hang` is
/// set, reads the request and never answers (keeping the connection open).
struct Receiver {
    port: u16,
    messages: Arc<Mutex<Vec<Value>>>,
    hang: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(hang: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages: Arc<Mutex<Vec<Value>>> = Default::default();
        let hang = Arc::new(AtomicBool::new(hang));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, h, s) = (messages.clone(), hang.clone(), stop.clone());
        std::thread::spawn(move || {
            let held: Arc<Mutex<Vec<TcpStream>>> = Default::default();
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (m, h, held) = (m.clone(), h.clone(), held.clone());
                std::thread::spawn(move || serve(conn, &m, &h, &held));
            }
        });
        Self {
            port,
            messages,
            hang,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook/tok-path-s3cr3t", self.port)
    }

    fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// The first message for which `check` holds, waiting up to `timeout`.
    #[track_caller]
    fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        wait_until(timeout, || {
            found = self.messages().into_iter().find(&check);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no {what} message; received: {:#?}", self.messages()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    mut conn: TcpStream,
    messages: &Mutex<Vec<Value>>,
    hang: &AtomicBool,
    held: &Mutex<Vec<TcpStream>>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let body = loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        if body.len() >= length {
            assert!(
                head.starts_with("POST /hook/tok-path-s3cr3t HTTP/1.1"),
                "{head}"
            );
            assert!(head.contains("Content-Type: application/json"), "{head}");
            break body[..length].to_string();
        }
    };
    if hang.load(Ordering::Relaxed) {
        // Accepted and read, never answered: the sender's own deadline must end it.
        held.lock().unwrap().push(conn);
        return;
    }
    messages
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).expect("a JSON body"));
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

fn web(image: &str, port: u16, extra: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n    environment:\n      API_TOKEN: ${{API_TOKEN}}\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 20s}}\n{extra}"
    )
}

const SECRET: &str = "tok-s3cr3t-9f8e7d";

#[test]
fn apply_tells_of_an_applied_release_and_of_a_failed_one_rolled_back_without_its_secret() {
    let env = TestEnv::new("notifyapply");
    let receiver = Receiver::start(false);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let port = free_port();
    // Host-local, hence secret: its value may appear in no message.
    env.write_host_env(&format!("API_TOKEN={SECRET}\n"));
    env.write_compose(&web(&v1, port, ""));
    let url = receiver.url();
    let out = env.run("apply", &["--notify-url", &url]);
    out.assert_code(0);

    let applied = receiver.wait_for("applied", WAIT, |m| m["event"] == "applied");
    assert_eq!(applied["stack"], env.project());
    assert_eq!(applied["service"], "web");
    assert_eq!(applied["action"], "create");
    assert_eq!(applied["to"], v1.as_str());
    assert!(applied["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(applied["at"].as_str().is_some_and(|a| a.contains('T')));
    assert!(applied["revision"].is_string(), "{applied}");
    let text = applied["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("{}/web created with {v1}", env.project())),
        "{text}"
    );

    // The new version prints the secret and exits: the old one must be put back.
    env.write_compose(&web(
        &v2,
        port,
        "    command: [\"sh\", \"-c\", \"echo connecting with $$API_TOKEN; sleep 1; exit 3\"]\n",
    ));
    let out = env.run("apply", &["--notify-url", &url]);
    out.assert_code(1);
    let failed = receiver.wait_for("rolled back", WAIT, |m| m["event"] == "rolled_back");
    assert_eq!(failed["action"], "update");
    assert_eq!(failed["from"], v1.as_str());
    assert_eq!(failed["to"], v2.as_str());
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exited with code 3")),
        "{failed}"
    );
    assert!(
        failed["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("{v1} keeps running"))),
        "{failed}"
    );
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").as_deref(),
        Some("v1\n")
    );
    // The secret did reach the logs (the root-only journal keeps them, masked) ...
    let journal = serde_json::to_string(&env.journal()).unwrap();
    assert!(
        journal.contains("connecting with (hidden)"),
        "the failed container should have logged the (masked) secret:\n{journal}"
    );
    // ... and reaches no message, nor the URL's path any output.
    let everything = serde_json::to_string(&receiver.messages()).unwrap();
    assert!(!everything.contains(SECRET), "{everything}");
    assert!(!everything.contains("connecting with"), "{everything}");
    assert!(!out.combined().contains("tok-path-s3cr3t"), "{out}");
}

#[test]
fn run_goes_on_while_the_receiver_hangs_and_tells_of_a_suspended_stack() {
    let env = TestEnv::new("notifyrun");
    let receiver = Receiver::start(true);
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let (port, listen_port) = (free_port(), free_port());
    env.write_host_env(&format!("API_TOKEN={SECRET}\n"));
    env.write_compose(&web(&v1, port, ""));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{listen_port}");
    let url = receiver.url();
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &repo,
            "--interval",
            "1h",
            "--listen",
            &listen,
        ],
        &[("RECONCILER_NOTIFY_URL", url.as_str())],
    );
    let served = |body: &'static str| {
        let addr = format!("127.0.0.1:{port}");
        move || http_get(&addr, "/").as_deref() == Some(body)
    };
    wait_for("v1 to serve", WAIT, served("v1\n"));
    // The receiver holds the first message's requests open; the next release goes ahead.
    env.write_compose(&web(&v2, port, ""));
    wait_for("v2 to serve while the receiver hangs", WAIT, served("v2\n"));
    // The sender gives the first message up only after all its attempts time out; by then
    // both passes have ended. A loop that waited for the receiver would log them after.
    let given_up = format!("notification (applied {}) to", env.project());
    run.wait_for_output(&given_up, Duration::from_secs(60));
    let log = run.output_so_far();
    let before = &log[..log.find(&given_up).unwrap()];
    assert_eq!(
        before.matches(": 1 changed, 0 failed").count(),
        2,
        "both passes should have ended before the first message was given up:\n{log}"
    );

    receiver.hang.store(false, Ordering::Relaxed);
    let updated = receiver.wait_for("v2 applied", Duration::from_secs(60), |m| {
        m["event"] == "applied" && m["to"] == v2.as_str()
    });
    assert_eq!(updated["from"], v1.as_str());

    env.reconciler(&["suspend", env.project()]).assert_code(0);
    let suspended = receiver.wait_for("suspended", WAIT, |m| m["event"] == "suspended");
    assert_eq!(suspended["stack"], env.project());
    assert_eq!(suspended["service"], Value::Null);
    assert!(
        suspended["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("stack {} suspended", env.project()))),
        "{suspended}"
    );
    let metrics = http_get(&listen, "/metrics").unwrap_or_default();
    assert!(
        metrics.lines().any(
            |l| l.starts_with(r#"reconciler_notifications_total{result="sent"} "#)
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    let out = run.signal_and_wait("TERM", Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out}");
    let shown = format!("notifications go to http://127.0.0.1:{}", receiver.port);
    assert!(out.stderr.contains(&shown), "{out}");
    assert!(!out.combined().contains("tok-path-s3cr3t"), "{out}");
    let everything = serde_json::to_string(&receiver.messages()).unwrap();
    assert!(!everything.contains(SECRET), "{everything}");
}
