//! Services of several containers (`deploy.replicas`, `scale`): numbered replicas in the plan.

use super::*;

fn replicated(name: &str, image: &str, count: u32) -> Service {
    let mut s = service(name, image);
    s.replicas = count;
    s
}

/// Replica `number` of a service the reconciler created from `from`.
fn replica(from: &Service, number: u32) -> ObservedContainer {
    let mut c = managed(from);
    c.id = format!("id-{}-{number}", from.name);
    c.name = format!("{STACK}-{}-{number}", from.name);
    c.labels.insert(labels::NUMBER.into(), number.to_string());
    c
}

/// (number, action, container) of each replica.
fn replicas_of(p: &ServicePlan) -> Vec<(u32, Action, &str)> {
    p.replicas
        .iter()
        .map(|r| (r.number, r.action, r.container.as_str()))
        .collect()
}

#[test]
fn a_new_service_of_three_replicas_is_created_as_three_numbered_containers() {
    let plan = plan_of(
        &desired(vec![replicated("web", "web:v1", 3)]),
        &observed(vec![]),
    );
    let web = of(&plan, "web");
    assert_eq!(web.action, Action::Create);
    assert_eq!(
        replicas_of(web),
        [
            (1, Action::Create, "shop-web-1"),
            (2, Action::Create, "shop-web-2"),
            (3, Action::Create, "shop-web-3"),
        ]
    );
    assert_eq!(web.changes, [change("scale", Some("0"), Some("3"))]);
    let text = plan.to_string();
    assert!(text.contains("  + web: create web:v1\n      scale 0 -> 3\n      shop-web-1: create\n      shop-web-2: create\n      shop-web-3: create\n"), "{text}");
}

#[test]
fn scaling_up_adds_the_missing_numbers_and_leaves_the_running_one_alone() {
    let web = replicated("web", "web:v1", 3);
    let plan = plan_of(
        &desired(vec![web.clone()]),
        &observed(vec![replica(&web, 1)]),
    );
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Scale);
    assert_eq!(
        replicas_of(p),
        [
            (1, Action::InSync, "shop-web-1"),
            (2, Action::Create, "shop-web-2"),
            (3, Action::Create, "shop-web-3"),
        ]
    );
    assert!(plan.has_drift());
    assert!(
        plan.to_string()
            .contains("  ~ web: scale\n      scale 1 -> 3\n      shop-web-2: create\n      shop-web-3: create\n"),
        "{plan}"
    );
}

#[test]
fn scaling_down_removes_every_number_above_the_count() {
    let web = replicated("web", "web:v1", 1);
    let running: Vec<ObservedContainer> = (1..=3).map(|n| replica(&web, n)).collect();
    let plan = plan_of(&desired(vec![web]), &observed(running));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Scale);
    assert_eq!(
        replicas_of(p),
        [
            (1, Action::InSync, "shop-web-1"),
            (2, Action::Remove, "shop-web-2"),
            (3, Action::Remove, "shop-web-3"),
        ]
    );
    assert!(
        plan.to_string()
            .contains("      scale 3 -> 1\n      shop-web-2: remove (volumes are kept)\n"),
        "{plan}"
    );
}

#[test]
fn zero_replicas_remove_the_service_containers_and_none_running_is_in_sync() {
    let web = replicated("web", "web:v1", 0);
    let plan = plan_of(
        &desired(vec![web.clone()]),
        &observed(vec![replica(&web, 1)]),
    );
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Scale);
    assert_eq!(replicas_of(p), [(1, Action::Remove, "shop-web-1")]);
    let plan = plan_of(&desired(vec![web]), &observed(vec![]));
    assert_eq!(of(&plan, "web").action, Action::InSync);
    assert!(!plan.has_drift());
}

#[test]
fn a_changed_spec_updates_every_replica_in_number_order_with_the_effective_order() {
    let old = replicated("web", "web:v1", 3);
    let new = replicated("web", "web:v2", 2);
    let running: Vec<ObservedContainer> = (1..=3).map(|n| replica(&old, n)).collect();
    let plan = plan_of(&desired(vec![new]), &observed(running));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert_eq!(p.order, Some(UpdateOrder::StartFirst));
    assert_eq!(
        replicas_of(p),
        [
            (1, Action::Update, "shop-web-1"),
            (2, Action::Update, "shop-web-2"),
            (3, Action::Remove, "shop-web-3"),
        ]
    );
    assert_eq!(
        p.changes,
        [
            change("image", Some("web:v1"), Some("web:v2")),
            change("scale", Some("3"), Some("2")),
        ]
    );
    assert!(
        plan.to_string().contains(
            "  ~ web: update (start-first, one replica at a time)\n      image web:v1 -> web:v2\n      scale 3 -> 2\n      shop-web-1: update\n      shop-web-2: update\n      shop-web-3: remove (volumes are kept)\n"
        ),
        "{plan}"
    );
}

#[test]
fn a_second_container_under_a_taken_number_is_an_extra() {
    let web = replicated("web", "web:v1", 2);
    let mut twin = replica(&web, 1);
    twin.name = "shop_web_1".into();
    twin.id = "id-twin".into();
    let plan = plan_of(
        &desired(vec![web.clone()]),
        &observed(vec![replica(&web, 1), twin, replica(&web, 2)]),
    );
    assert_eq!(
        replicas_of(of(&plan, "web")),
        [
            (1, Action::InSync, "shop-web-1"),
            (2, Action::InSync, "shop-web-2"),
            (1, Action::Remove, "shop_web_1"),
        ]
    );
}

#[test]
fn one_container_at_number_one_reads_as_it_always_has_in_json() {
    let old = service("web", "web:v1");
    let new = service("web", "web:v2");
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let json = serde_json::to_value(&plan).unwrap();
    let web = &json["stacks"][0]["services"][0];
    assert_eq!(web["action"], "update");
    assert_eq!(web["container"], "shop-web-1");
    assert!(web.get("replicas").is_none(), "{web}");
    assert!(!web["changes"].to_string().contains("scale"), "{web}");
}

#[test]
fn a_replica_spec_that_failed_is_not_retried_but_a_scale_down_alone_still_runs() {
    let old = replicated("web", "web:v1", 3);
    let new = replicated("web", "web:v2", 3);
    // The rollout failed at replica 2: 1 runs v2, 2 and 3 still run v1.
    let running = vec![replica(&new, 1), replica(&old, 2), replica(&old, 3)];
    let state = failed_state("web", new.spec_hash());
    let failed = plan(
        &desired(vec![new.clone()]),
        &observed(running),
        &state,
        &PlanOptions::default(),
    );
    let p = of(&failed, "web");
    assert_eq!(p.action, Action::Failed);
    assert!(p.note.as_deref().unwrap().contains("not retried"), "{p:?}");

    let down = replicated("web", "web:v2", 1);
    let scaled = plan(
        &desired(vec![down.clone()]),
        &observed((1..=3).map(|n| replica(&down, n)).collect()),
        &failed_state("web", down.spec_hash()),
        &PlanOptions::default(),
    );
    assert_eq!(of(&scaled, "web").action, Action::Scale);
}

#[test]
fn a_pruned_service_of_three_replicas_is_one_removal_of_three_containers() {
    let web = service("web", "web:v1");
    let gone = replicated("legacy", "legacy:1", 3);
    let mut running: Vec<ObservedContainer> = (1..=3).map(|n| replica(&gone, n)).collect();
    running.push(managed(&web));
    let plan = plan(
        &desired(vec![web]),
        &observed(running),
        &State::default(),
        &PlanOptions { prune: true },
    );
    let p = of(&plan, "legacy");
    assert_eq!(p.action, Action::Remove);
    assert_eq!(
        replicas_of(p),
        [
            (1, Action::Remove, "shop-legacy-1"),
            (2, Action::Remove, "shop-legacy-2"),
            (3, Action::Remove, "shop-legacy-3"),
        ]
    );
}

#[test]
fn without_self_heal_a_replica_stopped_or_removed_by_hand_is_reported_and_a_scale_up_still_runs() {
    let web = replicated("web", "web:v1", 3);
    let mut stopped = replica(&web, 1);
    stopped.state = "exited".into();
    // Replica 2 was removed by hand; 3 runs.
    let mut plan = plan_of(
        &desired(vec![web.clone()]),
        &observed(vec![stopped.clone(), replica(&web, 3)]),
    );
    plan.without_self_heal(|_, _| true);
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Drifted);
    assert_eq!(
        replicas_of(p),
        [
            (1, Action::Drifted, "shop-web-1"),
            (2, Action::Drifted, "shop-web-2"),
            (3, Action::InSync, "shop-web-3"),
        ]
    );

    let more = replicated("web", "web:v1", 4);
    let mut plan = plan_of(
        &desired(vec![more]),
        &observed(vec![stopped, replica(&web, 2), replica(&web, 3)]),
    );
    plan.without_self_heal(|_, _| true);
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Scale);
    assert_eq!(p.replicas[0].action, Action::Drifted);
    assert_eq!(p.replicas[3].action, Action::Create);
}
