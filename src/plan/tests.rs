//! The planner as a pure function: hand-built desired, observed and recorded state in, a plan out.

use super::*;
use crate::desired::ContainerSpec;
use crate::desired::{MountKind, MountSpec, PortSpec, PullPolicy};
use crate::observed::{Details, Health};
use crate::state::Failure;
use std::collections::BTreeSet;
use std::path::PathBuf;

const STACK: &str = "shop";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

// ---- builders --------------------------------------------------------------------------------

fn service(name: &str, image: &str) -> Service {
    Service::new(
        name,
        ContainerSpec {
            image: image.into(),
            networks: BTreeMap::from([("default".to_string(), vec![])]),
            ..Default::default()
        },
    )
}

fn with_env(mut s: Service, pairs: &[(&str, &str)]) -> Service {
    for (k, v) in pairs {
        s.spec.environment.insert(k.to_string(), v.to_string());
    }
    s
}

fn stack(services: Vec<Service>) -> Stack {
    Stack {
        name: STACK.into(),
        dir: PathBuf::from("/repo/shop"),
        file: "shop/compose.yaml".into(),
        revision: REVISION.into(),
        services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        volumes: BTreeMap::new(),
        networks: BTreeMap::new(),
        warnings: Vec::new(),
    }
}

fn desired(services: Vec<Service>) -> Desired {
    Desired {
        stacks: vec![stack(services)],
    }
}

fn compose_labels(service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::PROJECT.to_string(), STACK.to_string()),
        (labels::SERVICE.to_string(), service.to_string()),
        (labels::NUMBER.to_string(), "1".to_string()),
        (labels::ONEOFF.to_string(), "False".to_string()),
    ])
}

fn container(service: &str, image: &str, labels: BTreeMap<String, String>) -> ObservedContainer {
    ObservedContainer {
        id: format!("id-{service}"),
        name: format!("{STACK}-{service}-1"),
        project: STACK.into(),
        service: service.into(),
        image: image.into(),
        labels,
        state: "running".into(),
        health: Health::None,
        details: None,
    }
}

/// A running container the reconciler created from `from`, labelled as the executor labels it.
/// Its details hold the env it runs with, as `observe` fills them for a container that drifted.
fn managed(from: &Service) -> ObservedContainer {
    let mut labels = compose_labels(&from.name);
    labels.insert(labels::MANAGED.into(), "true".into());
    labels.insert(labels::SPEC_HASH.into(), from.spec_hash());
    labels.insert(labels::SPEC.into(), spec_label(from));
    labels.insert(labels::REVISION.into(), "previous".into());
    let mut c = container(&from.name, &from.spec.image, labels);
    c.details = Some(Details {
        env: from.spec.environment.clone(),
        ..Default::default()
    });
    c
}

/// A running container that `docker compose up` made: Compose labels only, no spec hash.
fn adopted(
    service: &str,
    image: &str,
    env: &[(&str, &str)],
    image_env: &[(&str, &str)],
) -> ObservedContainer {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut c = container(service, image, compose_labels(service));
    c.details = Some(Details {
        env: map(env),
        image_env: map(image_env),
    });
    c
}

fn observed(containers: Vec<ObservedContainer>) -> Observed {
    Observed {
        containers,
        ..Default::default()
    }
}

fn plan_of(desired: &Desired, observed: &Observed) -> Plan {
    plan(
        desired,
        observed,
        &State::default(),
        &PlanOptions::default(),
    )
}

fn failed_state(service: &str, spec_hash: String) -> State {
    let mut state = State::default();
    state.service_mut(STACK, service).failed = Some(Failure {
        revision: REVISION.into(),
        spec_hash,
        reason: "the new container turned unhealthy".into(),
        at: "2024-01-01T00:00:00Z".into(),
    });
    state
}

/// The plan of the one service called `name`.
fn of<'a>(plan: &'a Plan, name: &str) -> &'a ServicePlan {
    let found: Vec<&ServicePlan> = plan
        .stacks
        .iter()
        .flat_map(|s| &s.services)
        .filter(|s| s.service == name)
        .collect();
    assert_eq!(found.len(), 1, "one plan for {name} in {plan:#?}");
    found[0]
}

fn change(field: &str, from: Option<&str>, to: Option<&str>) -> Change {
    Change {
        field: field.into(),
        from: from.map(str::to_string),
        to: to.map(str::to_string),
        hidden: false,
    }
}

// ---- create, in sync, update, start ------------------------------------------------------------

#[test]
fn a_service_without_a_container_is_created() {
    let d = desired(vec![service("web", "web:v1")]);
    let plan = plan_of(&d, &observed(vec![]));
    let web = of(&plan, "web");
    assert_eq!(web.action, Action::Create);
    assert_eq!(web.container, None);
    assert_eq!(web.image.as_deref(), Some("web:v1"));
    assert!(plan.has_drift());
    assert!(
        plan.to_string().contains("  + web: create web:v1\n"),
        "{plan}"
    );
}

#[test]
fn a_managed_container_with_the_same_spec_hash_is_in_sync() {
    let web = with_env(service("web", "web:v1"), &[("LOG_LEVEL", "info")]);
    let d = desired(vec![web.clone()]);
    let plan = plan_of(&d, &observed(vec![managed(&web)]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::InSync);
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.container.as_deref(), Some("shop-web-1"));
    assert!(!plan.has_drift());
    assert!(plan.to_string().contains("  = web\n"), "{plan}");
}

#[test]
fn a_changed_env_value_is_an_update_that_shows_old_and_new() {
    let old = with_env(
        service("web", "web:v1"),
        &[("LOG_LEVEL", "info"), ("PORT", "80")],
    );
    let new = with_env(
        service("web", "web:v1"),
        &[("LOG_LEVEL", "debug"), ("PORT", "80")],
    );
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert_eq!(
        p.changes,
        [change("env LOG_LEVEL", Some("info"), Some("debug"))]
    );
    assert!(plan.has_drift());
    let text = plan.to_string();
    assert!(text.contains("  ~ web: update (start-first)\n"), "{text}");
    assert!(
        text.contains("      env LOG_LEVEL info -> debug\n"),
        "{text}"
    );
}

#[test]
fn a_read_only_bind_that_comes_to_share_the_data_folder_says_so() {
    let bind = |shared_data: bool| MountSpec {
        source: Some("./uploads".into()),
        repo_relative: Some("uploads".into()),
        shared_data,
        ..mount(MountKind::Bind, true)
    };
    let mut old = service("web", "web:v1");
    old.spec.mounts.push(bind(false));
    let mut new = service("web", "web:v1");
    new.spec.mounts.push(bind(true));
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let text = plan.to_string();
    assert!(
        text.contains(
            "      volumes ./uploads:/data:ro -> ./uploads:/data:ro (the stack's data folder)\n"
        ),
        "{text}"
    );
}

#[test]
fn an_added_key_shows_its_value_and_a_removed_key_never_shows_its_old_value() {
    let old = with_env(service("web", "web:v1"), &[("OLD", "1")]);
    let new = with_env(service("web", "web:v1"), &[("NEW", "2")]);
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    assert_eq!(
        of(&plan, "web").changes,
        [
            change("env NEW", None, Some("2")),
            Change {
                field: "env OLD".into(),
                from: Some(MASK.into()),
                to: None,
                hidden: true
            },
        ]
    );
    let text = plan.to_string();
    assert!(text.contains("env NEW (unset) -> 2"), "{text}");
    assert!(text.contains("env OLD removed (value hidden)"), "{text}");
}

#[test]
fn a_changed_secret_is_shown_as_changed_and_never_by_value() {
    let old = with_env(
        service("web", "web:v1"),
        &[
            ("DB_PASSWORD", "old-hunter2"),
            ("API_TOKEN", "tok-old-value"),
        ],
    );
    let mut new = with_env(
        service("web", "web:v1"),
        &[
            ("DB_PASSWORD", "new-hunter2"),
            ("STRIPE_KEY", "sk-live-added"),
        ],
    );
    new.secret_env = BTreeSet::from(["DB_PASSWORD".to_string(), "STRIPE_KEY".to_string()]);
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    let hidden = |field: &str, from: Option<&str>, to: Option<&str>| Change {
        hidden: true,
        ..change(field, from, to)
    };
    assert_eq!(
        p.changes,
        [
            hidden("env API_TOKEN", Some(MASK), None),
            hidden("env DB_PASSWORD", Some(MASK), Some(MASK)),
            hidden("env STRIPE_KEY", None, Some(MASK)),
        ]
    );
    let text = plan.to_string();
    let json = serde_json::to_string(&plan).unwrap();
    for value in [
        "old-hunter2",
        "new-hunter2",
        "tok-old-value",
        "sk-live-added",
    ] {
        assert!(!text.contains(value), "{value} in {text}");
        assert!(!json.contains(value), "{value} in {json}");
    }
    assert!(
        text.contains("env DB_PASSWORD changed (value hidden)"),
        "{text}"
    );
    assert!(
        text.contains("env STRIPE_KEY added (value hidden)"),
        "{text}"
    );
    assert!(
        text.contains("env API_TOKEN removed (value hidden)"),
        "{text}"
    );
}

#[test]
fn a_value_from_the_host_local_env_is_hidden_even_under_a_plain_name() {
    let old = with_env(
        service("web", "web:v1"),
        &[("DSN", "postgres://app:pw-one@db")],
    );
    let mut new = with_env(
        service("web", "web:v1"),
        &[("DSN", "postgres://app:pw-two@db")],
    );
    new.secret_env.insert("DSN".into());
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let p = of(&plan, "web");
    assert_eq!(p.changes.len(), 1);
    assert!(p.changes[0].hidden);
    let text = plan.to_string();
    assert!(
        !text.contains("pw-one") && !text.contains("pw-two"),
        "{text}"
    );
}

#[test]
fn the_image_change_is_listed_first() {
    let mut old = with_env(service("web", "web:v1"), &[("A", "1")]);
    old.spec.command = Some(vec!["serve".into()]);
    let mut new = with_env(service("web", "web:v2"), &[("A", "2")]);
    new.spec.command = Some(vec!["serve".into(), "--fast".into()]);
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert_eq!(
        p.changes,
        [
            change("image", Some("web:v1"), Some("web:v2")),
            change("command", Some("serve"), Some("serve --fast")),
            change("env A", Some("1"), Some("2")),
        ]
    );
    let text = plan.to_string();
    let image_at = text.find("image web:v1 -> web:v2").expect("image line");
    assert!(
        image_at < text.find("command serve").expect("command line"),
        "{text}"
    );
}

#[test]
fn a_stopped_container_with_the_same_spec_is_started() {
    let web = service("web", "web:v1");
    let mut c = managed(&web);
    c.state = "exited".into();
    let plan = plan_of(&desired(vec![web]), &observed(vec![c]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Start);
    assert_eq!(
        p.changes,
        [change("state", Some("exited"), Some("running"))]
    );
    assert!(plan.has_drift());
    assert!(plan.to_string().contains("  ~ web: start\n"), "{plan}");
}

#[test]
fn an_exited_one_shot_dependency_is_not_restarted() {
    let migrate = service("migrate", "web:v1");
    let mut web = service("web", "web:v1");
    web.depends_on.insert(
        "migrate".into(),
        DependsCondition::ServiceCompletedSuccessfully,
    );
    let mut job = managed(&migrate);
    job.state = "exited".into();
    let plan = plan_of(
        &desired(vec![migrate, web.clone()]),
        &observed(vec![job, managed(&web)]),
    );
    assert_eq!(of(&plan, "migrate").action, Action::InSync);
    assert!(!plan.has_drift());
}

#[test]
fn a_moved_tag_under_pull_policy_always_is_an_update() {
    let mut web = service("web", "web:stable");
    web.pull_policy = PullPolicy::Always;
    let mut c = managed(&web);
    c.labels.insert(
        labels::IMAGE_DIGEST.into(),
        format!("sha256:{}", "a".repeat(64)),
    );
    let mut obs = observed(vec![c]);
    obs.registry_digests
        .insert("web:stable".into(), format!("sha256:{}", "b".repeat(64)));
    let plan = plan_of(&desired(vec![web]), &obs);
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert_eq!(
        p.changes,
        [change(
            "image digest",
            Some("sha256:aaaaaaaaaaaa"),
            Some("sha256:bbbbbbbbbbbb")
        )]
    );
}

#[test]
fn an_unmoved_tag_under_pull_policy_always_is_in_sync() {
    let mut web = service("web", "web:stable");
    web.pull_policy = PullPolicy::Always;
    let digest = format!("sha256:{}", "a".repeat(64));
    let mut c = managed(&web);
    c.labels.insert(labels::IMAGE_DIGEST.into(), digest.clone());
    let mut obs = observed(vec![c]);
    obs.registry_digests.insert("web:stable".into(), digest);
    assert_eq!(
        of(&plan_of(&desired(vec![web]), &obs), "web").action,
        Action::InSync
    );
}

// ---- adopting what Compose created --------------------------------------------------------------

#[test]
fn an_adopted_container_with_the_same_image_and_env_is_in_sync_and_image_env_is_not_drift() {
    let web = with_env(
        service("web", "docker.io/library/nginx:1.25"),
        &[("LOG_LEVEL", "info")],
    );
    let c = adopted(
        "web",
        "nginx:1.25",
        &[
            ("LOG_LEVEL", "info"),
            ("PATH", "/usr/local/bin:/usr/bin"),
            ("NGINX_VERSION", "1.25.3"),
        ],
        &[
            ("PATH", "/usr/local/bin:/usr/bin"),
            ("NGINX_VERSION", "1.25.3"),
        ],
    );
    assert_eq!(c.spec_hash(), None);
    let plan = plan_of(&desired(vec![web]), &observed(vec![c]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::InSync, "{:?}", p.changes);
    assert!(!plan.has_drift());
}

#[test]
fn an_adopted_container_with_different_env_is_updated() {
    let web = with_env(service("web", "nginx:1.25"), &[("LOG_LEVEL", "debug")]);
    let c = adopted(
        "web",
        "nginx:1.25",
        &[
            ("LOG_LEVEL", "info"),
            ("LEFTOVER", "x"),
            ("PATH", "/custom/bin"),
        ],
        &[("PATH", "/usr/bin")],
    );
    let plan = plan_of(&desired(vec![web]), &observed(vec![c]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert_eq!(
        p.changes,
        [
            Change {
                field: "env LEFTOVER".into(),
                from: Some(MASK.into()),
                to: None,
                hidden: true
            },
            change("env LOG_LEVEL", Some("info"), Some("debug")),
            // Set on the container over the image's value: the container's own, so drift.
            Change {
                field: "env PATH".into(),
                from: Some(MASK.into()),
                to: None,
                hidden: true
            },
        ]
    );
}

#[test]
fn an_adopted_container_with_a_different_image_is_updated() {
    let web = service("web", "nginx:1.26");
    let c = adopted("web", "nginx:1.25", &[], &[]);
    let plan = plan_of(&desired(vec![web]), &observed(vec![c]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert_eq!(
        p.changes,
        [change("image", Some("nginx:1.25"), Some("nginx:1.26"))]
    );
}

#[test]
fn an_adopted_secret_is_compared_but_not_shown() {
    let web = with_env(service("web", "app:1"), &[("DB_PASSWORD", "new-pass-123")]);
    let c = adopted("web", "app:1", &[("DB_PASSWORD", "old-pass-123")], &[]);
    let plan = plan_of(&desired(vec![web]), &observed(vec![c]));
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert!(p.changes[0].hidden);
    let text = plan.to_string();
    assert!(
        !text.contains("old-pass-123") && !text.contains("new-pass-123"),
        "{text}"
    );
}

// ---- failures are not retried ------------------------------------------------------------------

#[test]
fn a_spec_that_failed_before_is_not_retried() {
    let old = with_env(service("web", "web:v1"), &[("A", "1")]);
    let new = with_env(service("web", "web:v2"), &[("A", "1")]);
    let state = failed_state("web", new.spec_hash());
    let plan = plan(
        &desired(vec![new]),
        &observed(vec![managed(&old)]),
        &state,
        &PlanOptions::default(),
    );
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Failed);
    let note = p.note.as_deref().unwrap();
    assert!(note.contains("failed at revision 0123456789ab:"), "{note}");
    assert!(
        note.contains("the new container turned unhealthy"),
        "{note}"
    );
    assert!(note.contains("not retried"), "{note}");
    // Not in sync: the desired release is not what runs.
    assert!(plan.has_drift());
    assert!(plan.to_string().contains("  ! web: failed ("), "{plan}");
}

#[test]
fn a_new_service_that_failed_before_is_not_created_again() {
    let web = service("web", "web:v1");
    let state = failed_state("web", web.spec_hash());
    let plan = plan(
        &desired(vec![web]),
        &observed(vec![]),
        &state,
        &PlanOptions::default(),
    );
    assert_eq!(of(&plan, "web").action, Action::Failed);
}

#[test]
fn a_changed_spec_after_a_failure_is_tried_again() {
    let old = service("web", "web:v1");
    let broken = service("web", "web:v2");
    let fixed = service("web", "web:v3");
    let state = failed_state("web", broken.spec_hash());
    let plan = plan(
        &desired(vec![fixed]),
        &observed(vec![managed(&old)]),
        &state,
        &PlanOptions::default(),
    );
    let p = of(&plan, "web");
    assert_eq!(p.action, Action::Update);
    assert_eq!(p.note, None);
}

// ---- what left the desired state ----------------------------------------------------------------

#[test]
fn a_running_service_not_in_the_desired_state_is_an_orphan_without_prune() {
    let web = service("web", "web:v1");
    let gone = service("legacy", "legacy:1");
    let plan = plan_of(
        &desired(vec![web.clone()]),
        &observed(vec![managed(&web), managed(&gone)]),
    );
    let p = of(&plan, "legacy");
    assert_eq!(p.action, Action::Orphan);
    assert_eq!(p.container.as_deref(), Some("shop-legacy-1"));
    assert!(p.note.as_deref().unwrap().contains("pruning is off"));
    // Reported, but nothing the next apply would change.
    assert!(!plan.has_drift());
    assert!(plan.to_string().contains("  ? legacy: orphan ("), "{plan}");
}

#[test]
fn with_prune_only_a_managed_leftover_is_removed() {
    let web = service("web", "web:v1");
    let ours = managed(&service("legacy", "legacy:1"));
    let composes = adopted("tool", "tool:1", &[], &[]);
    let plan = plan(
        &desired(vec![web.clone()]),
        &observed(vec![managed(&web), ours, composes]),
        &State::default(),
        &PlanOptions { prune: true },
    );
    assert_eq!(of(&plan, "legacy").action, Action::Remove);
    assert_eq!(of(&plan, "tool").action, Action::Orphan);
    assert!(plan.has_drift());
    assert!(
        plan.to_string()
            .contains("  - legacy: remove (volumes are kept)"),
        "{plan}"
    );
}

#[test]
fn leftovers_of_an_interrupted_update_and_other_projects_are_not_orphans() {
    let web = service("web", "web:v1");
    let mut backup = managed(&service("web", "web:v0"));
    backup.name = format!("shop-web-1{}", labels::BACKUP_SUFFIX);
    let mut candidate = managed(&service("api", "api:2"));
    candidate.name = format!("shop-api-1{}", labels::CANDIDATE_SUFFIX);
    let mut elsewhere = managed(&service("db", "db:1"));
    elsewhere.project = "other".into();
    let plan = plan_of(
        &desired(vec![web.clone()]),
        &observed(vec![backup, managed(&web), candidate, elsewhere]),
    );
    let names: Vec<&str> = plan.stacks[0]
        .services
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(names, ["web"]);
    assert_eq!(of(&plan, "web").action, Action::InSync);
}

// ---- order -------------------------------------------------------------------------------------

#[test]
fn services_are_planned_after_what_they_depend_on_and_removals_come_last() {
    let mut app = service("app", "app:1");
    app.depends_on
        .insert("zdb".into(), DependsCondition::ServiceHealthy);
    let mut api = service("api", "api:1");
    api.depends_on
        .insert("app".into(), DependsCondition::ServiceStarted);
    let zdb = service("zdb", "db:1");
    let gone = managed(&service("aaa-old", "old:1"));
    let plan = plan(
        &desired(vec![api, app, zdb]),
        &observed(vec![gone]),
        &State::default(),
        &PlanOptions { prune: true },
    );
    let names: Vec<&str> = plan.stacks[0]
        .services
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(names, ["zdb", "app", "api", "aaa-old"]);
}

#[test]
fn has_drift_is_false_only_for_in_sync_and_orphans() {
    let with = |actions: &[Action]| Plan {
        stacks: vec![StackPlan {
            stack: STACK.into(),
            revision: REVISION.into(),
            services: actions
                .iter()
                .map(|a| ServicePlan {
                    service: "s".into(),
                    action: *a,
                    order: None,
                    container: None,
                    image: None,
                    changes: vec![],
                    note: None,
                    replicas: vec![],
                })
                .collect(),
            resources: vec![],
        }],
    };
    assert!(!Plan::default().has_drift());
    assert!(!with(&[Action::InSync, Action::Orphan]).has_drift());
    for action in [
        Action::Create,
        Action::Update,
        Action::Start,
        Action::Scale,
        Action::Remove,
        Action::Failed,
    ] {
        assert!(with(&[Action::InSync, action]).has_drift(), "{action:?}");
    }
}

fn order_of(edit: impl FnOnce(&mut Service)) -> UpdateOrder {
    let mut s = service("web", "web:v1");
    edit(&mut s);
    s.effective_order()
}

fn mount(kind: MountKind, read_only: bool) -> MountSpec {
    MountSpec {
        target: "/data".into(),
        kind,
        source: (kind != MountKind::Tmpfs).then(|| "data".to_string()),
        read_only,
        repo_relative: None,
        tmpfs_size: None,
        no_copy: false,
        shared_data: false,
        options: Default::default(),
    }
}

#[test]
fn a_plainly_stateless_service_updates_start_first() {
    assert_eq!(order_of(|_| {}), UpdateOrder::StartFirst);
    assert_eq!(
        order_of(|s| s.spec.ports.push(PortSpec {
            host_ip: None,
            published: None,
            target: 80,
            protocol: "tcp".into(),
        })),
        UpdateOrder::StartFirst
    );
    assert_eq!(
        order_of(|s| s.spec.mounts.push(mount(MountKind::Tmpfs, false))),
        UpdateOrder::StartFirst
    );
    assert_eq!(
        order_of(|s| s.spec.mounts.push(mount(MountKind::Bind, true))),
        UpdateOrder::StartFirst
    );
}

#[test]
fn a_published_port_a_fixed_name_or_writable_storage_means_stop_first() {
    assert_eq!(
        order_of(|s| s.spec.ports.push(PortSpec {
            host_ip: Some("127.0.0.1".into()),
            published: Some("8080".into()),
            target: 80,
            protocol: "tcp".into(),
        })),
        UpdateOrder::StopFirst
    );
    assert_eq!(
        order_of(|s| s.spec.container_name = Some("shop-web".into())),
        UpdateOrder::StopFirst
    );
    assert_eq!(
        order_of(|s| s.spec.mounts.push(mount(MountKind::Volume, false))),
        UpdateOrder::StopFirst
    );
    assert_eq!(
        order_of(|s| s.spec.mounts.push(mount(MountKind::Bind, false))),
        UpdateOrder::StopFirst
    );
}

#[test]
fn an_explicit_update_order_wins_over_the_guess() {
    assert_eq!(
        order_of(|s| {
            s.spec.mounts.push(mount(MountKind::Volume, false));
            s.order = Some(UpdateOrder::StartFirst);
        }),
        UpdateOrder::StartFirst
    );
    assert_eq!(
        order_of(|s| s.order = Some(UpdateOrder::StopFirst)),
        UpdateOrder::StopFirst
    );
}

#[test]
fn an_update_carries_the_effective_order() {
    let old = service("db", "postgres:15");
    let mut new = service("db", "postgres:16");
    new.spec.mounts.push(mount(MountKind::Volume, false));
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let p = of(&plan, "db");
    assert_eq!(p.order, Some(UpdateOrder::StopFirst));
    assert!(
        plan.to_string().contains("  ~ db: update (stop-first)"),
        "{plan}"
    );
}

// ---- the spec label ------------------------------------------------------------------------------

#[test]
fn the_spec_label_never_holds_an_env_value_but_changes_with_one() {
    let web = with_env(
        service("web", "web:v1"),
        &[
            ("DB_PASSWORD", "correct-horse-battery"),
            ("LOG_LEVEL", "verbose-level-value"),
        ],
    );
    let label = spec_label(&web);
    assert!(!label.contains("correct-horse-battery"), "{label}");
    assert!(!label.contains("verbose-level-value"), "{label}");
    assert!(
        label.contains("\"DB_PASSWORD\"") && label.contains("\"LOG_LEVEL\""),
        "{label}"
    );
    assert!(label.contains("\"image\":\"web:v1\""), "{label}");
    let changed = with_env(web.clone(), &[("LOG_LEVEL", "quiet")]);
    assert_ne!(spec_label(&changed), label);
}

#[test]
fn without_self_heal_a_stopped_or_vanished_service_is_reported_and_a_new_one_still_created() {
    let (web, api, new) = (
        service("web", "web:v1"),
        service("api", "api:v1"),
        service("new", "new:v1"),
    );
    let mut stopped = managed(&web);
    stopped.state = "exited".into();
    let mut plan = plan_of(&desired(vec![web, api, new]), &observed(vec![stopped]));
    // api ran before (the state dir says so) and is gone now; new never ran.
    plan.without_self_heal(|_, service| service == "api" || service == "web");
    assert_eq!(of(&plan, "web").action, Action::Drifted);
    assert_eq!(of(&plan, "api").action, Action::Drifted);
    assert_eq!(of(&plan, "new").action, Action::Create);
    assert!(plan.has_drift(), "drift is still drift, only not repaired");
    assert!(plan.to_string().contains("! web: drifted"), "{plan}");
}

#[test]
fn a_field_that_took_a_secret_is_shown_as_changed_and_never_by_value() {
    let mut old = service("cache", "redis:7");
    old.spec.command = Some(vec!["--requirepass".into(), "old-hunter2".into()]);
    old.secret_fields = BTreeSet::from(["command".to_string()]);
    let mut new = old.clone();
    new.spec.command = Some(vec!["--requirepass".into(), "new-hunter2".into()]);
    let plan = plan_of(&desired(vec![new]), &observed(vec![managed(&old)]));
    let p = of(&plan, "cache");
    assert_eq!(p.action, Action::Update);
    assert_eq!(
        p.changes,
        [Change {
            hidden: true,
            ..change("command", Some(MASK), Some(MASK))
        }]
    );
    let text = format!("{plan}{}", serde_json::to_string(&plan).unwrap());
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!spec_label(&old).contains("hunter2"));
}

mod replicas;
