//! What the assembled stack holds: loaded through `load`, as `validate` and `apply` load it.

use crate::desired::load::{load, LoadOptions};
use crate::desired::{Desired, MountKind, Service};
use std::path::Path;

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn loaded(dir: &Path) -> Desired {
    load(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn service<'d>(desired: &'d Desired, name: &str) -> &'d Service {
    &desired.stacks[0].services[name]
}

#[test]
fn the_override_file_is_merged_onto_the_main_file() {
    let dir = repo(&[
        ("shop/compose.yaml", "services:\n  web:\n    image: web:1\n    environment:\n      MODE: prod\n      KEEP: yes\n    command: [a, b]\n"),
        ("shop/compose.override.yaml", "services:\n  web:\n    environment:\n      MODE: debug\n    command: [c]\n  extra:\n    image: extra:1\n"),
    ]);
    let desired = loaded(dir.path());
    let web = service(&desired, "web");
    assert_eq!(web.spec.environment["MODE"], "debug");
    assert_eq!(web.spec.environment["KEEP"], "yes");
    assert_eq!(web.spec.command, Some(vec!["c".to_string()]));
    assert!(desired.stacks[0].services.contains_key("extra"));
}

#[test]
fn compose_file_in_dot_env_names_the_files_and_replaces_the_default_pair() {
    let dir = repo(&[
        ("shop/.env", "COMPOSE_FILE=base.yaml:prod.yaml\n"),
        (
            "shop/compose.yaml",
            "services:\n  ignored:\n    image: no:1\n",
        ),
        ("shop/base.yaml", "services:\n  web:\n    image: web:1\n"),
        ("shop/prod.yaml", "services:\n  web:\n    image: web:2\n"),
    ]);
    let desired = loaded(dir.path());
    assert_eq!(service(&desired, "web").spec.image, "web:2");
    assert!(!desired.stacks[0].services.contains_key("ignored"));
    assert_eq!(desired.stacks[0].file, "shop/base.yaml");
}

#[test]
fn a_service_extended_from_another_file_keeps_that_files_relative_paths() {
    let dir = repo(&[
        ("shop/compose.yaml", "services:\n  web:\n    extends:\n      file: common/base.yaml\n      service: app\n    environment:\n      ROLE: web\n"),
        ("shop/common/base.yaml", "services:\n  app:\n    image: app:1\n    env_file: app.env\n    volumes:\n      - ./conf:/etc/app:ro\n"),
        ("shop/common/app.env", "LEVEL=info\n"),
        ("shop/common/conf/app.conf", "x = 1\n"),
    ]);
    let desired = loaded(dir.path());
    let web = service(&desired, "web");
    assert_eq!(web.spec.image, "app:1");
    assert_eq!(web.spec.environment["LEVEL"], "info");
    assert_eq!(web.spec.environment["ROLE"], "web");
    let bind = web
        .spec
        .mounts
        .iter()
        .find(|m| m.kind == MountKind::Bind)
        .unwrap();
    assert_eq!(bind.repo_relative.as_deref(), Some("common/conf"));
}

#[test]
fn an_included_project_has_its_own_folder_and_dot_env() {
    let dir = repo(&[
        ("shop/compose.yaml", "include:\n  - db/compose.yaml\nservices:\n  web:\n    image: web:${TAG}\n    depends_on: [db]\n"),
        ("shop/.env", "TAG=1\n"),
        ("shop/db/compose.yaml", "services:\n  db:\n    image: db:${TAG}\n    volumes:\n      - ./init:/init:ro\n      - data:/data\nvolumes:\n  data:\n"),
        ("shop/db/.env", "TAG=15\n"),
        ("shop/db/init/schema.sql", "create table t (id int);\n"),
    ]);
    let desired = loaded(dir.path());
    assert_eq!(service(&desired, "web").spec.image, "web:1");
    let db = service(&desired, "db");
    assert_eq!(db.spec.image, "db:15");
    let bind = db
        .spec
        .mounts
        .iter()
        .find(|m| m.kind == MountKind::Bind)
        .unwrap();
    assert_eq!(bind.repo_relative.as_deref(), Some("db/init"));
    // The included volume belongs to the including project, as in Compose.
    assert_eq!(desired.stacks[0].volumes["data"].name, "shop_data");
}

#[test]
fn services_of_inactive_profiles_are_not_deployed_until_compose_profiles_names_one() {
    let files = [
        ("shop/compose.yaml", "services:\n  web:\n    image: web:1\n  debug:\n    image: debug:1\n    profiles: [debug]\n"),
    ];
    let dir = repo(&files);
    let desired = loaded(dir.path());
    assert!(!desired.stacks[0].services.contains_key("debug"));
    std::fs::write(dir.path().join("shop/.env"), "COMPOSE_PROFILES=debug\n").unwrap();
    let desired = loaded(dir.path());
    assert!(desired.stacks[0].services.contains_key("debug"));
}

#[test]
fn compose_project_name_wins_over_the_name_key_as_in_compose() {
    let dir = repo(&[
        (
            "shop/compose.yaml",
            "name: other\nservices:\n  web:\n    image: web:1\n",
        ),
        ("shop/.env", "COMPOSE_PROJECT_NAME=store\n"),
    ]);
    assert_eq!(loaded(dir.path()).stacks[0].name, "store");
}

#[test]
fn an_extends_chain_that_copies_a_large_service_is_bounded() {
    // 400 services extend one with 1000 environment entries: 800k nodes once copied.
    let mut base = String::from("services:\n  base:\n    image: b:1\n    environment:\n");
    for i in 0..1000 {
        base.push_str(&format!("      V{i}: x\n"));
    }
    for i in 0..400 {
        base.push_str(&format!("  s{i}:\n    extends: base\n"));
    }
    let dir = repo(&[("shop/compose.yaml", &base)]);
    let error = load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("more than 250000 nodes"), "{error}");
}

#[test]
fn a_folder_whose_dot_env_names_its_compose_files_is_a_stack() {
    let dir = repo(&[
        (
            "shop/.env",
            "COMPOSE_FILE=deploy/base.yml:deploy/prod.yml\n",
        ),
        (
            "shop/deploy/base.yml",
            "services:\n  web:\n    image: web:1\n    volumes:\n      - ./conf:/etc/web:ro\n",
        ),
        (
            "shop/deploy/prod.yml",
            "services:\n  web:\n    image: web:2\n",
        ),
        ("shop/deploy/conf/web.conf", "x\n"),
    ]);
    let desired = loaded(dir.path());
    let web = service(&desired, "web");
    assert_eq!(web.spec.image, "web:2");
    // Paths are relative to the first file's folder, in every file.
    let bind = web
        .spec
        .mounts
        .iter()
        .find(|m| m.kind == MountKind::Bind)
        .unwrap();
    assert_eq!(bind.repo_relative.as_deref(), Some("deploy/conf"));
}

#[test]
fn a_compose_file_list_of_separators_only_is_a_problem_not_a_panic() {
    let dir = repo(&[
        ("shop/compose.yaml", "services:\n  web:\n    image: web:1\n"),
        ("shop/.env", "COMPOSE_FILE=::\n"),
    ]);
    let error = load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("shop/.env:1: COMPOSE_FILE: names no file"),
        "{error}"
    );
}

/// A repository whose host has `DB_PASS` in its env file for stack `shop`, and what loading it
/// says: the secret must be in none of it.
fn refused_with_host_secret(files: &[(&str, &str)]) -> String {
    let dir = repo(files);
    let env = tempfile::tempdir().unwrap();
    std::fs::write(env.path().join("shop.env"), "DB_PASS=S3cretValue\n").unwrap();
    let options = LoadOptions {
        host_env_dir: Some(env.path().to_path_buf()),
        ..LoadOptions::default()
    };
    let error = load(dir.path(), &options).unwrap_err().to_string();
    assert!(!error.contains("S3cretValue"), "{error}");
    error
}

#[test]
fn a_host_local_variable_may_not_name_an_included_or_extended_file_or_service() {
    let error = refused_with_host_secret(&[(
        "shop/compose.yaml",
        "include: [\"${DB_PASS}.yaml\"]\nservices:\n  web:\n    image: web:1\n",
    )]);
    assert!(
        error.contains(
            "shop/compose.yaml:1: include[0]: a host-local (secret) variable may not name"
        ),
        "{error}"
    );
    let error = refused_with_host_secret(&[(
        "shop/compose.yaml",
        "services:\n  web:\n    image: web:1\n    extends:\n      service: ${DB_PASS}\n",
    )]);
    assert!(
        error.contains("shop/compose.yaml:5: services.web.extends.service: a host-local (secret) variable may not name"),
        "{error}"
    );
    // `x/..` is dropped when the path is read, so the file exists, but its name holds the secret.
    let error = refused_with_host_secret(&[
        (
            "shop/compose.yaml",
            "services:\n  web:\n    extends:\n      file: ${DB_PASS}/../base.yaml\n      service: web\n",
        ),
        ("shop/base.yaml", "services:\n  web:\n    image: web:1\n"),
    ]);
    assert!(
        error.contains("services.web.extends.file: a host-local (secret) variable may not name"),
        "{error}"
    );
}

#[test]
fn a_secret_in_a_required_variable_message_is_not_shown() {
    let error = refused_with_host_secret(&[(
        "shop/compose.yaml",
        "include: [\"${NOPE:?${DB_PASS}}\"]\nservices:\n  web:\n    image: web:1\n",
    )]);
    assert!(
        error.contains("shop/compose.yaml:1: include[0]: required variable 'NOPE' is not set"),
        "{error}"
    );
    let error = refused_with_host_secret(&[
        ("shop/compose.yaml", "services:\n  web:\n    image: web:1\n"),
        ("shop/.env", "X=${NOPE:?${DB_PASS}}\n"),
    ]);
    assert!(
        error.contains("shop/.env:1: X: required variable 'NOPE' is not set"),
        "{error}"
    );
}

#[test]
fn compose_settings_in_dot_env_may_not_be_built_from_a_secret() {
    // Valid as a project name, it would name every container and label of the stack.
    for setting in [
        "COMPOSE_PROJECT_NAME=x${DB_PASS}",
        "COMPOSE_PROJECT_NAME=s3cretvalue${SOME_TOKEN}",
        "COMPOSE_FILE=${DB_PASS}/../compose.yaml",
    ] {
        let env = format!("SOME_TOKEN=\n{setting}\n");
        let error = refused_with_host_secret(&[
            ("shop/compose.yaml", "services:\n  web:\n    image: web:1\n"),
            ("shop/.env", &env),
        ]);
        assert!(
            error.contains("shop/.env:2: COMPOSE_")
                && error.contains("may not be built from a host-local or secret-looking variable"),
            "{setting}: {error}"
        );
    }
}

#[test]
fn the_hosts_own_compose_project_name_is_used() {
    let dir = repo(&[("shop/compose.yaml", "services:\n  web:\n    image: web:1\n")]);
    let env = tempfile::tempdir().unwrap();
    std::fs::write(env.path().join("shop.env"), "COMPOSE_PROJECT_NAME=store\n").unwrap();
    let options = LoadOptions {
        host_env_dir: Some(env.path().to_path_buf()),
        ..LoadOptions::default()
    };
    assert_eq!(load(dir.path(), &options).unwrap().stacks[0].name, "store");
}

#[test]
fn included_projects_each_within_the_limit_are_bounded_together() {
    // Each included file: 100 services extend one with 1000 environment entries, 200k nodes
    // once copied; two of them are 400k.
    let project = |prefix: &str| {
        let mut text = format!("services:\n  {prefix}base:\n    image: b:1\n    environment:\n");
        for i in 0..1000 {
            text.push_str(&format!("      V{i}: x\n"));
        }
        for i in 0..100 {
            text.push_str(&format!("  {prefix}{i}:\n    extends: {prefix}base\n"));
        }
        text
    };
    let (a, b) = (project("a"), project("b"));
    let dir = repo(&[
        (
            "shop/compose.yaml",
            "include: [a.yaml, b.yaml]\nservices:\n  web:\n    image: web:1\n",
        ),
        ("shop/a.yaml", &a),
        ("shop/b.yaml", &b),
    ]);
    // Not `unwrap_err`: the stack it would print is megabytes.
    let Err(error) = load(dir.path(), &LoadOptions::default()) else {
        panic!("loaded");
    };
    let error = error.to_string();
    assert!(
        error.contains(
            "shop/b.yaml:1: the stack's Compose files together expand to more than 250000 nodes"
        ),
        "{error}"
    );
}

#[test]
fn an_unset_variable_in_an_included_projects_dot_env_is_warned_about() {
    let dir = repo(&[
        (
            "shop/compose.yaml",
            "include: [db/compose.yaml]\nservices:\n  web:\n    image: web:1\n",
        ),
        (
            "shop/db/compose.yaml",
            "services:\n  db:\n    image: db:1\n",
        ),
        ("shop/db/.env", "URL=postgres://${DB_HOST}/app\n"),
    ]);
    let warnings: Vec<String> = loaded(dir.path()).stacks[0]
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("shop/db/.env:1: URL: the variable 'DB_HOST' is not set")),
        "{warnings:?}"
    );
}

#[test]
fn an_override_wins_over_a_variable_the_main_files_list_repeats() {
    let dir = repo(&[
        (
            "shop/compose.yaml",
            "services:\n  web:\n    image: web:1\n    environment:\n      - A=1\n      - A=2\n    labels: [l=1, l=2]\n",
        ),
        (
            "shop/compose.override.yaml",
            "services:\n  web:\n    environment:\n      A: \"3\"\n    labels:\n      l: \"3\"\n",
        ),
    ]);
    let desired = loaded(dir.path());
    let web = service(&desired, "web");
    assert_eq!(web.spec.environment["A"], "3");
    assert_eq!(web.spec.labels["l"], "3");
}

#[test]
fn unset_variables_in_dot_env_are_warned_about_a_bounded_number_of_times() {
    let env: String = (0..5_000).map(|i| format!("V{i}=$UNSET{i}\n")).collect();
    let dir = repo(&[
        ("shop/compose.yaml", "services:\n  web:\n    image: web:1\n"),
        ("shop/.env", &env),
    ]);
    let warnings = &loaded(dir.path()).stacks[0].warnings;
    assert!(warnings.len() <= 200, "{} warnings", warnings.len());
    assert!(warnings[0]
        .to_string()
        .contains("the variable 'UNSET0' is not set"));
}

#[test]
fn the_variables_of_included_projects_are_bounded_together() {
    // 10 MB of variables, which an included project with a .env of its own copies.
    let mut env = format!("B={}\n", "x".repeat(500_000));
    for i in 0..10 {
        env.push_str(&format!("A{i}=${{B}}${{B}}\n"));
    }
    let mut files = vec![
        (
            "shop/compose.yaml".to_string(),
            "include: [a/compose.yaml, b/compose.yaml, c/compose.yaml]\nservices:\n  web:\n    image: web:1\n".to_string(),
        ),
        ("shop/.env".to_string(), env),
    ];
    for p in ["a", "b", "c"] {
        files.push((
            format!("shop/{p}/compose.yaml"),
            format!("services:\n  {p}:\n    image: {p}:1\n"),
        ));
        files.push((format!("shop/{p}/.env"), "X=1\n".to_string()));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let Err(error) = load(repo(&files).path(), &LoadOptions::default()) else {
        panic!("loaded");
    };
    let error = error.to_string();
    assert!(
        error.contains("shop/compose.yaml:1: include[0]: the stack's variables together hold more than 16777216 bytes"),
        "{error}"
    );
}
