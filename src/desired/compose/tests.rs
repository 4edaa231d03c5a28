//! Tests of the Compose conversion: every supported key lands in the model, every
//! error names the line and the key, cosmetic spellings hash alike, and secrets are marked.

use super::{convert, StackParts, Variables};
use crate::desired::error::Problem;
use crate::desired::load::DirFiles;
use crate::desired::model::*;
use crate::desired::yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

const FILE: &str = "web/compose.yaml";

/// A desired-state repository in a temporary folder, with one stack folder `web/`.
struct Repo {
    tmp: tempfile::TempDir,
}

impl Repo {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("web")).unwrap();
        Self { tmp }
    }

    fn stack_dir(&self) -> PathBuf {
        self.tmp.path().join("web")
    }

    /// Write a file; `rel` is relative to the repository root (so `web/...` is in the stack).
    fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.tmp.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    fn convert_with(&self, text: &str, vars: &Variables) -> Result<StackParts, Vec<Problem>> {
        let doc = yaml::parse(text).expect("the test's YAML parses");
        let files = DirFiles::new(&self.stack_dir()).unwrap();
        convert(&doc, FILE, "web", vars, &files)
    }

    fn convert(&self, text: &str) -> Result<StackParts, Vec<Problem>> {
        self.convert_with(text, &Variables::default())
    }

    fn parts(&self, text: &str) -> StackParts {
        match self.convert(text) {
            Ok(parts) => parts,
            Err(problems) => panic!("expected a valid file, got {problems:#?}"),
        }
    }

    fn service(&self, text: &str) -> Service {
        self.parts(text)
            .services
            .remove("web")
            .expect("service web")
    }

    fn problems(&self, text: &str) -> Vec<Problem> {
        match self.convert(text) {
            Ok(_) => panic!("expected problems, the file was accepted:\n{text}"),
            Err(problems) => problems,
        }
    }
}

/// A file with one service `web` whose body is `body` (unindented). Body line N is file line N + 2.
fn web(body: &str) -> String {
    let mut out = String::from("services:\n  web:\n");
    for line in body.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn vars(pairs: &[(&str, &str)]) -> Variables {
    Variables {
        values: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        host_local: BTreeSet::new(),
    }
}

fn parts(text: &str) -> StackParts {
    Repo::new().parts(text)
}

fn service(text: &str) -> Service {
    Repo::new().service(text)
}

fn spec(body: &str) -> ContainerSpec {
    service(&web(body)).spec
}

fn problems(text: &str) -> Vec<Problem> {
    Repo::new().problems(text)
}

/// The one problem of a file that has exactly one.
fn problem(text: &str) -> Problem {
    let mut all = problems(text);
    assert_eq!(all.len(), 1, "expected one problem, got {all:#?}");
    all.remove(0)
}

fn hash(text: &str) -> String {
    service(text).spec.hash()
}

fn port(host_ip: Option<&str>, published: Option<&str>, target: u16, protocol: &str) -> PortSpec {
    PortSpec {
        host_ip: host_ip.map(str::to_string),
        published: published.map(str::to_string),
        target,
        protocol: protocol.to_string(),
    }
}

fn ports(short: &[&str]) -> Vec<PortSpec> {
    let list: String = short.iter().map(|p| format!("  - \"{p}\"\n")).collect();
    spec(&format!("image: web:1\nports:\n{list}")).ports
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

// ---- image, pull_policy, command, entrypoint -------------------------------------------------

#[test]
fn image_is_read_after_interpolation() {
    let repo = Repo::new();
    let parts = repo
        .convert_with(
            &web("image: registry.example:5000/web:${WEB_TAG}"),
            &vars(&[("WEB_TAG", "v1.4.0")]),
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        parts.services["web"].spec.image,
        "registry.example:5000/web:v1.4.0"
    );
}

#[test]
fn image_by_digest_is_kept_as_written() {
    let digest = format!("web@sha256:{}", "a".repeat(64));
    assert_eq!(spec(&format!("image: {digest}")).image, digest);
}

#[test]
fn pull_policy_defaults_to_missing_and_reads_always() {
    assert_eq!(
        service(&web("image: web:1")).pull_policy,
        PullPolicy::Missing
    );
    assert_eq!(
        service(&web("image: web:1\npull_policy: always")).pull_policy,
        PullPolicy::Always
    );
    assert_eq!(
        service(&web("image: web:1\npull_policy: if_not_present")).pull_policy,
        PullPolicy::Missing
    );
}

#[test]
fn an_unsupported_pull_policy_is_an_error() {
    let p = problem(&web("image: web:1\npull_policy: build"));
    assert_eq!((p.line, p.key.as_str()), (4, "services.web.pull_policy"));
    assert!(p.message.contains("'build' is not supported"), "{p}");
}

#[test]
fn command_string_is_split_like_a_shell() {
    let s = spec("image: web:1\ncommand: sh -c 'echo \"hi there\"' --name=a\\ b");
    assert_eq!(
        s.command,
        Some(strings(&["sh", "-c", "echo \"hi there\"", "--name=a b"]))
    );
}

#[test]
fn command_and_entrypoint_lists_are_taken_word_for_word() {
    let s = spec("image: web:1\ncommand: [\"echo\", \"a  b\", \"$$HOME\"]\nentrypoint:\n  - /bin/tini\n  - --");
    assert_eq!(s.command, Some(strings(&["echo", "a  b", "$HOME"])));
    assert_eq!(s.entrypoint, Some(strings(&["/bin/tini", "--"])));
}

#[test]
fn entrypoint_string_is_split_like_a_shell() {
    let s = spec("image: web:1\nentrypoint: \"/docker-entrypoint.sh  --verbose\"");
    assert_eq!(
        s.entrypoint,
        Some(strings(&["/docker-entrypoint.sh", "--verbose"]))
    );
    assert_eq!(s.command, None);
}

#[test]
fn a_command_with_unbalanced_quotes_is_an_error() {
    let p = problem(&web("image: web:1\ncommand: sh -c 'echo"));
    assert_eq!((p.line, p.key.as_str()), (4, "services.web.command"));
    assert_eq!(p.message, "unbalanced quotes in command string");
}

// ---- environment and env_file ---------------------------------------------------------------

#[test]
fn environment_map_values_are_read_as_text() {
    let s = spec(
        "image: web:1\nenvironment:\n  LOG_LEVEL: info\n  PORT: 8080\n  DEBUG: true\n  EMPTY: \"\"",
    );
    assert_eq!(
        s.environment,
        env(&[
            ("DEBUG", "true"),
            ("EMPTY", ""),
            ("LOG_LEVEL", "info"),
            ("PORT", "8080")
        ])
    );
}

#[test]
fn environment_list_splits_at_the_first_equals_sign() {
    let s = spec("image: web:1\nenvironment:\n  - LOG_LEVEL=info\n  - DSN=postgres://db/app?sslmode=disable\n  - EMPTY=");
    assert_eq!(
        s.environment,
        env(&[
            ("DSN", "postgres://db/app?sslmode=disable"),
            ("EMPTY", ""),
            ("LOG_LEVEL", "info")
        ])
    );
}

#[test]
fn environment_key_without_value_is_taken_from_the_variables_and_left_out_when_unset() {
    let repo = Repo::new();
    let vars = vars(&[("FROM_MAP", "m"), ("FROM_LIST", "l")]);
    let map = repo
        .convert_with(
            &web("image: web:1\nenvironment:\n  FROM_MAP:\n  UNSET_MAP:\n  SET: x"),
            &vars,
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        map.services["web"].spec.environment,
        env(&[("FROM_MAP", "m"), ("SET", "x")])
    );
    let list = repo
        .convert_with(
            &web("image: web:1\nenvironment:\n  - FROM_LIST\n  - UNSET_LIST"),
            &vars,
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        list.services["web"].spec.environment,
        env(&[("FROM_LIST", "l")])
    );
}

#[test]
fn environment_values_are_interpolated() {
    let repo = Repo::new();
    let parts = repo
        .convert_with(
            &web("image: web:1\nenvironment:\n  URL: http://${HOST:-localhost}:${PORT}/\n  LITERAL: $$5"),
            &vars(&[("PORT", "8080")]),
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        parts.services["web"].spec.environment,
        env(&[("LITERAL", "$5"), ("URL", "http://localhost:8080/")])
    );
}

#[test]
fn env_file_as_a_string_is_read_from_the_stack_folder() {
    let repo = Repo::new();
    repo.write("web/app.env", "# comment\nA=1\nB=two words\n");
    let s = repo.service(&web("image: web:1\nenv_file: ./app.env")).spec;
    assert_eq!(s.environment, env(&[("A", "1"), ("B", "two words")]));
}

#[test]
fn env_files_in_a_list_apply_in_order_and_environment_wins() {
    let repo = Repo::new();
    repo.write("web/base.env", "A=base\nB=base\nC=base\n")
        .write("web/conf/override.env", "B=override\n");
    let s = repo
        .service(&web(
            "image: web:1\nenv_file:\n  - base.env\n  - conf/override.env\nenvironment:\n  C: explicit",
        ))
        .spec;
    assert_eq!(
        s.environment,
        env(&[("A", "base"), ("B", "override"), ("C", "explicit")])
    );
}

#[test]
fn env_file_long_form_with_required_false_may_be_missing() {
    let repo = Repo::new();
    repo.write("web/present.env", "A=1\n");
    let s = repo
        .service(&web(
            "image: web:1\nenv_file:\n  - path: ./present.env\n  - path: ./absent.env\n    required: false",
        ))
        .spec;
    assert_eq!(s.environment, env(&[("A", "1")]));
}

#[test]
fn a_missing_required_env_file_is_an_error() {
    for (body, line) in [
        ("image: web:1\nenv_file: ./absent.env", 4),
        (
            "image: web:1\nenv_file:\n  - path: ./absent.env\n    required: true",
            5,
        ),
    ] {
        let p = problem(&web(body));
        assert_eq!(
            (p.line, p.key.as_str()),
            (line, "services.web.env_file"),
            "{p}"
        );
        assert!(p.message.contains("absent.env"), "{p}");
    }
}

#[test]
fn an_env_file_that_leaves_the_stack_folder_is_refused_even_when_optional() {
    let repo = Repo::new();
    repo.write("secret.env", "TOKEN=outside\n");
    for (body, line) in [
        ("image: web:1\nenv_file: ../secret.env", 4),
        (
            "image: web:1\nenv_file:\n  - path: ../secret.env\n    required: false",
            5,
        ),
    ] {
        let problems = repo.problems(&web(body));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let p = &problems[0];
        assert_eq!(
            (p.line, p.key.as_str()),
            (line, "services.web.env_file"),
            "{p}"
        );
        assert!(p.message.contains("leaves the stack folder"), "{p}");
    }
}

#[test]
fn a_broken_env_file_is_an_error_naming_the_file() {
    let repo = Repo::new();
    repo.write("web/app.env", "A=1\nnot an assignment\n");
    let problems = repo.problems(&web("image: web:1\nenv_file: app.env"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "services.web.env_file");
    assert!(
        problems[0].message.starts_with("app.env: line 2"),
        "{}",
        problems[0]
    );
}

// ---- ports ----------------------------------------------------------------------------------

#[test]
fn a_bare_container_port_publishes_on_a_port_the_engine_picks() {
    assert_eq!(ports(&["80"]), [port(None, None, 80, "tcp")]);
}

#[test]
fn host_and_container_port_are_read() {
    assert_eq!(ports(&["8080:80"]), [port(None, Some("8080"), 80, "tcp")]);
}

#[test]
fn host_ip_and_protocol_are_read() {
    assert_eq!(
        ports(&["127.0.0.1:8080:80/udp"]),
        [port(Some("127.0.0.1"), Some("8080"), 80, "udp")]
    );
    assert_eq!(
        ports(&["127.0.0.1::80"]),
        [port(Some("127.0.0.1"), None, 80, "tcp")]
    );
}

#[test]
fn port_ranges_expand_to_one_port_each() {
    assert_eq!(
        ports(&["8000-8002:80-82"]),
        [
            port(None, Some("8000"), 80, "tcp"),
            port(None, Some("8001"), 81, "tcp"),
            port(None, Some("8002"), 82, "tcp"),
        ]
    );
    assert_eq!(
        ports(&["9000-9001"]),
        [port(None, None, 9000, "tcp"), port(None, None, 9001, "tcp")]
    );
}

#[test]
fn a_host_port_range_for_one_container_port_stays_a_range_for_the_engine_to_pick_from() {
    assert_eq!(
        ports(&["127.0.0.1:8000-8002:80"]),
        [port(Some("127.0.0.1"), Some("8000-8002"), 80, "tcp")]
    );
}

#[test]
fn an_ipv6_host_address_is_written_in_brackets() {
    assert_eq!(
        ports(&["[::1]:8080:80"]),
        [port(Some("::1"), Some("8080"), 80, "tcp")]
    );
}

#[test]
fn long_form_ports_are_read() {
    let s = spec("image: web:1\nports:\n  - target: 80\n    published: 8080\n    host_ip: 127.0.0.1\n    protocol: udp\n    mode: host\n  - target: 443");
    assert_eq!(
        s.ports,
        [
            port(None, None, 443, "tcp"),
            port(Some("127.0.0.1"), Some("8080"), 80, "udp"),
        ]
    );
}

#[test]
fn bad_ports_are_errors_naming_the_list_item() {
    let problems = problems(&web(
        "image: web:1\nports:\n  - \"80\"\n  - \"80800:80\"\n  - \"8080:80/icmp\"\n  - \"8000-8001:80-82\"\n  - \"90-80\"\n  - published: 8080",
    ));
    let got: Vec<(usize, &str)> = problems.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (6, "services.web.ports[1]"),
            (7, "services.web.ports[2]"),
            (8, "services.web.ports[3]"),
            (9, "services.web.ports[4]"),
            (10, "services.web.ports[5]"),
        ]
    );
    assert_eq!(
        problems[0].message,
        "'80800:80': '80800' is not a port number"
    );
    assert_eq!(
        problems[1].message,
        "'8080:80/icmp': unknown protocol 'icmp' (tcp, udp, sctp)"
    );
    assert!(
        problems[2].message.contains("ranges differ"),
        "{}",
        problems[2]
    );
    assert!(
        problems[3].message.contains("runs backwards"),
        "{}",
        problems[3]
    );
    assert_eq!(problems[4].message, "a long-form port needs 'target'");
}

#[test]
fn ports_as_a_mapping_are_an_error() {
    let p = problem(&web("image: web:1\nports:\n  http: 80"));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.ports"));
    assert_eq!(p.message, "expected a list of ports, found a mapping");
}

// ---- volumes --------------------------------------------------------------------------------

fn mount(kind: MountKind, source: Option<&str>, target: &str, read_only: bool) -> MountSpec {
    MountSpec {
        target: target.into(),
        kind,
        source: source.map(str::to_string),
        read_only,
        repo_relative: None,
        tmpfs_size: None,
        no_copy: false,
        shared_data: false,
        options: Default::default(),
    }
}

#[test]
fn named_volumes_absolute_binds_and_anonymous_volumes_are_read() {
    let parts = parts(
        "services:\n  web:\n    image: web:1\n    volumes:\n      - data:/var/lib/data\n      - /srv/web/static:/static:ro\n      - /cache\nvolumes:\n  data:\n",
    );
    let s = &parts.services["web"];
    assert_eq!(
        s.spec.mounts,
        [
            mount(MountKind::Volume, None, "/cache", false),
            mount(MountKind::Bind, Some("/srv/web/static"), "/static", true),
            mount(MountKind::Volume, Some("data"), "/var/lib/data", false),
        ]
    );
    assert_eq!(s.spec.mounted_content, None);
    assert!(s.repo_binds.is_empty());
    assert_eq!(s.lines["volumes:/static"], 6);
}

#[test]
fn a_relative_bind_points_into_the_repository_and_its_content_is_hashed() {
    let repo = Repo::new();
    repo.write("web/conf/Caddyfile", ":80 { respond ok }\n");
    let text = web("image: web:1\nvolumes:\n  - ./conf/../conf/Caddyfile:/etc/caddy/Caddyfile:ro");
    let s = repo.service(&text);
    let m = &s.spec.mounts[0];
    assert_eq!(m.kind, MountKind::Bind);
    assert_eq!(m.source.as_deref(), Some("./conf/Caddyfile"));
    assert_eq!(m.repo_relative.as_deref(), Some("conf/Caddyfile"));
    assert!(m.read_only);
    assert_eq!(s.repo_binds, ["conf/Caddyfile"]);
    assert!(s.spec.mounted_content.is_some());

    // Editing a mounted file in git recreates the service that uses it.
    repo.write("web/conf/Caddyfile", ":80 { respond changed }\n");
    let edited = repo.service(&text);
    assert_ne!(edited.spec.mounted_content, s.spec.mounted_content);
    assert_ne!(edited.spec.hash(), s.spec.hash());
}

#[test]
fn a_long_form_bind_with_a_bare_relative_source_points_into_the_repository() {
    let repo = Repo::new();
    repo.write("web/conf/app.conf", "x\n");
    let s = repo.service(&web(
        "image: web:1\nvolumes:\n  - type: bind\n    source: conf/app.conf\n    target: /etc/app.conf\n    read_only: true",
    ));
    assert_eq!(
        s.spec.mounts[0].repo_relative.as_deref(),
        Some("conf/app.conf")
    );
    assert_eq!(s.spec.mounts[0].source.as_deref(), Some("./conf/app.conf"));
    assert_eq!(s.repo_binds, ["conf/app.conf"]);
}

#[test]
fn long_form_volumes_binds_and_tmpfs_are_read() {
    let repo = Repo::new();
    repo.write("web/site/index.html", "hi\n");
    let parts = repo.parts(
        "services:\n  web:\n    image: web:1\n    volumes:\n      - type: volume\n        source: data\n        target: /data\n        volume:\n          nocopy: true\n      - type: bind\n        source: ./site\n        target: /srv\n        read_only: true\n      - type: tmpfs\n        target: /tmp\n        tmpfs:\n          size: 64m\nvolumes:\n  data: {}\n",
    );
    let mounts = &parts.services["web"].spec.mounts;
    assert_eq!(
        mounts[0],
        MountSpec {
            no_copy: true,
            ..mount(MountKind::Volume, Some("data"), "/data", false)
        }
    );
    assert_eq!(
        mounts[1],
        MountSpec {
            repo_relative: Some("site".into()),
            ..mount(MountKind::Bind, Some("./site"), "/srv", true)
        }
    );
    assert_eq!(
        mounts[2],
        MountSpec {
            tmpfs_size: Some(64 * 1024 * 1024),
            ..mount(MountKind::Tmpfs, None, "/tmp", false)
        }
    );
}

#[test]
fn an_undeclared_named_volume_is_an_error() {
    let p = problem(&web("image: web:1\nvolumes:\n  - data:/data"));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.volumes[0]"));
    assert_eq!(
        p.message,
        "volume 'data' is not declared under the top-level `volumes:`"
    );
}

#[test]
fn a_bind_from_the_home_folder_is_refused() {
    let p = problem(&web("image: web:1\nvolumes:\n  - ~/data:/data"));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.volumes[0]"));
    assert!(p.message.contains("'~' are not supported"), "{p}");
}

#[test]
fn a_relative_bind_that_leaves_the_stack_folder_is_refused() {
    let repo = Repo::new();
    repo.write("other/secret", "x");
    std::os::unix::fs::symlink("../other", repo.stack_dir().join("out")).unwrap();
    repo.write("web/app.conf", "x");
    let problems = repo.problems(&web(
        "image: web:1\nvolumes:\n  - ../other/secret:/secret\n  - ./out/new:/new\n  - ./app.conf/new:/x",
    ));
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(
        (problems[0].line, problems[0].key.as_str()),
        (5, "services.web.volumes[0]")
    );
    assert!(
        problems[0].message.contains("leaves the stack folder"),
        "{}",
        problems[0]
    );
    // A missing source is created in the data folder: not through a link out, nor under a file.
    assert_eq!(problems[1].key, "services.web.volumes[1]");
    assert!(
        problems[1]
            .message
            .contains("'out' is a symlink that leaves"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2]
            .message
            .contains("cannot be created: 'app.conf' is not a folder"),
        "{}",
        problems[2]
    );
}

#[test]
fn a_relative_bind_source_git_does_not_have_is_accepted_and_points_to_the_data_folder() {
    let repo = Repo::new();
    let text = web("image: web:1\nvolumes:\n  - ./data/db:/var/lib/db\n  - ./absent:/seen:ro");
    let s = repo.service(&text);
    let (seen, db) = (&s.spec.mounts[0], &s.spec.mounts[1]);
    assert_eq!(db.repo_relative.as_deref(), Some("data/db"));
    assert!(db.in_data_folder() && !db.read_only);
    // Read-only, a missing source is an empty folder too, in the data folder (as Compose does).
    assert_eq!(seen.repo_relative.as_deref(), Some("absent"));
    assert!(seen.shared_data && seen.in_data_folder());
    assert_eq!(s.repo_binds, ["data/db", "absent"]);
    // The day git has it, the service changes: its tracked files are written there.
    repo.write("web/data/db/seed.sql", "create table t;\n");
    let tracked = repo.service(&text);
    assert_ne!(tracked.spec.mounted_content, s.spec.mounted_content);
}

#[test]
fn a_writable_bind_points_to_the_data_folder_by_its_real_path() {
    let repo = Repo::new();
    repo.write("web/data/pg/.keep", "");
    std::os::unix::fs::symlink("data", repo.stack_dir().join("alias")).unwrap();
    let s = repo.service(&web(
        "image: web:1\nvolumes:\n  - ./alias/pg:/var/lib/pg\n  - ./alias/new:/new",
    ));
    let (new, pg) = (&s.spec.mounts[0], &s.spec.mounts[1]);
    assert_eq!(pg.source.as_deref(), Some("./alias/pg"));
    assert_eq!(pg.repo_relative.as_deref(), Some("data/pg"));
    assert_eq!(new.repo_relative.as_deref(), Some("data/new"));
    assert!(pg.in_data_folder() && new.in_data_folder());
}

#[test]
fn a_read_only_bind_of_a_folder_a_service_writes_shares_the_data_folder() {
    let repo = Repo::new();
    repo.write("web/uploads/.keep", "");
    repo.write("web/conf/site.conf", "x");
    let parts = repo.parts(
        "services:\n  app:\n    image: app:1\n    volumes: [\"./uploads:/srv/uploads\"]\n  web:\n    image: web:1\n    volumes: [\"./uploads:/usr/share/uploads:ro\", \"./conf:/etc/web:ro\", \".:/all:ro\"]\n",
    );
    let web = &parts.services["web"].spec.mounts;
    let by_target = |t: &str| web.iter().find(|m| m.target == t).unwrap();
    assert!(by_target("/usr/share/uploads").in_data_folder());
    assert!(by_target("/all").in_data_folder(), "it holds ./uploads");
    let conf = by_target("/etc/web");
    assert!(
        !conf.in_data_folder(),
        "a plain repository folder is the revision's copy"
    );
    assert!(!conf.shared_data);
    assert!(parts.services["app"].spec.mounts[0].in_data_folder());
}

#[test]
fn a_read_only_bind_of_repository_files_keeps_its_spec_hash() {
    let repo = Repo::new();
    repo.write("web/conf/site.conf", "x");
    let s = repo.service(&web("image: web:1\nvolumes:\n  - ./conf:/etc/web:ro"));
    let json = serde_json::to_string(&s.spec).unwrap();
    assert!(!json.contains("shared_data"), "{json}");
}

#[test]
fn a_relative_mount_target_is_an_error() {
    let p = problem(&web("image: web:1\nvolumes:\n  - /srv:data"));
    assert_eq!(p.key, "services.web.volumes[0]");
    assert_eq!(
        p.message,
        "the mount target 'data' must be an absolute path"
    );
}

#[test]
fn a_long_form_volume_without_a_type_is_an_error() {
    let p = problem(&web("image: web:1\nvolumes:\n  - target: /data"));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.volumes[0]"));
    assert!(p.message.contains("needs 'type'"), "{p}");
}

// ---- networks -------------------------------------------------------------------------------

#[test]
fn a_service_without_networks_joins_the_default_network() {
    let parts = parts(&web("image: web:1"));
    assert_eq!(
        parts.services["web"].spec.networks,
        BTreeMap::from([("default".to_string(), vec![])])
    );
    assert_eq!(parts.networks["default"].name, "web_default");
    assert!(!parts.networks["default"].external);
}

#[test]
fn service_networks_as_a_list_or_a_map_with_aliases_are_read() {
    let text = "services:\n  web:\n    image: web:1\n    networks:\n      - front\n      - default\n  api:\n    image: api:1\n    networks:\n      back:\n        aliases: [api-v2, api, api]\n      front:\nnetworks:\n  front:\n  back:\n";
    let parts = parts(text);
    assert_eq!(
        parts.services["web"].spec.networks,
        BTreeMap::from([
            ("default".to_string(), vec![]),
            ("front".to_string(), vec![])
        ])
    );
    assert_eq!(
        parts.services["api"].spec.networks,
        BTreeMap::from([
            ("back".to_string(), strings(&["api", "api-v2"])),
            ("front".to_string(), vec![]),
        ])
    );
}

#[test]
fn an_undeclared_network_is_an_error() {
    let p = problem(&web("image: web:1\nnetworks:\n  - front"));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.networks.front"));
    assert_eq!(
        p.message,
        "network 'front' is not declared under the top-level `networks:`"
    );
}

#[test]
fn top_level_volumes_and_networks_get_project_names_unless_external_or_named() {
    let parts = parts(
        "services:\n  web:\n    image: web:1\nvolumes:\n  data:\n  shared:\n    external: true\n  legacy:\n    external: true\n    name: old_data\n  custom:\n    name: my-volume\n    driver: local\n    labels:\n      - backup=daily\nnetworks:\n  front:\n    internal: true\n  proxy:\n    external: true\n",
    );
    let v = &parts.volumes;
    assert_eq!(
        (v["data"].name.as_str(), v["data"].external),
        ("web_data", false)
    );
    assert_eq!(
        (v["shared"].name.as_str(), v["shared"].external),
        ("shared", true)
    );
    assert_eq!(v["legacy"].name, "old_data");
    assert_eq!(v["custom"].name, "my-volume");
    assert_eq!(v["custom"].driver.as_deref(), Some("local"));
    assert_eq!(v["custom"].labels, env(&[("backup", "daily")]));
    let n = &parts.networks;
    assert_eq!(n["front"].name, "web_front");
    assert!(n["front"].internal);
    assert_eq!(
        (n["proxy"].name.as_str(), n["proxy"].external),
        ("proxy", true)
    );
    assert_eq!(n["default"].name, "web_default");
}

#[test]
fn a_top_level_name_overrides_the_project_in_engine_names() {
    let parts = parts(
        "name: shop\nservices:\n  web:\n    image: web:1\nvolumes:\n  data:\nnetworks:\n  front:\n",
    );
    assert_eq!(parts.name.as_deref(), Some("shop"));
    assert_eq!(parts.volumes["data"].name, "shop_data");
    assert_eq!(parts.networks["front"].name, "shop_front");
    assert_eq!(parts.networks["default"].name, "shop_default");
}

// ---- healthcheck ----------------------------------------------------------------------------

#[test]
fn a_healthcheck_test_string_runs_in_a_shell() {
    let h = spec("image: web:1\nhealthcheck:\n  test: curl -f http://localhost/ || exit 1\n  interval: 10s\n  timeout: 1500ms\n  start_period: 1m\n  retries: 3")
        .healthcheck
        .unwrap();
    assert_eq!(
        h,
        HealthSpec {
            test: strings(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"]),
            interval_ms: Some(10_000),
            timeout_ms: Some(1_500),
            start_period_ms: Some(60_000),
            retries: Some(3),
        }
    );
}

#[test]
fn a_healthcheck_test_list_is_kept_as_written() {
    let h = spec(
        "image: web:1\nhealthcheck:\n  test: [\"CMD\", \"wget\", \"-q\", \"http://localhost/\"]",
    )
    .healthcheck
    .unwrap();
    assert_eq!(h.test, strings(&["CMD", "wget", "-q", "http://localhost/"]));
    assert_eq!(h.interval_ms, None);
}

#[test]
fn a_disabled_healthcheck_turns_off_the_image_healthcheck() {
    let h = spec("image: web:1\nhealthcheck:\n  disable: true")
        .healthcheck
        .unwrap();
    assert_eq!(h.test, ["NONE"]);
}

#[test]
fn a_healthcheck_list_must_start_with_cmd_or_cmd_shell() {
    let p = problem(&web(
        "image: web:1\nhealthcheck:\n  test: [curl, -f, http://localhost/]",
    ));
    assert_eq!(
        (p.line, p.key.as_str()),
        (5, "services.web.healthcheck.test")
    );
    assert!(p.message.contains("CMD, CMD-SHELL or NONE"), "{p}");
}

// ---- restart, depends_on, labels --------------------------------------------------------------

#[test]
fn valid_restart_policies_are_read() {
    for policy in [
        "no",
        "always",
        "unless-stopped",
        "on-failure",
        "on-failure:5",
    ] {
        assert_eq!(
            spec(&format!("image: web:1\nrestart: {policy}"))
                .restart
                .as_deref(),
            Some(policy)
        );
    }
}

#[test]
fn an_invalid_restart_policy_is_an_error() {
    for policy in ["sometimes", "on-failure:x", "Always"] {
        let p = problem(&web(&format!("image: web:1\nrestart: {policy}")));
        assert_eq!((p.line, p.key.as_str()), (4, "services.web.restart"));
        assert_eq!(
            p.message,
            format!(
                "'{policy}' is not a restart policy (no, always, unless-stopped, on-failure[:N])"
            )
        );
    }
}

#[test]
fn depends_on_as_a_list_means_service_started() {
    let parts = parts("services:\n  web:\n    image: web:1\n    depends_on: [db, cache]\n  db:\n    image: db:1\n  cache:\n    image: cache:1\n");
    assert_eq!(
        parts.services["web"].depends_on,
        BTreeMap::from([
            ("cache".to_string(), DependsCondition::ServiceStarted),
            ("db".to_string(), DependsCondition::ServiceStarted),
        ])
    );
}

#[test]
fn depends_on_as_a_map_reads_each_condition() {
    let parts = parts("services:\n  web:\n    image: web:1\n    depends_on:\n      db:\n        condition: service_healthy\n      migrate:\n        condition: service_completed_successfully\n        restart: true\n      cache:\n        condition: service_started\n      log: {}\n  db:\n    image: db:1\n  migrate:\n    image: web:1\n  cache:\n    image: cache:1\n  log:\n    image: log:1\n");
    assert_eq!(
        parts.services["web"].depends_on,
        BTreeMap::from([
            ("cache".to_string(), DependsCondition::ServiceStarted),
            ("db".to_string(), DependsCondition::ServiceHealthy),
            ("log".to_string(), DependsCondition::ServiceStarted),
            (
                "migrate".to_string(),
                DependsCondition::ServiceCompletedSuccessfully
            ),
        ])
    );
}

#[test]
fn depends_on_an_unknown_service_is_an_error() {
    let p = problem(&web("image: web:1\ndepends_on:\n  - db"));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.depends_on"));
    assert_eq!(p.message, "'db' is not a service of this stack");
}

#[test]
fn an_unknown_depends_on_condition_is_an_error() {
    let p = problem("services:\n  web:\n    image: web:1\n    depends_on:\n      db:\n        condition: service_ready\n  db:\n    image: db:1\n");
    assert_eq!(
        (p.line, p.key.as_str()),
        (6, "services.web.depends_on.db.condition")
    );
    assert!(
        p.message.starts_with("'service_ready' is not a condition"),
        "{p}"
    );
}

#[test]
fn a_depends_on_cycle_is_an_error_naming_the_services() {
    let p = problem("services:\n  a:\n    image: a:1\n    depends_on: [b]\n  b:\n    image: b:1\n    depends_on: [a]\n  c:\n    image: c:1\n");
    assert_eq!((p.line, p.key.as_str()), (2, "services"));
    assert_eq!(p.message, "depends_on forms a cycle: a -> b -> a");
}

#[test]
fn a_cycle_is_named_in_dependency_order_without_the_services_that_merely_wait_on_it() {
    // a -> c -> b -> a is the cycle; d depends on it but is not on it.
    let p = problem("services:\n  a:\n    image: a:1\n    depends_on: [c]\n  b:\n    image: b:1\n    depends_on: [a]\n  c:\n    image: c:1\n    depends_on: [b]\n  d:\n    image: d:1\n    depends_on: [a]\n");
    assert_eq!(p.message, "depends_on forms a cycle: a -> c -> b -> a");
}

#[test]
fn a_dependency_on_a_service_with_errors_is_not_also_reported_as_unknown() {
    let all = problems("services:\n  web:\n    image: web:1\n    depends_on: [db]\n  db:\n    image: db:1\n    restart: sometimes\n");
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].key, "services.db.restart");
}

#[test]
fn labels_as_a_map_or_a_list_are_read() {
    let expected = env(&[
        ("org.example.team", "web"),
        ("traefik.enable", "true"),
        ("flag", ""),
    ]);
    assert_eq!(
        spec("image: web:1\nlabels:\n  org.example.team: web\n  traefik.enable: true\n  flag:")
            .labels,
        expected
    );
    assert_eq!(
        spec("image: web:1\nlabels:\n  - org.example.team=web\n  - traefik.enable=true\n  - flag")
            .labels,
        expected
    );
}

#[test]
fn compose_and_reconciler_labels_are_reserved() {
    for label in ["com.docker.compose.project", "reconciler.spec-hash"] {
        let p = problem(&web(&format!("image: web:1\nlabels:\n  {label}: x")));
        assert_eq!((p.line, p.key.as_str()), (5, "services.web.labels"));
        assert_eq!(
            p.message,
            format!("label '{label}' is reserved for the reconciler and Compose")
        );
    }
}

// ---- the remaining scalar and list keys -------------------------------------------------------

#[test]
fn plain_container_settings_are_read() {
    let s = spec("image: web:1\nuser: \"1000:1000\"\nworking_dir: /app\nhostname: web-1\ncontainer_name: shop-web\nstop_signal: SIGQUIT\nstop_grace_period: 1m30s\ninit: true\nread_only: yes\nprivileged: false");
    assert_eq!(s.user.as_deref(), Some("1000:1000"));
    assert_eq!(s.working_dir.as_deref(), Some("/app"));
    assert_eq!(s.hostname.as_deref(), Some("web-1"));
    assert_eq!(s.container_name.as_deref(), Some("shop-web"));
    assert_eq!(s.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(s.stop_grace_period_ms, Some(90_000));
    assert_eq!(s.init, Some(true));
    assert!(s.read_only);
    assert!(!s.privileged);
    let defaults = spec("image: web:1");
    assert_eq!((defaults.init, defaults.read_only), (None, false));
}

#[test]
fn privileged_is_read() {
    // Refusing it is the host policy's job, not the parser's.
    assert!(spec("image: web:1\nprivileged: true").privileged);
}

#[test]
fn a_non_boolean_flag_is_an_error() {
    let p = problem(&web("image: web:1\ninit: maybe"));
    assert_eq!((p.line, p.key.as_str()), (4, "services.web.init"));
    assert_eq!(p.message, "expected true or false, found 'maybe'");
}

#[test]
fn extra_hosts_in_list_or_map_form_are_normalized_and_sorted() {
    let expected = strings(&["db:10.0.0.5", "ip6:::1", "metrics:10.0.0.9"]);
    assert_eq!(
        spec("image: web:1\nextra_hosts:\n  - metrics:10.0.0.9\n  - db=10.0.0.5\n  - ip6=::1")
            .extra_hosts,
        expected
    );
    assert_eq!(
        spec("image: web:1\nextra_hosts:\n  metrics: 10.0.0.9\n  ip6: \"::1\"\n  db: 10.0.0.5")
            .extra_hosts,
        expected
    );
}

#[test]
fn capabilities_are_sorted_and_deduplicated() {
    let s = spec("image: web:1\ncap_add: [NET_BIND_SERVICE, CHOWN, NET_BIND_SERVICE]\ncap_drop:\n  - SYS_ADMIN\n  - ALL");
    assert_eq!(s.cap_add, ["CHOWN", "NET_BIND_SERVICE"]);
    assert_eq!(s.cap_drop, ["ALL", "SYS_ADMIN"]);
}

#[test]
fn memory_and_cpu_limits_are_read() {
    let s = spec("image: web:1\nmem_limit: 512m\ncpus: 0.5");
    assert_eq!(s.mem_limit, Some(512 * 1024 * 1024));
    assert_eq!(s.nano_cpus, Some(500_000_000));
}

#[test]
fn deploy_resource_limits_set_memory_and_cpus() {
    let s = spec(
        "image: web:1\ndeploy:\n  resources:\n    limits:\n      memory: 1g\n      cpus: \"1.5\"",
    );
    assert_eq!(s.mem_limit, Some(1024 * 1024 * 1024));
    assert_eq!(s.nano_cpus, Some(1_500_000_000));
}

#[test]
fn bad_sizes_and_cpu_counts_are_errors() {
    let problems = problems(&web("image: web:1\nmem_limit: lots\ncpus: 0"));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        (problems[0].line, problems[0].key.as_str()),
        (4, "services.web.mem_limit")
    );
    assert_eq!(
        problems[0].message,
        "'lots' is not a size (write e.g. 512m, 1g)"
    );
    assert_eq!(
        (problems[1].line, problems[1].key.as_str()),
        (5, "services.web.cpus")
    );
}

#[test]
fn logging_driver_and_options_are_read() {
    let s = spec("image: web:1\nlogging:\n  driver: json-file\n  options:\n    max-size: 10m\n    max-file: 3");
    assert_eq!(
        s.logging,
        Some(LoggingSpec {
            driver: Some("json-file".into()),
            options: env(&[("max-file", "3"), ("max-size", "10m")]),
        })
    );
}

#[test]
fn deploy_update_config_sets_order_and_monitor() {
    let s = service(&web("image: web:1\ndeploy:\n  update_config:\n    order: start-first\n    failure_action: rollback\n    monitor: 30s"));
    assert_eq!(s.order, Some(UpdateOrder::StartFirst));
    assert_eq!(s.monitor, Duration::from_secs(30));
    let s = service(&web(
        "image: web:1\ndeploy:\n  update_config:\n    order: stop-first",
    ));
    assert_eq!(s.order, Some(UpdateOrder::StopFirst));
    assert_eq!(s.monitor, Duration::ZERO);
    assert_eq!(service(&web("image: web:1")).order, None);
}

#[test]
fn an_unknown_update_order_is_an_error_and_swarm_pacing_is_a_warning() {
    let text = web("image: web:1\ndeploy:\n  update_config:\n    order: blue-green\n    failure_action: continue\n    parallelism: 2");
    let problems = problems(&text);
    let got: Vec<(usize, &str)> = problems.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(got, [(6, "services.web.deploy.update_config.order")]);
    let text = web(
        "image: web:1\ndeploy:\n  update_config:\n    failure_action: continue\n    parallelism: 2",
    );
    let mut warnings = parts(&text).warnings;
    warnings.sort_by_key(|w| w.line);
    let got: Vec<(usize, &str)> = warnings.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (6, "services.web.deploy.update_config.failure_action"),
            (7, "services.web.deploy.update_config.parallelism"),
        ]
    );
    assert!(warnings[0]
        .message
        .contains("always restores the last good version"));
}

#[test]
fn x_reconciler_sets_health_timeout_min_ready_and_http_probe() {
    let s = service(&web("image: web:1\nports: [\"8080:80\"]\nx-reconciler:\n  health_timeout: 2m\n  min_ready: 500ms\n  http_probe: http://127.0.0.1:8080/health"));
    assert_eq!(s.health_timeout, Duration::from_secs(120));
    assert_eq!(s.min_ready, Duration::from_millis(500));
    assert_eq!(
        s.http_probe.as_deref(),
        Some("http://127.0.0.1:8080/health")
    );
    let defaults = service(&web("image: web:1"));
    assert_eq!(
        (
            defaults.health_timeout,
            defaults.min_ready,
            defaults.http_probe
        ),
        (Duration::from_secs(60), Duration::from_secs(5), None)
    );
}

#[test]
fn x_reconciler_refuses_unknown_settings_and_non_http_probes() {
    let problems = problems(&web(
        "image: web:1\nx-reconciler:\n  http_probe: tcp://127.0.0.1:80\n  health_timout: 1m",
    ));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].key, "services.web.x-reconciler.http_probe");
    assert_eq!(problems[1].key, "services.web.x-reconciler.health_timout");
    assert_eq!(
        problems[1].message,
        "unknown key 'health_timout' (did you mean 'health_timeout'?)"
    );
}

#[test]
fn pre_deploy_takes_a_list_or_a_string_split_as_compose_splits_command_and_a_timeout() {
    let s = service(&web(
        "image: web:1\nx-reconciler:\n  pre_deploy:\n    command: [\"migrate\", \"--up\"]\n    timeout: 90s",
    ));
    let job = s.pre_deploy.expect("a pre_deploy job");
    assert_eq!(job.command, strings(&["migrate", "--up"]));
    assert_eq!(job.timeout, Duration::from_secs(90));
    let s = service(&web(
        "image: web:1\nx-reconciler:\n  pre_deploy:\n    command: sh -c 'migrate --up'",
    ));
    let job = s.pre_deploy.expect("a pre_deploy job");
    assert_eq!(job.command, strings(&["sh", "-c", "migrate --up"]));
    assert_eq!(job.timeout, Duration::from_secs(300));
    assert_eq!(service(&web("image: web:1")).pre_deploy, None);
}

#[test]
fn pre_deploy_refuses_unknown_keys_bad_types_an_empty_command_and_unbounded_timeouts() {
    let cases = [
        (
            "    command: migrate\n    timout: 1m",
            "services.web.x-reconciler.pre_deploy.timout",
            7,
            "unknown key 'timout'",
        ),
        (
            "    command: []",
            "services.web.x-reconciler.pre_deploy.command",
            6,
            "the command is empty",
        ),
        (
            "    command: \"\"",
            "services.web.x-reconciler.pre_deploy.command",
            6,
            "the command is empty",
        ),
        (
            "    command: {a: b}",
            "services.web.x-reconciler.pre_deploy.command",
            6,
            "expected",
        ),
        (
            "    timeout: 1m",
            "services.web.x-reconciler.pre_deploy",
            6,
            "needs a command",
        ),
        (
            "    command: migrate\n    timeout: 25h",
            "services.web.x-reconciler.pre_deploy.timeout",
            7,
            "at most 24h",
        ),
        (
            "    command: migrate\n    timeout: 0s",
            "services.web.x-reconciler.pre_deploy.timeout",
            7,
            "more than 0s",
        ),
        (
            "    command: migrate\n    timeout: soon",
            "services.web.x-reconciler.pre_deploy.timeout",
            7,
            "is not a duration",
        ),
    ];
    for (body, key, line, message) in cases {
        let text = web(&format!(
            "image: web:1\nx-reconciler:\n  pre_deploy:\n{body}"
        ));
        let p = problem(&text);
        assert_eq!((p.key.as_str(), p.line), (key, line), "{body}: {p}");
        assert!(p.message.contains(message), "{body}: {p}");
    }
    let p = problem(&web("image: web:1\nx-reconciler:\n  pre_deploy: migrate"));
    assert_eq!(p.key, "services.web.x-reconciler.pre_deploy");
    assert!(p.message.contains("expected a mapping"), "{p}");
    let long = format!("[{}]", vec!["x"; 5000].join(", "));
    let p = problem(&web(&format!(
        "image: web:1\nx-reconciler:\n  pre_deploy:\n    command: {long}"
    )));
    assert!(p.message.contains("too long"), "{p}");
}

#[test]
fn x_reconciler_backup_takes_stack_volumes_and_refuses_others_with_their_line() {
    let text = "services:\n  db:\n    image: db:1\n    volumes: [data:/data]\n    x-reconciler:\n      backup: [data]\n      backup_keep: 3\nvolumes:\n  data: {}\n";
    let parts = parts(text);
    assert_eq!(parts.services["db"].backup, vec!["data".to_string()]);
    assert_eq!(parts.services["db"].backup_keep, 3);
    assert_eq!(
        service(&web("image: db:1")).backup_keep,
        crate::desired::model::DEFAULT_BACKUP_KEEP
    );

    let text = "services:\n  db:\n    image: db:1\n    x-reconciler:\n      backup: [data, cache, ext, nope]\n      backup_keep: 0\nvolumes:\n  data: {}\n  cache:\n    driver_opts: {type: tmpfs, device: tmpfs}\n  ext:\n    external: true\n";
    let problems = problems(text);
    let found: Vec<(&str, usize)> = problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        found,
        vec![
            ("services.db.x-reconciler.backup[1]", 5),
            ("services.db.x-reconciler.backup[2]", 5),
            ("services.db.x-reconciler.backup[3]", 5),
            ("services.db.x-reconciler.backup_keep", 6),
        ],
        "{problems:#?}"
    );
    assert!(problems[0].message.contains("tmpfs"), "{problems:#?}");
    assert!(problems[1].message.contains("external"), "{problems:#?}");
    assert!(
        problems[2].message.contains("not a volume"),
        "{problems:#?}"
    );
}

#[test]
fn x_reconciler_backup_refuses_a_volume_key_that_would_be_a_path_outside_the_backups_folder() {
    for key in ["\"../../../../etc/cron.d\"", "\"/etc/cron.d\"", "\"..\""] {
        let text = format!("services:\n  db:\n    image: db:1\n    x-reconciler:\n      backup: [{key}]\nvolumes:\n  {key}:\n    name: plain\n");
        let problems = problems(&text);
        assert!(
            problems
                .iter()
                .any(|p| p.key == "services.db.x-reconciler.backup[0]"
                    && p.message.contains("cannot name a backup folder")),
            "{key}: {problems:#?}"
        );
    }
}

// ---- top level, x-*, anchors ----------------------------------------------------------------

#[test]
fn version_and_x_keys_are_ignored() {
    let with = parts("version: \"3.8\"\nx-notes: anything at all\nservices:\n  web:\n    image: web:1\n    x-owner: team-web\n");
    let without = parts(&web("image: web:1"));
    assert_eq!(with.services["web"].spec, without.services["web"].spec);
}

#[test]
fn anchors_and_merge_keys_work_as_in_compose() {
    let text = "x-common: &common\n  restart: unless-stopped\n  environment:\n    LOG_LEVEL: info\n  logging: &logging\n    driver: local\nservices:\n  web:\n    <<: *common\n    image: web:1\n  worker:\n    <<: *common\n    image: worker:1\n    restart: always\n    logging: *logging\n";
    let parts = parts(text);
    let (web, worker) = (&parts.services["web"].spec, &parts.services["worker"].spec);
    assert_eq!(web.restart.as_deref(), Some("unless-stopped"));
    assert_eq!(web.environment, env(&[("LOG_LEVEL", "info")]));
    assert_eq!(
        web.logging.as_ref().unwrap().driver.as_deref(),
        Some("local")
    );
    assert_eq!(worker.restart.as_deref(), Some("always"));
    assert_eq!(worker.environment, web.environment);
    assert_eq!(worker.logging, web.logging);
}

// ---- errors: each names the file, the line and the key ----------------------------------------

#[test]
fn a_misspelt_key_suggests_the_right_one() {
    let p = problems("services:\n  web:\n    imagee: web:1\n").remove(0);
    assert_eq!(
        p,
        Problem {
            file: FILE.into(),
            line: 3,
            key: "services.web.imagee".into(),
            message: "unknown key 'imagee' (did you mean 'image'?)".into(),
        }
    );
    assert_eq!(
        p.to_string(),
        "web/compose.yaml:3: services.web.imagee: unknown key 'imagee' (did you mean 'image'?)"
    );
}

#[test]
fn a_misspelt_top_level_key_suggests_the_right_one() {
    let all = problems("servics:\n  web:\n    image: web:1\n");
    assert_eq!((all[0].line, all[0].key.as_str()), (1, "servics"));
    assert_eq!(
        all[0].message,
        "unknown key 'servics' (did you mean 'services'?)"
    );
}

#[test]
fn an_unknown_key_without_a_close_match_lists_only_the_supported_keys() {
    let p = problem(&web("image: web:1\nfrobnicate: true"));
    assert_eq!((p.line, p.key.as_str()), (4, "services.web.frobnicate"));
    assert!(
        p.message
            .starts_with("unknown key 'frobnicate' (allowed here: image, pull_policy, command,"),
        "{p}"
    );
    // Keys that are refused must not be offered as allowed.
    for refused in ["build", "annotations", "mac_address"] {
        assert!(!p.message.contains(refused), "{refused} offered in: {p}");
    }
}

#[test]
fn build_is_refused_with_a_hint_to_use_a_registry() {
    let p = problem(&web("build: .\nports: [\"80\"]"));
    assert_eq!((p.line, p.key.as_str()), (3, "services.web.build"));
    assert!(p.message.starts_with("'build' is not supported"), "{p}");
    assert!(p.message.contains("build and push the image in CI"), "{p}");
    assert!(p.message.contains("`image:`"), "{p}");
}

#[test]
fn a_compose_key_outside_the_subset_is_named_as_unsupported() {
    let p = problem(&web("image: web:1\nannotations:\n  com.example.foo: bar"));
    assert_eq!((p.line, p.key.as_str()), (4, "services.web.annotations"));
    assert!(
        p.message.starts_with("'annotations' is not supported: "),
        "{p}"
    );
}

#[test]
fn devices_are_read_in_short_and_long_form_sorted_and_deduplicated() {
    let s = spec("image: web:1\ndevices:\n  - /dev/ttyUSB0:/dev/ttyS0:rw\n  - /dev/fuse\n  - /dev/snd:r\n  - source: /dev/net/tun\n    permissions: rwm\n  - /dev/fuse");
    let devices: Vec<(&str, &str, &str)> = s
        .devices
        .iter()
        .map(|d| {
            (
                d.host_path.as_str(),
                d.container_path.as_str(),
                d.permissions.as_str(),
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            ("/dev/fuse", "/dev/fuse", "rwm"),
            ("/dev/net/tun", "/dev/net/tun", "rwm"),
            ("/dev/snd", "/dev/snd", "r"),
            ("/dev/ttyUSB0", "/dev/ttyS0", "rw"),
        ]
    );
}

#[test]
fn a_malformed_device_is_named_with_its_line() {
    for bad in ["dev/fuse", "/dev/fuse:/dev/fuse:rwx", "/a:/b:rw:x"] {
        let p = problem(&web(&format!("image: web:1\ndevices:\n  - {bad}")));
        assert_eq!(
            (p.line, p.key.as_str()),
            (5, "services.web.devices[0]"),
            "{bad}: {p}"
        );
    }
}

#[test]
fn a_device_changes_the_hash_and_no_device_leaves_it_as_before() {
    let plain = spec("image: web:1");
    assert!(!serde_json::to_string(&plain).unwrap().contains("devices"));
    assert_ne!(
        spec("image: web:1\ndevices: [/dev/fuse]").hash(),
        plain.hash()
    );
}

#[test]
fn an_unsupported_top_level_section_is_named() {
    let p = problem("services:\n  web:\n    image: web:1\nmodels:\n  llm:\n    model: ai/x\n");
    assert_eq!((p.line, p.key.as_str()), (4, "models"));
    assert_eq!(
        p.message,
        "top-level 'models' is not supported by the reconciler"
    );
}

#[test]
fn a_list_where_a_mapping_is_expected_is_an_error() {
    let p = problem(&web("image: web:1\nhealthcheck:\n  - CMD\n  - \"true\""));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.healthcheck"));
    assert_eq!(p.message, "expected a mapping, found a list");
    let p = problem("services:\n  - web\n");
    assert_eq!((p.line, p.key.as_str()), (2, "services"));
    assert_eq!(p.message, "expected a mapping, found a list");
}

#[test]
fn a_mapping_where_a_value_is_expected_is_an_error() {
    let p = problem(&web("image: web:1\nuser:\n  name: web\n  uid: 1"));
    assert_eq!((p.line, p.key.as_str()), (5, "services.web.user"));
    assert_eq!(p.message, "expected a value, found a mapping");
}

#[test]
fn a_bad_duration_is_an_error() {
    for text in ["10", "ten seconds", "1m30", "-5s"] {
        let p = problem(&web(&format!("image: web:1\nstop_grace_period: {text}")));
        assert_eq!(
            (p.line, p.key.as_str()),
            (4, "services.web.stop_grace_period")
        );
        assert_eq!(
            p.message,
            format!("'{text}' is not a duration of at most a year (write e.g. 30s, 1m30s, 500ms)")
        );
    }
}

#[test]
fn a_missing_image_is_an_error() {
    let p = problem(&web("restart: always"));
    assert_eq!((p.line, p.key.as_str()), (3, "services.web.image"));
    assert_eq!(
        p.message,
        "missing 'image': every service needs an image from a registry"
    );
}

#[test]
fn an_empty_image_is_an_error_naming_the_unset_variable_that_emptied_it() {
    let p = problem(&web("image: \"${TAG}\""));
    assert_eq!((p.line, p.key.as_str()), (3, "services.web.image"));
    assert_eq!(
        p.message,
        "'' is not an image reference (it uses the variable 'TAG', which is not set and was replaced by an empty string)"
    );
    let p = problem(&web("image: \"\""));
    assert_eq!(p.message, "'' is not an image reference");
}

#[test]
fn an_empty_file_is_an_error() {
    for text in ["", "# nothing here yet\n"] {
        let p = problem(text);
        assert_eq!((p.line, p.key.as_str()), (1, ""));
        assert_eq!(
            p.message,
            "the Compose file is empty: it needs a `services:` section"
        );
        assert_eq!(
            p.to_string(),
            "web/compose.yaml:1: the Compose file is empty: it needs a `services:` section"
        );
    }
}

#[test]
fn a_file_without_services_is_an_error() {
    let p = problem("name: web\nvolumes:\n  data:\n");
    assert_eq!((p.line, p.key.as_str()), (1, "services"));
    assert_eq!(p.message, "the Compose file has no `services:` section");
}

#[test]
fn a_required_variable_that_is_unset_is_an_error_with_its_message() {
    let p = problem(&web("image: web:${WEB_TAG:?set WEB_TAG in .env}"));
    assert_eq!((p.line, p.key.as_str()), (3, "services.web.image"));
    assert_eq!(
        p.message,
        "required variable 'WEB_TAG' is not set: set WEB_TAG in .env"
    );
}

#[test]
fn an_invalid_service_name_is_an_error() {
    let p = problem("services:\n  web:\n    image: web:1\n  \"my app\":\n    image: app:1\n");
    assert_eq!((p.line, p.key.as_str()), (4, "services.my app"));
    assert!(p.message.contains("letters, digits"), "{p}");
}

#[test]
fn container_name_with_start_first_is_an_error() {
    let p = problem(&web(
        "image: web:1\ncontainer_name: shop-web\ndeploy:\n  update_config:\n    order: start-first",
    ));
    assert_eq!((p.line, p.key.as_str()), (4, "services.web.container_name"));
    assert!(
        p.message
            .contains("cannot use deploy.update_config.order: start-first"),
        "{p}"
    );
}

#[test]
fn every_problem_of_a_file_is_reported_in_line_order() {
    let all = problems("services:\n  web:\n    image: web:1\n    restart: sometimes\n    ports: [\"x\"]\n  db:\n    image: db:1\n    initt: true\n");
    let got: Vec<(usize, &str)> = all.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (4, "services.web.restart"),
            (5, "services.web.ports[0]"),
            (8, "services.db.initt"),
        ]
    );
    assert!(all.iter().all(|p| p.file == FILE));
}

// ---- normalization: cosmetic edits never change the hash ---------------------------------------

#[test]
fn env_list_and_map_spellings_hash_the_same() {
    assert_eq!(
        hash(&web(
            "image: web:1\nenvironment:\n  B: \"2\"\n  A: 1\n  C: true"
        )),
        hash(&web(
            "image: web:1\nenvironment:\n  - A=1\n  - C=true\n  - B=2"
        ))
    );
}

#[test]
fn port_order_and_spelling_do_not_change_the_hash() {
    assert_eq!(
        hash(&web("image: web:1\nports:\n  - \"8080:80\"\n  - \"127.0.0.1:9090:90/udp\"")),
        hash(&web("image: web:1\nports:\n  - target: 90\n    published: \"9090\"\n    host_ip: 127.0.0.1\n    protocol: udp\n  - 8080:80"))
    );
}

#[test]
fn capability_order_and_duplicates_do_not_change_the_hash() {
    assert_eq!(
        hash(&web(
            "image: web:1\ncap_add: [NET_ADMIN, CHOWN]\ncap_drop: [ALL]"
        )),
        hash(&web(
            "image: web:1\ncap_add:\n  - CHOWN\n  - NET_ADMIN\n  - CHOWN\ncap_drop: ALL"
        ))
    );
}

#[test]
fn labels_list_and_map_spellings_hash_the_same() {
    assert_eq!(
        hash(&web("image: web:1\nlabels:\n  b: \"2\"\n  a: one")),
        hash(&web("image: web:1\nlabels: [a=one, b=2]"))
    );
}

#[test]
fn command_string_and_equivalent_list_hash_the_same() {
    assert_eq!(
        hash(&web("image: web:1\ncommand: sh -c 'echo hello world'")),
        hash(&web("image: web:1\ncommand: [sh, -c, echo hello world]"))
    );
}

#[test]
fn key_order_and_unit_spellings_do_not_change_the_hash() {
    assert_eq!(
        hash(&web("image: web:1\nstop_grace_period: 90s\nmem_limit: 1g\nhealthcheck:\n  test: curl -f localhost\n  interval: 1m\nread_only: true\nnetworks: [default]")),
        hash(&web("read_only: yes\nhealthcheck:\n  interval: 60s\n  test: [CMD-SHELL, curl -f localhost]\nmem_limit: 1024m\nstop_grace_period: 1m30s\nimage: web:1\nnetworks:\n  default:"))
    );
}

#[test]
fn one_changed_env_value_changes_the_hash() {
    let base = "image: web:1\nenvironment:\n  LOG_LEVEL: info\n  PORT: 8080";
    assert_ne!(hash(&web(base)), hash(&web(&base.replace("info", "debug"))));
}

#[test]
fn every_real_change_changes_the_hash() {
    let base = hash(&web("image: web:1"));
    for body in [
        "image: web:2",
        "image: web:1\ncommand: [serve]",
        "image: web:1\nports: [\"80\"]",
        "image: web:1\nuser: nobody",
        "image: web:1\nrestart: always",
        "image: web:1\nlabels: [a=b]",
        "image: web:1\nenvironment: [A=]",
    ] {
        assert_ne!(hash(&web(body)), base, "{body}");
    }
}

// ---- secret marking --------------------------------------------------------------------------

#[test]
fn secret_env_holds_secret_looking_keys_and_values_from_host_local_variables_only() {
    let repo = Repo::new();
    repo.write("web/app.env", "API_TOKEN=from-file\nWORKERS=4\n");
    let mut variables = vars(&[
        ("DB_PASS", "s3cr3t"),
        ("SMTP_PASS", "m41l"),
        ("LEVEL", "info"),
        ("DB_HOST", "db"),
    ]);
    variables.host_local = BTreeSet::from(["DB_PASS".to_string(), "SMTP_PASS".to_string()]);
    let parts = repo
        .convert_with(
            &web("image: web:1\nenv_file: app.env\nenvironment:\n  DSN: postgres://app:${DB_PASS}@${DB_HOST}/app\n  SMTP_PASS:\n  LOG_LEVEL: ${LEVEL}\n  DB_HOST: ${DB_HOST}\n  ADMIN_PASSWORD: plain-in-git\n  PUBLIC_URL: https://example.org"),
            &variables,
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
    let web = &parts.services["web"];
    assert_eq!(
        web.secret_env,
        BTreeSet::from([
            "ADMIN_PASSWORD".to_string(),
            "API_TOKEN".to_string(),
            "DSN".to_string(),
            "SMTP_PASS".to_string(),
        ])
    );
    assert_eq!(web.spec.environment["DSN"], "postgres://app:s3cr3t@db/app");
    assert_eq!(web.spec.environment["SMTP_PASS"], "m41l");
}

#[test]
fn host_local_variables_in_list_entries_are_marked_secret() {
    let repo = Repo::new();
    let mut variables = vars(&[("DB_PASS", "s3cr3t"), ("MODE", "prod")]);
    variables.host_local.insert("DB_PASS".into());
    let parts = repo
        .convert_with(
            &web("image: web:1\nenvironment:\n  - CONN=user:${DB_PASS}\n  - DB_PASS\n  - MODE=${MODE}"),
            &variables,
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        parts.services["web"].secret_env,
        BTreeSet::from(["CONN".to_string(), "DB_PASS".to_string()])
    );
}

#[test]
fn a_host_local_value_refused_outside_environment_is_never_quoted_in_the_refusal() {
    let secret = "s3cr3t-Value-9f";
    let mut variables = vars(&[("X", secret)]);
    variables.host_local.insert("X".into());
    for body in [
        "image: web:1\nmem_limit: ${X}",
        "image: web:1\ncpus: ${X}",
        "image: web:1\nports:\n  - \"${X}:80\"",
        "image: web:1\nrestart: ${X}",
        "image: web:1\ninit: ${X}",
        "image: web:1\npull_policy: ${X}",
        "image: web:1\nstop_grace_period: ${X}",
        "image: web:${X}",
        "image: web:1\nuser: ${X}",
        "image: web:1\nvolumes:\n  - ${X}:/data",
        "image: web:1\nenvironment:\n  A: ${MISSING:?no value, see ${X}}",
    ] {
        let problems = Repo::new()
            .convert_with(&web(body), &variables)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{body}"));
        let text = format!("{problems:?}");
        assert!(!text.contains(secret), "{body}\n{text}");
    }
}

#[test]
fn a_secret_looking_repo_variable_outside_environment_marks_that_key_secret() {
    let variables = vars(&[("REDIS_PASSWORD", "hunter22"), ("PORT", "6379")]);
    let parts = Repo::new()
        .convert_with(
            &web("image: redis:7\ncommand: [\"redis-server\", \"--requirepass\", \"${REDIS_PASSWORD}\", \"--port\", \"${PORT}\"]\nhealthcheck:\n  test: [\"CMD\", \"redis-cli\", \"-a\", \"${REDIS_PASSWORD}\", \"ping\"]\nenvironment:\n  URL: redis://:${REDIS_PASSWORD}@localhost\n  PORT: ${PORT}"),
            &variables,
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
    let web = &parts.services["web"];
    assert_eq!(
        web.secret_fields,
        BTreeSet::from(["command".to_string(), "healthcheck".to_string()])
    );
    assert!(web.secret_env.contains("URL"), "{:?}", web.secret_env);
    assert!(!web.secret_env.contains("PORT"));
    let label = web.label_spec().to_string();
    assert!(!label.contains("hunter22"), "{label}");
}

#[test]
fn a_secret_looking_value_is_not_quoted_in_messages_about_it() {
    let variables = vars(&[("DB_PASSWORD", "hunter22")]);
    let problems = Repo::new()
        .convert_with(
            &web("image: web:1\nmem_limit: ${DB_PASSWORD}\nenvironment:\n  API_TOKEN: \"abc${\""),
            &variables,
        )
        .err()
        .expect("refused");
    let text = format!("{problems:?}");
    assert!(!text.contains("hunter22"), "{text}");
    assert!(!text.contains("abc"), "{text}");
    assert!(text.contains("mem_limit"), "{text}");
    assert!(text.contains("API_TOKEN"), "{text}");
}

#[test]
fn label_digests_of_secrets_are_keyed_and_a_spec_without_secrets_hashes_as_before() {
    let plain = service(&web("image: web:1\nenvironment:\n  LEVEL: info"));
    assert_eq!(plain.spec_hash(), plain.spec.hash());
    let variables = vars(&[("DB_PASSWORD", "hunter22")]);
    let mut secret = Repo::new()
        .convert_with(
            &web("image: web:1\nenvironment:\n  DB_PASSWORD: ${DB_PASSWORD}"),
            &variables,
        )
        .unwrap()
        .services
        .remove("web")
        .unwrap();
    secret.label_key = LabelKey::from_bytes([7; 32]);
    let first = (secret.spec_hash(), secret.label_spec());
    assert_ne!(first.0, secret.spec.hash(), "an unkeyed hash is an oracle");
    secret.label_key = LabelKey::from_bytes([8; 32]);
    assert_ne!(secret.spec_hash(), first.0);
    assert_ne!(secret.label_spec(), first.1);
    let unkeyed = crate::desired::hex(&sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        b"hunter22",
    )));
    assert!(!first.1.to_string().contains(&unkeyed[..16]));
}

#[test]
fn a_file_with_thousands_of_problems_lists_the_first_two_hundred_and_counts_the_rest() {
    let mut text = String::from("services:\n  web:\n    image: web:1\n");
    for i in 0..1000 {
        text.push_str(&format!("unknown_{i}: {}\n", "x".repeat(50)));
    }
    let all = problems(&text);
    assert_eq!(all.len(), 201, "{:#?}", &all[..3]);
    assert!(
        all[200].message.contains("800 more problems"),
        "{:?}",
        all[200]
    );
}

#[test]
fn an_http_probe_reaches_only_the_services_own_published_port_with_a_plain_path() {
    let probe = |url: &str| {
        problems(&web(&format!(
            "image: web:1\nports: [\"8080:80\", \"9000-9001:90-91\"]\nx-reconciler:\n  http_probe: \"{url}\""
        )))
    };
    assert!(Repo::new()
        .convert(&web("image: web:1\nports: [\"9000-9001:90-91\"]\nx-reconciler:\n  http_probe: http://localhost:9001/up"))
        .is_ok());
    for (url, why) in [
        (
            "http://127.0.0.1:8080/x HTTP/1.1\\r\\nHost: a\\r\\n\\r\\nPOST /containers/create",
            "visible ASCII",
        ),
        ("http://10.0.0.1:8080/health", "not a loopback host"),
        (
            "http://127.0.0.1:2375/containers/json",
            "publishes no single TCP port 2375",
        ),
        ("http://127.0.0.1/health", "publishes no single TCP port 80"),
        ("https://127.0.0.1:8080/", "must be http://"),
    ] {
        let all = probe(url);
        assert!(
            all.iter().any(|p| p.key == "services.web.x-reconciler.http_probe" && p.message.contains(why)),
            "{url}: {all:#?}"
        );
    }
}

#[test]
fn a_secret_in_a_key_or_a_label_name_is_refused_without_quoting_it() {
    let mut variables = vars(&[
        ("API_TOKEN", "hunter2-host-secret"),
        ("DB_PASSWORD", "repo-pass-123"),
    ]);
    variables.host_local.insert("API_TOKEN".into());
    for body in [
        "image: web:1\nenvironment: [\"X_${API_TOKEN}=1\"]",
        "image: web:1\nenvironment: [\"Y_${DB_PASSWORD}=1\"]",
        "image: web:1\nlabels: [\"L_${API_TOKEN}\"]",
        "image: web:1\nextra_hosts:\n  h1: \"${API_TOKEN}\"",
        "image: web:1\nlogging:\n  options: [\"max-size=10m\", \"${API_TOKEN}\"]",
        "image: web:1\nlabels: [\"leak.${API_TOKEN:-=}\"]",
        "image: web:1\nenvironment: [\"E_${API_TOKEN:-=}=x\"]",
        "image: web:1\nenvironment: [\"E_${DB_PASSWORD:+=}${DB_PASSWORD}=x\"]",
    ] {
        let problems = Repo::new()
            .convert_with(&web(body), &variables)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{body}"));
        let text = format!("{problems:?}");
        assert!(
            !text.contains("hunter2-host-secret") && !text.contains("repo-pass-123"),
            "{text}"
        );
    }
}

#[test]
fn an_http_probe_refuses_udp_ranges_and_ports_published_elsewhere_than_loopback() {
    for ports in [
        "[\"127.0.0.1:18095:80/udp\"]",
        "[{target: 80, published: \"18080-18090\", host_ip: 127.0.0.1}]",
        "[\"10.1.2.3:18081:80\"]",
    ] {
        let all = problems(&web(&format!(
            "image: web:1\nports: {ports}\nx-reconciler:\n  http_probe: http://127.0.0.1:18081/x"
        )))
        .into_iter()
        .chain(problems(&web(&format!(
            "image: web:1\nports: {ports}\nx-reconciler:\n  http_probe: http://127.0.0.1:18095/x"
        ))))
        .collect::<Vec<_>>();
        assert!(
            all.iter()
                .filter(|p| p.message.contains("single TCP port"))
                .count()
                == 2,
            "{ports}: {all:#?}"
        );
    }
}

#[test]
fn durations_beyond_a_year_are_refused_not_a_crash() {
    assert_eq!(super::parse_duration("99999999999999999999h"), None);
    assert_eq!(super::parse_duration("9000h"), None);
    assert!(super::parse_duration("8760h").is_some());
    let p = problem(&web(
        "image: web:1\nstop_grace_period: 99999999999999999999h",
    ));
    assert_eq!(p.key, "services.web.stop_grace_period");
    let p = problem(&web(
        "image: web:1\nx-reconciler:\n  health_timeout: 4000000000000000h",
    ));
    assert!(p.message.contains("at most a year"), "{p:?}");
}

#[test]
fn a_label_whose_name_looks_secret_is_a_secret_field() {
    let s = service(&web(
        "image: web:1\nlabels:\n  API_TOKEN: literal-token-value-123",
    ));
    assert!(s.secret_fields.contains("labels"), "{:?}", s.secret_fields);
    assert!(!s
        .label_spec()
        .to_string()
        .contains("literal-token-value-123"));
}

// ---- replicas ------------------------------------------------------------------------------

#[test]
fn replicas_come_from_deploy_replicas_or_scale_and_default_to_one() {
    assert_eq!(service(&web("image: web:1")).replicas, 1);
    assert_eq!(
        service(&web("image: web:1\ndeploy:\n  replicas: 3")).replicas,
        3
    );
    assert_eq!(service(&web("image: web:1\nscale: 2")).replicas, 2);
    assert_eq!(
        service(&web("image: web:1\nscale: 0\ndeploy: {replicas: 0}")).replicas,
        0
    );
}

#[test]
fn the_replica_count_is_not_part_of_the_spec_so_scaling_recreates_nothing() {
    let one = service(&web("image: web:1"));
    let three = service(&web("image: web:1\ndeploy:\n  replicas: 3"));
    assert_eq!(one.spec_hash(), three.spec_hash());
}

#[test]
fn scale_and_deploy_replicas_that_differ_are_refused_in_composes_words_at_the_scale_line() {
    let p = problem(&web("image: web:1\nscale: 2\ndeploy:\n  replicas: 3"));
    assert_eq!((p.key.as_str(), p.line), ("services.web.scale", 4));
    assert!(
        p.message
            .starts_with("can't set distinct values on 'scale' and 'deploy.replicas'"),
        "{p}"
    );
}

mod deploy;
mod mounts;
mod networks;
mod wording;
