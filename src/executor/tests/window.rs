//! `deploy.update_config.monitor`: a new container that fails after it proved ready, inside
//! the window, gives its place back to the old one; the `http_probe` must answer 2xx; the
//! free-disk check comes before anything is pulled or touched.

use super::*;
use crate::engine::fake::Turn;
use crate::state::runbook::{Activity, ActivityKind};
use crate::state::JournalResult;

/// Healthy after 1 s; `then` once it has run 13.1 s, which is 12 s into its window.
fn fails_in_window(then: Turn) -> Behaviour {
    Behaviour::HealthyThen {
        healthy_after: Duration::from_secs(1),
        after: Duration::from_millis(13_100),
        then,
    }
}

/// A service watched for `monitor` after it is ready, in `order`.
fn watched(image: &str, order: &str, monitor: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:8080:80\"]\n    deploy: {{update_config: {{order: {order}, monitor: {monitor}}}}}\n    x-reconciler: {{health_timeout: 30s}}\n"
    )
}

fn last_reason(host: &Host) -> String {
    let journal = host.journal();
    let last = journal.last().expect("a journal entry");
    assert_eq!(last.result, JournalResult::Failed, "{last:?}");
    last.reason.clone().unwrap_or_default()
}

fn window_failures(host: &Host) -> u64 {
    host.state_dir()
        .counters()
        .get("window_failure")
        .copied()
        .unwrap_or(0)
}

/// v1 runs as shop-web-1; returns its id.
async fn running_v1(host: &Host, order: &str) -> String {
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &watched(WEB_V1, order, "30s")))
        .await
        .unwrap();
    host.id("shop-web-1")
}

#[tokio::test(start_paused = true)]
async fn stop_first_an_oom_kill_inside_the_window_brings_the_same_old_container_back() {
    let host = Host::new();
    let old = running_v1(&host, "stop-first").await;
    host.engine
        .publish(WEB_V2, fails_in_window(Turn::OomKilled));

    let outcome = host
        .pass(&host.desired("shop", &watched(WEB_V2, "stop-first", "30s")))
        .await
        .unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(
        last_reason(&host),
        "exited with code 137 (OOM killed) 12s into the 30s monitor window"
    );
    let world = host.world();
    assert_eq!(world.len(), 1, "{world:?}");
    assert_eq!(
        world[0],
        ("shop-web-1".into(), old, WEB_V1.into(), "running".into())
    );
    assert_eq!(window_failures(&host), 1);
    assert!(host.state_dir().activities().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stop_first_the_old_container_waits_stopped_under_its_backup_name_during_the_window() {
    let host = Host::new();
    let old = running_v1(&host, "stop-first").await;
    host.engine.publish(WEB_V2, healthy_after(1));
    let desired = host.desired("shop", &watched(WEB_V2, "stop-first", "30s"));

    let look = async {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let backup = host
            .engine
            .container("shop-web-1-reconciler-old")
            .map(|c| (c.id, c.state));
        let activities = host.state_dir().activities();
        (backup, activities)
    };
    let (outcome, (backup, activities)) = tokio::join!(host.pass(&desired), look);

    assert!(outcome.unwrap().failed().is_empty());
    assert_eq!(backup, Some((old.clone(), "exited".to_string())));
    assert_eq!(activities.len(), 1, "{activities:?}");
    let watching = &activities[0];
    assert_eq!(
        (watching.stack.as_str(), watching.service.as_str()),
        ("shop", "web")
    );
    assert_eq!(watching.activity.kind, ActivityKind::Watching);
    assert_eq!(watching.activity.detail, "shop-web-1");
    assert!(watching.activity.until.is_some(), "{watching:?}");
    // The window passed: the old container is gone, nothing is watched, nothing counted.
    assert!(host.engine.container("shop-web-1-reconciler-old").is_none());
    assert_eq!(host.engine.container("shop-web-1").unwrap().image, WEB_V2);
    assert!(host.state_dir().activities().is_empty());
    assert_eq!(window_failures(&host), 0);
}

#[tokio::test(start_paused = true)]
async fn start_first_a_restart_inside_the_window_removes_the_new_one_and_the_old_never_stopped() {
    let host = Host::new();
    let old = running_v1(&host, "start-first").await;
    host.engine.publish(WEB_V2, fails_in_window(Turn::Restarts));
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &watched(WEB_V2, "start-first", "30s")))
        .await
        .unwrap();

    assert_eq!(
        last_reason(&host),
        "restarted 12s into the 30s monitor window"
    );
    let touched = touches(&host.engine.timed_calls());
    assert!(!touched.iter().any(|c| c.contains(&old)), "{touched:?}");
    assert_eq!(
        host.world(),
        [("shop-web-1".into(), old, WEB_V1.into(), "running".into())]
    );
    assert_eq!(window_failures(&host), 1);
    assert!(host.state_dir().activities().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stop_first_turning_unhealthy_or_exiting_inside_the_window_restores_the_old_container() {
    for (turn, said) in [
        (Turn::TurnsUnhealthy, "turned unhealthy"),
        (Turn::Exits { code: 3 }, "exited with code 3"),
    ] {
        let host = Host::new();
        let old = running_v1(&host, "stop-first").await;
        host.engine.publish(WEB_V2, fails_in_window(turn));

        host.pass(&host.desired("shop", &watched(WEB_V2, "stop-first", "30s")))
            .await
            .unwrap();

        assert_eq!(
            last_reason(&host),
            format!("{said} 12s into the 30s monitor window")
        );
        assert_eq!(
            host.world(),
            [("shop-web-1".into(), old, WEB_V1.into(), "running".into())]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_window_is_not_rolled_back() {
    let host = Host::new();
    running_v1(&host, "stop-first").await;
    // Exits 20 s after the 10 s window ended.
    host.engine.publish(
        WEB_V2,
        Behaviour::HealthyThen {
            healthy_after: Duration::from_secs(1),
            after: Duration::from_secs(31),
            then: Turn::Exits { code: 1 },
        },
    );

    let outcome = host
        .pass(&host.desired("shop", &watched(WEB_V2, "stop-first", "10s")))
        .await
        .unwrap();

    assert!(outcome.failed().is_empty(), "{outcome:?}");
    assert_eq!(host.journal().last().unwrap().result, JournalResult::Ok);
    assert!(host.engine.container("shop-web-1-reconciler-old").is_none());
    assert_eq!(host.engine.container("shop-web-1").unwrap().image, WEB_V2);
    assert_eq!(window_failures(&host), 0);
}

#[tokio::test(start_paused = true)]
async fn a_first_create_that_fails_in_its_window_is_removed_and_the_release_failed() {
    let host = Host::new();
    host.engine
        .publish(WEB_V1, fails_in_window(Turn::Exits { code: 1 }));

    let outcome = host
        .pass(&host.desired("shop", &watched(WEB_V1, "stop-first", "30s")))
        .await
        .unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(
        last_reason(&host),
        "exited with code 1 12s into the 30s monitor window"
    );
    assert!(host.names().is_empty(), "{:?}", host.names());
    assert_eq!(window_failures(&host), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_fails_in_its_window_is_restored_and_named() {
    let host = Host::new();
    let farm = |image: &str| {
        format!(
            "services:\n  web:\n    image: {image}\n    deploy:\n      replicas: 2\n      update_config: {{order: stop-first, monitor: 30s}}\n"
        )
    };
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1)))
        .await
        .unwrap();
    let olds = [host.id("shop-web-1"), host.id("shop-web-2")];
    host.engine
        .publish(WEB_V2, fails_in_window(Turn::OomKilled));

    host.pass(&host.desired("shop", &farm(WEB_V2)))
        .await
        .unwrap();

    assert_eq!(
        last_reason(&host),
        "shop-web-1: exited with code 137 (OOM killed) 12s into the 30s monitor window"
    );
    assert_eq!(
        host.world(),
        [
            (
                "shop-web-1".into(),
                olds[0].clone(),
                WEB_V1.into(),
                "running".into()
            ),
            (
                "shop-web-2".into(),
                olds[1].clone(),
                WEB_V1.into(),
                "running".into()
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_inside_the_window_brings_the_old_container_back_at_the_next_pass() {
    let host = Host::new();
    let old = running_v1(&host, "stop-first").await;
    host.engine.publish(WEB_V2, healthy_after(1));
    let desired = host.desired("shop", &watched(WEB_V2, "stop-first", "30s"));

    // The process dies 10 s into the window: the pass goes no further, and its Watching
    // activity stays behind with its (now dead) pid.
    tokio::select! {
        _ = host.pass(&desired) => panic!("the pass ended before the crash"),
        () = tokio::time::sleep(Duration::from_secs(11)) => {}
    }
    let unproven = host.id("shop-web-1");
    assert_eq!(host.id("shop-web-1-reconciler-old"), old);
    let left = Activity {
        pid: i32::MAX as u32,
        ..Activity::now(ActivityKind::Watching, "shop-web-1")
    };
    host.state_dir()
        .set_activity("shop", "web", Some(&left))
        .unwrap();
    host.engine.clear_calls();

    let outcome = host.pass(&desired).await.unwrap();

    // Recovery removed the unproven container and put the old one back before anything else;
    // the update was then tried again, whole window included.
    let calls: Vec<String> = host.engine.calls();
    assert_in_order(
        &calls,
        &[
            format!("remove {unproven}"),
            format!("rename {old} shop-web-1"),
            format!("start {old}"),
            "create shop-web-1".to_string(),
        ],
    );
    assert!(outcome.failed().is_empty(), "{outcome:?}");
    let world = host.world();
    assert_eq!(world.len(), 1, "{world:?}");
    assert_eq!(world[0].2, WEB_V2);
    assert!(host.state_dir().activity_left("shop", "web").is_none());
}

#[tokio::test(start_paused = true)]
async fn without_a_window_left_behind_a_backup_beside_a_healthy_new_container_is_removed() {
    let host = Host::new();
    let old = running_v1(&host, "stop-first").await;
    host.engine.publish(WEB_V2, healthy_after(1));
    let desired = host.desired("shop", &watched(WEB_V2, "stop-first", "30s"));
    tokio::select! {
        _ = host.pass(&desired) => panic!("the pass ended before the crash"),
        () = tokio::time::sleep(Duration::from_secs(11)) => {}
    }
    let new = host.id("shop-web-1");
    host.engine.clear_calls();

    host.pass(&desired).await.unwrap();

    assert_eq!(
        host.engine
            .calls()
            .iter()
            .filter(|c| touches_container_str(c))
            .cloned()
            .collect::<Vec<_>>(),
        [format!("remove {old}")]
    );
    assert_eq!(host.id("shop-web-1"), new);
}

fn touches_container_str(what: &str) -> bool {
    TOUCHES.iter().any(|t| what.split(' ').next() == Some(*t))
}

// ---- the http probe (real sockets, so the real clock: a few seconds at most) ---------------

/// A server on a free loopback port answering 500 to the first `failures` requests, then 200
/// (never, with `usize::MAX`).
async fn probe_server(failures: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut req = [0u8; 512];
            let _ = conn.read(&mut req).await;
            let answer: &[u8] = if n < failures {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            };
            n += 1;
            let _ = conn.write_all(answer).await;
        }
    });
    port
}

fn probed(image: &str, port: u16) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:80\"]\n    x-reconciler: {{health_timeout: 3s, http_probe: \"http://127.0.0.1:{port}/health\"}}\n"
    )
}

#[tokio::test]
async fn a_probe_that_answers_500_then_200_lets_the_new_container_through() {
    let host = Host::new();
    let port = probe_server(2).await;
    host.engine.publish(WEB_V1, healthy_after(0));
    host.engine.publish(WEB_V2, healthy_after(0));
    host.pass(&host.desired("shop", &probed(WEB_V1, port)))
        .await
        .unwrap();

    let outcome = host
        .pass(&host.desired("shop", &probed(WEB_V2, port)))
        .await
        .unwrap();

    assert!(outcome.failed().is_empty(), "{outcome:?}");
    assert_eq!(host.engine.container("shop-web-1").unwrap().image, WEB_V2);
}

#[tokio::test]
async fn a_probe_that_keeps_answering_500_fails_the_release_and_the_old_container_serves() {
    let host = Host::new();
    let ok_port = probe_server(0).await;
    host.engine.publish(WEB_V1, healthy_after(0));
    host.engine.publish(WEB_V2, healthy_after(0));
    host.pass(&host.desired("shop", &probed(WEB_V1, ok_port)))
        .await
        .unwrap();
    let old = host.id("shop-web-1");
    let bad_port = probe_server(usize::MAX).await;

    let outcome = host
        .pass(&host.desired("shop", &probed(WEB_V2, bad_port)))
        .await
        .unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(
        last_reason(&host),
        format!(
            "http probe http://127.0.0.1:{bad_port}/health failed: answered 500 Internal Server Error"
        )
    );
    assert_eq!(
        host.world(),
        [("shop-web-1".into(), old, WEB_V1.into(), "running".into())]
    );
}

// ---- free disk ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn too_little_free_disk_refuses_the_update_before_any_pull_and_names_the_data_root() {
    let host = Host::new();
    let old = running_v1(&host, "stop-first").await;
    host.engine.publish(WEB_V2, healthy_after(1));
    host.engine.set_free_disk(Some(100 << 20));
    host.engine.clear_calls();
    let settings_min = 512u64 << 20;

    let desired = host.desired("shop", &watched(WEB_V2, "stop-first", "30s"));
    let result = pass_with_min_free_disk(&host, &desired, settings_min).await;

    let error = result.unwrap_err();
    assert!(matches!(error, ExecError::DiskFull { .. }), "{error:?}");
    assert!(!error.is_transient());
    let said = error.to_string();
    for part in [
        "stack shop is not updated, nothing was changed",
        "only 100 MiB free on /var/lib/docker",
        "the Docker Engine's data root",
        "--min-free-disk asks for at least 512 MiB",
        "tried again at the next pass",
    ] {
        assert!(said.contains(part), "{part:?} not in {said}");
    }
    let calls = host.engine.calls();
    assert!(!calls.iter().any(|c| c.starts_with("pull")), "{calls:?}");
    assert!(touches(&host.engine.timed_calls()).is_empty(), "{calls:?}");
    assert_eq!(
        host.world(),
        [("shop-web-1".into(), old, WEB_V1.into(), "running".into())]
    );
    // Nothing was recorded as failed: with space freed, the next pass updates.
    host.engine.set_free_disk(Some(1 << 30));
    pass_with_min_free_disk(&host, &desired, settings_min)
        .await
        .unwrap();
    assert_eq!(host.engine.container("shop-web-1").unwrap().image, WEB_V2);
}

async fn pass_with_min_free_disk(
    host: &Host,
    desired: &Desired,
    min_free_disk: u64,
) -> Result<Outcome, ExecError> {
    let limits = Limits {
        min_free_disk,
        ..Default::default()
    };
    pass_with(&host.engine, desired, &host.state_dir(), &limits).await
}

#[tokio::test(start_paused = true)]
async fn start_first_a_crash_inside_the_window_removes_the_unproven_candidate_and_the_old_serves_on(
) {
    let host = Host::new();
    let old = running_v1(&host, "start-first").await;
    host.engine.publish(WEB_V2, healthy_after(1));
    let desired = host.desired("shop", &watched(WEB_V2, "start-first", "30s"));
    tokio::select! {
        _ = host.pass(&desired) => panic!("the pass ended before the crash"),
        () = tokio::time::sleep(Duration::from_secs(11)) => {}
    }
    let candidate = host.id("shop-web-1-reconciler-new");
    let left = Activity {
        pid: i32::MAX as u32,
        ..Activity::now(ActivityKind::Watching, "shop-web-1-reconciler-new")
    };
    host.state_dir()
        .set_activity("shop", "web", Some(&left))
        .unwrap();
    host.engine.clear_calls();

    host.pass(&desired).await.unwrap();

    let calls = host.engine.calls();
    assert_in_order(
        &calls,
        &[
            format!("remove {candidate}"),
            "create shop-web-1-reconciler-new".to_string(),
            format!("stop {old}"),
        ],
    );
    assert!(host.state_dir().activity_left("shop", "web").is_none());
    assert_eq!(host.engine.container("shop-web-1").unwrap().image, WEB_V2);
}
