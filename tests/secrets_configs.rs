//! Compose `secrets:` and `configs:` on the real engine: each reaches the container where Compose
//! puts it, with its content, mode and owner; a secret's value is in no label and no `diff`; a
//! changed secret in the host-local env file recreates the service; the files written for them
//! go once nothing mounts them.
mod common;
use common::*;
use std::path::Path;

/// Host-local (never in git): an environment secret.
const HOST_SECRET: &str = "hl-db-pw-5e1f0a";
const NEW_HOST_SECRET: &str = "hl-db-pw-9c3d2b";
/// A file secret from the repository.
const FILE_SECRET: &str = "repo-api-key-77c2e4";

fn compose(image: &str) -> String {
    format!(
        "services:
  app:
    image: {image}
    x-reconciler: {{min_ready: 1s}}
    secrets:
      - api_key
      - source: db_password
        target: db.pw
        uid: \"1000\"
        gid: \"1000\"
        mode: 0440
    configs:
      - app_config
      - source: nginx
        target: /etc/nginx/nginx.conf
secrets:
  api_key:
    file: ./secrets/api_key.txt
  db_password:
    environment: DB_PASSWORD
configs:
  app_config:
    content: |
      level=${{LEVEL}}
  nginx:
    file: ./nginx.conf
"
    )
}

/// `cat` of a path inside the container.
fn cat(container: &str, path: &str) -> String {
    docker_ok(&["exec", container, "cat", path])
}

/// `mode uid gid` of a path inside the container.
fn stat(container: &str, path: &str) -> String {
    docker_ok(&["exec", container, "stat", "-L", "-c", "%a %u %g", path])
        .trim()
        .to_string()
}

/// The first 16 hex digits of the plain sha256 of a value: an offline-guessing oracle.
fn unkeyed(value: &str) -> String {
    let (ok, out) = sh(&format!("printf %s '{value}' | sha256sum"));
    assert!(ok, "{out}");
    out[..16].to_string()
}

/// Names of the files written for secrets and configs given by content.
fn content_files(state: &Path, project: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("files").join(project))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn secrets_and_configs_reach_the_container_with_their_content_and_mode() {
    let env = TestEnv::new("i8s-secrets");
    let image = env.registry.push(WORKER, "worker:v1");
    env.write_compose(&compose(&image));
    env.write("secrets/api_key.txt", FILE_SECRET);
    env.write("nginx.conf", "server {}\n");
    env.write(".env", "LEVEL=debug\n");
    env.write_host_env(&format!("DB_PASSWORD={HOST_SECRET}\n"));

    // validate and diff need no container and write nothing for secrets.
    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(content_files(env.state.path(), env.project()).is_empty());

    env.apply_ok();
    let app = env.container("app");
    assert_eq!(cat(&app.name, "/run/secrets/api_key"), FILE_SECRET);
    assert_eq!(cat(&app.name, "/run/secrets/db.pw"), HOST_SECRET);
    assert_eq!(stat(&app.name, "/run/secrets/db.pw"), "440 1000 1000");
    assert_eq!(cat(&app.name, "/app_config"), "level=debug\n");
    assert_eq!(stat(&app.name, "/app_config"), "444 0 0");
    assert_eq!(cat(&app.name, "/etc/nginx/nginx.conf"), "server {}\n");
    // Read-only, as Compose mounts them.
    let (wrote, _) = sh(&format!(
        "docker exec {} sh -c 'echo x > /run/secrets/api_key'",
        app.name
    ));
    assert!(!wrote, "a secret must be read-only in the container");

    let labels = inspect(&app.name)["Config"]["Labels"].to_string();
    let in_sync = env.run("diff", &[]);
    assert_eq!(in_sync.code, 0, "{in_sync}");
    for value in [HOST_SECRET, FILE_SECRET] {
        for shown in [value.to_string(), unkeyed(value)] {
            assert!(!labels.contains(&shown), "{shown} in labels {labels}");
            assert!(!in_sync.combined().contains(&shown), "{shown} in {in_sync}");
        }
    }
}

#[test]
fn a_changed_host_local_secret_recreates_the_service_and_the_old_file_goes_with_its_container() {
    let env = TestEnv::new("i8s-secret-change");
    let image = env.registry.push(WORKER, "worker:v1");
    env.write_compose(&compose(&image));
    env.write("secrets/api_key.txt", FILE_SECRET);
    env.write("nginx.conf", "server {}\n");
    env.write(".env", "LEVEL=info\n");
    env.write_host_env(&format!("DB_PASSWORD={HOST_SECRET}\n"));
    env.apply_ok();
    let before = env.container("app");
    let files_before = content_files(env.state.path(), env.project());
    assert_eq!(files_before.len(), 2, "{files_before:?}");

    env.write_host_env(&format!("DB_PASSWORD={NEW_HOST_SECRET}\n"));
    let diff = env.run("diff", &[]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(
        diff.stdout
            .contains("secret /run/secrets/db.pw content changed (value hidden)"),
        "{diff}"
    );
    for value in [HOST_SECRET, NEW_HOST_SECRET] {
        assert!(!diff.combined().contains(value), "{value} in {diff}");
        assert!(!diff.combined().contains(&unkeyed(value)), "{diff}");
    }

    let out = env.apply_ok();
    assert!(!out.combined().contains(NEW_HOST_SECRET), "{out}");
    let after = env.container("app");
    assert_ne!(
        after.id, before.id,
        "a changed secret recreates the service"
    );
    assert_eq!(cat(&after.name, "/run/secrets/db.pw"), NEW_HOST_SECRET);
    let labels = inspect(&after.name)["Config"]["Labels"].to_string();
    assert!(!labels.contains(NEW_HOST_SECRET), "{labels}");
    // The old container is gone, so the file only it mounted is pruned; the shared one stays.
    let files_after = content_files(env.state.path(), env.project());
    let named: Vec<String> = after.labels["reconciler.files"]
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(files_after, named);
    assert_eq!(
        files_after
            .iter()
            .filter(|f| files_before.contains(f))
            .count(),
        1,
        "the config file is the same; the secret's is new: {files_before:?} -> {files_after:?}"
    );
    let journal = std::fs::read_to_string(env.state.path().join("journal.jsonl")).unwrap();
    let state = std::fs::read_to_string(env.state.path().join("state.json")).unwrap();
    for value in [HOST_SECRET, NEW_HOST_SECRET, FILE_SECRET] {
        assert!(!journal.contains(value) && !state.contains(value));
    }
}

#[test]
fn validate_reads_secrets_and_configs_without_docker_and_writes_nothing() {
    let repo = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let stack = repo.path().join("web");
    std::fs::create_dir_all(stack.join("secrets")).unwrap();
    std::fs::write(
        stack.join("compose.yaml"),
        compose("registry.example/app:1"),
    )
    .unwrap();
    std::fs::write(stack.join("secrets/api_key.txt"), FILE_SECRET).unwrap();
    std::fs::write(stack.join("nginx.conf"), "server {}\n").unwrap();
    std::fs::write(stack.join(".env"), "LEVEL=info\n").unwrap();
    std::fs::create_dir_all(state.path().join("env")).unwrap();
    std::fs::write(
        state.path().join("env/web.env"),
        format!("DB_PASSWORD={HOST_SECRET}\n"),
    )
    .unwrap();
    let out = validate_offline(repo.path(), state.path(), &[]);
    out.assert_code(0);
    assert!(!out.combined().contains(HOST_SECRET), "{out}");
    let left: Vec<String> = std::fs::read_dir(state.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, ["env"], "validate wrote into the state dir");
}
