//! Shared harness for the real-engine tests: test images built from Debian's static busybox, a
//! local `docker-registry` on a free loopback port, a temp desired-state repo and state dir, and
//! a guard that removes everything a test created, even when it fails.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The images every test can use, by local tag. Built once per machine (idempotent).
pub const WEB_V1: &str = "reconciler-test/web:v1";
pub const WEB_V2: &str = "reconciler-test/web:v2";
pub const UNHEALTHY: &str = "reconciler-test/unhealthy:broken";
pub const CRASHER: &str = "reconciler-test/crasher:v1";

/// Bump when an image's content changes, so machines that built the old one rebuild it.
const RECIPE: &str = "3";

/// A healthcheck that passes only on images that serve /health.
pub const HEALTHCHECK: &str = r#"    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"]
      interval: 1s
      retries: 2
"#;

/// E2E tests must fail, not skip, when the engine is missing.
pub fn require_docker() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Docker Engine is not reachable: these tests need it (run .ci/run, or start dockerd)"
    );
}

pub fn sh(script: &str) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn sh_ok(script: &str) -> String {
    let (ok, text) = sh(script);
    assert!(ok, "`{script}` failed:\n{text}");
    text
}

/// Build the test images once; a file lock keeps parallel test processes from racing.
pub fn ensure_images() {
    require_docker();
    let script = format!(
        r#"exec 9>/tmp/reconciler-test-images.lock; flock 9
        RECIPE={RECIPE}
        build() {{ # tag start-script serve-health
          # Rebuild when the tag exists but was made from another recipe.
          [ "$(docker image inspect -f '{{{{index .Config.Labels "reconciler-test.recipe"}}}}' "$1" 2>/dev/null)" = "$RECIPE" ] && return 0
          root=$(mktemp -d); mkdir -p "$root/bin" "$root/www" "$root/data"
          cp /bin/busybox "$root/bin/"
          for a in sh httpd wget sleep echo cat date test touch; do ln -s busybox "$root/bin/$a"; done
          echo "$1" | sed 's/.*://' > "$root/www/index.html"
          [ "$3" = yes ] && echo ok > "$root/www/health"
          printf '#!/bin/sh\ntrap "exit 0" TERM INT\n%s\n' "$2" > "$root/bin/start"; chmod +x "$root/bin/start"
          tar -C "$root" -c . | docker import --change 'CMD ["/bin/start"]' --change 'ENV IMAGE_DEFAULT=from-image' --change "LABEL reconciler-test.recipe=$RECIPE" - "$1" >/dev/null
          rm -rf "$root"
        }}
        web='echo "web $(cat /www/index.html) starting LOG_LEVEL=$LOG_LEVEL"; httpd -f -p 80 -h /www & wait $!'
        build {WEB_V1} "$web" yes
        build {WEB_V2} "$web" yes
        build {UNHEALTHY} "$web" no
        build {CRASHER} 'echo "crasher starting"; echo "crasher: cannot open database"; sleep 2; exit 1' yes
        "#
    );
    sh_ok(&script);
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's docker-registry on a free loopback port, with its storage in a temp dir.
pub struct Registry {
    pub addr: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage: {{ filesystem: {{ rootdirectory: {} }} }}\nhttp: {{ addr: {addr} }}\nlog: {{ level: error }}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut registry = Self {
            addr,
            child: None,
            dir,
        };
        registry.spawn(&config);
        registry
    }

    fn spawn(&mut self, config: &Path) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed (apt-get install docker-registry)");
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(10), || {
            http_get(&self.addr, "/v2/").is_some()
        });
        assert!(ready, "docker-registry did not come up on {}", self.addr);
    }

    /// Push a local test image as `<addr>/<repo>`, then drop the local copy so the engine must
    /// pull it for real.
    pub fn push(&self, local: &str, repo: &str) -> String {
        let remote = format!("{}/{repo}", self.addr);
        sh_ok(&format!("docker tag {local} {remote} && docker push -q {remote} >/dev/null && docker image rm {remote} >/dev/null"));
        remote
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let config = self.dir.path().join("config.yml");
        self.spawn(&config);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        // Local copies the engine pulled from this registry.
        let _ = sh(&format!(
            "docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep '^{}/' | xargs -r docker image rm -f >/dev/null",
            self.addr
        ));
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// One test's world: a desired-state repo, a state dir, its own project names, and cleanup.
pub struct TestEnv {
    pub name: String,
    pub repo: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub registry: Registry,
}

impl TestEnv {
    /// `name` is short and unique per test; projects are `<name><pid>` so reruns never collide.
    pub fn new(name: &str) -> Self {
        ensure_images();
        Self {
            name: format!("{name}{}", std::process::id()),
            repo: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            registry: Registry::start(),
        }
    }

    /// The project (stack folder) name for this test.
    pub fn project(&self) -> &str {
        &self.name
    }

    pub fn stack_dir(&self) -> PathBuf {
        self.repo.path().join(&self.name)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.stack_dir().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn reconciler(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_reconciler"))
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .output()
            .expect("run reconciler");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// `reconciler <cmd> --repo <repo>` plus extra args.
    pub fn run(&self, cmd: &str, extra: &[&str]) -> Run {
        let repo = self.repo.path().to_str().unwrap().to_string();
        let mut args = vec![cmd, "--repo", repo.as_str()];
        args.extend_from_slice(extra);
        self.reconciler(&args)
    }

    pub fn apply_ok(&self) -> Run {
        let run = self.run("apply", &[]);
        assert_eq!(run.code, 0, "apply should converge:\n{run}");
        run
    }

    /// `name id image state` of each container of the project.
    pub fn containers(&self) -> Vec<(String, String, String, String)> {
        let (_, text) = sh(&format!(
            "docker ps -a --filter label=com.docker.compose.project={} --format '{{{{.Names}}}} {{{{.ID}}}} {{{{.Image}}}} {{{{.State}}}}'",
            self.name
        ));
        let mut rows: Vec<_> = text
            .lines()
            .filter_map(|l| {
                let p: Vec<&str> = l.split_whitespace().collect();
                (p.len() == 4).then(|| (p[0].into(), p[1].into(), p[2].into(), p[3].into()))
            })
            .collect();
        rows.sort();
        rows
    }

    pub fn container_id(&self, service: &str) -> String {
        let name = format!("{}-{service}-1", self.name);
        self.containers()
            .into_iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("no container {name} in {:?}", self.containers()))
            .1
    }

    pub fn compose(&self, args: &str) -> String {
        sh_ok(&format!(
            "cd {} && docker-compose -p {} -f {}/compose.yaml {args} 2>&1",
            self.stack_dir().display(),
            self.name,
            self.stack_dir().display()
        ))
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let p = &self.name;
        let _ = sh(&format!(
            "docker ps -aq --filter label=com.docker.compose.project={p} | xargs -r docker rm -f >/dev/null;
             docker network ls -q --filter label=com.docker.compose.project={p} | xargs -r docker network rm >/dev/null;
             docker network rm {p}_default >/dev/null 2>&1;
             docker volume ls -q --filter label=com.docker.compose.project={p} | xargs -r docker volume rm >/dev/null"
        ));
    }
}

pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Body of `GET http://addr/path`, or `None` when nothing answers 2xx.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)?
        .starts_with('2')
        .then(|| body.to_string())
}
