//! Writable relative binds keep their data: a database-like service writing `./data` keeps
//! every row across commits, a `git revert`, restarts and a crash of the reconciler, while the
//! files git tracks next to its data follow each revision. A bind source git does not have is
//! created empty, once, in `<state-dir>/data/<stack>/`; `validate` creates nothing; a link a
//! container plants in its data folder is never followed on the host.
mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A service that, each time it starts, appends a row to `/data/rows` (data git never sees)
/// and copies the tracked config it was given to `/data/seen`.
fn database(image: &str, n: usize) -> String {
    format!(
        "services:\n  db:\n    image: {image}\n    command: [\"sh\", \"-c\", \"cat /data/conf/db.conf > /data/seen; echo cached > /cache/hit; echo start $$N >> /data/rows; exec /bin/start\"]\n    environment: {{N: \"{n}\"}}\n    volumes: [\"./data:/data\", \"./cache:/cache\"]\n    x-reconciler: {{min_ready: 1s}}\n"
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rows(data: &Path) -> Vec<String> {
    read(&data.join("rows"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The container for `db` was (re)created and has written what it writes at start.
fn wait_started(env: &TestEnv, data: &Path, starts: usize) {
    wait_for(&format!("start number {starts}"), WAIT, || {
        data.join("rows").exists() && rows(data).len() == starts && data.join("seen").exists()
    });
    assert!(env.container("db").is_running());
}

#[test]
fn a_database_keeps_its_data_across_commits_a_revert_and_restarts_while_tracked_files_follow_git() {
    let env = TestEnv::new("i8b-data");
    let remote = GitRemote::new(&env);
    let image = env.registry.push(WORKER, "db:v1");
    let url = remote.url();
    let apply = |extra: &[(&str, &str)]| env.reconciler_with_env(&["apply", "--repo", &url], extra);
    let data = env.state.path().join("data").join(env.project());
    let (db_data, conf) = (data.join("data"), data.join("data/conf/db.conf"));

    env.write("data/conf/db.conf", "max_connections = 10\n");
    env.write_compose(&database(&image, 1));
    remote.commit_and_push("database");
    let valid = env.reconciler(&["validate", "--repo", &url]);
    assert_eq!(valid.code, 0, "{valid}");
    assert!(!data.exists(), "validate creates nothing");
    apply(&[]).assert_code(0);
    wait_started(&env, &db_data, 1);
    let mounts = env.container("db").inspect["Mounts"].clone();
    let sources: Vec<&str> = mounts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&db_data.to_str().unwrap())
            && sources.contains(&data.join("cache").to_str().unwrap()),
        "the binds point to the stack's data folder: {sources:?}"
    );
    assert_eq!(read(&data.join("cache/hit")), "cached\n");

    // A release that changes the service: the rows written so far are still there.
    env.write_compose(&database(&image, 2));
    remote.commit_and_push("release 2");
    apply(&[]).assert_code(0);
    wait_started(&env, &db_data, 2);
    assert_eq!(rows(&db_data), ["start 1", "start 2"]);

    // A config edit in git reaches the container; the data stays.
    env.write("data/conf/db.conf", "max_connections = 20\n");
    remote.commit_and_push("more connections");
    apply(&[]).assert_code(0);
    wait_started(&env, &db_data, 3);
    assert_eq!(read(&conf), "max_connections = 20\n");
    assert_eq!(read(&db_data.join("seen")), "max_connections = 20\n");

    // git revert: the tracked file goes back, the data does not.
    remote.git("revert --no-edit HEAD");
    remote.git("push -q origin main");
    apply(&[]).assert_code(0);
    wait_started(&env, &db_data, 4);
    assert_eq!(read(&conf), "max_connections = 10\n");
    assert_eq!(read(&db_data.join("seen")), "max_connections = 10\n");
    assert_eq!(rows(&db_data), ["start 1", "start 2", "start 2", "start 2"]);

    // The reconciler starts again with nothing to do: nothing is touched.
    let id = env.container_id("db");
    apply(&[]).assert_code(0);
    assert_eq!(env.container_id("db"), id);

    // The container restarts (the engine, the host): same folder, same data.
    docker_ok(&["restart", "-t", "1", &id]);
    wait_started(&env, &db_data, 5);

    // The reconciler dies in the middle of an update: the next one converges, nothing lost.
    env.write_compose(&database(&image, 3));
    remote.commit_and_push("release 3");
    let killed = apply(&[("RECONCILER_FAILPOINT", "after-rename-old")]);
    assert_eq!(killed.code, 99, "{killed}");
    apply(&[]).assert_code(0);
    wait_for("release 3 to start", WAIT, || {
        rows(&db_data).last().map(String::as_str) == Some("start 3")
    });
    // (The old container may have been started once more while the crash was recovered.)
    assert_eq!(
        rows(&db_data)[..5],
        ["start 1", "start 2", "start 2", "start 2", "start 2"]
    );
    assert_eq!(read(&data.join("cache/hit")), "cached\n");
    assert!(
        !env.stack_dir().join("cache").exists() && !env.stack_dir().join("data/rows").exists(),
        "nothing is written into the repository"
    );
}

#[test]
fn a_link_a_container_plants_in_its_data_folder_is_never_followed_on_the_host() {
    let env = TestEnv::new("i8b-link");
    let remote = GitRemote::new(&env);
    let image = env.registry.push(WORKER, "db:v1");
    let url = remote.url();
    // Where the planted link leads, on the host: it must stay empty.
    let host_dir = tempfile::tempdir().unwrap();
    let target = host_dir.path().to_str().unwrap().to_string();
    let compose = |n: usize| {
        format!(
            "services:\n  db:\n    image: {image}\n    command: [\"sh\", \"-c\", \"rm -rf /data/conf; ln -s {target} /data/conf; exec /bin/start\"]\n    environment: {{N: \"{n}\"}}\n    volumes: [\"./data:/data\"]\n    x-reconciler: {{min_ready: 1s}}\n"
        )
    };
    env.write("data/conf/db.conf", "v1\n");
    env.write_compose(&compose(1));
    remote.commit_and_push("v1");
    env.reconciler(&["apply", "--repo", &url]).assert_code(0);
    let conf = env
        .state
        .path()
        .join("data")
        .join(env.project())
        .join("data/conf");
    wait_for("the container to plant its link", WAIT, || {
        std::fs::symlink_metadata(&conf).is_ok_and(|m| m.is_symlink())
    });

    env.write("data/conf/db.conf", "v2\n");
    env.write("data/conf/new.conf", "new\n");
    remote.commit_and_push("v2");
    let out = env.reconciler(&["apply", "--repo", &url]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("'data/conf' is a symlink in the data folder"),
        "the operator is told:\n{out}"
    );
    let written: Vec<PathBuf> = std::fs::read_dir(host_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(written.is_empty(), "written through the link: {written:?}");
}

#[test]
fn a_link_planted_on_the_way_to_a_bind_source_fails_the_release_and_binds_nothing() {
    // A container that writes the whole stack folder (`.`) replaces `data` by a link to the
    // host; the next revision binds `./data`: the engine would follow that link.
    let env = TestEnv::new("i8b-way");
    let image = env.registry.push(WORKER, "db:v1");
    let host_dir = tempfile::tempdir().unwrap();
    let target = host_dir.path().to_str().unwrap().to_string();
    env.write_compose(&format!(
        "services:\n  app:\n    image: {image}\n    command: [\"sh\", \"-c\", \"ln -s {target} /app/data; exec /bin/start\"]\n    volumes: [\".:/app\"]\n    x-reconciler: {{min_ready: 1s}}\n"
    ));
    env.apply_ok();
    let planted = env
        .state
        .path()
        .join("data")
        .join(env.project())
        .join("data");
    wait_for("the container to plant its link", WAIT, || {
        std::fs::symlink_metadata(&planted).is_ok_and(|m| m.is_symlink())
    });

    env.write_compose(&format!(
        "services:\n  app:\n    image: {image}\n    volumes: [\"./data:/data\"]\n    x-reconciler: {{min_ready: 1s}}\n"
    ));
    let out = env.run("apply", &[]);
    assert_eq!(out.code, 1, "the release fails:\n{out}");
    assert!(out.combined().contains("'data' is a symlink"), "{out}");
    let app = env.container("app");
    let sources: Vec<String> = app.inspect["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Source"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !sources.iter().any(|s| s.starts_with(&target)),
        "{sources:?}"
    );
    assert_eq!(std::fs::read_dir(host_dir.path()).unwrap().count(), 0);
}
