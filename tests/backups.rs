//! `x-reconciler.backup`, `reconciler backups` and `reconciler restore` against the real engine:
//! a volume copied through the archive endpoint before an update, put back byte for byte (modes,
//! owners, links; files added since gone) while `reconciler run` loops on the same state dir.
mod common;
use common::*;
use serde_json::Value;

fn web(image: &str, keep: u32) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    volumes: [\"data:/data\"]\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 30s, backup: [data], backup_keep: {keep}}}\nvolumes:\n  data: {{}}\n"
    )
}

fn exec(env: &TestEnv, script: &str) -> String {
    let id = env.container_id("web");
    docker_ok(&["exec", &id, "sh", "-c", script])
}

/// Every entry of the volume with its mode, owner and kind, each file's md5 and each link's
/// target: equal fingerprints, equal content.
fn fingerprint(env: &TestEnv) -> String {
    exec(
        env,
        r#"cd /data && find . | sort | while read f; do stat -c '%n %a %u:%g %F' "$f"; if [ -L "$f" ]; then readlink "$f"; elif [ -f "$f" ]; then md5sum "$f"; fi; done"#,
    )
}

fn backups(env: &TestEnv) -> Vec<Value> {
    let out = env.reconciler(&["backups", env.project(), "-o", "json"]);
    assert_eq!(out.code, 0, "{out}");
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn an_update_backs_up_the_volume_and_restore_puts_back_exactly_its_content_while_the_loop_runs() {
    let env = TestEnv::new("bk-restore");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, 5));
    env.apply_ok();
    let empty = env.reconciler(&["backups"]);
    assert!(empty.stdout.contains("no backups in"), "{empty}");
    exec(
        &env,
        "cd /data && echo 'hello text' > note.txt && printf '\\000\\001\\377binary' > blob.bin && mkdir -p sub/deeper && echo inner > sub/deeper/inner.txt && ln -s note.txt link && chmod 640 note.txt && chown 1234:5678 blob.bin && chmod 2750 sub",
    );
    let at_backup = fingerprint(&env);
    assert!(
        at_backup.contains("./link 777 0:0 symbolic link\nnote.txt"),
        "{at_backup}"
    );

    env.write_compose(&web(&v2, 5));
    env.apply_ok();
    assert_eq!(env.container("web").image, v2);
    let listed = backups(&env);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["volume"], "data");
    let file = listed[0]["file"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&file).is_file(), "{file}");
    let table = env.reconciler(&["backups"]);
    assert!(
        table.stdout.contains(listed[0]["name"].as_str().unwrap()),
        "{table}"
    );
    assert!(
        containers_with_label(&format!("{PROJECT_LABEL}={}", env.project()))
            .iter()
            .all(|c| !c.name.contains("holder")),
        "the holder is gone"
    );

    // The volume changes after the backup: edited, added, deleted.
    exec(
        &env,
        "cd /data && echo changed >> note.txt && echo new > added.txt && mkdir newdir && rm sub/deeper/inner.txt",
    );
    assert_ne!(fingerprint(&env), at_backup);

    let repo = env.repo.path().to_str().unwrap().to_string();
    let looping = env.spawn_reconciler(&["run", "--repo", &repo, "--interval", "1s"], &[]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let restored = env.reconciler(&["restore", env.project(), "data", "--timeout", "60s"]);
    assert_eq!(restored.code, 0, "{restored}");

    assert_eq!(fingerprint(&env), at_backup);
    let web = env.container("web");
    assert_eq!(
        (
            web.state.as_str(),
            web.health.as_deref(),
            web.image.as_str()
        ),
        ("running", Some("healthy"), v2.as_str())
    );
    let after = backups(&env);
    assert!(
        after
            .iter()
            .any(|b| b["name"].as_str().unwrap().ends_with("-before-restore")),
        "{after:?}"
    );
    let journal = env.journal();
    assert!(
        journal
            .iter()
            .any(|e| e["action"] == "restore" && e["result"] == "ok"),
        "{journal:?}"
    );
    let status = env.reconciler(&["status", "-o", "json"]);
    assert!(
        status.stdout.contains("\"sync\": \"Synced\""),
        "resumed: {status}"
    );
    // The loop kept going and left the restored service as it is.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(env.container("web").id, web.id);
    looping.signal_and_wait("TERM", WAIT);
}

#[test]
fn a_backup_that_cannot_be_written_stops_the_update_and_retention_keeps_the_newest() {
    let env = TestEnv::new("bk-fail");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, 2));
    env.apply_ok();
    let before = env.container("web");
    let blocker = env.state.path().join("backups");
    std::fs::write(&blocker, "not a folder").unwrap();

    env.write_compose(&web(&v2, 2));
    let out = env.run("apply", &[]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.combined().contains("back"), "{out}");
    let now = env.container("web");
    assert_eq!(
        (now.id.as_str(), now.image.as_str(), now.state.as_str()),
        (before.id.as_str(), v1.as_str(), "running")
    );
    assert_eq!(http_get_web(&now), "v1");

    std::fs::remove_file(&blocker).unwrap();
    for image in [&v2, &v1, &v2] {
        env.write_compose(&web(image, 2));
        env.apply_ok();
        assert_eq!(&env.container("web").image, image);
    }
    assert_eq!(backups(&env).len(), 2);
    assert!(docker(&["volume", "inspect", &format!("{}_data", env.project())]).success());
}

/// What the web container serves, asked from inside it.
fn http_get_web(c: &Container) -> String {
    docker_ok(&["exec", &c.id, "wget", "-q", "-O", "-", "http://127.0.0.1/"])
        .trim()
        .to_string()
}

#[test]
fn restore_takes_any_volume_key_a_backup_can_have_and_refuses_a_path() {
    let env = TestEnv::new("bk-keys");
    // `Db.data` is a valid Compose volume key, so it can be backed up: restore must not refuse it
    // as a bad name (there is no backup of it yet, which is what it must say).
    let out = env.reconciler(&["restore", env.project(), "Db.data"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.combined().contains("no backup"), "{out}");
    let out = env.reconciler(&["restore", env.project(), "../data"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.combined().contains("not a valid volume name"), "{out}");
}

#[test]
fn an_interrupted_restore_finishes_and_resumes_the_stack_instead_of_leaving_it_suspended() {
    let env = TestEnv::new("bk-int");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    env.write_compose(&web(&v1, 5));
    env.apply_ok();
    env.write_compose(&web(&v2, 5));
    env.apply_ok();
    assert_eq!(backups(&env).len(), 1);
    // A pass holds the stack's lock, so restore waits with the stack already suspended.
    let locks = env.state.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = locks.join(format!("{}.lock", env.project()));
    let holder = std::fs::File::create(&lock).unwrap();
    holder.lock().unwrap();
    let suspended = env
        .state
        .path()
        .join("control/suspended")
        .join(env.project());
    let restore = env.spawn_reconciler(
        &["restore", env.project(), "data", "--timeout", "120s"],
        &[],
    );
    wait_for(
        "the stack suspended by restore",
        std::time::Duration::from_secs(30),
        || suspended.exists(),
    );
    let sent = std::process::Command::new("kill")
        .args(["-INT", &restore.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    drop(holder);

    let out = restore.wait(std::time::Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out}");
    assert!(!suspended.exists(), "the stack stays suspended: {out}");
    assert_eq!(env.container("web").state, "running");
}

/// Docker reports a paused container unhealthy until its next health check, a probe interval
/// later: the update waits for the database to be healthy again, so nothing that depends on it
/// is turned away after the backup.
#[test]
fn a_service_paused_for_a_backup_is_healthy_again_when_the_update_is_done() {
    let env = TestEnv::new("bk-pause");
    let (v1, v2) = (
        env.registry.push(WEB_V1, "web:v1"),
        env.registry.push(WEB_V2, "web:v2"),
    );
    let stack = |web: &str| {
        format!(
            "services:\n  db:\n    image: {v1}\n    volumes: [\"data:/data\"]\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/health\"]\n      interval: 10s\n      timeout: 2s\n    x-reconciler: {{health_timeout: 40s}}\n  web:\n    image: {web}\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 40s, backup: [data]}}\nvolumes:\n  data: {{}}\n"
        )
    };
    env.write_compose(&stack(&v1));
    env.apply_ok();
    let db = env.container("db");
    assert_eq!(db.health.as_deref(), Some("healthy"));

    env.write_compose(&stack(&v2));
    env.apply_ok();

    assert_eq!(backups(&env).len(), 1);
    assert_eq!(env.container("web").image, v2);
    let db_after = env.container("db");
    assert_eq!(
        (db_after.id.as_str(), db_after.health.as_deref()),
        (db.id.as_str(), Some("healthy")),
        "the database paused for the backup is healthy again"
    );
}
