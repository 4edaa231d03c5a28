//! The loop cannot be wedged or exhausted from outside: a remote that never answers, idle
//! HTTP connections and streams of webhooks leave it serving, passing and able to stop.

mod common;

use common::*;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TCP server on loopback that accepts every connection and never sends a byte (a git remote
/// that hangs). Connections stay open until it is dropped.
struct SilentRemote {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SilentRemote {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        held.push(stream);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            accepted,
            stop,
        }
    }

    fn wait_for_a_connection(&self) {
        wait_for(
            "the reconciler to connect to the silent remote",
            Duration::from_secs(20),
            || self.accepted.load(Ordering::Relaxed) > 0,
        );
    }
}

impl Drop for SilentRemote {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn worker_compose(marker: &str) -> String {
    format!(
        "services:\n  worker:\n    image: {WORKER}\n    environment:\n      MARKER: \"{marker}\"\n"
    )
}

/// `/status` as JSON, if the server answers.
fn status(listen: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(listen, "/status")?).ok()
}

fn passes(listen: &str) -> u64 {
    status(listen)
        .and_then(|s| s["passes"].as_u64())
        .expect("/status answers with passes")
}

/// `run` on a remote that accepts and never answers: the pass hangs in the fetch; a signal
/// must still end the process at once, with 0.
fn stops_promptly_while_fetching_from(url: &str, signal: &str, remote: &SilentRemote) {
    let env = TestEnv::new(&format!("silent{signal}"));
    let run = env.spawn_reconciler(&["run", "--repo", url, "--interval", "1h"], &[]);
    remote.wait_for_a_connection();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let stopped = run.signal_and_wait(signal, Duration::from_secs(10));
    assert_eq!(
        stopped.code, 0,
        "SIG{signal} ends the loop cleanly:\n{stopped}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "SIG{signal} took {:?} to stop a hung fetch:\n{stopped}",
        started.elapsed()
    );
}

#[test]
fn sigterm_stops_the_loop_at_once_while_an_http_remote_never_answers() {
    let remote = SilentRemote::start();
    let url = format!("http://127.0.0.1:{}/x.git", remote.port);
    stops_promptly_while_fetching_from(&url, "TERM", &remote);
}

#[test]
fn sigint_stops_the_loop_at_once_while_a_git_protocol_remote_never_answers() {
    let remote = SilentRemote::start();
    let url = format!("git://127.0.0.1:{}/x", remote.port);
    stops_promptly_while_fetching_from(&url, "INT", &remote);
}

#[test]
fn a_fetch_from_a_remote_that_never_answers_gives_up_after_the_idle_timeout() {
    let remote = SilentRemote::start();
    let env = TestEnv::new("fetchidle");
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("git://127.0.0.1:{}/x", remote.port);
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &url,
            "--interval",
            "1h",
            "--listen",
            &listen,
            "--fetch-idle-timeout",
            "1s",
        ],
        &[],
    );
    wait_for(
        "a pass that ended with the fetch timed out",
        Duration::from_secs(20),
        || {
            status(&listen).is_some_and(|s| {
                s["passes"].as_u64() >= Some(1)
                    && s["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("timed out"))
            })
        },
    );
    // The loop goes on (transient error, backoff): a second attempt follows.
    wait_for("another fetch attempt", Duration::from_secs(20), || {
        passes(&listen) >= 2
    });
    let stopped = run.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(stopped.code, 0, "{stopped}");
}

#[test]
fn healthz_turns_unhealthy_when_no_pass_completes_and_says_why() {
    let remote = SilentRemote::start();
    let env = TestEnv::new("stalled");
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://127.0.0.1:{}/x.git", remote.port);
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &url,
            "--interval",
            "1s",
            "--listen",
            &listen,
            "--unhealthy-after",
            "5s",
        ],
        &[],
    );
    remote.wait_for_a_connection();
    let first = http_request(&listen, "/healthz").expect("healthz answers");
    assert_eq!(first.status, 200, "healthy at first: {first:?}");
    wait_for("/healthz to answer 503", Duration::from_secs(30), || {
        http_request(&listen, "/healthz").is_some_and(|r| r.status == 503)
    });
    let stalled = http_request(&listen, "/healthz").expect("healthz answers");
    assert!(
        stalled.body.contains("no pass has completed"),
        "the reason is given: {stalled:?}"
    );
    let stopped = run.signal_and_wait("TERM", Duration::from_secs(5));
    assert_eq!(stopped.code, 0, "{stopped}");
}

#[test]
fn idle_connections_beyond_the_limit_neither_exhaust_descriptors_nor_stop_passes() {
    let env = TestEnv::new("fdhogs");
    env.write_compose(&worker_compose("one"));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &repo,
            "--interval",
            "1h",
            "--listen",
            &listen,
            "--http-max-connections",
            "8",
            "--http-idle-timeout",
            "2s",
        ],
        &[],
    );
    wait_for("the worker to run", WAIT, || {
        env.try_container("worker").is_some_and(|c| c.is_running())
    });
    wait_for("/healthz", Duration::from_secs(10), || {
        http_get(&listen, "/healthz").is_some()
    });
    // Few descriptors to spare: what it uses now, room for the 8 connections and a pass.
    let pid = run.pid();
    let in_use = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = in_use + 8 + 32;
    let (ok, out) = sh(&format!("prlimit --pid {pid} --nofile={limit}:{limit}"));
    assert!(ok, "prlimit: {out}");

    // Far more idle connections than descriptors left; none sends a byte.
    let hogs: Vec<TcpStream> = (0..3 * limit)
        .filter_map(|_| TcpStream::connect(&listen).ok())
        .collect();
    assert!(hogs.len() > limit, "opened {} idle connections", hogs.len());

    // A pass still works: an edit is applied while the idle connections are open.
    env.write_compose(&worker_compose("two"));
    wait_for("the worker to be updated", WAIT, || {
        env.try_container("worker")
            .is_some_and(|c| c.is_running() && c.env_var("MARKER").as_deref() == Some("two"))
    });
    // Once idle connections are timed out, the server answers again.
    wait_for(
        "/healthz after the idle connections timed out",
        Duration::from_secs(60),
        || http_get(&listen, "/healthz").is_some(),
    );
    drop(hogs);
    let stopped = run.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(stopped.code, 0, "{stopped}");
    assert!(
        !stopped.combined().contains("Too many open files"),
        "no pass ran out of descriptors:\n{stopped}"
    );
}

#[test]
fn a_webhook_body_larger_than_a_mebibyte_is_refused() {
    let env = TestEnv::new("bighook");
    env.write_compose(&worker_compose("one"));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &repo,
            "--interval",
            "1h",
            "--listen",
            &listen,
            "--webhook-secret",
            "s3cret",
        ],
        &[],
    );
    wait_for("/healthz", Duration::from_secs(20), || {
        http_get(&listen, "/healthz").is_some()
    });
    let big = vec![b'x'; (1 << 20) + 1];
    let refused = http_send(
        &listen,
        "POST",
        "/hooks/git",
        &[("X-Gitlab-Token", "s3cret")],
        &big,
    )
    .expect("the server answers");
    assert_eq!(refused.status, 413, "{refused:?}");
    run.signal_and_wait("TERM", Duration::from_secs(10));
}

#[test]
fn an_empty_webhook_secret_is_refused_at_start() {
    let env = TestEnv::new("emptysecret");
    env.write_compose(&worker_compose("one"));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &repo,
            "--listen",
            &listen,
            "--webhook-secret",
            "",
        ],
        &[],
    );
    let out = run.wait(Duration::from_secs(10));
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--webhook-secret is empty"), "{out}");
    assert!(env.try_container("worker").is_none(), "nothing was applied");
}

#[test]
fn listening_beyond_loopback_without_a_secret_is_warned_about_at_start() {
    let env = TestEnv::new("openlisten");
    env.write_compose(&worker_compose("one"));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
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
        &[],
    );
    run.wait_for_output("no --webhook-secret is set", Duration::from_secs(20));
    let stopped = run.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(stopped.code, 0, "{stopped}");
}

#[test]
fn signed_webhooks_coalesce_and_start_at_most_one_pass_a_second() {
    let env = TestEnv::new("hookburst");
    env.write_compose(&worker_compose("one"));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &repo,
            "--interval",
            "1h",
            "--listen",
            &listen,
            "--webhook-secret",
            "s3cret",
        ],
        &[],
    );
    wait_for("the first pass", WAIT, || {
        env.try_container("worker").is_some_and(|c| c.is_running())
            && status(&listen).is_some_and(|s| s["passes"].as_u64() >= Some(1))
    });
    let hook = |listen: &str| {
        http_send(
            listen,
            "POST",
            "/hooks/git",
            &[("X-Gitlab-Token", "s3cret")],
            b"{}",
        )
        .is_some_and(|r| r.status == 202)
    };

    // A burst: twenty signed hooks at once start one pass now and at most one after it.
    let before = passes(&listen);
    let accepted = Arc::new(Mutex::new(0));
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| {
                if hook(&listen) {
                    *accepted.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(
        *accepted.lock().unwrap(),
        20,
        "every signed hook is accepted"
    );
    std::thread::sleep(Duration::from_secs(4));
    let after_burst = passes(&listen);
    assert!(
        (before + 1..=before + 2).contains(&after_burst),
        "a burst of 20 hooks ran {} passes",
        after_burst - before
    );

    // A steady stream for 4 s: passes are at least 1 s apart, however fast hooks come.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(4) {
        if hook(&listen) {
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    let ran = passes(&listen) - after_burst;
    assert!(sent >= 40, "only {sent} hooks were sent");
    assert!(
        (1..=7).contains(&ran),
        "{sent} hooks over 4 s ran {ran} passes (at most one a second, plus one queued)"
    );
    run.signal_and_wait("TERM", Duration::from_secs(10));
}

/// A registry that accepts and never answers holds the engine's pull open; SIGTERM must still
/// end the loop at once (nothing was changed: pulls come before any container is touched).
#[test]
fn sigterm_stops_the_loop_at_once_while_a_registry_never_answers_a_pull() {
    let env = TestEnv::new("silentregistry");
    let registry = SilentRemote::start();
    env.write_compose(&format!(
        "services:\n  web:\n    image: 127.0.0.1:{}/web:v1\n",
        registry.port
    ));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let run = env.spawn_reconciler(&["run", "--repo", &repo, "--interval", "1h"], &[]);
    run.wait_for_output("pulling 127.0.0.1:", Duration::from_secs(30));
    registry.wait_for_a_connection();
    let started = Instant::now();
    let stopped = run.signal_and_wait("TERM", Duration::from_secs(20));
    assert_eq!(stopped.code, 0, "{stopped}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "SIGTERM took {:?} to stop a hung pull:\n{stopped}",
        started.elapsed()
    );
    assert!(env.containers().is_empty(), "nothing was created");
}

/// Clients that pipeline requests and never read the answers hold every connection; each
/// connection ends after 4 x --http-idle-timeout, so /healthz answers again.
#[test]
fn clients_that_never_read_their_answers_cannot_hold_the_listener() {
    use std::io::Write;
    let env = TestEnv::new("nonreaders");
    env.write_compose(&worker_compose("one"));
    let repo = env.repo.path().to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let run = env.spawn_reconciler(
        &[
            "run",
            "--repo",
            &repo,
            "--interval",
            "1h",
            "--listen",
            &listen,
            "--http-max-connections",
            "2",
            "--http-idle-timeout",
            "1s",
        ],
        &[],
    );
    wait_for("/healthz", Duration::from_secs(20), || {
        http_get(&listen, "/healthz").is_some()
    });
    let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    let hogs: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut hog = TcpStream::connect(&listen).unwrap();
            hog.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            // Fills both socket buffers; what does not fit is never sent. Nothing is read.
            let _ = hog.write_all(requests.as_bytes());
            hog
        })
        .collect();
    wait_for(
        "/healthz while the non-reading clients stay connected",
        Duration::from_secs(30),
        || http_get(&listen, "/healthz").is_some(),
    );
    drop(hogs);
    let stopped = run.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(stopped.code, 0, "{stopped}");
}
