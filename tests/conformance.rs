//! The Compose conformance suite: every file in `testdata/conformance/` is a stack on its own,
//! loaded as `validate` loads it, and must do what its header says (see the README there).

use reconciler::desired::load::{load, LoadOptions};
use reconciler::desired::DesiredError;
use std::path::{Path, PathBuf};

struct Case {
    path: PathBuf,
    stem: String,
    text: String,
    valid: bool,
    problems: Vec<String>,
    warnings: Vec<String>,
    allow: Vec<String>,
    files: Vec<(String, String)>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/conformance");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.into_iter().map(read_case).collect()
}

fn read_case(path: PathBuf) -> Case {
    let text = std::fs::read_to_string(&path).unwrap();
    let stem = path.file_stem().unwrap().to_string_lossy().to_string();
    let mut case = Case {
        path: path.clone(),
        stem,
        text: text.clone(),
        valid: false,
        problems: vec![],
        warnings: vec![],
        allow: vec![],
        files: vec![],
    };
    let mut said = false;
    let mut extra: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some((name, body)) = extra.as_mut() {
            if line.trim() == "# end" {
                case.files.push((name.clone(), std::mem::take(body)));
                extra = None;
            } else {
                let content = line
                    .strip_prefix("# ")
                    .or(line.strip_prefix("#"))
                    .unwrap_or(line);
                body.push_str(content);
                body.push('\n');
            }
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            if line.trim().is_empty() {
                continue;
            }
            break;
        };
        let comment = comment.trim();
        if comment == "expect: valid" {
            case.valid = true;
            said = true;
        } else if let Some(t) = comment.strip_prefix("expect: invalid ") {
            case.problems.push(t.to_string());
            said = true;
        } else if let Some(t) = comment.strip_prefix("expect: warning ") {
            case.warnings.push(t.to_string());
        } else if let Some(a) = comment.strip_prefix("allow: ") {
            case.allow.push(a.to_string());
        } else if let Some(f) = comment.strip_prefix("file: ") {
            extra = Some((f.to_string(), String::new()));
        }
    }
    assert!(
        said,
        "{}: say `# expect: valid` or `# expect: invalid <text>` first",
        path.display()
    );
    assert!(
        case.valid == case.problems.is_empty(),
        "{}: a case is either valid or invalid",
        path.display()
    );
    case
}

/// What loading the case gives: `Ok(warnings)` or `Err(problems)`, each rendered as users see it.
fn load_case(case: &Case) -> Result<Vec<String>, Vec<String>> {
    let repo = tempfile::tempdir().unwrap();
    let stack = repo.path().join(&case.stem);
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(stack.join("compose.yaml"), &case.text).unwrap();
    for (name, body) in &case.files {
        let path = stack.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    let mut options = LoadOptions::default();
    for value in &case.allow {
        options.policy.allow(value).unwrap();
    }
    match load(repo.path(), &options) {
        Ok(desired) => Ok(desired
            .stacks
            .iter()
            .flat_map(|s| &s.warnings)
            .map(|w| w.to_string())
            .collect()),
        Err(DesiredError::Invalid(problems)) => {
            Err(problems.iter().map(|p| p.to_string()).collect())
        }
        Err(other) => Err(vec![other.to_string()]),
    }
}

#[test]
fn every_conformance_case_loads_as_its_header_says() {
    let cases = cases();
    assert!(cases.len() > 10, "the suite is missing: {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.path.display();
        match (load_case(case), case.valid) {
            (Ok(warnings), true) => {
                for want in &case.warnings {
                    if !warnings.iter().any(|w| w.contains(want)) {
                        failures.push(format!("{name}: no warning with '{want}' in {warnings:?}"));
                    }
                }
            }
            (Err(problems), true) => failures.push(format!("{name}: refused: {problems:#?}")),
            (Ok(_), false) => failures.push(format!("{name}: accepted, but must be refused")),
            (Err(problems), false) => {
                for want in &case.problems {
                    if !problems.iter().any(|p| p.contains(want)) {
                        failures.push(format!("{name}: no problem with '{want}' in {problems:#?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
