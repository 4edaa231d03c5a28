//! Hostile Compose files: an alias bomb, nesting thousands of levels deep and interpolation that
//! grows to gigabytes are refused by `validate` with a located message naming the limit, quickly,
//! with bounded memory, and without the process dying by a signal.

#[path = "common/hostile_inputs.rs"]
mod hostile_inputs;
use hostile_inputs::alias_bomb;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous for a debug binary on a loaded machine; the real answer takes milliseconds.
const KILL_AFTER: Duration = Duration::from_secs(10);
/// Address space the child may use: the unbounded code needed many gigabytes for these inputs.
const ADDRESS_SPACE: u64 = 2 << 30;

struct Answer {
    code: i32,
    text: String,
    took: Duration,
}

/// `reconciler validate --repo <repo>` under a memory cap, killed if it runs past KILL_AFTER.
fn validate(repo: &Path) -> Answer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reconciler"));
    command
        .args([
            "--state-dir",
            "/nonexistent/state",
            "--docker-host",
            "unix:///nonexistent.sock",
            "validate",
            "--repo",
        ])
        .arg(repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut stderr).unwrap_or_default());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > KILL_AFTER {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("validate still ran after {KILL_AFTER:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    assert_eq!(
        status.signal(),
        None,
        "validate died by a signal after {took:?}: {text}"
    );
    Answer {
        code: status.code().unwrap(),
        text,
        took,
    }
}

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn assert_refused(answer: &Answer, located: &str) {
    assert_eq!(answer.code, 2, "{}", answer.text);
    assert!(answer.text.contains(located), "{}", answer.text);
    eprintln!("refused in {:?}", answer.took);
}

#[test]
fn an_alias_bomb_is_refused_at_its_line_naming_the_node_limit() {
    let bomb = alias_bomb();
    assert!(bomb.len() < 600, "{} bytes", bomb.len());
    let repo = repo(&[(
        "web/compose.yaml",
        &format!("x-bomb:\n  {}", bomb.replace('\n', "\n  ")),
    )]);
    let answer = validate(repo.path());
    // Levels a..f expand to 9^6 = 531,441 nodes: the budget of 250,000 runs out on line 7 (`f:`).
    assert_refused(
        &answer,
        "web/compose.yaml:7: the document expands to more than 250000 nodes",
    );
}

#[test]
fn block_nesting_thousands_of_levels_deep_is_refused_at_the_65th_level_or_by_size() {
    // One space per level keeps 1,200 levels under the 1 MiB file limit: the depth limit answers.
    let compose: String = (0..1200)
        .map(|i| format!("{}x{i}:\n", " ".repeat(i)))
        .collect();
    assert!(compose.len() < 1 << 20, "{} bytes", compose.len());
    let nested = repo(&[("web/compose.yaml", &compose)]);
    assert_refused(
        &validate(nested.path()),
        "web/compose.yaml:65: mappings and lists are nested deeper than 64 levels",
    );
    // The 4,000-level file that overflowed the stack is larger than a Compose file may be.
    let compose: String = (0..4000)
        .map(|i| format!("{}x-{i}:\n", "  ".repeat(i)))
        .collect();
    let large = repo(&[("web/compose.yaml", &compose)]);
    assert_refused(
        &validate(large.path()),
        "web/compose.yaml:1: 'compose.yaml' is larger than 1048576 bytes",
    );
}

#[test]
fn flow_nesting_thousands_of_levels_deep_is_refused_naming_the_depth_limit() {
    for compose in [
        format!("x-deep: {}", "[".repeat(100_000)),
        format!("x-deep: {}", "{".repeat(100_000)),
        format!("x-deep: {}", "[".repeat(100)),
    ] {
        let repo = repo(&[("web/compose.yaml", &compose)]);
        assert_refused(
            &validate(repo.path()),
            "web/compose.yaml:1: mappings and lists are nested deeper than 64 levels",
        );
    }
}

#[test]
fn a_variable_repeated_into_gigabytes_is_refused_naming_the_value_limit() {
    // 32 KiB, 32,768 times: a 1 GiB value from a 160 KiB compose file.
    let env = format!("A={}\n", "x".repeat(32 << 10));
    let compose = format!(
        "services:\n  web:\n    image: web:1\n    command: \"{}\"\n",
        "${A}".repeat(32 << 10)
    );
    let repo = repo(&[("web/.env", &env), ("web/compose.yaml", &compose)]);
    let answer = validate(repo.path());
    assert_refused(
        &answer,
        "web/compose.yaml:4: services.web.command: interpolation yields more than 1048576 bytes for one value",
    );
    assert!(
        answer.text.len() < 4096,
        "{} bytes of output",
        answer.text.len()
    );
}

#[test]
fn aliases_repeating_a_large_value_are_refused_naming_the_file_limit() {
    let env = format!("A={}\n", "x".repeat(32 << 10));
    // 512 KiB per use, 64 uses: 32 MiB for the file.
    let compose = format!(
        "x-big: &big \"{}\"\nservices:\n  web:\n    image: web:1\n    command: [{}]\n",
        "${A}".repeat(16),
        vec!["*big"; 64].join(", ")
    );
    let repo = repo(&[("web/.env", &env), ("web/compose.yaml", &compose)]);
    assert_refused(
        &validate(repo.path()),
        // An alias is located where its anchor is: that is where the text is.
        "web/compose.yaml:1: services.web.command[31]: interpolation yields more than 16777216 bytes for the whole file",
    );
}

#[test]
fn nested_defaults_thousands_of_levels_deep_are_refused_naming_the_nesting_limit() {
    let depth = 50_000;
    let compose = format!(
        "services:\n  web:\n    image: \"{}x{}\"\n",
        "${A:-".repeat(depth),
        "}".repeat(depth)
    );
    let repo = repo(&[("web/compose.yaml", &compose)]);
    assert_refused(
        &validate(repo.path()),
        "web/compose.yaml:3: services.web.image: '${' is nested deeper than 16 levels",
    );
}

#[test]
fn the_shipped_example_with_its_anchors_still_validates() {
    let answer = validate(Path::new("desired-state"));
    assert_eq!(answer.code, 0, "{}", answer.text);
}

#[test]
fn a_duration_of_centuries_is_refused_not_a_crash() {
    let repo = repo(&[(
        "web/compose.yaml",
        "services:\n  web:\n    image: web:1\n    stop_grace_period: 99999999999999999999h\n    x-reconciler:\n      health_timeout: 4000000000000000h\n",
    )]);
    let answer = validate(repo.path());
    assert_refused(
        &answer,
        "web/compose.yaml:4: services.web.stop_grace_period: '99999999999999999999h' is not a duration of at most a year",
    );
    assert!(
        answer
            .text
            .contains("web/compose.yaml:6: services.web.x-reconciler.health_timeout"),
        "{}",
        answer.text
    );
}

#[test]
fn services_extending_one_with_a_large_text_are_refused_naming_the_text_limit() {
    // One 14 MB service (aliases of a 1 MB scalar), copied by 400 services that extend it:
    // 5.6 GB once copied, from a 1 MB file.
    let compose = format!(
        "x-big: &big \"{}\"\nservices:\n  base:\n    image: b:1\n    command: [{}]\n{}",
        "x".repeat(1_000_000),
        vec!["*big"; 14].join(","),
        (0..400)
            .map(|i| format!("  s{i}: {{extends: base}}\n"))
            .collect::<String>()
    );
    let repo = repo(&[("web/compose.yaml", &compose)]);
    assert_refused(
        &validate(repo.path()),
        "web/compose.yaml:1: the stack's Compose files together expand to more than 16777216 bytes of text",
    );
}

#[test]
fn included_files_are_bounded_together_not_each() {
    // 31 files of 14 MB each (aliases of a 1 MB scalar) under the per-file limit: 434 MB.
    let big = format!("\"{}\"", "x".repeat(1_000_000));
    let mut files = vec![(
        "web/compose.yaml".to_string(),
        format!(
            "include: [{}]\nservices:\n  web:\n    image: web:1\n",
            (0..31)
                .map(|i| format!("f{i}.yaml"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )];
    for i in 0..31 {
        files.push((
            format!("web/f{i}.yaml"),
            format!(
                "x-big: &big {big}\nservices:\n  s{i}:\n    image: b:1\n    command: [{}]\n",
                vec!["*big"; 14].join(",")
            ),
        ));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = repo(&files);
    assert_refused(
        &validate(repo.path()),
        "web/f1.yaml:1: the stack's Compose files together expand to more than 16777216 bytes of text",
    );
}

#[test]
fn large_files_are_merged_extended_and_included_in_linear_time() {
    let lines = |n: usize, line: &dyn Fn(usize) -> String| (0..n).map(line).collect::<String>();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "an override's environment onto the main file's",
            vec![
                (
                    "web/compose.yaml",
                    "services:\n  web:\n    image: web:1\n    environment:\n".to_string()
                        + &lines(30_000, &|i| format!("      A{i}: x\n")),
                ),
                (
                    "web/compose.override.yaml",
                    "services:\n  web:\n    environment:\n".to_string()
                        + &lines(30_000, &|i| format!("      B{i}: x\n")),
                ),
            ],
        ),
        (
            "an override's list onto the main file's",
            vec![
                (
                    "web/compose.yaml",
                    format!(
                        "x-list: [{}]\nservices:\n  web:\n    image: web:1\n",
                        (0..100_000)
                            .map(|i| format!("a{i}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ),
                (
                    "web/compose.override.yaml",
                    format!(
                        "x-list: [{}]\n",
                        (0..100_000)
                            .map(|i| format!("b{i}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ),
            ],
        ),
        (
            "an override's mounts onto the main file's",
            vec![
                (
                    "web/compose.yaml",
                    "volumes:\n  v:\nservices:\n  web:\n    image: web:1\n    volumes:\n"
                        .to_string()
                        + &lines(30_000, &|i| format!("      - v:/a{i}\n")),
                ),
                (
                    "web/compose.override.yaml",
                    "services:\n  web:\n    volumes:\n".to_string()
                        + &lines(30_000, &|i| format!("      - v:/b{i}\n")),
                ),
            ],
        ),
        (
            "services that extend one",
            vec![(
                "web/compose.yaml",
                "services:\n  base:\n    image: web:1\n".to_string()
                    + &lines(30_000, &|i| format!("  s{i}: {{extends: base}}\n")),
            )],
        ),
        (
            "services that extend the end of a chain from a large service",
            vec![(
                "web/compose.yaml",
                format!(
                    "services:\n  b0:\n    image: web:1\n    command: [{}]\n",
                    vec!["a"; 100_000].join(",")
                ) + &lines(14, &|i| {
                    format!("  b{}:\n    extends: b{i}\n    command: [x]\n", i + 1)
                }) + &lines(5_000, &|i| format!("  s{i}: {{extends: b14}}\n")),
            )],
        ),
        (
            "an included file's services",
            vec![
                (
                    "web/compose.yaml",
                    "include: [more.yaml]\nservices:\n  web:\n    image: web:1\n".to_string(),
                ),
                (
                    "web/more.yaml",
                    "services:\n".to_string()
                        + &lines(40_000, &|i| format!("  s{i}: {{image: web:1}}\n")),
                ),
            ],
        ),
    ];
    for (case, files) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let repo = repo(&files);
        // Each took 20 s to minutes (lookups by scanning, a chain resolved again for each service
        // at its end); validate is killed after 10 s.
        let answer = validate(repo.path());
        // Tens of thousands of services are more containers than a stack may ask for: refused
        // once everything is read, which is what is timed.
        assert!(
            answer.code == 0 || answer.text.contains("containers (replicas counted)"),
            "{case}: {}",
            answer.text
        );
        eprintln!("{case}: {:?}", answer.took);
    }
}

#[test]
fn aliases_repeating_an_extends_of_a_large_path_are_refused_naming_the_file_limit() {
    // A 1 MB path (`./` 500k times, then the file) for each of 20,000 services: 20 GB copied.
    let env = format!("A={}\n", "./".repeat(16_000));
    let compose = format!(
        "x-e: &e {{file: \"{}x.yaml\", service: base}}\nservices:\n{}",
        "${A}".repeat(32),
        (0..20_000)
            .map(|i| format!("  s{i}: {{image: web:1, extends: *e}}\n"))
            .collect::<String>()
    );
    let repo = repo(&[
        ("web/.env", &env),
        ("web/compose.yaml", &compose),
        ("web/x.yaml", "services:\n  base:\n    image: web:1\n"),
    ]);
    assert_refused(
        &validate(repo.path()),
        "web/compose.yaml:1: services.s16.extends.file: interpolation yields more than 16777216 bytes for the whole file",
    );
}

#[test]
fn a_file_named_by_a_padded_path_is_named_short_in_every_problem() {
    // `./` 500k times, then the file: a 1 MB name for a file that exists, in each of 200
    // problems of the file it names (200 MB of output from a 4 kB repository).
    let env = format!("A={}\n", "./".repeat(16_000));
    let compose = format!(
        "services:\n  web:\n    extends: {{file: \"{}base.yaml\", service: base}}\n",
        "${A}".repeat(31)
    );
    let base = "services:\n  base:\n    image: web:1\n".to_string()
        + &(0..300)
            .map(|i| format!("    wrong{i}: 1\n"))
            .collect::<String>();
    let repo = repo(&[
        ("web/.env", &env),
        ("web/compose.yaml", &compose),
        ("web/base.yaml", &base),
    ]);
    let answer = validate(repo.path());
    // 200 problems of half a kilobyte each.
    assert!(
        answer.text.len() < 256 << 10,
        "{} bytes of output",
        answer.text.len()
    );
    assert_refused(&answer, "web/base.yaml:4: services.web.wrong0: unknown key");
}

#[test]
fn dot_env_values_expanded_into_gigabytes_are_refused_naming_the_file_limit() {
    // 3,000 values of 1 MB each from a 530 kB .env.
    let env = format!(
        "B={}\n{}",
        "x".repeat(500_000),
        (0..3_000)
            .map(|i| format!("A{i}=${{B}}${{B}}\n"))
            .collect::<String>()
    );
    let repo = repo(&[
        ("web/.env", &env),
        ("web/compose.yaml", "services:\n  web:\n    image: web:1\n"),
    ]);
    assert_refused(
        &validate(repo.path()),
        "web/.env:18: A16: interpolation yields more than 16777216 bytes for the whole file",
    );
}

#[test]
fn thousands_of_unset_variables_beside_thousands_of_set_ones_are_answered_in_bounded_time() {
    // Each unset variable once got a spelling hint, comparing it with every set one: 5,000 x
    // 40,000 comparisons ran for minutes. Hints are given for the first few only.
    let env: String = (0..40_000).map(|i| format!("V_{i:06}=x\n")).collect();
    let compose = format!(
        "services:\n  web:\n    image: web:1\n    environment:\n{}",
        (0..5_000)
            .map(|i| format!("      K{i}: ${{V_{i:06}X}}\n"))
            .collect::<String>()
    );
    let repo = repo(&[("web/.env", &env), ("web/compose.yaml", &compose)]);
    let answer = validate(repo.path());
    assert_eq!(answer.code, 0, "{}", answer.text);
    assert!(
        answer
            .text
            .contains("the variable 'V_000000X' (did you mean 'V_000000'?) is not set"),
        "{}",
        answer.text
    );
    eprintln!("answered in {:?}", answer.took);
}
