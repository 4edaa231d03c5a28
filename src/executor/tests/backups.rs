//! `x-reconciler.backup`: volumes copied before a container is replaced, and only then.

use super::*;
use crate::state::runbook::RunbookCounter;

/// `db` keeps its data in `data`, backed up before it is replaced; `reader` mounts it
/// read-only, `writer` writable.
fn shop(image: &str, replicas: u32, keep: u32) -> String {
    format!(
        "services:\n  db:\n    image: {image}\n    volumes: [data:/data]\n    deploy: {{replicas: {replicas}}}\n    x-reconciler: {{health_timeout: 30s, backup: [data], backup_keep: {keep}}}\n  writer:\n    image: {WORKER_V1}\n    volumes: [data:/shared]\n  reader:\n    image: {WORKER_V1}\n    volumes: [data:/shared:ro]\nvolumes:\n  data: {{}}\n"
    )
}

async fn running_shop(host: &Host, replicas: u32, keep: u32) {
    host.engine.publish(DB_V1, healthy_after(2));
    host.engine.publish(WORKER_V1, Behaviour::NoHealthcheck);
    host.pass(&host.desired("shop", &shop(DB_V1, replicas, keep)))
        .await
        .unwrap();
    host.engine
        .set_volume_content("shop_data", b"the data at v1");
}

fn holders(host: &Host) -> Vec<String> {
    host.engine
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("create-holder"))
        .collect()
}

fn nothing_paused_and_no_holder(host: &Host) {
    let containers = host.engine.containers();
    assert!(containers.iter().all(|c| !c.paused), "{containers:#?}");
    assert!(
        containers.iter().all(|c| !c.name.contains("holder")),
        "{containers:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_update_copies_the_volume_first_with_its_writers_paused_then_replaces_the_container() {
    let host = Host::new();
    running_shop(&host, 1, 5).await;
    assert!(
        host.state_dir().backups(None).is_empty(),
        "a create takes none"
    );
    let (db, writer) = (host.id("shop-db-1"), host.id("shop-writer-1"));
    host.engine.publish(DB_V2, healthy_after(2));
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &shop(DB_V2, 1, 5)))
        .await
        .unwrap();

    let calls = host.engine.calls();
    let holder = "create-holder shop-data-reconciler-holder".to_string();
    let wanted: Vec<String> = vec![
        holder.clone(),
        format!("stop {db}"),
        "create shop-db-1".to_string(),
    ];
    let seen: Vec<String> = calls
        .iter()
        .filter(|c| wanted.contains(c))
        .cloned()
        .collect();
    assert_eq!(seen, wanted, "{calls:#?}");
    let paused: Vec<&String> = calls.iter().filter(|c| c.starts_with("pause")).collect();
    assert_eq!(paused.len(), 2, "db and writer, not reader: {calls:#?}");
    assert!(calls.contains(&format!("pause {db}")) && calls.contains(&format!("pause {writer}")));
    assert!(
        calls.contains(&format!("unpause {db}")) && calls.contains(&format!("unpause {writer}"))
    );
    nothing_paused_and_no_holder(&host);

    let backups = host.state_dir().backups(Some("shop"));
    assert_eq!(backups.len(), 1, "{backups:#?}");
    assert_eq!(backups[0].volume, "data");
    let mut copied = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&backups[0].file).unwrap()),
        &mut copied,
    )
    .unwrap();
    assert_eq!(copied, b"the data at v1");
    assert_eq!(
        host.state_dir().counters()[RunbookCounter::BackupOk.key()],
        1
    );
    assert!(host.state_dir().activities().is_empty());
    assert_eq!(host.engine.container("shop-db-1").unwrap().image, DB_V2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_backup_leaves_the_old_container_untouched_and_the_next_pass_tries_again() {
    let host = Host::new();
    running_shop(&host, 1, 5).await;
    let db = host.id("shop-db-1");
    host.engine.publish(DB_V2, healthy_after(2));
    host.engine.fail_next(
        "download",
        "",
        EngineError::Call {
            call: "download archive",
            target: "holder".into(),
            message: "no space left on device".into(),
        },
    );
    host.engine.clear_calls();
    let desired = host.desired("shop", &shop(DB_V2, 1, 5));

    let outcome = host.pass(&desired).await.unwrap();

    let calls = host.engine.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("stop") || c == "create shop-db-1"),
        "{calls:#?}"
    );
    let now = host.engine.container("shop-db-1").unwrap();
    assert_eq!(
        (now.id.as_str(), now.image.as_str(), now.state.as_str()),
        (db.as_str(), DB_V1, "running")
    );
    nothing_paused_and_no_holder(&host);
    assert!(host.state_dir().backups(None).is_empty());
    let leftovers = std::fs::read_dir(host.state_dir().backups_dir().join("shop/data"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".engine")
        })
        .count();
    assert_eq!(leftovers, 0, "no partial file");
    let skipped = outcome.failed();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].service, "db");
    assert!(
        format!("{:?}", skipped[0].result).contains("no space left"),
        "{skipped:?}"
    );
    assert_eq!(
        host.state_dir().counters()[RunbookCounter::BackupFailed.key()],
        1
    );
    assert!(
        host.state().failure("shop", "db").is_none(),
        "not a failed release"
    );

    host.pass(&desired).await.unwrap();
    assert_eq!(host.engine.container("shop-db-1").unwrap().image, DB_V2);
    assert_eq!(host.state_dir().backups(None).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_backup_on_create_start_or_scale_and_one_per_rolled_service_of_replicas() {
    let host = Host::new();
    running_shop(&host, 2, 5).await;
    host.engine
        .stop_container(&host.id("shop-db-1"), None)
        .await
        .unwrap();
    host.pass(&host.desired("shop", &shop(DB_V1, 2, 5)))
        .await
        .unwrap();
    host.pass(&host.desired("shop", &shop(DB_V1, 3, 5)))
        .await
        .unwrap();
    assert_eq!(
        host.names()
            .iter()
            .filter(|n| n.starts_with("shop-db-"))
            .count(),
        3
    );
    assert!(holders(&host).is_empty(), "{:#?}", host.engine.calls());
    assert!(host.state_dir().backups(None).is_empty());

    host.engine.publish(DB_V2, healthy_after(2));
    host.engine.clear_calls();
    host.pass(&host.desired("shop", &shop(DB_V2, 3, 5)))
        .await
        .unwrap();
    assert_eq!(holders(&host).len(), 1, "{:#?}", host.engine.calls());
    assert_eq!(host.state_dir().backups(None).len(), 1);
    for n in 1..=3 {
        assert_eq!(
            host.engine
                .container(&format!("shop-db-{n}"))
                .unwrap()
                .image,
            DB_V2
        );
    }
    nothing_paused_and_no_holder(&host);
}

#[tokio::test(start_paused = true)]
async fn only_the_newest_backup_keep_backups_are_kept() {
    let host = Host::new();
    running_shop(&host, 1, 2).await;
    for image in [DB_V2, DB_V3, DB_V1] {
        host.engine.publish(image, healthy_after(2));
        // Backups are named by the wall clock's milliseconds.
        std::thread::sleep(Duration::from_millis(5));
        host.pass(&host.desired("shop", &shop(image, 1, 2)))
            .await
            .unwrap();
        assert_eq!(host.engine.container("shop-db-1").unwrap().image, image);
    }
    assert_eq!(host.state_dir().backups(None).len(), 2);
    assert_eq!(
        host.state_dir().counters()[RunbookCounter::BackupOk.key()],
        3
    );
    assert!(
        host.engine.volumes().contains_key("shop_data"),
        "a volume is never deleted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pause_the_engine_refuses_ends_the_backup_with_everything_unpaused_and_no_holder() {
    let host = Host::new();
    running_shop(&host, 1, 5).await;
    let writer = host.id("shop-writer-1");
    host.engine.publish(DB_V2, healthy_after(2));
    host.engine.fail_next(
        "pause",
        &writer,
        EngineError::Call {
            call: "pause container",
            target: writer.clone(),
            message: "cgroup refused".into(),
        },
    );
    host.pass(&host.desired("shop", &shop(DB_V2, 1, 5)))
        .await
        .unwrap();
    nothing_paused_and_no_holder(&host);
    assert_eq!(host.engine.container("shop-db-1").unwrap().image, DB_V1);
    assert!(host.state_dir().backups(None).is_empty());
}

async fn restore(host: &Host) -> Result<super::super::restore::Restored, String> {
    let request = super::super::restore::RestoreRequest {
        stack: "shop",
        volume: "data",
        backup: None,
        timeout: Duration::from_secs(60),
    };
    super::super::restore::restore(&host.engine, &host.state_dir(), &request)
        .await
        .map_err(|e| e.0)
}

#[tokio::test(start_paused = true)]
async fn restore_saves_the_current_content_empties_the_folder_writes_the_backup_and_starts_the_users(
) {
    let host = Host::new();
    running_shop(&host, 1, 5).await;
    host.engine.publish(DB_V2, healthy_after(2));
    host.pass(&host.desired("shop", &shop(DB_V2, 1, 5)))
        .await
        .unwrap();
    host.engine
        .set_volume_content("shop_data", b"changed since");
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(folder.path().join("sub/deeper")).unwrap();
    std::fs::write(folder.path().join("added.txt"), b"new").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), b"not the volume's").unwrap();
    std::os::unix::fs::symlink(outside.path(), folder.path().join("link")).unwrap();
    host.engine.set_volume_path("shop_data", folder.path());
    host.engine.clear_calls();

    let restored = restore(&host).await.unwrap();

    assert!(
        matches!(restored, super::super::restore::Restored::Healthy { .. }),
        "{restored:?}"
    );
    assert_eq!(host.engine.volume_content("shop_data"), b"the data at v1");
    assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 0);
    assert!(
        outside.path().join("keep.txt").exists(),
        "a link is removed, never followed"
    );
    let backups = host.state_dir().backups(None);
    let saved: Vec<_> = backups.iter().filter(|b| b.before_restore()).collect();
    assert_eq!(saved.len(), 1, "{backups:#?}");
    let mut copied = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&saved[0].file).unwrap()),
        &mut copied,
    )
    .unwrap();
    assert_eq!(copied, b"changed since");
    for name in ["shop-db-1", "shop-writer-1", "shop-reader-1"] {
        assert_eq!(
            host.engine.container(name).unwrap().state,
            "running",
            "{name}"
        );
    }
    let calls = host.engine.calls();
    assert!(calls.iter().any(|c| c.starts_with("stop")), "{calls:#?}");
    nothing_paused_and_no_holder(&host);
    assert!(host.state_dir().suspended().is_empty(), "resumed");
    assert!(host.state_dir().activities().is_empty());
    assert_eq!(
        host.state_dir().counters()[RunbookCounter::RestoreOk.key()],
        1
    );
    let restores: Vec<_> = host
        .journal()
        .into_iter()
        .filter(|e| e.action.as_str() == "restore")
        .collect();
    assert_eq!(
        restores.len(),
        3,
        "one per service that mounts it: {restores:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn restore_refuses_a_volume_it_cannot_empty_on_this_host_and_changes_nothing() {
    let host = Host::new();
    running_shop(&host, 1, 5).await;
    host.engine.publish(DB_V2, healthy_after(2));
    host.pass(&host.desired("shop", &shop(DB_V2, 1, 5)))
        .await
        .unwrap();
    host.engine
        .set_volume_content("shop_data", b"changed since");
    host.engine.clear_calls();

    let refused = restore(&host).await.unwrap_err();

    assert!(refused.contains("not a plain local volume"), "{refused}");
    assert!(touches(&host.engine.timed_calls()).is_empty());
    assert_eq!(host.engine.volume_content("shop_data"), b"changed since");
    assert!(host.state_dir().suspended().is_empty());
    assert_eq!(
        host.state_dir().counters()[RunbookCounter::RestoreFailed.key()],
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_pass_leaves_a_stack_alone_while_a_restore_holds_it_and_updates_it_after() {
    let host = Host::new();
    running_shop(&host, 1, 5).await;
    let db = host.id("shop-db-1");
    host.engine.publish(DB_V2, healthy_after(2));
    host.engine.stop_container(&db, None).await.unwrap();
    let desired = host.desired("shop", &shop(DB_V2, 1, 5));
    let held = host.state_dir().try_lock_stack("shop").unwrap().unwrap();
    host.engine.clear_calls();

    host.pass(&desired).await.unwrap();

    assert!(
        touches(&host.engine.timed_calls()).is_empty(),
        "{:#?}",
        host.engine.calls()
    );
    assert_eq!(host.engine.container("shop-db-1").unwrap().state, "exited");
    drop(held);
    host.pass(&desired).await.unwrap();
    let now = host.engine.container("shop-db-1").unwrap();
    assert_eq!((now.image.as_str(), now.state.as_str()), (DB_V2, "running"));
}

#[tokio::test(start_paused = true)]
async fn writers_a_dead_process_left_paused_during_a_backup_are_unpaused_by_the_next_pass() {
    use crate::state::runbook::{Activity, ActivityKind};
    let host = Host::new();
    running_shop(&host, 1, 5).await;
    let (db, writer) = (host.id("shop-db-1"), host.id("shop-writer-1"));
    // What a reconciler killed while copying `data` leaves: its writers paused, its activity.
    host.engine.pause_container(&db).await.unwrap();
    host.engine.pause_container(&writer).await.unwrap();
    let left = Activity {
        pid: std::process::id() + 1,
        ..Activity::now(ActivityKind::BackingUp, "data")
    };
    host.state_dir()
        .set_activity("shop", "db", Some(&left))
        .unwrap();

    host.pass(&host.desired("shop", &shop(DB_V1, 1, 5)))
        .await
        .unwrap();

    nothing_paused_and_no_holder(&host);
    assert!(host.state_dir().activity_left("shop", "db").is_none());
}
