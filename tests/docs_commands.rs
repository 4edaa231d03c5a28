//! The commands the docs show exist as written. Every `reconciler ...` invocation in README.md,
//! examples/*.md and packaging/* (fenced code blocks, inline code, the unit's comments and
//! `ExecStart=`, the env file's `RECONCILER_ARGS` and the flags its comments list for it) names a
//! subcommand the binary has, and every flag it uses is one that subcommand (or the global
//! options) accepts, as the binary's own `--help` says. Every script or repository path README.md
//! and examples/*.md mention (`bash scripts/demo.sh`, `examples/walkthrough.sh`, `src/...`)
//! exists. No Docker needed: the binary is only asked for its help.
//!
//! A failure names the file and line of each command or path that is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_reconciler");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Text where commands may be written, and where it starts.
#[derive(Debug)]
struct Snippet {
    file: String,
    line: usize,
    text: String,
}

/// The documents checked: README.md, examples/*.md, packaging/*.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut docs = vec![root.join("README.md")];
    for dir in ["examples", "packaging"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("reading {dir}/: {e}"))
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.is_file())
            .filter(|p| dir == "packaging" || p.extension().is_some_and(|x| x == "md"))
            .collect();
        found.sort();
        docs.extend(found);
    }
    docs
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A Markdown file's fenced code blocks (one snippet per logical line: a line ending in `\`
/// goes on with the next) and inline code spans (which may cross a line break).
fn markdown_snippets(file: &str, text: &str) -> Vec<Snippet> {
    let mut snippets = Vec::new();
    // The prose, with every fenced line blanked so offsets keep their line numbers.
    let mut prose = String::with_capacity(text.len());
    let mut fence: Option<&str> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m && trimmed.trim_end() == m => {
                fence = None;
                if let Some((line, text)) = pending.take() {
                    snippets.push(Snippet {
                        file: file.to_string(),
                        line,
                        text,
                    });
                }
            }
            (Some(_), _) => {
                let (start, mut joined) = pending.take().unwrap_or((n, String::new()));
                let (body, continued) = match line.strip_suffix('\\') {
                    Some(body) => (body, true),
                    None => (line, false),
                };
                joined.push_str(body);
                joined.push(' ');
                if continued {
                    pending = Some((start, joined));
                } else {
                    snippets.push(Snippet {
                        file: file.to_string(),
                        line: start,
                        text: joined,
                    });
                }
                prose.push('\n');
                continue;
            }
            (None, None) => {
                prose.push_str(line);
                prose.push('\n');
                continue;
            }
        }
        prose.push('\n');
    }
    for (line, span) in inline_code(&prose) {
        snippets.push(Snippet {
            file: file.to_string(),
            line,
            text: span,
        });
    }
    snippets
}

/// Inline code spans of Markdown prose, each with the line its opening backticks are on. A
/// span does not cross a blank line.
fn inline_code(prose: &str) -> Vec<(usize, String)> {
    let bytes = prose.as_bytes();
    let run_at = |i: usize| bytes[i..].iter().take_while(|&&b| b == b'`').count();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let open = run_at(i);
        let start = i + open;
        let mut j = start;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let run = run_at(j);
                if run == open {
                    close = Some(j);
                    break;
                }
                j += run;
            } else if prose[j..].starts_with("\n\n") {
                break;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                let line = prose[..i].matches('\n').count() + 1;
                spans.push((line, prose[start..end].replace('\n', " ")));
                i = end + open;
            }
            None => i = start,
        }
    }
    spans
}

/// The unit file and the env file: every comment line; `ExecStart=` of the unit; the env file's
/// `RECONCILER_ARGS=` and the flags its comments list for it, which are arguments of `run`.
fn packaging_snippets(file: &str, text: &str) -> Vec<Snippet> {
    let mut snippets = Vec::new();
    let mut args_comments = false;
    for (i, line) in text.lines().enumerate() {
        let snippet = |text: String| Snippet {
            file: file.to_string(),
            line: i + 1,
            text,
        };
        if let Some(comment) = line.strip_prefix('#') {
            if comment.contains("Flags without an environment variable") {
                args_comments = true;
            }
            let flag_list = comment.trim_start();
            if args_comments && flag_list.starts_with("--") {
                // `#   --interval 30s   time between passes`: a flag of `run`.
                let flag = flag_list.split_whitespace().next().unwrap_or_default();
                snippets.push(snippet(format!("reconciler run {flag}")));
            } else {
                snippets.push(snippet(comment.to_string()));
            }
        } else if let Some(command) = line.strip_prefix("ExecStart=") {
            snippets.push(snippet(command.to_string()));
        } else if let Some(args) = line.strip_prefix("RECONCILER_ARGS=") {
            snippets.push(snippet(format!("reconciler run {args}")));
            args_comments = false;
        } else if line.trim().is_empty() {
            args_comments = false;
        }
    }
    snippets
}

/// Shell-ish words, cut into commands at `;`, `|`, `&`, `(`, `)`, `<`, `>`, a backtick and a
/// `#`: enough to find the command word of each command in a line of documentation. Quoted
/// text is one word.
fn commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    let end_word = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    word.push(q);
                }
                // A quoted word is never a command of the docs' own.
                word.push('"');
            }
            ';' | '&' | '(' | ')' | '<' | '>' | '`' => {
                end_word(&mut word, &mut words);
                commands.push(std::mem::take(&mut words));
            }
            '#' if word.is_empty() => {
                commands.push(std::mem::take(&mut words));
            }
            // `status|history` in one word is a list of subcommands; ` | ` is a pipe.
            '|' if word.is_empty()
                && chars.peek().is_none_or(|n| n.is_whitespace() || *n == '|') =>
            {
                commands.push(std::mem::take(&mut words));
            }
            c if c.is_whitespace() => end_word(&mut word, &mut words),
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut words);
    commands.push(words);
    commands.retain(|c| !c.is_empty());
    commands
}

/// How the docs call the binary.
fn is_binary(word: &str) -> bool {
    word == "reconciler"
        || [
            "target/release/reconciler",
            "target/debug/reconciler",
            "/usr/bin/reconciler",
        ]
        .iter()
        .any(|b| word.ends_with(b))
}

/// One invocation: the global options before the subcommand, the subcommand (or several, as
/// in `status|history`), and every option word after it.
#[derive(Debug)]
struct Invocation {
    global: Vec<String>,
    subcommands: Vec<String>,
    options: Vec<String>,
    text: String,
}

/// The invocations of the binary in a snippet: commands whose command word (after
/// `NAME=value` assignments and `sudo`/`env`/`exec`) is the binary and that name a subcommand.
/// `reconciler` alone, or followed by prose, is a mention, not an invocation.
fn invocations(snippet: &str, global_with_value: &BTreeSet<String>) -> Vec<Invocation> {
    let mut found = Vec::new();
    for words in commands(snippet) {
        let mut rest = words
            .iter()
            .map(String::as_str)
            .skip_while(|w| {
                matches!(*w, "sudo" | "env" | "exec")
                    || w.split_once('=').is_some_and(|(name, _)| {
                        !name.is_empty()
                            && !name.starts_with('-')
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            })
            .peekable();
        if !rest.next().is_some_and(is_binary) {
            continue;
        }
        let mut global = Vec::new();
        let mut subcommand = None;
        while let Some(w) = rest.next() {
            let w = w.trim_matches(|c| c == '[' || c == ']');
            if w.starts_with('$') {
                continue; // `$S`: options the reader set in a variable
            }
            if let Some(flag) = option_name(w) {
                if global_with_value.contains(&flag) && !w.contains('=') {
                    rest.next();
                }
                global.push(flag);
                continue;
            }
            subcommand = Some(w.to_string());
            break;
        }
        let Some(subcommand) = subcommand else {
            continue;
        };
        let options = rest
            .filter_map(|w| option_name(w.trim_matches(|c| c == '[' || c == ']')))
            .collect();
        found.push(Invocation {
            global,
            subcommands: subcommand.split('|').map(str::to_string).collect(),
            options,
            text: words.join(" "),
        });
    }
    found
}

/// `--flag`, `--flag=value`, `-o`, `-vv` -> the option as `--help` spells it; anything else
/// (`-`, `--`, a negative number) is not an option.
fn option_name(word: &str) -> Option<String> {
    if let Some(long) = word.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or_default();
        let ok = name.len() > 1
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        return ok.then(|| format!("--{name}"));
    }
    let short = word.strip_prefix('-')?;
    let first = short.chars().next()?;
    (first.is_ascii_alphabetic() && short.chars().all(|c| c == first)).then(|| format!("-{first}"))
}

/// What `--help` lists: every option, and whether it takes a value.
struct Help {
    options: BTreeMap<String, bool>,
}

/// `reconciler [SUBCOMMAND] --help`, or None when the binary refuses it (no such subcommand).
fn help(subcommand: Option<&str>) -> Option<Help> {
    let mut command = Command::new(BIN);
    command.args(subcommand).arg("--help");
    // The env vars clap reads would show in the help text; keep the output the same anywhere.
    for var in ["RECONCILER_REPO", "RECONCILER_STATE_DIR", "DOCKER_HOST"] {
        command.env_remove(var);
    }
    let out = command.output().expect("running the reconciler binary");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut options = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        let words: Vec<&str> = line
            .split_whitespace()
            .take_while(|w| w.starts_with('-') || w.starts_with('<') || w.starts_with('['))
            .collect();
        let takes_value = words.iter().any(|w| w.starts_with('<'));
        for w in words {
            if let Some(name) = option_name(w.trim_end_matches(',')) {
                options.insert(name, takes_value);
            }
        }
    }
    Some(Help { options })
}

#[test]
fn every_reconciler_command_in_the_docs_has_its_subcommand_and_flags() {
    let global = help(None).expect("reconciler --help works");
    let global_with_value: BTreeSet<String> = global
        .options
        .iter()
        .filter(|(_, v)| **v)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        global_with_value.contains("--state-dir"),
        "--state-dir takes a value in: {:?}",
        global.options
    );
    let mut sub_help: BTreeMap<String, Option<Help>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut per_subcommand: BTreeMap<String, usize> = BTreeMap::new();
    for doc in documents() {
        let file = relative(&doc);
        let text = read(&doc);
        let snippets = if file.starts_with("packaging/") {
            packaging_snippets(&file, &text)
        } else {
            markdown_snippets(&file, &text)
        };
        for snippet in snippets {
            for inv in invocations(&snippet.text, &global_with_value) {
                checked += 1;
                let at = format!("{}:{}", snippet.file, snippet.line);
                for flag in &inv.global {
                    if !global.options.contains_key(flag) {
                        failures.push(format!(
                            "{at}: `{}`: {flag} is not a global option of reconciler",
                            inv.text
                        ));
                    }
                }
                for sub in &inv.subcommands {
                    *per_subcommand.entry(sub.clone()).or_default() += 1;
                    let help = sub_help
                        .entry(sub.clone())
                        .or_insert_with(|| help(Some(sub)));
                    let Some(help) = help else {
                        failures.push(format!(
                            "{at}: `{}`: reconciler has no subcommand {sub:?}",
                            inv.text
                        ));
                        continue;
                    };
                    for flag in &inv.options {
                        if !help.options.contains_key(flag) {
                            failures.push(format!(
                                "{at}: `{}`: `reconciler {sub}` has no option {flag}",
                                inv.text
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the docs' reconciler commands are wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The extraction itself works: the docs show these subcommands many times over.
    for sub in [
        "validate", "diff", "apply", "run", "status", "history", "retry", "restore",
    ] {
        assert!(
            per_subcommand.get(sub).is_some_and(|n| *n > 0),
            "no `reconciler {sub}` found in the docs ({checked} commands: {per_subcommand:?})"
        );
    }
}

/// Repository paths a document names: `scripts/...`, `examples/...`, `bench/...`, `src/...`,
/// `tests/...`, `testdata/...`, `packaging/...`, `.ci/...`, `desired-state/...`, and the script
/// of every `bash <path>`. Templates (`<stack>`, `*`, `$VAR`, `{...}`) are left out.
fn repository_paths(text: &str) -> Vec<(usize, String)> {
    const PREFIXES: [&str; 9] = [
        "scripts/",
        "examples/",
        "bench/",
        "src/",
        "tests/",
        "testdata/",
        "packaging/",
        ".ci/",
        "desired-state/",
    ];
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut starts: Vec<usize> = Vec::new();
        for prefix in PREFIXES {
            starts.extend(line.match_indices(prefix).map(|(at, _)| at));
        }
        for (at, _) in line.match_indices("bash ") {
            let after = at + "bash ".len();
            if line[after..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.') {
                starts.push(after);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        for start in starts {
            // A path starts the word: not `/tmp/x/examples/`, not `my-scripts/`.
            let before = line[..start].chars().next_back();
            if before.is_some_and(|c| is_path_char(c) || c == '$' || c == '~') {
                continue;
            }
            let len = line[start..]
                .find(|c: char| !is_path_char(c))
                .unwrap_or(line.len() - start);
            let next = line[start + len..].chars().next();
            if next.is_some_and(|c| "<*${".contains(c)) {
                continue;
            }
            let path = line[start..start + len].trim_end_matches(['.', '-']);
            if path.contains('/') {
                found.push((i + 1, path.to_string()));
            }
        }
    }
    found
}

#[test]
fn every_script_and_repository_path_the_docs_name_exists() {
    let root = root();
    let mut failures = Vec::new();
    let mut checked = 0;
    let docs = documents()
        .into_iter()
        .filter(|d| d.extension().is_some_and(|x| x == "md"));
    for doc in docs {
        let file = relative(&doc);
        for (line, path) in repository_paths(&read(&doc)) {
            checked += 1;
            if !root.join(&path).exists() {
                failures.push(format!("{file}:{line}: {path} does not exist"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the paths the docs name are missing:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked > 10,
        "only {checked} paths found: the extraction is broken"
    );
}

#[test]
fn the_extraction_finds_what_a_reader_would_run() {
    let with_value: BTreeSet<String> = ["--state-dir".to_string()].into();
    let found = invocations(
        "cd /x && ./target/release/reconciler --state-dir /s diff --repo r -o json; echo \"exit $?\"",
        &with_value,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].global, ["--state-dir"]);
    assert_eq!(found[0].subcommands, ["diff"]);
    assert_eq!(found[0].options, ["--repo", "-o"]);
    let found = invocations("reconciler status|history|sync", &with_value);
    assert_eq!(found[0].subcommands, ["status", "history", "sync"]);
    let found = invocations("reconciler history | grep web", &with_value);
    assert_eq!(found[0].subcommands, ["history"]);
    assert!(invocations("systemctl reload reconciler", &with_value).is_empty());
    assert!(invocations("journalctl -u reconciler -f", &with_value).is_empty());
    assert!(invocations("/var/lib/reconciler", &with_value).is_empty());
    let found = invocations(
        "reconciler apply --repo DIR [--dry-run] [--keep-images 2]",
        &with_value,
    );
    assert_eq!(found[0].options, ["--repo", "--dry-run", "--keep-images"]);

    let md = "text `reconciler restore STACK\nVOLUME --timeout 2m` more\n\n```sh\nreconciler run \\\n  --listen x\n```\n";
    let snippets = markdown_snippets("x.md", md);
    let lines: Vec<(usize, &str)> = snippets.iter().map(|s| (s.line, s.text.trim())).collect();
    assert!(
        lines.contains(&(5, "reconciler run    --listen x")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(1, "reconciler restore STACK VOLUME --timeout 2m")),
        "{lines:?}"
    );

    let paths = repository_paths(
        "run `bash scripts/demo.sh`, see /tmp/examples/x and examples/<n>.md, or bench/run.sh.",
    );
    assert_eq!(
        paths,
        [
            (1, "scripts/demo.sh".to_string()),
            (1, "bench/run.sh".to_string())
        ]
    );
}
