//! The diff of secrets and configs: one line per file by its target, where it comes from, and
//! its content only as "changed" for a secret (a plain config shows short digests).

use super::*;
use crate::desired::{ContainerSpec, FileContent, FileMount, FileSource, LabelKey};
use crate::observed::Health;
use crate::state::State;
use sha2::Digest as _;
use std::path::PathBuf;

fn content(target: &str, source: &str, value: &str, secret: bool) -> FileMount {
    FileMount {
        target: target.into(),
        source: source.into(),
        from: FileSource::Content {
            digest: crate::desired::hex(&sha2::Sha256::digest(value.as_bytes())),
            content: FileContent::new(value.as_bytes()),
        },
        uid: None,
        gid: None,
        mode: None,
        secret,
    }
}

fn web(secrets: Vec<FileMount>, configs: Vec<FileMount>) -> Service {
    Service {
        label_key: LabelKey::from_bytes([3; 32]),
        ..Service::new(
            "web",
            ContainerSpec {
                image: "web:v1".into(),
                secrets,
                configs,
                ..Default::default()
            },
        )
    }
}

/// The plan for `new` where a container made from `old` runs.
fn plan_from(old: &Service, new: Service) -> Plan {
    let labels = BTreeMap::from([
        (labels::PROJECT.to_string(), "shop".to_string()),
        (labels::SERVICE.to_string(), "web".to_string()),
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::SPEC_HASH.to_string(), old.spec_hash()),
        (labels::SPEC.to_string(), spec_label(old)),
    ]);
    let running = ObservedContainer {
        id: "id-web".into(),
        name: "shop-web-1".into(),
        project: "shop".into(),
        service: "web".into(),
        image: "web:v1".into(),
        labels,
        state: "running".into(),
        health: Health::None,
        details: None,
    };
    let desired = Desired {
        stacks: vec![Stack {
            name: "shop".into(),
            dir: PathBuf::from("/repo/shop"),
            file: "shop/compose.yaml".into(),
            revision: "r2".into(),
            services: BTreeMap::from([("web".to_string(), new)]),
            volumes: BTreeMap::new(),
            networks: BTreeMap::new(),
            warnings: Vec::new(),
        }],
    };
    let observed = Observed {
        containers: vec![running],
        ..Default::default()
    };
    plan(
        &desired,
        &observed,
        &State::default(),
        &PlanOptions::default(),
    )
}

#[test]
fn a_changed_secret_recreates_and_shows_as_changed_never_by_value_or_plain_digest() {
    let old = web(
        vec![content("/run/secrets/db", "db", "old-hunter2", true)],
        vec![],
    );
    let new = web(
        vec![content("/run/secrets/db", "db", "new-hunter2", true)],
        vec![],
    );
    let unkeyed: Vec<String> = ["old-hunter2", "new-hunter2"]
        .iter()
        .map(|v| crate::desired::hex(&sha2::Sha256::digest(v.as_bytes()))[..12].to_string())
        .collect();
    let label = spec_label(&new);
    let plan = plan_from(&old, new);
    let p = &plan.stacks[0].services[0];
    assert_eq!(p.action, Action::Update);
    let text = plan.to_string();
    assert!(
        text.contains("secret /run/secrets/db content changed (value hidden)"),
        "{text}"
    );
    let json = serde_json::to_string(&plan).unwrap();
    for leak in ["old-hunter2", "new-hunter2", &unkeyed[0], &unkeyed[1]] {
        assert!(!text.contains(leak), "{leak} in {text}");
        assert!(!json.contains(leak), "{leak} in {json}");
        assert!(!label.contains(leak), "{leak} in {label}");
    }
}

#[test]
fn an_unchanged_secret_is_in_sync() {
    let old = web(vec![content("/run/secrets/db", "db", "same", true)], vec![]);
    let plan = plan_from(&old, old.clone());
    assert_eq!(plan.stacks[0].services[0].action, Action::InSync);
}

#[test]
fn a_plain_config_shows_short_digests_and_an_added_secret_where_it_comes_from() {
    let old = web(
        vec![],
        vec![content("/app.conf", "app", "level=info", false)],
    );
    let mut added = content("/run/secrets/token", "token", "t0k3n-value", true);
    added.mode = Some(0o400);
    let new = web(
        vec![added],
        vec![content("/app.conf", "app", "level=debug", false)],
    );
    let plan = plan_from(&old, new);
    let text = plan.to_string();
    let short =
        |v: &str| crate::desired::hex(&sha2::Sha256::digest(v.as_bytes()))[..12].to_string();
    assert!(
        text.contains(&format!(
            "config /app.conf content {} -> {}",
            short("level=info"),
            short("level=debug")
        )),
        "{text}"
    );
    assert!(
        text.contains("secret /run/secrets/token (unset) -> token (content, mode 0400)"),
        "{text}"
    );
    assert!(!text.contains("t0k3n-value"), "{text}");
}

#[test]
fn a_config_that_took_a_secret_is_hidden_like_a_secret() {
    let old = web(vec![], vec![content("/app.conf", "app", "pw=one", true)]);
    let new = web(vec![], vec![content("/app.conf", "app", "pw=two", true)]);
    let text = plan_from(&old, new).to_string();
    assert!(
        text.contains("config /app.conf content changed (value hidden)"),
        "{text}"
    );
}
