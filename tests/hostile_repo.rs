//! A commit is hostile input: whatever its trees, links and special files say, nothing outside
//! `<state-dir>` is written, no host file is read into the desired state or a container, and a
//! device or FIFO cannot wedge a pass. Git attacks are crafted as real objects
//! (`git hash-object --literally`) pushed to a bare remote and fetched by the real binary.
mod common;
use common::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STACK: &str = "services:\n  web:\n    image: web:v1\n";

/// A bare remote and a scratch repository to craft objects in, and a state dir nested one level
/// inside `outer`, so an escape from `<state>/checkouts/...` lands somewhere the test can see.
struct Crafted {
    outer: tempfile::TempDir,
    bare: PathBuf,
    scratch: PathBuf,
}

impl Crafted {
    fn new() -> Self {
        let outer = tempfile::tempdir().expect("temp dir");
        let bare = outer.path().join("remote.git");
        let scratch = outer.path().join("scratch");
        let state = outer.path().join("state");
        for dir in [&bare, &scratch, &state] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let crafted = Self {
            outer,
            bare,
            scratch,
        };
        crafted.git(&crafted.bare, &["init", "-q", "--bare", "-b", "main"], None);
        crafted.git(&crafted.scratch, &["init", "-q", "-b", "main"], None);
        crafted
    }

    fn state(&self) -> PathBuf {
        self.outer.path().join("state")
    }

    fn git(&self, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
        let mut child = Command::new("git")
            .args([
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@example.invalid",
            ])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run git");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or_default())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn blob(&self, content: &str) -> String {
        self.git(
            &self.scratch,
            &["hash-object", "-w", "--stdin"],
            Some(content.as_bytes()),
        )
    }

    /// A tree object exactly as given: any names, any order, duplicates allowed.
    fn tree(&self, entries: &[(&str, &str, &str)]) -> String {
        let mut raw = Vec::new();
        for (mode, name, oid) in entries {
            raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            raw.extend((0..20).map(|i| u8::from_str_radix(&oid[2 * i..2 * i + 2], 16).unwrap()));
        }
        self.git(
            &self.scratch,
            &["hash-object", "--literally", "-t", "tree", "-w", "--stdin"],
            Some(&raw),
        )
    }

    /// A tree with a valid stack `web/` beside the given extra entries.
    fn root_with(&self, extra: &[(&str, &str, &str)]) -> String {
        let compose = self.blob(STACK);
        let web = self.tree(&[("100644", "compose.yaml", &compose)]);
        let mut entries = extra.to_vec();
        entries.push(("40000", "web", &web));
        self.tree(&entries)
    }

    /// Commit the tree and push it as `main`; returns the commit id.
    fn push(&self, tree: &str) -> String {
        let commit = self.git(&self.scratch, &["commit-tree", tree, "-m", "crafted"], None);
        let bare = self.bare.to_str().unwrap();
        self.git(
            &self.scratch,
            &[
                "push",
                "-q",
                "-f",
                bare,
                &format!("{commit}:refs/heads/main"),
            ],
            None,
        );
        commit
    }

    fn validate(&self) -> CmdOutput {
        let url = format!("file://{}", self.bare.display());
        let out = Command::new(env!("CARGO_BIN_EXE_reconciler"))
            .arg("--state-dir")
            .arg(self.state())
            .args([
                "--docker-host",
                "unix:///nonexistent.sock",
                "validate",
                "--repo",
                &url,
            ])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        CmdOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `validate` refuses the pushed commit, naming it and the `entry`, and writes neither
    /// `sentinel` (a path outside the state dir) nor anything under `checkouts/`.
    #[track_caller]
    fn assert_refused_writing_nothing(&self, commit: &str, entry: &str, sentinel: Option<&Path>) {
        let out = self.validate();
        if let Some(sentinel) = sentinel {
            assert!(
                !sentinel.exists(),
                "the commit wrote {}",
                sentinel.display()
            );
        }
        out.assert_code(2);
        assert!(
            out.stderr.contains(commit) && out.stderr.contains(entry),
            "the error names the commit and the entry:\n{out}"
        );
        self.assert_no_checkout_left();
    }

    /// Nothing of the refused commit stays in `checkouts/`: no tree, no temp folder (only the
    /// mark that the folder's trees were all written by the checking writer).
    #[track_caller]
    fn assert_no_checkout_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.state().join("checkouts"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        let left: Vec<_> = left
            .into_iter()
            .filter(|n| n != ".checked-writer")
            .collect();
        assert!(left.is_empty(), "left in checkouts/: {left:?}");
    }
}

#[test]
fn a_tree_entry_named_dot_dot_writes_nothing_outside_the_state_dir() {
    let repo = Crafted::new();
    // <state>/checkouts/<tmp>/../../../escaped is <outer>/escaped.
    let payload = repo.blob("written by a commit\n");
    let up1 = repo.tree(&[("100644", "escaped", &payload)]);
    let up2 = repo.tree(&[("40000", "..", &up1)]);
    let up3 = repo.tree(&[("40000", "..", &up2)]);
    let root = repo.root_with(&[("40000", "..", &up3)]);
    let commit = repo.push(&root);

    let sentinel = repo.outer.path().join("escaped");
    repo.assert_refused_writing_nothing(&commit, "'..'", Some(&sentinel));
}

#[test]
fn a_symlink_then_a_folder_of_the_same_name_writes_nothing_through_the_link() {
    let repo = Crafted::new();
    let elsewhere = repo.outer.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = repo.blob(elsewhere.to_str().unwrap());
    let payload = repo.blob("written through a link\n");
    let folder = repo.tree(&[("100644", "escaped", &payload)]);
    let root = repo.root_with(&[("120000", "x", &target), ("40000", "x", &folder)]);
    let commit = repo.push(&root);

    repo.assert_refused_writing_nothing(&commit, "'x'", Some(&elsewhere.join("escaped")));
}

#[test]
fn a_tree_entry_named_dot_git_in_any_case_is_refused() {
    let repo = Crafted::new();
    let hook = repo.blob("#!/bin/sh\necho pwned\n");
    let hooks = repo.tree(&[("100755", "post-checkout", &hook)]);
    let dotgit = repo.tree(&[("40000", "hooks", &hooks)]);
    let root = repo.root_with(&[("40000", ".GiT", &dotgit)]);
    let commit = repo.push(&root);

    repo.assert_refused_writing_nothing(&commit, "'.GiT'", None);
}

/// A temp file outside every repo, holding a value that must never be copied anywhere.
fn host_secret(value: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(value.as_bytes()).unwrap();
    file
}

/// Every file under `dir` whose content mentions `needle` (links not followed).
fn files_mentioning(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_mentioning(&path, needle));
        } else if meta.is_file()
            && String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(needle)
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_symlink_in_a_bound_folder_that_leaves_the_stack_is_refused_and_copies_nothing() {
    let env = TestEnv::new("hostilebind");
    let image = env.registry.push(WEB_V1, "web:v1");
    let secret = host_secret("host-only-bind-secret-4711\n");
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    volumes:\n      - ./conf:/conf:ro\n"),
    );
    env.write("conf/app.conf", "listen 80\n");
    std::os::unix::fs::symlink(secret.path(), env.stack_dir().join("conf/leak")).unwrap();

    let out = env.run("apply", &[]);
    out.assert_code(2);
    assert!(
        out.combined().contains(&format!(
            "{}/compose.yaml:5: services.web.volumes[0]: './conf' holds 'conf/leak', a symlink that leaves the stack folder",
            env.project()
        )),
        "{out}"
    );
    assert!(env.containers().is_empty(), "a container was created");
    let copies = files_mentioning(env.state.path(), "host-only-bind-secret-4711");
    assert!(copies.is_empty(), "the host file was copied: {copies:?}");
}

#[test]
fn a_bound_folder_with_a_link_inside_it_is_mounted_with_the_link_kept() {
    let env = TestEnv::new("hostilebindok");
    let image = env.registry.push(WEB_V1, "web:v1");
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    volumes:\n      - ./conf:/conf:ro\n    x-reconciler: {{min_ready: 1s}}\n"),
    );
    env.write("conf/v2/app.conf", "listen 8080\n");
    std::os::unix::fs::symlink("v2", env.stack_dir().join("conf/current")).unwrap();

    env.apply_ok();
    let id = env.container_id("web");
    assert_eq!(
        docker_ok(&["exec", &id, "cat", "/conf/current/app.conf"]),
        "listen 8080\n"
    );
    assert_eq!(
        docker_ok(&["exec", &id, "readlink", "/conf/current"]).trim(),
        "v2"
    );
}

#[test]
fn a_dot_env_linked_to_proc_environ_is_refused_and_reveals_nothing() {
    let env = TestEnv::new("hostileenviron");
    let image = env.registry.push(WEB_V1, "web:v1");
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    labels:\n      leak: \"${{RECONCILER_WEBHOOK_SECRET:-none}}\"\n"),
    );
    std::os::unix::fs::symlink("/proc/self/environ", env.stack_dir().join(".env")).unwrap();

    let repo = env.repo.path().to_str().unwrap();
    let out = env.reconciler_with_env(
        &["diff", "--repo", repo],
        &[("RECONCILER_WEBHOOK_SECRET", "webhook-secret-value-0815")],
    );
    out.assert_code(2);
    assert!(
        out.combined().contains(&format!(
            "{}/.env:1: '.env' is a symlink that leaves the stack folder",
            env.project()
        )),
        "{out}"
    );
    assert!(
        !out.combined().contains("webhook-secret-value-0815"),
        "{out}"
    );
    let copies = files_mentioning(env.state.path(), "webhook-secret-value-0815");
    assert!(copies.is_empty(), "the secret was written: {copies:?}");
}

#[test]
fn a_dot_env_linked_to_another_stacks_host_local_env_is_refused() {
    let env = TestEnv::new("hostileotherenv");
    let image = env.registry.push(WEB_V1, "web:v1");
    let other = env.extra_project("other");
    env.write_in(
        &other,
        "compose.yaml",
        &format!("services:\n  db:\n    image: {image}\n"),
    );
    let other_env = env.state.path().join("env").join(format!("{other}.env"));
    std::fs::create_dir_all(other_env.parent().unwrap()).unwrap();
    std::fs::write(&other_env, "DB_PASS=other-stacks-password-1234\n").unwrap();
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n    labels:\n      leak: \"${{DB_PASS:-none}}\"\n"),
    );
    std::os::unix::fs::symlink(&other_env, env.stack_dir().join(".env")).unwrap();

    let out = env.run("apply", &[]);
    out.assert_code(2);
    assert!(
        out.combined()
            .contains("'.env' is a symlink that leaves the stack folder"),
        "{out}"
    );
    assert!(
        !out.combined().contains("other-stacks-password-1234"),
        "{out}"
    );
    assert!(env.containers().is_empty(), "a container was created");
    assert!(
        env.project_containers(&other).is_empty(),
        "a container was created"
    );
}

/// `validate --repo <dir>` without an engine.
fn validate_dir(repo: &Path, extra: &[&str]) -> CmdOutput {
    let state = tempfile::tempdir().unwrap();
    validate_offline(repo, state.path(), extra)
}

#[test]
fn a_compose_file_or_stack_folder_linked_out_of_the_repo_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("compose.yaml"),
        "services:\n  web:\n    image: outside-only-image:1\n",
    )
    .unwrap();
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("web")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("compose.yaml"),
        repo.path().join("web/compose.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("linked")).unwrap();

    let out = validate_dir(repo.path(), &[]);
    out.assert_code(2);
    let text = out.combined();
    assert!(
        text.contains(
            "web/compose.yaml:1: 'compose.yaml' is a symlink that leaves the stack folder"
        ),
        "{out}"
    );
    assert!(
        text.contains("linked:1: a symlink that leaves the repository"),
        "{out}"
    );
    assert!(!text.contains("outside-only-image"), "{out}");
}

#[test]
fn a_path_linked_out_of_the_repo_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("web")).unwrap();
    std::fs::write(outside.path().join("web/compose.yaml"), STACK).unwrap();
    let repo = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("deploy")).unwrap();

    let out = validate_dir(repo.path(), &["--path", "deploy"]);
    out.assert_code(2);
    assert!(
        out.combined()
            .contains("a symlink that leaves the repository"),
        "{out}"
    );
}

#[test]
fn a_fifo_or_a_link_to_dev_zero_in_a_stack_folder_is_refused_promptly() {
    for (name, make) in [
        (
            "pipe",
            (|p: &Path| {
                let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
                assert!(ok, "mkfifo");
            }) as fn(&Path),
        ),
        (
            "zero",
            (|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap()) as fn(&Path),
        ),
    ] {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("web")).unwrap();
        std::fs::write(repo.path().join("web/compose.yaml"), STACK).unwrap();
        make(&repo.path().join("web").join(name));

        let state = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_reconciler"))
            .arg("--state-dir")
            .arg(state.path())
            .args([
                "--docker-host",
                "unix:///nonexistent.sock",
                "validate",
                "--repo",
            ])
            .arg(repo.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_until(Duration::from_secs(10), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("validate still reading web/{name} after 10 s");
        }
        let elapsed = started.elapsed();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains(&format!("'web/{name}'")), "{text}");
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}: {text}");
    }
}
