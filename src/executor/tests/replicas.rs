//! Services of several containers: created, rolled, scaled and recovered one replica at a time,
//! each with the one-container procedure.

use super::*;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// `replicas` containers of `image`, updated in `order`.
fn farm(image: &str, replicas: u32, order: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    deploy:\n      replicas: {replicas}\n      update_config: {{order: {order}}}\n    x-reconciler: {{health_timeout: 30s}}\n"
    )
}

/// Ids of shop-web-1.., in number order.
fn replica_ids(host: &Host, count: u32) -> Vec<String> {
    (1..=count)
        .map(|n| host.id(&format!("shop-web-{n}")))
        .collect()
}

/// The fewest containers serving at any moment the calls stopped or removed one: the
/// `serving` ones at first, and each container started later once it ran `ready_after`.
fn fewest_serving(calls: &[Call], serving: &[String], ready_after: Duration) -> usize {
    let start = calls.first().map_or_else(Instant::now, |c| c.started);
    let mut up: BTreeMap<String, Instant> = serving.iter().map(|id| (id.clone(), start)).collect();
    let mut fewest = up.len();
    for call in calls {
        match call.verb() {
            "start" => {
                up.insert(call.target().to_string(), call.started + ready_after);
            }
            "stop" | "remove" => {
                up.remove(call.target());
                let now = up.values().filter(|ready| **ready <= call.started).count();
                fewest = fewest.min(now);
            }
            _ => {}
        }
    }
    fewest
}

#[tokio::test(start_paused = true)]
async fn three_replicas_are_created_one_after_another_numbered_and_labelled_as_compose_does() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(2));

    let outcome = host
        .pass(&host.desired("shop", &farm(WEB_V1, 3, "start-first")))
        .await
        .unwrap();

    assert!(outcome.failed().is_empty(), "{outcome:?}");
    assert_eq!(host.names(), ["shop-web-1", "shop-web-2", "shop-web-3"]);
    for (n, c) in host.engine.containers().iter().enumerate() {
        let number = (n + 1).to_string();
        assert_eq!(c.labels.get(labels::NUMBER), Some(&number), "{c:?}");
        assert_eq!(
            c.labels.get(labels::SERVICE).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            c.labels.get(labels::PROJECT).map(String::as_str),
            Some("shop")
        );
        assert_eq!((c.state.as_str(), c.image.as_str()), ("running", WEB_V1));
    }
    let calls = host.engine.timed_calls();
    let created = |n: u32| call(&calls, &format!("create shop-web-{n}")).started;
    assert!(
        created(2) >= created(1) + Duration::from_secs(2),
        "2 waited for 1 to be proven"
    );
    assert!(
        created(3) >= created(2) + Duration::from_secs(2),
        "3 waited for 2 to be proven"
    );
    let last = host.journal().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.result.as_str()),
        ("create", "ok")
    );
}

#[tokio::test(start_paused = true)]
async fn a_start_first_update_rolls_one_replica_at_a_time_and_all_of_them_keep_serving() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "start-first")))
        .await
        .unwrap();
    let old = replica_ids(&host, 3);
    host.engine.publish(WEB_V2, healthy_after(3));
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &farm(WEB_V2, 3, "start-first")))
        .await
        .unwrap();

    let calls = host.engine.timed_calls();
    let mut expected = Vec::new();
    for (i, old) in old.iter().enumerate() {
        let candidate = format!("shop-web-{}-reconciler-new", i + 1);
        let new = started_after_create(&calls, &candidate);
        expected.extend([
            format!("create {candidate}"),
            format!("start {new}"),
            format!("stop {old}"),
            format!("remove {old}"),
            format!("rename {new} shop-web-{}", i + 1),
        ]);
    }
    assert_eq!(touches(&calls), expected);
    // Start-first: a replica goes only once its replacement is proven, so never fewer than
    // N-1 serve (here all N do).
    let fewest = fewest_serving(&calls, &old, Duration::from_secs(3));
    assert!(
        fewest >= 3,
        "only {fewest} of 3 replicas served at one point"
    );
    assert!(host
        .engine
        .containers()
        .iter()
        .all(|c| c.image == WEB_V2 && c.state == "running"));
    assert_eq!(host.names(), ["shop-web-1", "shop-web-2", "shop-web-3"]);
}

#[tokio::test(start_paused = true)]
async fn a_stop_first_update_takes_down_one_replica_at_a_time() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "stop-first")))
        .await
        .unwrap();
    let old = replica_ids(&host, 3);
    host.engine.publish(WEB_V2, healthy_after(3));
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &farm(WEB_V2, 3, "stop-first")))
        .await
        .unwrap();

    let calls = host.engine.timed_calls();
    assert_eq!(fewest_serving(&calls, &old, Duration::from_secs(3)), 2);
    let touched = touches(&calls);
    // Each replica goes down only once the one before it is replaced and proven.
    assert_in_order(
        &touched,
        &[
            format!("stop {}", old[0]),
            format!("remove {}", old[0]),
            format!("stop {}", old[1]),
            format!("remove {}", old[1]),
            format!("stop {}", old[2]),
            format!("remove {}", old[2]),
        ],
    );
    let new2 = started_after_create(&calls, "shop-web-2");
    let proven = call(&calls, &format!("remove {}", old[1])).started;
    assert!(proven - call(&calls, &format!("start {new2}")).started >= Duration::from_secs(3));
    assert_eq!(host.names(), ["shop-web-1", "shop-web-2", "shop-web-3"]);
}

#[tokio::test(start_paused = true)]
async fn scaling_three_to_one_removes_the_third_then_the_second_and_no_volume() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let with_volume = |n: u32| {
        format!(
            "services:\n  web:\n    image: {WEB_V1}\n    volumes: [\"cache:/cache\"]\n    deploy: {{replicas: {n}}}\nvolumes:\n  cache: {{}}\n"
        )
    };
    host.pass(&host.desired("shop", &with_volume(3)))
        .await
        .unwrap();
    let ids = replica_ids(&host, 3);
    let volumes = host.engine.volumes();
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &with_volume(1)))
        .await
        .unwrap();

    assert_eq!(
        touches(&host.engine.timed_calls()),
        [
            format!("stop {}", ids[2]),
            format!("remove {}", ids[2]),
            format!("stop {}", ids[1]),
            format!("remove {}", ids[1]),
        ]
    );
    assert_eq!(host.names(), ["shop-web-1"]);
    assert_eq!(host.id("shop-web-1"), ids[0]);
    assert_eq!(host.engine.volumes(), volumes);
    let last = host.journal().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.result.as_str()),
        ("scale", "ok")
    );
}

#[tokio::test(start_paused = true)]
async fn scaling_up_creates_only_the_missing_numbers() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 1, "start-first")))
        .await
        .unwrap();
    let first = host.id("shop-web-1");
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "start-first")))
        .await
        .unwrap();

    let touched = touches(&host.engine.timed_calls());
    assert_eq!(touched.len(), 4, "{touched:?}");
    assert_eq!(touched[0], "create shop-web-2");
    assert_eq!(touched[2], "create shop-web-3");
    assert!(!touched.iter().any(|t| t.contains(&first)), "{touched:?}");
    assert_eq!(host.names(), ["shop-web-1", "shop-web-2", "shop-web-3"]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_replica_two_stops_the_rollout_is_restored_and_the_failure_is_recorded() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "stop-first")))
        .await
        .unwrap();
    let old = replica_ids(&host, 3);
    host.engine.publish(WEB_V2, healthy_after(1));
    // The release's own fault at replica 2, as Docker says it at create.
    host.engine.fail_always(
        "create",
        "shop-web-2",
        EngineError::Call {
            call: "create container",
            target: "shop-web-2".into(),
            message: "invalid device mapping /dev/nope".into(),
        },
    );
    let v2 = host.desired("shop", &farm(WEB_V2, 3, "stop-first"));
    host.engine.clear_calls();

    let outcome = host.pass(&v2).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    let world = host.world();
    assert_eq!(world.len(), 3, "no backup or candidate is left: {world:?}");
    let web = |n: usize| host.engine.container(&format!("shop-web-{n}")).unwrap();
    assert_eq!(web(1).image, WEB_V2);
    for n in [2, 3] {
        let c = web(n);
        assert_eq!(
            (c.id.as_str(), c.image.as_str(), c.state.as_str()),
            (old[n - 1].as_str(), WEB_V1, "running"),
            "replica {n} keeps the old version"
        );
    }
    assert!(
        !host
            .engine
            .calls()
            .iter()
            .any(|c| c.contains(&old[2]) && TOUCHES.iter().any(|t| c.starts_with(t))),
        "replica 3 was never touched"
    );
    let failure = host.state().failure("shop", "web").cloned().unwrap();
    assert!(
        failure.reason.starts_with("shop-web-2: create failed"),
        "{failure:?}"
    );
    let last = host.journal().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.result.as_str()),
        ("update", "failed")
    );

    // Recorded means not retried: the next pass leaves every replica alone.
    host.engine.clear_calls();
    host.pass(&v2).await.unwrap();
    assert_eq!(touches(&host.engine.timed_calls()), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_backup_of_replica_two_left_by_a_crash_is_restored_under_its_own_name() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let v1 = host.desired("shop", &farm(WEB_V1, 3, "stop-first"));
    host.pass(&v1).await.unwrap();
    let ids = replica_ids(&host, 3);
    // The process died while replica 2 was set aside by a stop-first update.
    host.engine.stop_container(&ids[1], None).await.unwrap();
    host.engine
        .rename_container(&ids[1], "shop-web-2-reconciler-old")
        .await
        .unwrap();
    host.engine.clear_calls();

    host.pass(&v1).await.unwrap();

    assert_eq!(
        touches(&host.engine.timed_calls()),
        [
            format!("rename {} shop-web-2", ids[1]),
            format!("start {}", ids[1])
        ]
    );
    assert_eq!(replica_ids(&host, 3), ids);
    assert!(host
        .engine
        .containers()
        .iter()
        .all(|c| c.state == "running"));
}

#[tokio::test(start_paused = true)]
async fn a_proven_candidate_of_replica_two_left_by_a_crash_is_promoted_and_the_roll_goes_on() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "start-first")))
        .await
        .unwrap();
    let old = replica_ids(&host, 3);
    host.engine.publish(WEB_V2, healthy_after(1));
    // The engine went away after replica 2's old container was removed, before its proven
    // replacement took the name.
    host.engine.fail_next("rename", "shop-web-2", unreachable());
    let v2 = host.desired("shop", &farm(WEB_V2, 3, "start-first"));
    assert!(host.pass(&v2).await.is_err());
    assert_eq!(
        host.names(),
        ["shop-web-1", "shop-web-2-reconciler-new", "shop-web-3"]
    );
    let candidate = host.id("shop-web-2-reconciler-new");
    host.engine.clear_calls();

    host.pass(&v2).await.unwrap();

    let touched = touches(&host.engine.timed_calls());
    assert_eq!(
        touched[0],
        format!("rename {candidate} shop-web-2"),
        "{touched:?}"
    );
    assert!(
        !touched.iter().any(|t| t.contains("create shop-web-2")),
        "{touched:?}"
    );
    assert!(
        touched.contains(&format!("remove {}", old[2])),
        "{touched:?}"
    );
    assert_eq!(host.id("shop-web-2"), candidate);
    assert!(host.engine.containers().iter().all(|c| c.image == WEB_V2));
    assert_eq!(host.names(), ["shop-web-1", "shop-web-2", "shop-web-3"]);
}

#[tokio::test(start_paused = true)]
async fn a_pruned_service_of_three_replicas_loses_all_three_highest_first() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "start-first")))
        .await
        .unwrap();
    let ids = replica_ids(&host, 3);
    host.engine.clear_calls();

    host.pass(&host.desired(
        "shop",
        &format!("services:\n  other:\n    image: {WEB_V1}\n"),
    ))
    .await
    .unwrap();

    let removed: Vec<String> = touches(&host.engine.timed_calls())
        .into_iter()
        .filter(|t| t.starts_with("remove"))
        .collect();
    assert_eq!(
        removed,
        [
            format!("remove {}", ids[2]),
            format!("remove {}", ids[1]),
            format!("remove {}", ids[0]),
        ]
    );
    assert_eq!(host.names(), ["shop-other-1"]);
}

#[tokio::test(start_paused = true)]
async fn extras_go_only_once_the_kept_replica_is_replaced_and_proven() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "start-first")))
        .await
        .unwrap();
    let old = replica_ids(&host, 3);
    host.engine.publish(WEB_V2, healthy_after(4));
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &farm(WEB_V2, 1, "start-first")))
        .await
        .unwrap();

    let calls = host.engine.timed_calls();
    let new = started_after_create(&calls, "shop-web-1-reconciler-new");
    assert_eq!(
        touches(&calls),
        [
            "create shop-web-1-reconciler-new".to_string(),
            format!("start {new}"),
            format!("stop {}", old[0]),
            format!("remove {}", old[0]),
            format!("rename {new} shop-web-1"),
            format!("stop {}", old[2]),
            format!("remove {}", old[2]),
            format!("stop {}", old[1]),
            format!("remove {}", old[1]),
        ]
    );
    let first_extra_stopped = call(&calls, &format!("stop {}", old[2])).started;
    assert!(
        first_extra_stopped - call(&calls, &format!("start {new}")).started
            >= Duration::from_secs(4)
    );
    assert_eq!(host.names(), ["shop-web-1"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_replica_keeps_the_extras_of_a_scale_down_running() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &farm(WEB_V1, 3, "start-first")))
        .await
        .unwrap();
    let old = replica_ids(&host, 3);
    host.engine.publish(WEB_V2, STARTING_FOR_AN_HOUR);

    let outcome = host
        .pass(&host.desired("shop", &farm(WEB_V2, 1, "start-first")))
        .await
        .unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(
        replica_ids(&host, 3),
        old,
        "nothing was removed while 1 is not proven"
    );
    assert!(host
        .engine
        .containers()
        .iter()
        .all(|c| c.image == WEB_V1 && c.state == "running"));
}
