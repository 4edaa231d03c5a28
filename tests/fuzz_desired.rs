//! Fuzz/property run over everything a pushed commit feeds the loader: YAML, `.env`,
//! interpolation and `compose::convert` over them, and now and then the whole `load`.
//!
//! Inputs are structured random Compose documents, `.env` files and interpolation strings, plus
//! mutations (byte flips, splices, deep nesting, anchors and aliases, long scalars) of a seed
//! corpus (desired-state/ and known-hostile inputs). Every input must be answered (Ok or Err)
//! without a panic, within `FUZZ_MAX_SECS`, on a 2 MiB stack (a tokio worker's), and the process
//! must stay under `FUZZ_MAX_RSS_MB`. Parsed trees must respect the YAML limits.
//!
//! Normal test runs do `FUZZ_CASES` (default 40) from a fixed seed at a tenth of the full input
//! sizes (`FUZZ_SCALE`, percent); `bash scripts/fuzz.sh
//! [CASES]` does a long run and prints cases, max time per input and max RSS. A failing input is
//! written to target/fuzz-failures/ for replay.

#[path = "common/hostile_inputs.rs"]
mod hostile_inputs;
use reconciler::desired::compose::{convert, StackFiles, Variables};
use reconciler::desired::load::{load, LoadOptions};
use reconciler::desired::yaml::{self, Node, Value};
use reconciler::desired::{dotenv, interpolate};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// splitmix64: tiny, fast, and the same sequence on every machine for a given seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Percent of the full size of long and deep inputs (`FUZZ_SCALE`): 10 in the normal test run,
/// which must take seconds on a debug build; scripts/fuzz.sh uses 100.
static SCALE_PERCENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(10);

/// A length for a long or deep input, up to `max` at full scale.
fn big(rng: &mut Rng, max: usize) -> usize {
    let scale = SCALE_PERCENT.load(std::sync::atomic::Ordering::Relaxed);
    rng.below(max * scale / 100)
}

const WORDS: &[&str] = &[
    "web",
    "db",
    "x",
    "a",
    "",
    "~",
    "null",
    "true",
    "no",
    "1",
    "0.5",
    "-1",
    "8080:80",
    "127.0.0.1:80:80/udp",
    "./conf:/etc/conf:ro",
    "data:/data",
    "/abs:/x",
    "../up:/x",
    "1m30s",
    "512m",
    "always",
    "unless-stopped",
    "CMD",
    "CMD-SHELL",
    "ünïcode",
    "a b",
    "#",
    "\"",
    "'",
    ":",
    "- x",
    "{",
    "[",
    "&",
    "*",
    "!",
    "|",
    ">",
    "%",
    "@",
    "`",
    "\\",
    "\t",
];
const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "networks",
    "healthcheck",
    "restart",
    "depends_on",
    "labels",
    "user",
    "working_dir",
    "init",
    "read_only",
    "cap_add",
    "privileged",
    "mem_limit",
    "cpus",
    "logging",
    "deploy",
    "stop_grace_period",
    "extra_hosts",
    "x-reconciler",
    "build",
    "imagee",
    "<<",
];
const VAR_NAMES: &[&str] = &["A", "B", "TAG", "_x", "LONG", "EMPTY", "UNSET"];

fn interpolation(rng: &mut Rng, depth: usize) -> String {
    let mut out = String::new();
    for _ in 0..rng.below(5) {
        let name = *rng.pick(VAR_NAMES);
        match rng.below(10) {
            0 => out.push_str(&format!("${name}")),
            1 => out.push_str("$$"),
            2 => out.push('$'),
            3 => out.push_str("${"),
            4 => out.push('}'),
            5 | 6 if depth < 20 => {
                let op = *rng.pick(&[":-", "-", ":?", "?", ":+", "+", ":", "/", ""]);
                let inner = interpolation(rng, depth + 1);
                out.push_str(&format!("${{{name}{op}{inner}}}"));
            }
            _ => out.push_str(rng.pick::<&str>(WORDS)),
        }
    }
    out
}

fn scalar(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => format!(
            "\"{}\"",
            interpolation(rng, 0)
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        ),
        1 => format!("'{}'", interpolation(rng, 0).replace('\'', "''")),
        2 => "x".repeat(big(rng, 5000)),
        3 => format!("\"{}\"", interpolation(rng, 0)),
        _ => rng.pick(WORDS).to_string(),
    }
}

/// A random value in flow style, `depth` levels at most.
fn flow_value(rng: &mut Rng, depth: usize) -> String {
    match if depth == 0 { 0 } else { rng.below(4) } {
        1 => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| flow_value(rng, depth - 1))
                .collect();
            format!("[{}]", items.join(", "))
        }
        2 => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|i| format!("k{i}: {}", flow_value(rng, depth - 1)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => scalar(rng),
    }
}

/// A Compose document in block style: services with random keys, anchors, merges, interpolation.
fn compose_document(rng: &mut Rng) -> String {
    let mut doc = String::new();
    if rng.chance(50) {
        doc.push_str("x-base: &base\n  restart: always\n  labels: {a: b}\n");
    }
    if rng.chance(20) {
        doc.push_str(&format!("name: {}\n", scalar(rng)));
    }
    doc.push_str("services:\n");
    for s in 0..1 + rng.below(4) {
        doc.push_str(&format!("  s{s}:\n    image: {}\n", scalar(rng)));
        if doc.contains("&base") && rng.chance(50) {
            doc.push_str("    <<: *base\n");
        }
        for _ in 0..rng.below(8) {
            let key = *rng.pick(SERVICE_KEYS);
            match rng.below(3) {
                0 => doc.push_str(&format!("    {key}: {}\n", flow_value(rng, 3))),
                1 => {
                    doc.push_str(&format!("    {key}:\n"));
                    for _ in 0..rng.below(4) {
                        doc.push_str(&format!("      - {}\n", flow_value(rng, 2)));
                    }
                }
                _ => {
                    doc.push_str(&format!("    {key}:\n"));
                    for i in 0..rng.below(4) {
                        doc.push_str(&format!("      K{i}: {}\n", flow_value(rng, 2)));
                    }
                }
            }
        }
    }
    if rng.chance(30) {
        doc.push_str("volumes:\n  data: {}\nnetworks:\n  front: {}\n");
    }
    doc
}

fn env_file(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(8) {
        let name = *rng.pick(VAR_NAMES);
        let value = match rng.below(7) {
            0 => format!("\"{}\"", interpolation(rng, 0)),
            1 => format!("'{}'", rng.pick(WORDS)),
            2 => "y".repeat(big(rng, 100_000)),
            3 => "\"open\nmulti\nline".to_string(),
            4 => format!("{} # comment", rng.pick(WORDS)),
            _ => rng.pick(WORDS).to_string(),
        };
        let prefix = *rng.pick(&["", "export ", "  ", "#", "1"]);
        text.push_str(&format!("{prefix}{name}={value}\n"));
    }
    text
}

/// Known-hostile inputs: each must be refused (or accepted) quickly.
fn hostile(rng: &mut Rng) -> String {
    match rng.below(7) {
        0 => hostile_inputs::alias_bomb(),
        1 => rng
            .pick(&["[", "{", "- ", "{a: ", "[{", "? "])
            .repeat(1 + big(rng, 100_000)),
        2 => (0..1 + big(rng, 4000))
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect(),
        3 => format!(
            "services:\n  web:\n    image: \"{}x{}\"\n",
            "${A:-".repeat(big(rng, 50_000)),
            "}".repeat(big(rng, 50_000))
        ),
        4 => format!(
            "services:\n  web:\n    command: \"{}\"\n",
            "${LONG}".repeat(big(rng, 5000))
        ),
        5 => (0..big(rng, 30_000))
            .map(|i| format!("k{i}: {i}\n"))
            .collect(),
        _ => format!(
            "s: &s {}\nl: [{}]\n",
            "z".repeat(big(rng, 1 << 20)),
            vec!["*s"; 40].join(",")
        ),
    }
}

fn mutate(rng: &mut Rng, seed: &str, corpus: &[String]) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(7) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => {
                let other = rng.pick(corpus).as_bytes();
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                bytes.splice(at..at, other[from..to].iter().copied());
            }
            2 => {
                let n = rng.below(200);
                let wrapped = format!(
                    "{}{}{}",
                    "[".repeat(n),
                    String::from_utf8_lossy(&bytes),
                    "]".repeat(n)
                );
                bytes = wrapped.into_bytes();
            }
            3 => {
                let token = *rng.pick(&[
                    " &a ",
                    " *a ",
                    "<<: *a\n",
                    " &b [*a, *a, *a]",
                    "\n---\n",
                    "${",
                    "$$",
                    "\t",
                    "\r\n",
                    "\u{feff}",
                ]);
                bytes.splice(at..at, token.bytes());
            }
            4 => bytes
                .splice(at..at, "q".repeat(big(rng, 200_000)).into_bytes())
                .for_each(drop),
            5 if !bytes.is_empty() => {
                let to = at + rng.below(bytes.len() - at.min(bytes.len()) + 1);
                bytes.drain(at.min(bytes.len())..to.min(bytes.len()));
            }
            _ => bytes
                .splice(at..at, interpolation(rng, 0).into_bytes())
                .for_each(drop),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An in-memory stack folder for `convert`: env files come from the case, nothing else exists.
struct Files(BTreeMap<String, String>);

impl StackFiles for Files {
    fn resolve(&self, rel: &str) -> Result<String, String> {
        if rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
            return Err(format!("'{rel}' leaves the stack folder"));
        }
        Ok(rel.trim_start_matches("./").to_string())
    }
    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        self.0
            .get(rel)
            .map(|t| t.clone().into_bytes())
            .ok_or_else(|| "absent".into())
    }
    fn digest(&self, rel: &str) -> Result<String, String> {
        Ok(format!("{}", self.0.get(rel).map_or(0, String::len)))
    }
    fn exists(&self, rel: &str) -> bool {
        self.0.contains_key(rel)
    }
}

/// One fuzz input: what is fed where.
#[derive(Debug)]
struct Case {
    compose: String,
    env: String,
    interpolation: String,
    /// Also run the whole `load` over a temporary folder (slower: files on disk).
    whole_load: bool,
}

fn tree_limits_hold(node: &Node) -> Result<(), String> {
    // Iterative: the check itself must not be what overflows.
    let mut nodes = 0usize;
    let mut stack = vec![(node, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        nodes += 1;
        if depth > yaml::MAX_DEPTH {
            return Err(format!("a parsed tree is {depth} levels deep"));
        }
        match &node.value {
            Value::Seq(items) => stack.extend(items.iter().map(|n| (n, depth + 1))),
            Value::Map(entries) => {
                for (k, v) in entries {
                    stack.push((k, depth + 1));
                    stack.push((v, depth + 1));
                }
            }
            _ => {}
        }
    }
    if nodes > yaml::MAX_NODES {
        return Err(format!("a parsed tree holds {nodes} nodes"));
    }
    Ok(())
}

/// Runs one case; Err describes a broken property (a panic is caught by the caller).
fn run_case(case: &Case) -> Result<(), String> {
    let mut vars = Variables::default();
    vars.values.insert("LONG".into(), "L".repeat(64 << 10));
    if let Ok(entries) = dotenv::parse(&case.env) {
        for entry in entries {
            vars.values.insert(entry.key, entry.value);
        }
    }
    let lookup = |name: &str| vars.values.get(name).cloned();
    if let Ok(out) = interpolate::interpolate(&case.interpolation, &lookup) {
        if out.text.len() > interpolate::MAX_VALUE_BYTES {
            return Err(format!("interpolation yielded {} bytes", out.text.len()));
        }
        if !case.interpolation.contains('$') && out.text != case.interpolation {
            return Err("text without '$' changed under interpolation".into());
        }
    }
    if let Ok(doc) = yaml::parse(&case.compose) {
        tree_limits_hold(&doc)?;
        if yaml::parse(&case.compose).as_ref() != Ok(&doc) {
            return Err("parsing the same text twice gave different trees".into());
        }
        let files = Files(BTreeMap::from([(".env".to_string(), case.env.clone())]));
        let _ = convert(&doc, "web/compose.yaml", "web", &vars, &files);
    }
    if case.whole_load {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let web = dir.path().join("web");
        std::fs::create_dir(&web).map_err(|e| e.to_string())?;
        std::fs::write(web.join("compose.yaml"), &case.compose).map_err(|e| e.to_string())?;
        std::fs::write(web.join(".env"), &case.env).map_err(|e| e.to_string())?;
        let _ = load(dir.path(), &LoadOptions::default());
    }
    Ok(())
}

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![root.join("desired-state")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                out.push(text);
            }
        }
    }
    let mut rng = Rng(7);
    for _ in 0..8 {
        out.push(hostile(&mut rng));
    }
    out.push("a: &a {x: 1}\nb: &b\n  <<: *a\n  y: [*a, *a]\nc: {<<: [*a, *b], z: *b}\n".into());
    out.push("A=1\nexport B=\"two\\nlines\"\nC='${A}'\n".into());
    out
}

fn generate(rng: &mut Rng, corpus: &[String]) -> Case {
    let compose = match rng.below(10) {
        0..=3 => compose_document(rng),
        4..=7 => {
            let seed = rng.pick(corpus).clone();
            mutate(rng, &seed, corpus)
        }
        _ => hostile(rng),
    };
    let env = if rng.chance(70) {
        env_file(rng)
    } else {
        {
            let seed = env_file(rng);
            mutate(rng, &seed, corpus)
        }
    };
    let interpolation = if rng.chance(80) {
        interpolation(rng, 0)
    } else {
        {
            let seed = interpolation(rng, 0);
            mutate(rng, &seed, corpus)
        }
    };
    Case {
        compose,
        env,
        interpolation,
        whole_load: rng.chance(5),
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn max_rss_kib() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage.ru_maxrss
    }
}

fn save_failure(case_no: u64, case: &Case, why: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("case-{case_no}.txt"));
    let _ = std::fs::write(
        &path,
        format!(
            "{why}\n--- compose\n{}\n--- env\n{}\n--- interpolation\n{}\n",
            case.compose, case.env, case.interpolation
        ),
    );
    path
}

#[test]
fn parser_and_loader_answer_every_generated_and_mutated_input_in_bounded_time_and_memory() {
    let cases = env_or("FUZZ_CASES", 40);
    let seed = env_or("FUZZ_SEED", 0x5eed_0006);
    let max_time = Duration::from_secs(env_or("FUZZ_MAX_SECS", 10));
    let max_rss_mib = env_or("FUZZ_MAX_RSS_MB", 1024) as i64;
    SCALE_PERCENT.store(
        env_or("FUZZ_SCALE", 10) as usize,
        std::sync::atomic::Ordering::Relaxed,
    );
    let slow_report = Duration::from_millis(env_or("FUZZ_REPORT_SLOW_MS", 2000));
    let corpus = corpus();
    let (to_worker, inbox) = mpsc::channel::<(u64, Case)>();
    let (to_main, results) = mpsc::channel::<(u64, Result<(), String>, Case)>();
    // A tokio worker's stack: if the loader fits here it fits in `run`.
    // Panics of the worker are reported with their input below; the test thread's are shown.
    let shown = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some("fuzz-worker") {
            shown(info);
        }
    }));
    std::thread::Builder::new()
        .name("fuzz-worker".into())
        .stack_size(2 << 20)
        .spawn(move || {
            for (n, case) in inbox {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&case)))
                        .unwrap_or_else(|panic| {
                            let what = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Err(format!("panic: {what}"))
                        });
                if to_main.send((n, outcome, case)).is_err() {
                    return;
                }
            }
        })
        .unwrap();
    let mut rng = Rng(seed);
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for n in 0..cases {
        let case = generate(&mut rng, &corpus);
        let took = Instant::now();
        let summary = format!("{case:?}");
        to_worker.send((n, case)).unwrap();
        let (_, outcome, case) = match results.recv_timeout(max_time) {
            Ok(answer) => answer,
            Err(_) => {
                let case = Case {
                    compose: summary,
                    env: String::new(),
                    interpolation: String::new(),
                    whole_load: false,
                };
                let path = save_failure(n, &case, "no answer in time");
                panic!(
                    "case {n} (seed {seed:#x}) got no answer within {max_time:?}; input in {}",
                    path.display()
                );
            }
        };
        let took = took.elapsed();
        slowest = slowest.max(took);
        if took > slow_report {
            let head = |t: &str| t.chars().take(60).collect::<String>();
            println!(
                "fuzz: case {n} took {took:.1?}: compose {} bytes {:?}, env {} bytes, interpolation {} bytes, whole load {}",
                case.compose.len(),
                head(&case.compose),
                case.env.len(),
                case.interpolation.len(),
                case.whole_load
            );
        }
        if let Err(why) = outcome {
            let path = save_failure(n, &case, &why);
            panic!(
                "case {n} (seed {seed:#x}): {why}; input in {}",
                path.display()
            );
        }
        let rss_mib = max_rss_kib() / 1024;
        assert!(
            rss_mib <= max_rss_mib,
            "case {n}: max RSS {rss_mib} MiB passed {max_rss_mib} MiB"
        );
    }
    println!(
        "fuzz: {cases} cases in {:.1?}, max time per input {slowest:.1?}, max RSS {} MiB (seed {seed:#x})",
        started.elapsed(),
        max_rss_kib() / 1024
    );
}
