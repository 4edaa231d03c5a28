//! Shared harness for the end-to-end tests, which run against the real Docker Engine on the machine.
//!
//! - Test images built without the internet from Debian's static busybox
//!   (`testdata/images/build.sh`, idempotent): [`WEB_V1`], [`WEB_V2`], [`UNHEALTHY`], [`CRASHER`],
//!   [`WORKER`].
//! - [`Registry`]: Debian's `docker-registry` on a free loopback port, so pulls are real pulls.
//! - [`TestEnv`]: one test's world: its own Compose project names, a desired-state repo and a
//!   state dir in temp dirs, a registry, the `reconciler` binary, and a guard that removes every
//!   container, network and volume of its projects even when the test panics.
//! - Inspection through the `docker` CLI ([`Container`], [`inspect`]), [`http_get`], [`wait_for`].
//!
//! Each `tests/*.rs` does `mod common;` and uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Serves `v1\n` on `/` and `/health` on port 80; logs `web v1 starting`; image env
/// `IMAGE_DEFAULT=from-image`, `EXPOSE 80`.
pub const WEB_V1: &str = "reconciler-test/web:v1";
/// Same as [`WEB_V1`], serving `v2\n`.
pub const WEB_V2: &str = "reconciler-test/web:v2";
/// A broken release of the web app: serves `broken\n` on `/` but has no `/health`, so
/// [`HEALTHCHECK`] never passes; logs `web broken starting`.
pub const UNHEALTHY: &str = "reconciler-test/unhealthy:v1";
/// Logs `crasher starting` and `crasher: cannot open database`, exits 1 after about 2 s.
pub const CRASHER: &str = "reconciler-test/crasher:v1";
/// Logs `worker: tick N` every second until SIGTERM; no port.
pub const WORKER: &str = "reconciler-test/worker:v1";
/// Every test image.
pub const ALL_IMAGES: [&str; 5] = [WEB_V1, WEB_V2, UNHEALTHY, CRASHER, WORKER];

/// A Compose `healthcheck:` block for a service (4-space indent) that passes on the web images
/// within a few seconds and never on [`UNHEALTHY`].
pub const HEALTHCHECK: &str = r#"    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"]
      interval: 1s
      timeout: 2s
      retries: 2
"#;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// Put on containers a test starts with [`TestEnv::docker_run`] so the guard removes them.
pub const OWNER_LABEL: &str = "reconciler-test.owner";

/// A default bound for waits on the engine; generous because CI machines are slow and shared.
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Preconditions

/// Panics with a clear message when the Docker Engine is not reachable: end-to-end tests fail
/// rather than skip, so a machine without Docker cannot pass by testing nothing.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the Docker Engine is not reachable (DOCKER_HOST={:?}); the end-to-end tests need it \
             (bash .ci/run installs and starts it):\n{}",
            std::env::var("DOCKER_HOST").ok(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "the docker CLI cannot be run ({e}); the end-to-end tests need Docker \
             (apt-get install docker.io, or bash .ci/run)"
        ),
    }
}

/// Builds the test images if they are missing or stale; once per test process. The script
/// holds a file lock, so parallel test processes do not race.
pub fn ensure_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_docker();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/images/build.sh");
        let out = run(Command::new("bash").arg(&script));
        assert!(out.success(), "building the test images failed:\n{out}");
    });
}

// ---------------------------------------------------------------------------------------------
// Running commands

/// Exit code and captured output of a finished command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The exit code; -1 when the process was ended by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics, printing the whole output, unless the exit code is `expected`.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, expected, "unexpected exit code:\n{self}");
        self
    }

    /// stdout then stderr, for checks that don't care which stream says it.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {}\n----- stdout\n{}\n----- stderr\n{}\n-----",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn run(cmd: &mut Command) -> CmdOutput {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    CmdOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sh -c <script>`: whether it succeeded, and stdout + stderr.
pub fn sh(script: &str) -> (bool, String) {
    let out = run(Command::new("sh").arg("-c").arg(script));
    (out.success(), out.combined())
}

/// `reconciler --state-dir <state> validate --repo <repo> <extra...>` with an engine that does not
/// exist: what is judged without Docker (parsing, confinement, policy) is judged here.
pub fn validate_offline(repo: &Path, state: &Path, extra: &[&str]) -> CmdOutput {
    run(Command::new(env!("CARGO_BIN_EXE_reconciler"))
        .arg("--state-dir")
        .arg(state)
        .args([
            "--docker-host",
            "unix:///nonexistent.sock",
            "validate",
            "--repo",
        ])
        .arg(repo)
        .args(extra)
        .env("NO_COLOR", "1"))
}

/// `docker <args>`, whatever its outcome.
pub fn docker(args: &[&str]) -> CmdOutput {
    run(Command::new("docker").args(args))
}

/// `docker <args>`; panics on failure, returns stdout.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.success(), "`docker {}` failed:\n{out}", args.join(" "));
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// Inspecting the engine

/// `docker container inspect`, or `None` when there is no such container.
pub fn try_inspect(container: &str) -> Option<Value> {
    let out = docker(&["container", "inspect", container]);
    if !out.success() {
        return None;
    }
    let mut all: Vec<Value> =
        serde_json::from_str(&out.stdout).expect("docker inspect prints JSON");
    (!all.is_empty()).then(|| all.swap_remove(0))
}

/// `docker container inspect`; panics when there is no such container.
#[track_caller]
pub fn inspect(container: &str) -> Value {
    try_inspect(container).unwrap_or_else(|| panic!("no container {container}"))
}

pub fn image_exists(reference: &str) -> bool {
    docker(&["image", "inspect", reference]).success()
}

/// The local image id (`sha256:...`) a reference points to, if present.
pub fn image_id(reference: &str) -> Option<String> {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    out.success().then(|| out.stdout.trim().to_string())
}

/// A container's logs, stdout and stderr together.
pub fn container_logs(container: &str) -> String {
    docker(&["logs", container]).combined()
}

/// What tests assert about a container, read from `docker inspect`.
#[derive(Debug, Clone)]
pub struct Container {
    /// Without the leading `/`.
    pub name: String,
    pub id: String,
    /// The image reference it was created from (`Config.Image`), stable even after the tag
    /// moves, unlike `docker ps`'s IMAGE column.
    pub image: String,
    /// The image id it runs (`sha256:...`).
    pub image_id: String,
    /// `created`, `running`, `exited`, ...
    pub state: String,
    /// `starting`, `healthy`, `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    pub restart_count: u64,
    pub labels: BTreeMap<String, String>,
    /// The whole `docker inspect` object, for anything not lifted out above.
    pub inspect: Value,
}

impl Container {
    fn from_inspect(v: Value) -> Self {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let labels = v
            .pointer("/Config/Labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, val)| (k.clone(), val.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            name: s("/Name").trim_start_matches('/').to_string(),
            id: s("/Id"),
            image: s("/Config/Image"),
            image_id: s("/Image"),
            state: s("/State/Status"),
            health: v
                .pointer("/State/Health/Status")
                .and_then(Value::as_str)
                .map(str::to_string),
            restart_count: v
                .pointer("/RestartCount")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            labels,
            inspect: v,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The Compose service label.
    pub fn service(&self) -> Option<&str> {
        self.label(SERVICE_LABEL)
    }

    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// The value of `key` in the container's environment (`Config.Env`), if set.
    pub fn env_var(&self, key: &str) -> Option<String> {
        self.inspect
            .pointer("/Config/Env")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    }

    /// The container as it is now, or `None` once it is gone.
    pub fn refresh(&self) -> Option<Container> {
        try_inspect(&self.id).map(Container::from_inspect)
    }
}

/// Every container, running or not, matching `docker ps --filter label=<label_filter>`
/// (`key` or `key=value`), sorted by name.
pub fn containers_with_label(label_filter: &str) -> Vec<Container> {
    let filter = format!("label={label_filter}");
    let ids = docker_ok(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    // A container removed between `ps` and `inspect` makes inspect exit 1 but still print the
    // others, so read stdout whatever the exit code.
    let mut args = vec!["container", "inspect"];
    args.extend(&ids);
    let out = docker(&args);
    let all: Vec<Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
    let mut containers: Vec<Container> = all.into_iter().map(Container::from_inspect).collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    containers
}

/// The containers' names, for assertions like "exactly these containers exist".
pub fn container_names(containers: &[Container]) -> BTreeSet<String> {
    containers.iter().map(|c| c.name.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Network and time

/// A TCP port on 127.0.0.1 that was free a moment ago, claimed for this process until it ends.
/// A test often binds its port seconds later (after a pull, or while its registry is down on
/// purpose), and the kernel may hand the same free port to another test process meanwhile: a
/// claim is a lock on `/tmp/reconciler-test-ports/<port>` that the kernel drops when the process
/// dies, and every test process skips the ports another one holds.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if claim_port(port) {
            return port;
        }
    }
}

/// Claims `port` for this process (see [`free_port`]); false when this or another test process
/// holds it already.
fn claim_port(port: u16) -> bool {
    use std::os::fd::AsRawFd;
    static CLAIMED: Mutex<BTreeMap<u16, std::fs::File>> = Mutex::new(BTreeMap::new());
    let mut claimed = CLAIMED.lock().unwrap();
    if claimed.contains_key(&port) {
        return false;
    }
    let dir = Path::new("/tmp/reconciler-test-ports");
    std::fs::create_dir_all(dir).expect("create /tmp/reconciler-test-ports");
    // Shared by whoever runs tests on this machine, like /tmp itself.
    let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .expect("open a port claim in /tmp/reconciler-test-ports");
    // SAFETY: flock on a descriptor this function owns; the lock lives as long as the file.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    claimed.insert(port, file);
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// `GET http://<addr><path>` (`addr` like `127.0.0.1:8080`); `None` when nothing answers within
/// a few seconds.
pub fn http_request(addr: &str, path: &str) -> Option<HttpResponse> {
    http_send(addr, "GET", path, &[], b"")
}

/// Any method, with extra headers and a body (the webhook tests POST signed payloads).
pub fn http_send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<HttpResponse> {
    let addr: SocketAddr = addr.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .ok()?;
    // HTTP/1.0 so the server closes the connection and read_to_end knows where the body ends.
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(HttpResponse {
        status,
        body: body.to_string(),
    })
}

/// The body, as served, of a 2xx answer to `GET http://<addr><path>`; `None` for anything else.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    http_request(addr, path)
        .filter(|r| (200..300).contains(&r.status))
        .map(|r| r.body)
}

/// Polls `check` every 200 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`wait_until`], panicking with `what` when it times out.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, check),
        "timed out after {timeout:?} waiting for {what}"
    );
}

// ---------------------------------------------------------------------------------------------
// Registry

/// Debian's `docker-registry` (distribution v2) on a free loopback port, storing into a temp
/// dir. The engine treats 127.0.0.0/8 registries as insecure, so plain http works without
/// daemon configuration. Dropping it kills the process, removes its storage and untags every
/// local image reference under its address, so no test leaves `127.0.0.1:<port>/...` behind.
pub struct Registry {
    /// `127.0.0.1:<port>`, the registry part of image references.
    pub addr: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `<addr>/<repo>:<tag>` -> `<addr>/<repo>@sha256:...` of what was pushed last. Behind a
    /// mutex so pushing needs no `mut` on the env.
    pushed: Mutex<BTreeMap<String, String>>,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("reconciler-registry-")
            .tempdir()
            .expect("temp dir");
        // The port is free when picked but may be taken before the registry binds it: retry.
        let mut errors = Vec::new();
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            match spawn_registry(dir.path(), &addr) {
                Ok(child) => {
                    return Self {
                        addr,
                        dir,
                        child: Some(child),
                        pushed: Mutex::new(BTreeMap::new()),
                    }
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        panic!("docker-registry did not start:\n{}", errors.join("\n"));
    }

    pub fn port(&self) -> u16 {
        port_of(&self.addr)
    }

    /// `<addr>/<repo_tag>`: a reference into this registry, pushed or not (for "no such tag").
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// Pushes the local image `local` as `<addr>/<repo_tag>` (e.g. `web:v1`) and returns that
    /// reference. The registry-qualified tag is then removed locally, so the engine has to pull
    /// it from the registry for real. Pushing another image to the same `repo_tag` moves the tag.
    #[track_caller]
    pub fn push(&self, local: &str, repo_tag: &str) -> String {
        let remote = self.reference(repo_tag);
        let (repo, _tag) = remote.rsplit_once(':').expect("repo_tag is repo:tag");
        docker_ok(&["tag", local, &remote]);
        docker_ok(&["push", &remote]);
        let digests = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &remote,
        ]);
        let digests: Vec<String> = serde_json::from_str(digests.trim()).unwrap_or_default();
        let digest_ref = digests
            .into_iter()
            .find(|d| d.starts_with(&format!("{repo}@")))
            .unwrap_or_else(|| panic!("no digest for {remote} after the push"));
        docker_ok(&["image", "rm", &remote]);
        self.pushed
            .lock()
            .unwrap()
            .insert(remote.clone(), digest_ref);
        remote
    }

    /// `<addr>/<repo>@sha256:...` of the last [`push`](Self::push) to `repo_tag`.
    #[track_caller]
    pub fn digest_ref(&self, repo_tag: &str) -> String {
        let remote = self.reference(repo_tag);
        self.pushed
            .lock()
            .unwrap()
            .get(&remote)
            .cloned()
            .unwrap_or_else(|| panic!("{remote} was never pushed"))
    }

    /// Whether the process runs and answers `GET /v2/`.
    pub fn is_up(&mut self) -> bool {
        let running = match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        };
        running && http_request(&self.addr, "/v2/").is_some()
    }

    /// Kills the registry, keeping its storage: pulls from it now fail ("registry down").
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it if it runs and starts it again: same address, same content.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        match spawn_registry(self.dir.path(), &self.addr) {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("the registry on {} did not come back: {e}", self.addr),
        }
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Untags every local reference (tag or digest) under this registry's address.
    fn remove_local_references(&self) {
        let prefix = format!("{}/", self.addr);
        let listed = docker(&[
            "images",
            "--digests",
            "--format",
            "{{.Repository}}\t{{.Tag}}\t{{.Digest}}",
        ]);
        let mut refs = Vec::new();
        for line in listed.stdout.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let [repo, tag, digest] = cols[..] else {
                continue;
            };
            if !repo.starts_with(&prefix) {
                continue;
            }
            if tag != "<none>" {
                refs.push(format!("{repo}:{tag}"));
            }
            if digest != "<none>" {
                refs.push(format!("{repo}@{digest}"));
            }
        }
        if !refs.is_empty() {
            // By reference, never by id: the id is shared with the reconciler-test/* tag, which
            // must survive. -f untags even if a leftover container still uses the reference.
            let mut args = vec!["image", "rm", "-f"];
            args.extend(refs.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        self.remove_local_references();
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

/// Runs `docker-registry serve` with a config for `addr` and storage under `dir`, and waits until
/// it answers. On failure the process is gone and the error carries its log.
fn spawn_registry(dir: &Path, addr: &str) -> Result<Child, String> {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\n\
             log: {{ level: warn, accesslog: {{ disabled: true }} }}\n\
             storage: {{ filesystem: {{ rootdirectory: {} }}, delete: {{ enabled: true }} }}\n\
             http: {{ addr: {addr} }}\n",
            dir.join("data").display()
        ),
    )
    .expect("write the registry config");
    let log_path = dir.join("registry.log");
    let log = std::fs::File::create(&log_path).expect("create the registry log");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the registry log"))
        .stderr(log)
        .spawn()
        // Not worth a retry: say what to install.
        .unwrap_or_else(|e| {
            panic!("cannot run docker-registry ({e}): apt-get install docker-registry")
        });
    let mut exited = false;
    let up = wait_until(Duration::from_secs(10), || {
        exited = child.try_wait().ok().flatten().is_some();
        exited || http_request(addr, "/v2/").is_some_and(|r| r.status == 200)
    });
    if up && !exited {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    Err(format!(
        "not answering GET /v2/ (process exited: {exited}); its log:\n{log}"
    ))
}

// ---------------------------------------------------------------------------------------------
// A reconciler in the background (for `run`, and for killing one mid-update)

/// A `reconciler` process started in the background, its output collected as it comes.
/// Killed (SIGKILL) on drop if still running.
pub struct Spawned {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Spawned {
    fn new(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Self {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// stdout and stderr so far, together.
    pub fn output_so_far(&self) -> String {
        format!(
            "{}{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits until the output contains `needle` (e.g. the log line of a step).
    #[track_caller]
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) {
        let found = wait_until(timeout, || self.output_so_far().contains(needle));
        assert!(
            found,
            "no {needle:?} in the reconciler's output after {timeout:?}:\n{}",
            self.output_so_far()
        );
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, ...) and waits up to `timeout` for the exit.
    #[track_caller]
    pub fn signal_and_wait(self, signal: &str, timeout: Duration) -> CmdOutput {
        let pid = self.pid().to_string();
        let sent = run(Command::new("kill").args([format!("-{signal}"), pid.clone()]));
        assert!(sent.success(), "kill -{signal} {pid}:\n{sent}");
        self.wait(timeout)
    }

    /// Waits up to `timeout` for it to exit; panics (and kills it) if it does not.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> CmdOutput {
        let exited = wait_until(timeout, || self.child.try_wait().ok().flatten().is_some());
        if !exited {
            let _ = self.child.kill();
            panic!(
                "the reconciler still ran after {timeout:?}:\n{}",
                self.output_so_far()
            );
        }
        let status = self.child.wait().expect("wait for the reconciler");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        CmdOutput {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The per-test environment

/// One test's world: a desired-state repo and a state dir in temp dirs, a registry, and its own
/// Compose project names. The main stack is the folder `<repo>/<project>`, where the project is
/// `rt-<test name>-<pid>`, so tests and reruns never share a name; [`extra_project`]
/// (Self::extra_project) hands out more. Dropping the env (also when the test panics)
/// force-removes the containers, networks and volumes of every project it handed out and the
/// containers started with [`docker_run`](Self::docker_run), then stops the registry and
/// untags its images.
pub struct TestEnv {
    /// The desired-state repo, for `--repo`.
    pub repo: tempfile::TempDir,
    /// The reconciler's `--state-dir`.
    pub state: tempfile::TempDir,
    /// Started with the env; tests push the images their stacks use into it.
    pub registry: Registry,
    project: String,
    projects: Mutex<BTreeSet<String>>,
}

impl TestEnv {
    /// `test_name`: short and unique among the tests (it becomes part of container names).
    /// Checks the engine, builds the test images and starts a registry first.
    pub fn new(test_name: &str) -> Self {
        require_docker();
        ensure_images();
        // Several envs in one process (`cargo test` runs tests as threads) get distinct names.
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let name: String = test_name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect();
        let name = name.trim_matches('-');
        let pid = std::process::id();
        let project = match n {
            0 => format!("rt-{name}-{pid}"),
            n => format!("rt-{name}-{pid}x{n}"),
        };
        let temp = |what: &str| {
            tempfile::Builder::new()
                .prefix(&format!("{project}-{what}-"))
                .tempdir()
                .expect("temp dir")
        };
        Self {
            repo: temp("repo"),
            state: temp("state"),
            registry: Registry::start(),
            projects: Mutex::new(BTreeSet::from([project.clone()])),
            project,
        }
    }

    /// The main stack's Compose project name, which is also its folder name in the repo.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Another project name for tests with several stacks: `<project>-<suffix>`. Cleaned up
    /// like the main one; write its files with [`write_in`](Self::write_in).
    pub fn extra_project(&self, suffix: &str) -> String {
        let project = format!("{}-{suffix}", self.project);
        self.projects.lock().unwrap().insert(project.clone());
        project
    }

    /// `<repo>/<project>`, the main stack's folder.
    pub fn stack_dir(&self) -> PathBuf {
        self.repo.path().join(&self.project)
    }

    /// Writes `<repo>/<project>/<rel>` (e.g. `compose.yaml`, `.env`, `Caddyfile`).
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        self.write_in(&self.project, rel, text)
    }

    /// Writes `<repo>/<project>/<rel>` for any project this env handed out.
    pub fn write_in(&self, project: &str, rel: &str, text: &str) -> PathBuf {
        assert!(
            self.projects.lock().unwrap().contains(project),
            "{project} was not handed out by this env, so it would not be cleaned up"
        );
        let path = self.repo.path().join(project).join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).expect("create the stack folder");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Writes the main stack's `compose.yaml`.
    pub fn write_compose(&self, yaml: &str) -> PathBuf {
        self.write("compose.yaml", yaml)
    }

    /// Writes the host-local env file of the main stack, `<state-dir>/env/<project>.env`
    /// (variables kept out of git, e.g. secrets).
    pub fn write_host_env(&self, dotenv: &str) -> PathBuf {
        let path = self
            .state
            .path()
            .join("env")
            .join(format!("{}.env", self.project));
        std::fs::create_dir_all(path.parent().unwrap()).expect("create the env folder");
        std::fs::write(&path, dotenv).expect("write the host env file");
        path
    }

    fn reconciler_command(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconciler"));
        cmd.arg("--state-dir").arg(self.state.path()).args(args);
        // DOCKER_HOST passes through (inherited); the caller's own reconciler settings must not.
        cmd.env_remove("RECONCILER_STATE_DIR")
            .env_remove("RECONCILER_REPO")
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .envs(envs.iter().copied());
        cmd
    }

    /// `reconciler --state-dir <state> <args...>`, to completion.
    pub fn reconciler(&self, args: &[&str]) -> CmdOutput {
        run(&mut self.reconciler_command(args, &[]))
    }

    /// [`reconciler`](Self::reconciler) with extra environment variables (e.g. a failpoint).
    pub fn reconciler_with_env(&self, args: &[&str], envs: &[(&str, &str)]) -> CmdOutput {
        run(&mut self.reconciler_command(args, envs))
    }

    /// `reconciler <command> --repo <repo> <extra...>`.
    pub fn run(&self, command: &str, extra: &[&str]) -> CmdOutput {
        let repo = self.repo.path().to_str().expect("utf-8 temp path");
        let mut args = vec![command, "--repo", repo];
        args.extend_from_slice(extra);
        self.reconciler(&args)
    }

    /// `reconciler apply --repo <repo>`, which must exit 0.
    #[track_caller]
    pub fn apply_ok(&self) -> CmdOutput {
        let out = self.run("apply", &[]);
        assert_eq!(out.code, 0, "apply should converge:\n{out}");
        out
    }

    /// Starts `reconciler --state-dir <state> <args...>` in the background.
    pub fn spawn_reconciler(&self, args: &[&str], envs: &[(&str, &str)]) -> Spawned {
        Spawned::new(self.reconciler_command(args, envs))
    }

    /// The main stack's containers as `(name, id, image, state)`, sorted by name; `image` is
    /// the reference it was created from, `state` is `running`, `exited`, ...
    pub fn containers(&self) -> Vec<(String, String, String, String)> {
        self.project_containers(&self.project)
            .into_iter()
            .map(|c| (c.name, c.id, c.image, c.state))
            .collect()
    }

    /// Every container labelled `com.docker.compose.project=<project>`, in detail.
    pub fn project_containers(&self, project: &str) -> Vec<Container> {
        containers_with_label(&format!("{PROJECT_LABEL}={project}"))
    }

    /// The main stack's container for `service`, by its Compose name `<project>-<service>-1`.
    pub fn try_container(&self, service: &str) -> Option<Container> {
        let name = format!("{}-{service}-1", self.project);
        try_inspect(&name)
            .map(Container::from_inspect)
            .filter(|c| c.name == name)
    }

    /// [`try_container`](Self::try_container), panicking (and listing the stack) if absent.
    #[track_caller]
    pub fn container(&self, service: &str) -> Container {
        self.try_container(service).unwrap_or_else(|| {
            panic!(
                "no container for service {service}; the stack has {:?}",
                container_names(&self.project_containers(&self.project))
            )
        })
    }

    /// The id of the main stack's container for `service`.
    #[track_caller]
    pub fn container_id(&self, service: &str) -> String {
        self.container(service).id
    }

    /// `docker run -d <args...>` with this env's owner label, so the guard removes the container
    /// whatever else it is labelled with. Returns the container id.
    #[track_caller]
    pub fn docker_run(&self, args: &[&str]) -> String {
        let owner = format!("{OWNER_LABEL}={}", self.project);
        let mut all = vec!["run", "-d", "--label", owner.as_str()];
        all.extend_from_slice(args);
        docker_ok(&all).trim().to_string()
    }

    /// Debian's `docker-compose` 1.29 on the main stack, which must succeed:
    /// `docker-compose -p <project> -f <stack folder>/compose.yaml <args>` (whitespace-split),
    /// run from the stack folder so it reads the `.env`. Returns stdout + stderr. Compose 1.29
    /// names containers `<project>_<service>_1`, with underscores.
    #[track_caller]
    pub fn compose(&self, args: &str) -> String {
        let args: Vec<&str> = args.split_whitespace().collect();
        let out = self.compose_output(&args);
        assert!(
            out.success(),
            "docker-compose {} failed:\n{out}",
            args.join(" ")
        );
        out.combined()
    }

    /// [`compose`](Self::compose) whatever its outcome.
    pub fn compose_output(&self, args: &[&str]) -> CmdOutput {
        let dir = self.stack_dir();
        let file = [
            "compose.yaml",
            "compose.yml",
            "docker-compose.yaml",
            "docker-compose.yml",
        ]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no compose file in {}", dir.display()));
        run(Command::new("docker-compose")
            .current_dir(&dir)
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(file)
            .args(args))
    }

    /// The journal (`<state-dir>/journal.jsonl`), one JSON value per line, oldest first.
    pub fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state.path().join("journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}")))
            .collect()
    }

    /// What a failed test leaves for its reader: the containers and the journal's tail.
    fn print_diagnostics(&self, projects: &BTreeSet<String>) {
        eprintln!(
            "--- test env {} (state dir {})",
            self.project,
            self.state.path().display()
        );
        for project in projects {
            for c in self.project_containers(project) {
                eprintln!(
                    "container {} image={} state={} health={} restarts={}",
                    c.name,
                    c.image,
                    c.state,
                    c.health.as_deref().unwrap_or("-"),
                    c.restart_count
                );
            }
        }
        let journal =
            std::fs::read_to_string(self.state.path().join("journal.jsonl")).unwrap_or_default();
        let lines: Vec<&str> = journal.lines().collect();
        for line in &lines[lines.len().saturating_sub(10)..] {
            eprintln!("journal: {line}");
        }
    }

    fn cleanup(&self) {
        let projects = self.projects.lock().unwrap().clone();
        if std::thread::panicking() {
            self.print_diagnostics(&projects);
        }
        let owned =
            |project: &str, owner: &str| owner == self.project || projects.contains(project);
        // Networks and volumes made without the label still carry the `<project>_` name prefix.
        let owned_name = |name: &str| projects.iter().any(|p| name.starts_with(&format!("{p}_")));
        let listing = |cmd: &[&str], key: &str| -> Vec<(String, String, String)> {
            let format = format!(
                "{{{{{key}}}}}\t{{{{.Label \"{PROJECT_LABEL}\"}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}"
            );
            let mut args = cmd.to_vec();
            args.extend(["--format", format.as_str()]);
            docker(&args)
                .stdout
                .lines()
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split('\t').collect();
                    let [a, b, c] = cols[..] else { return None };
                    Some((a.to_string(), b.to_string(), c.to_string()))
                })
                .collect()
        };
        let remove = |cmd: &[&str], what: Vec<String>| {
            if what.is_empty() {
                return;
            }
            let mut args = cmd.to_vec();
            args.extend(what.iter().map(String::as_str));
            let out = docker(&args);
            if !out.success() {
                eprintln!("cleanup of {}: {out}", self.project);
            }
        };

        let containers = listing(&["ps", "-a", "--no-trunc"], ".ID")
            .into_iter()
            .filter(|(_, project, owner)| owned(project, owner))
            .map(|(id, _, _)| id)
            .collect();
        // -v: anonymous volumes go with their container; named ones are handled below.
        remove(&["rm", "-f", "-v"], containers);
        for kind in ["network", "volume"] {
            let names = listing(&[kind, "ls"], ".Name")
                .into_iter()
                .filter(|(name, project, owner)| owned(project, owner) || owned_name(name))
                .map(|(name, _, _)| name)
                .collect();
            remove(&[kind, "rm"], names);
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.cleanup();
        // Then the fields drop: the registry (after the containers that used its images) and
        // the temp dirs.
    }
}

/// A git remote for the loop's tests: a bare repository, with the test's `repo` dir as the
/// operator's clone of it (commit, push, revert, force-push as a person would).
pub struct GitRemote {
    pub bare: tempfile::TempDir,
    work: PathBuf,
}

impl GitRemote {
    pub fn new(env: &TestEnv) -> Self {
        let bare = tempfile::tempdir().expect("temp dir");
        let remote = Self {
            work: env.repo.path().to_path_buf(),
            bare,
        };
        sh_ok_in(remote.bare.path(), "git init -q --bare -b main .");
        remote.git("init -q -b main .");
        remote.git(&format!(
            "remote add origin {}",
            remote.bare.path().display()
        ));
        remote
    }

    /// The folder holding the bare repository, and its name in it: what a git server serves.
    pub fn served_as(&self) -> (PathBuf, String) {
        let path = self.bare.path();
        let parent = path.parent().expect("temp dir has a parent").to_path_buf();
        let name = path
            .file_name()
            .expect("temp dir has a name")
            .to_string_lossy()
            .into_owned();
        (parent, name)
    }

    /// `file://` URL of the remote, as `--repo` takes it.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.path().display())
    }

    pub fn git(&self, args: &str) -> String {
        sh_ok_in(
            &self.work,
            &format!("git -c user.name=test -c user.email=test@example.invalid {args}"),
        )
    }

    /// Commit everything in the work tree and push it; returns the commit id.
    pub fn commit_and_push(&self, message: &str) -> String {
        self.git("add -A");
        self.git(&format!("commit -q -m '{message}'"));
        self.git("push -q -f origin main");
        self.git("rev-parse HEAD").trim().to_string()
    }
}

fn sh_ok_in(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OpenSSH server on a free loopback port that accepts one generated client key for root,
/// and a HOME whose `known_hosts` lists its host key (libgit2 verifies host keys there).
pub struct SshServer {
    pub port: u16,
    pub client_key: PathBuf,
    /// A valid private key the server does not accept.
    pub unauthorized_key: PathBuf,
    pub home: PathBuf,
    dir: tempfile::TempDir,
}

impl SshServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let port = free_port();
        std::fs::create_dir_all("/run/sshd").expect("sshd privilege separation dir");
        sh_ok_in(d, "ssh-keygen -q -t ed25519 -N '' -f hostkey && ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -f clientkey && ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -f otherkey && cp clientkey.pub authorized_keys && mkdir -p home/.ssh");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/hostkey\nAuthorizedKeysFile {0}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nPidFile {0}/sshd.pid\nUsePAM no\n",
                d.display()
            ),
        )
        .expect("sshd_config");
        let host_key = std::fs::read_to_string(d.join("hostkey.pub")).expect("host key");
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("home/.ssh/known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")),
        )
        .expect("known_hosts");
        sh_ok_in(
            d,
            "/usr/sbin/sshd -f \"$PWD/sshd_config\" -E \"$PWD/sshd.log\"",
        );
        wait_for("sshd", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            port,
            client_key: d.join("clientkey"),
            unauthorized_key: d.join("otherkey"),
            home: d.join("home"),
            dir,
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("sshd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
