//! The plan: a pure function of desired, observed and recorded state. `diff` prints it, `apply`
//! carries it out. Nothing here touches the engine.

use crate::desired::{
    DependsCondition, Desired, FileKind, Service, Stack, UpdateOrder, HIDDEN_PREFIX,
};
use crate::labels;
use crate::mask::MASK;
use crate::observed::{Observed, ObservedContainer, ResourceDrift, Role};
use crate::state::State;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Remove managed services that left the desired state (`-`).
    pub prune: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub stacks: Vec<StackPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    pub stack: String,
    pub revision: String,
    /// In start order: each service after what it depends on; removals last.
    pub services: Vec<ServicePlan>,
    /// Networks and volumes that exist with another definition than the file's: the stack is
    /// not applied while one of them blocks (nothing is recreated or deleted for it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceDrift>,
}

impl StackPlan {
    /// The first network or volume that stops this stack from being applied.
    pub fn blocked_by(&self) -> Option<&ResourceDrift> {
        self.resources.iter().find(|r| r.blocks())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub service: String,
    pub action: Action,
    /// For `update`: which update order will be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
    /// The container that runs now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A service of more than one container (now or wanted), or whose one container is not
    /// its first: what happens to each, by number. Empty for a plain one-container service,
    /// whose plan reads as it always has.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaPlan>,
}

/// One container of a replicated service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaPlan {
    /// Compose's `container-number`: the container is `<project>-<service>-<number>`.
    pub number: u32,
    /// `InSync`, `Create`, `Update`, `Start`, `Remove` (or `Drifted` without self-heal).
    pub action: Action,
    /// The name it has now, or gets when it is created.
    pub container: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    InSync,
    Create,
    Update,
    /// The container is right but not running.
    Start,
    /// Replicas are added or removed (or stopped ones started); none is replaced.
    Scale,
    Remove,
    /// This spec failed before; not tried again until it changes (no retry loops).
    Failed,
    /// Runs but is not in the desired state, and pruning is off: reported, never touched.
    Orphan,
    /// Stopped or removed by hand while self-heal is off: reported, not repaired.
    Drifted,
}

/// One field that differs. Secret values are never carried: `from`/`to` are `None` then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub hidden: bool,
}

impl Plan {
    /// `--no-self-heal`: a service that was running and was stopped or removed by hand is
    /// reported as drifted instead of being started or created again. `existed` tells whether a
    /// service ran before (the state dir knows).
    pub fn without_self_heal(&mut self, existed: impl Fn(&str, &str) -> bool) {
        for stack in &mut self.stacks {
            for s in &mut stack.services {
                let existed = existed(&stack.stack, &s.service);
                let only_by_hand = s.action == Action::Scale && only_repairs(s, existed);
                let by_hand = s.action == Action::Start
                    || (s.action == Action::Create && existed)
                    || only_by_hand;
                if by_hand {
                    s.action = Action::Drifted;
                    s.note = Some(
                        "stopped or removed by hand; self-heal is off, so it is only reported"
                            .into(),
                    );
                }
            }
        }
    }

    /// The service plans that carry out work (the rest is reported only).
    pub fn is_work(action: Action) -> bool {
        matches!(
            action,
            Action::Create | Action::Update | Action::Start | Action::Scale | Action::Remove
        )
    }

    /// Drift is anything the next `apply` would change, a failure it will not retry, or a
    /// network or volume it cannot make match the file.
    pub fn has_drift(&self) -> bool {
        self.stacks.iter().any(|s| s.blocked_by().is_some())
            || self
                .stacks
                .iter()
                .flat_map(|s| &s.services)
                .any(|s| !matches!(s.action, Action::InSync | Action::Orphan))
    }
}

pub fn plan(desired: &Desired, observed: &Observed, state: &State, options: &PlanOptions) -> Plan {
    let mut plan = Plan::default();
    for stack in &desired.stacks {
        plan.stacks
            .push(plan_stack(stack, observed, state, options));
    }
    plan
}

fn plan_stack(
    stack: &Stack,
    observed: &Observed,
    state: &State,
    options: &PlanOptions,
) -> StackPlan {
    let order = crate::desired::order::startup_order(&stack.services)
        .unwrap_or_else(|_| stack.services.keys().cloned().collect());
    let mut services: Vec<ServicePlan> = order
        .iter()
        .map(|name| plan_service(stack, &stack.services[name], observed, state))
        .collect();
    let mut gone: Vec<&str> = observed
        .containers
        .iter()
        .filter(|c| c.project == stack.name && c.role() == Role::Primary)
        .filter(|c| !stack.services.contains_key(&c.service))
        .map(|c| c.service.as_str())
        .collect();
    gone.sort();
    gone.dedup();
    for service in gone {
        let containers = observed.replicas(&stack.name, service);
        // Only what we created may be pruned; a container Compose made is reported, not removed.
        let action = if options.prune && containers.iter().all(|c| c.is_managed()) {
            Action::Remove
        } else {
            Action::Orphan
        };
        let replicas = if containers.len() > 1 {
            containers
                .iter()
                .map(|c| ReplicaPlan {
                    number: c.number(),
                    action,
                    container: c.name.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        services.push(ServicePlan {
            service: service.to_string(),
            action,
            order: None,
            container: Some(containers[0].name.clone()),
            image: Some(containers[0].image.clone()),
            changes: vec![],
            note: (action == Action::Orphan)
                .then(|| "not in the desired state; left running (pruning is off)".into()),
            replicas,
        });
    }
    StackPlan {
        stack: stack.name.clone(),
        revision: stack.revision.clone(),
        services,
        resources: observed
            .resources
            .get(&stack.name)
            .cloned()
            .unwrap_or_default(),
    }
}

fn plan_service(
    stack: &Stack,
    service: &Service,
    observed: &Observed,
    state: &State,
) -> ServicePlan {
    let current = observed.replicas(&stack.name, &service.name);
    let one_container = service.replicas == 1 && current.iter().all(|c| c.number() == 1);
    let mut out = if one_container && current.len() <= 1 {
        plan_one(stack, service, current.first().copied(), observed)
    } else {
        plan_replicas(stack, service, &current, observed)
    };
    let creates_or_updates = out.replicas.is_empty()
        || out
            .replicas
            .iter()
            .any(|r| matches!(r.action, Action::Create | Action::Update));
    if matches!(out.action, Action::Create | Action::Update | Action::Scale) && creates_or_updates {
        if let Some(failure) = state.failure(&stack.name, &service.name) {
            if failure.spec_hash == service.spec_hash() {
                out.action = Action::Failed;
                out.note = Some(format!(
                    "failed at revision {}: {}; not retried until the service changes",
                    short(&failure.revision),
                    failure.reason
                ));
            }
        }
    }
    out
}

/// A service of one container, `<project>-<service>-1` (or its `container_name`).
fn plan_one(
    stack: &Stack,
    service: &Service,
    current: Option<&ObservedContainer>,
    observed: &Observed,
) -> ServicePlan {
    let (action, changes) = judge(stack, service, current, observed);
    ServicePlan {
        service: service.name.clone(),
        action,
        order: (action == Action::Update).then(|| service.effective_order()),
        container: current.map(|c| c.name.clone()),
        image: Some(service.spec.image.clone()),
        changes,
        note: None,
        replicas: Vec::new(),
    }
}

/// A service of `replicas` containers: numbers 1..=N are kept (each judged as a single
/// container is), created where missing, and every other container is removed. A second
/// container under a number already taken is an extra too.
fn plan_replicas(
    stack: &Stack,
    service: &Service,
    current: &[&ObservedContainer],
    observed: &Observed,
) -> ServicePlan {
    let mut replicas = Vec::new();
    let mut explained: Vec<(Action, Vec<Change>)> = Vec::new();
    for number in 1..=service.replicas {
        let container = current.iter().find(|c| c.number() == number).copied();
        let (action, changes) = judge(stack, service, container, observed);
        replicas.push(ReplicaPlan {
            number,
            action,
            container: container
                .map_or_else(|| replica_name(stack, service, number), |c| c.name.clone()),
        });
        explained.push((action, changes));
    }
    let kept: Vec<&str> = replicas
        .iter()
        .filter(|r| r.action != Action::Create)
        .map(|r| r.container.as_str())
        .collect();
    let extras: Vec<ReplicaPlan> = current
        .iter()
        .filter(|c| !kept.contains(&c.name.as_str()))
        .map(|c| ReplicaPlan {
            number: c.number(),
            action: Action::Remove,
            container: c.name.clone(),
        })
        .collect();
    replicas.extend(extras);
    let has = |a: Action| replicas.iter().any(|r| r.action == a);
    let action = if replicas.iter().all(|r| r.action == Action::InSync) {
        Action::InSync
    } else if has(Action::Update) {
        Action::Update
    } else if current.is_empty() {
        Action::Create
    } else if has(Action::Create) || has(Action::Remove) {
        Action::Scale
    } else {
        Action::Start
    };
    // The replicas share one spec: the first one changed as the service is explains it.
    let mut changes = explained
        .into_iter()
        .find(|(a, _)| *a == action || (action == Action::Scale && *a == Action::Start))
        .map(|(_, c)| c)
        .unwrap_or_default();
    let now = current.len() as u32;
    if now != service.replicas {
        changes.push(Change {
            field: "scale".into(),
            from: Some(now.to_string()),
            to: Some(service.replicas.to_string()),
            hidden: false,
        });
    }
    ServicePlan {
        service: service.name.clone(),
        action,
        order: (action == Action::Update).then(|| service.effective_order()),
        container: current.first().map(|c| c.name.clone()),
        image: Some(service.spec.image.clone()),
        changes,
        note: None,
        replicas,
    }
}

/// Compose's name for replica `number`.
pub fn replica_name(stack: &Stack, service: &Service, number: u32) -> String {
    labels::replica_name(
        &stack.name,
        &service.name,
        service.spec.container_name.as_deref(),
        number,
    )
}

/// What one container of the service needs (`Create` when there is none), and the changes
/// that explain it.
fn judge(
    stack: &Stack,
    service: &Service,
    current: Option<&ObservedContainer>,
    observed: &Observed,
) -> (Action, Vec<Change>) {
    let Some(c) = current else {
        return (Action::Create, Vec::new());
    };
    let mut changes = changes_of(service, c);
    // Ours: the hash decides. Adopted from Compose: only image and env do.
    let differs = if c.is_managed() {
        c.spec_hash() != Some(service.spec_hash().as_str())
    } else {
        !changes.is_empty()
    };
    let mut action = if differs {
        Action::Update
    } else if matches!(c.state.as_str(), "exited" | "created" | "dead")
        && !is_one_shot(stack, &service.name)
    {
        changes = vec![Change {
            field: "state".into(),
            from: Some(c.state.clone()),
            to: Some("running".into()),
            hidden: false,
        }];
        Action::Start
    } else {
        changes.clear();
        Action::InSync
    };
    if let Some(moved) = moved_digest(service, Some(c), observed) {
        if action == Action::InSync {
            action = Action::Update;
        }
        changes.push(moved);
    }
    (action, changes)
}

/// Without self-heal, replicas stopped or removed by hand are reported, not repaired: a
/// stopped one, and a missing one below a number that runs (a scale-up adds numbers above).
/// Says whether nothing else (a real scale-up or down) is left to do.
fn only_repairs(s: &mut ServicePlan, existed: bool) -> bool {
    let highest_kept = s
        .replicas
        .iter()
        .filter(|r| !matches!(r.action, Action::Create | Action::Remove))
        .map(|r| r.number)
        .max()
        .unwrap_or(0);
    for r in &mut s.replicas {
        let by_hand = r.action == Action::Start
            || (existed && r.action == Action::Create && r.number < highest_kept);
        if by_hand {
            r.action = Action::Drifted;
        }
    }
    !s.replicas
        .iter()
        .any(|r| matches!(r.action, Action::Create | Action::Remove))
}

/// A dependency others wait on to complete (`service_completed_successfully`): a job that is
/// expected to exit, not a service to keep running.
fn is_one_shot(stack: &Stack, name: &str) -> bool {
    stack
        .services
        .values()
        .any(|s| s.depends_on.get(name) == Some(&DependsCondition::ServiceCompletedSuccessfully))
}

/// `pull_policy: always`: the registry's digest for the tag moved since the container was made.
fn moved_digest(
    service: &Service,
    current: Option<&ObservedContainer>,
    observed: &Observed,
) -> Option<Change> {
    let current = current?;
    let now = observed.registry_digests.get(&service.spec.image)?;
    let was = current.labels.get(labels::IMAGE_DIGEST)?;
    // The label holds `name@sha256:...` (RepoDigests), the registry answers `sha256:...`.
    let digest = |d: &str| d.rsplit('@').next().unwrap_or(d).to_string();
    (digest(now) != digest(was)).then(|| Change {
        field: "image digest".into(),
        from: Some(short_digest(was)),
        to: Some(short_digest(now)),
        hidden: false,
    })
}

/// The fields that differ between the desired service and a running container.
fn changes_of(service: &Service, container: &ObservedContainer) -> Vec<Change> {
    match container.labels.get(labels::SPEC) {
        Some(label) if container.is_managed() => match serde_json::from_str::<Json>(label) {
            Ok(old) => field_changes(service, &old, container),
            Err(_) => Vec::new(),
        },
        _ => adoption_changes(service, container),
    }
}

fn field_changes(service: &Service, old: &Json, container: &ObservedContainer) -> Vec<Change> {
    let new = service.label_spec();
    let (Json::Object(old), Json::Object(new)) = (old, &new) else {
        return vec![];
    };
    let mut changes = Vec::new();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    // The image first: it is what a reader of a diff looks for.
    keys.sort_by_key(|k| (k.as_str() != "image", k.as_str()));
    keys.dedup();
    for key in keys {
        let (a, b) = (
            old.get(key).unwrap_or(&Json::Null),
            new.get(key).unwrap_or(&Json::Null),
        );
        if a == b {
            continue;
        }
        let holds_secret = |v: &Json| v.as_str().is_some_and(|s| s.starts_with(HIDDEN_PREFIX));
        if key == "environment" {
            changes.extend(env_changes(service, a, b, container));
        } else if let Some(kind) = file_kind(key).filter(|_| is_list(a) && is_list(b)) {
            changes.extend(file_changes(kind, a, b));
        } else if holds_secret(a) || holds_secret(b) {
            // Took a secret-looking variable: say that it changed, never what it is.
            changes.push(Change {
                field: field_name(key).to_string(),
                from: (!a.is_null()).then(|| MASK.to_string()),
                to: (!b.is_null()).then(|| MASK.to_string()),
                hidden: true,
            });
        } else {
            changes.push(Change {
                field: field_name(key).to_string(),
                from: render(a),
                to: render(b),
                hidden: false,
            });
        }
    }
    changes
}

fn file_kind(key: &str) -> Option<FileKind> {
    [FileKind::Secret, FileKind::Config]
        .into_iter()
        .find(|k| k.key() == key)
}

/// A list, or nothing (a service without secrets has no such field).
fn is_list(value: &Json) -> bool {
    value.is_array() || value.is_null()
}

/// Secrets and configs one by one, by where the container sees them. A secret's content shows
/// only as changed; a plain config's as its short digest.
fn file_changes(kind: FileKind, old: &Json, new: &Json) -> Vec<Change> {
    let by_target = |value: &Json| -> BTreeMap<String, Json> {
        let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
        items
            .iter()
            .map(|item| (text(item, "target"), item.clone()))
            .collect()
    };
    let (old, new) = (by_target(old), by_target(new));
    let mut targets: Vec<&String> = old.keys().chain(new.keys()).collect();
    targets.sort();
    targets.dedup();
    let mut changes = Vec::new();
    for target in targets {
        let field = format!("{} {target}", kind.noun());
        let (a, b) = (old.get(target), new.get(target));
        if a.map(describe_file) != b.map(describe_file) {
            changes.push(Change {
                field: field.clone(),
                from: a.map(describe_file),
                to: b.map(describe_file),
                hidden: false,
            });
        }
        let (Some(a), Some(b)) = (a, b) else { continue };
        let (was, is) = (text(a, "digest"), text(b, "digest"));
        if was == is {
            continue;
        }
        let secret = |v: &Json| v.get("secret") == Some(&Json::Bool(true));
        let hidden =
            secret(a) || secret(b) || [&was, &is].iter().any(|d| d.starts_with(HIDDEN_PREFIX));
        let short = |d: &str| d[..d.len().min(12)].to_string();
        changes.push(Change {
            field: format!("{field} content"),
            from: Some(if hidden {
                MASK.to_string()
            } else {
                short(&was)
            }),
            to: Some(if hidden { MASK.to_string() } else { short(&is) }),
            hidden,
        });
    }
    changes
}

fn text(item: &Json, key: &str) -> String {
    item.get(key)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Where a secret or config comes from and how it is mounted, never what it holds.
fn describe_file(item: &Json) -> String {
    let origin = match text(item, "kind").as_str() {
        "repository" => format!("file ./{}", text(item, "path")),
        "host" => format!("host file {}", text(item, "path")),
        _ => "content".to_string(),
    };
    let mut out = format!("{} ({origin}", text(item, "source"));
    if let Some(mode) = item.get("mode").and_then(Json::as_u64) {
        out.push_str(&format!(", mode {mode:04o}"));
    }
    for id in ["uid", "gid"] {
        if let Some(n) = item.get(id).and_then(Json::as_u64) {
            out.push_str(&format!(", {id} {n}"));
        }
    }
    out.push(')');
    out
}

fn env_changes(
    service: &Service,
    old: &Json,
    new: &Json,
    container: &ObservedContainer,
) -> Vec<Change> {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let old_value = |k: &str| {
        container
            .details
            .as_ref()
            .and_then(|d| d.env.get(k).cloned())
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let hidden = service.secret_env.contains(k.as_str()) || crate::mask::is_secret_key(k);
            let from = old.contains_key(k.as_str()).then(|| old_value(k)).flatten();
            let to = service.spec.environment.get(k.as_str()).cloned();
            env_change(
                k,
                from,
                to,
                hidden,
                old.contains_key(k.as_str()),
                new.contains_key(k.as_str()),
            )
        })
        .collect()
}

fn env_change(
    key: &str,
    from: Option<String>,
    to: Option<String>,
    hidden: bool,
    had: bool,
    has: bool,
) -> Change {
    // A removed key's old value may have been a secret nobody marks any more: never show it.
    if hidden || !has {
        // Only whether it was added, removed or changed; never a value.
        return Change {
            field: format!("env {key}"),
            from: had.then(|| MASK.to_string()),
            to: has.then(|| MASK.to_string()),
            hidden: true,
        };
    }
    Change {
        field: format!("env {key}"),
        from,
        to,
        hidden: false,
    }
}

fn adoption_changes(service: &Service, container: &ObservedContainer) -> Vec<Change> {
    let mut changes = Vec::new();
    if crate::observed::normalize_reference(&container.image)
        != crate::observed::normalize_reference(&service.spec.image)
    {
        changes.push(Change {
            field: "image".into(),
            from: Some(container.image.clone()),
            to: Some(service.spec.image.clone()),
            hidden: false,
        });
    }
    let Some(details) = &container.details else {
        return changes;
    };
    let running: BTreeMap<&str, &str> = details
        .env
        .iter()
        // Env the image sets is the image's, not drift (PATH and friends).
        .filter(|(k, v)| {
            details.image_env.get(*k) != Some(v) || service.spec.environment.contains_key(*k)
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let desired = &service.spec.environment;
    let mut keys: Vec<&str> = running
        .keys()
        .copied()
        .chain(desired.keys().map(String::as_str))
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (from, to) = (
            running.get(key).map(|v| v.to_string()),
            desired.get(key).cloned(),
        );
        if from != to {
            let hidden = service.secret_env.contains(key) || crate::mask::is_secret_key(key);
            changes.push(env_change(
                key,
                from.clone(),
                to.clone(),
                hidden,
                from.is_some(),
                to.is_some(),
            ));
        }
    }
    changes
}

/// The spec as stored in the `reconciler.spec` label: no env value and no secret in it, only
/// digests that change with them (see [`Service::label_spec`]).
pub fn spec_label(service: &Service) -> String {
    service.label_spec().to_string()
}

fn field_name(key: &str) -> &str {
    match key {
        "mounts" => "volumes",
        "mounted_content" => "mounted files",
        "stop_grace_period_ms" => "stop_grace_period",
        "nano_cpus" => "cpus",
        "network_endpoints" => "networks",
        "seccomp_profile" => "seccomp profile",
        other => other,
    }
}

fn render(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Array(items) if items.iter().all(Json::is_string) => Some(
            items
                .iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Json::Array(items) if items.iter().all(|i| i.get("target").is_some()) => Some(
            items
                .iter()
                .map(render_target)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => Some(other.to_string()),
    }
}

/// Ports and mounts read better as Compose short syntax than as JSON.
fn render_target(item: &Json) -> String {
    let s = |k: &str| item.get(k).and_then(Json::as_str).map(str::to_string);
    if let Some(target) = item.get("target").and_then(Json::as_u64) {
        let host = match (s("host_ip"), s("published")) {
            (Some(ip), Some(p)) => format!("{ip}:{p}:"),
            (None, Some(p)) => format!("{p}:"),
            _ => String::new(),
        };
        return format!("{host}{target}/{}", s("protocol").unwrap_or_default());
    }
    let ro = match (
        item.get("read_only") == Some(&Json::Bool(true)),
        item.get("shared_data") == Some(&Json::Bool(true)),
    ) {
        (true, true) => ":ro (the stack's data folder)",
        (true, false) => ":ro",
        _ => "",
    };
    match s("source") {
        Some(src) => format!("{src}:{}{ro}", s("target").unwrap_or_default()),
        None => format!("{}{ro}", s("target").unwrap_or_default()),
    }
}

fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}

fn short_digest(digest: &str) -> String {
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for stack in &self.stacks {
            writeln!(f, "{} (revision {})", stack.stack, short(&stack.revision))?;
            for r in &stack.resources {
                let sign = if r.blocks() { "!" } else { "?" };
                writeln!(f, "  {sign} {r}")?;
            }
            for s in &stack.services {
                let (sign, what) = match s.action {
                    Action::InSync => ("=", String::new()),
                    Action::Create => ("+", "create".to_string()),
                    Action::Update if s.replicas.len() > 1 => (
                        "~",
                        format!("update ({}, one replica at a time)", order_name(s.order)),
                    ),
                    Action::Update => ("~", format!("update ({})", order_name(s.order))),
                    Action::Start => ("~", "start".to_string()),
                    Action::Scale => ("~", "scale".to_string()),
                    Action::Remove => ("-", "remove (volumes are kept)".to_string()),
                    Action::Failed => ("!", "failed".to_string()),
                    Action::Orphan => ("?", "orphan".to_string()),
                    Action::Drifted => ("!", "drifted".to_string()),
                };
                write!(f, "  {sign} {}", s.service)?;
                if !what.is_empty() {
                    write!(f, ": {what}")?;
                }
                if s.action == Action::Create {
                    if let Some(image) = &s.image {
                        write!(f, " {image}")?;
                    }
                }
                if let Some(note) = &s.note {
                    write!(f, " ({note})")?;
                }
                writeln!(f)?;
                for c in &s.changes {
                    writeln!(f, "      {}", render_change(c))?;
                }
                for r in s.replicas.iter().filter(|r| r.action != Action::InSync) {
                    writeln!(f, "      {}: {}", r.container, replica_action(r.action))?;
                }
            }
        }
        Ok(())
    }
}

fn replica_action(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Start => "start",
        Action::Remove => "remove (volumes are kept)",
        Action::Drifted => "drifted (self-heal is off)",
        Action::Orphan => "orphan",
        Action::InSync | Action::Scale | Action::Failed => "in sync",
    }
}

fn order_name(order: Option<UpdateOrder>) -> &'static str {
    match order {
        Some(UpdateOrder::StartFirst) => "start-first",
        _ => "stop-first",
    }
}

fn render_change(c: &Change) -> String {
    if c.hidden {
        let what = match (&c.from, &c.to) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            _ => "changed",
        };
        return format!("{} {what} (value hidden)", c.field);
    }
    match (&c.from, &c.to) {
        (Some(a), Some(b)) => format!("{} {a} -> {b}", c.field),
        (None, Some(b)) => format!("{} (unset) -> {b}", c.field),
        (Some(a), None) => format!("{} {a} -> (unset)", c.field),
        (None, None) => format!("{} changed", c.field),
    }
}

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod tests;
