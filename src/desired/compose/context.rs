//! The conversion context: the problems found so far (capped, secrets scrubbed) and the
//! interpolation of scalars, which every reader of a value goes through.

use super::secrets_configs::FileDefs;
use super::{SourceFile, StackFiles, Variables};
use crate::desired::error::Problem;
use crate::desired::interpolate::{interpolate_within, Budget, InterpolateError};
use crate::desired::yaml::{Node, Value};
use crate::mask::is_secret_key;
use std::collections::BTreeMap;

/// Most container ports one stack may publish or expose, ranges counted port by port: the
/// whole port space. Each published port costs the host a proxy process and firewall rules,
/// and a range is one line of YAML.
pub(super) const MAX_PORTS_PER_STACK: usize = 65_536;

/// A file with more problems than this is not a Compose file someone mistyped; listing them all
/// (a hostile file can hold hundreds of thousands) would only cost time and memory.
const MAX_PROBLEMS: usize = 200;

pub(super) struct Cx<'a> {
    /// Problems past [`MAX_PROBLEMS`], counted rather than kept.
    dropped: usize,
    /// Lines of mount entries by target, for the service being converted.
    pub(super) mount_lines: BTreeMap<String, usize>,
    /// Keys whose value took a secret-looking variable, for the service being converted.
    pub(super) sensitive_keys: Vec<String>,
    /// Values of host-local and secret-looking variables: never part of a message.
    secret_values: Vec<String>,
    file: &'a str,
    /// Every file of the stack by [`Node::file`] (0: the main one), when there are several.
    sources: &'a [SourceFile],
    /// The stack's variables; [`Self::vars_for`] gives an included file's own.
    pub(super) vars: &'a Variables,
    var_sets: &'a [Variables],
    pub(super) files: &'a dyn StackFiles,
    problems: Vec<Problem>,
    /// What is accepted but worth saying (an ignored key, an unset variable); never fatal.
    warnings: Vec<Problem>,
    /// Where an unset variable was replaced by "", and "the variable 'X'" with a spelling hint:
    /// a problem at the same place names it, as the empty value is most likely its cause.
    unset_at: Vec<(Problem, String)>,
    /// Services left out because their profiles are not active, with those profiles.
    pub(super) inactive: BTreeMap<String, Vec<String>>,
    /// Ports the stack may still publish or expose ([`MAX_PORTS_PER_STACK`]).
    ports_left: usize,
    ports_refused: bool,
    /// Interpolated bytes left for this file: aliases may repeat a `${BIG}` scalar many times.
    budget: Budget,
    /// The top-level `secrets:` and `configs:`, which services refer to by name.
    pub(super) file_defs: FileDefs,
}

/// An interpolated scalar and whether a host-local (secret) variable went into it.
pub(super) struct Text {
    pub(super) value: String,
    pub(super) secret: bool,
    /// A host-local or secret-looking (`*PASSWORD*`, `*TOKEN*`, ...) variable went into it.
    pub(super) sensitive: bool,
}

impl<'a> Cx<'a> {
    pub(super) fn new(file: &'a str, vars: &'a Variables, files: &'a dyn StackFiles) -> Self {
        Self::with_sources(file, &[], std::slice::from_ref(vars), files)
    }

    /// A stack made of several files (`sources`), each interpolated with its own variables
    /// (`var_sets`, the first being the stack's).
    pub(super) fn with_sources(
        file: &'a str,
        sources: &'a [SourceFile],
        var_sets: &'a [Variables],
        files: &'a dyn StackFiles,
    ) -> Self {
        let vars = &var_sets[0];
        Cx {
            unset_at: Vec::new(),
            dropped: 0,
            mount_lines: BTreeMap::new(),
            sensitive_keys: Vec::new(),
            secret_values: var_sets
                .iter()
                .flat_map(Variables::secret_values)
                .map(str::to_string)
                .collect(),
            file,
            sources,
            vars,
            var_sets,
            files,
            problems: Vec::new(),
            warnings: Vec::new(),
            inactive: BTreeMap::new(),
            ports_left: MAX_PORTS_PER_STACK,
            ports_refused: false,
            budget: Budget::per_file(),
            file_defs: FileDefs::default(),
        }
    }

    /// `parts` and the warnings if nothing was wrong, else every problem by line, then how many
    /// were dropped.
    pub(super) fn finish<T>(mut self, parts: T) -> Result<(T, Vec<Problem>), Vec<Problem>> {
        if self.problems.is_empty() {
            return Ok((parts, self.warnings));
        }
        for p in &mut self.problems {
            let here = |(at, _): &&(Problem, String)| {
                (&at.file, at.line, &at.key) == (&p.file, p.line, &p.key)
            };
            for (_, variable) in self.unset_at.iter().filter(here) {
                p.message.push_str(&format!(
                    " (it uses {variable}, which is not set and was replaced by an empty string)"
                ));
            }
        }
        self.problems.sort_by(|a, b| {
            (a.file != self.file, &a.file, a.line).cmp(&(b.file != self.file, &b.file, b.line))
        });
        if self.dropped > 0 {
            self.problems.push(Problem {
                file: self.file.to_string(),
                line: self.problems.last().map_or(1, |p| p.line),
                key: String::new(),
                message: format!(
                    "... and {} more problems (only the first {MAX_PROBLEMS} are listed)",
                    self.dropped
                ),
            });
        }
        Err(self.problems)
    }
}

impl<'a> Cx<'a> {
    /// How many problems are kept so far (not counting dropped ones): a step that adds none
    /// leaves it unchanged.
    pub(super) fn problems_kept(&self) -> usize {
        self.problems.len()
    }

    /// A value that became secret content (a secret from a repository variable): no message
    /// may quote it from now on.
    pub(super) fn hide(&mut self, value: &str) {
        if !self.secret_values.iter().any(|v| v == value) {
            self.secret_values.push(value.to_string());
        }
    }

    pub(super) fn problem(&mut self, node: &Node, key: &str, message: impl Into<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.dropped += 1;
            return;
        }
        // Messages quote values ("'...' is not a size"): a secret must never be one of them.
        let message = crate::mask::scrub(
            &message.into(),
            self.secret_values.iter().map(String::as_str),
        );
        let problem = self.located(node, key, message);
        self.problems.push(problem);
    }

    /// Something accepted that the user should hear about: a key that has no effect here, a
    /// variable that is not set. Said once per file, line and key.
    pub(super) fn warn(&mut self, node: &Node, key: &str, message: impl Into<String>) {
        if self.warnings.len() >= MAX_PROBLEMS {
            return;
        }
        let message = crate::mask::scrub(
            &message.into(),
            self.secret_values.iter().map(String::as_str),
        );
        let warning = self.located(node, key, message);
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    /// Take `count` ports from the stack's allowance; past it, a problem at `node` (said once:
    /// later entries are refused without another word).
    pub(super) fn spend_ports(&mut self, node: &Node, key: &str, count: usize) -> bool {
        match self.ports_left.checked_sub(count) {
            Some(left) => {
                self.ports_left = left;
                true
            }
            None => {
                if !self.ports_refused {
                    self.ports_refused = true;
                    self.problem(
                        node,
                        key,
                        format!("the stack publishes or exposes more than {MAX_PORTS_PER_STACK} ports (ranges counted port by port), the limit"),
                    );
                }
                false
            }
        }
    }

    /// The file a node came from, as shown in messages.
    pub(super) fn file_of(&self, node: &Node) -> &str {
        self.sources
            .get(usize::from(node.file))
            .map_or(self.file, |s| s.shown.as_str())
    }

    /// The variables a node is interpolated with: its file's.
    pub(super) fn vars_for(&self, node: &Node) -> &'a Variables {
        self.sources
            .get(usize::from(node.file))
            .and_then(|s| self.var_sets.get(s.vars))
            .unwrap_or(self.vars)
    }

    /// A path a node names, relative to the stack folder: paths in an included or extended
    /// file are relative to that file's folder (or its project directory), as in Compose.
    pub(super) fn path_from(&self, node: &Node, path: &str) -> String {
        match self.sources.get(usize::from(node.file)) {
            Some(source) => crate::desired::assemble::join_dir(&source.dir, path),
            None => path.to_string(),
        }
    }

    fn located(&self, node: &Node, key: &str, message: String) -> Problem {
        Problem {
            file: self.file_of(node).to_string(),
            line: node.line,
            key: key.to_string(),
            message,
        }
    }

    pub(super) fn map<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            _ => {
                self.problem(
                    node,
                    key,
                    format!("expected a mapping, found {}", node.kind()),
                );
                None
            }
        }
    }

    pub(super) fn text(&mut self, node: &Node, key: &str) -> Option<Text> {
        match &node.value {
            Value::Scalar { text, .. } => {
                let vars = self.vars_for(node);
                let lookup = |name: &str| vars.values.get(name).cloned();
                match interpolate_within(text, &lookup, &mut self.budget) {
                    Ok(out) => {
                        for name in &out.unset {
                            // Spelling hints for the first few only: each compares the name with
                            // every variable, and a hostile file may have many unset ones.
                            let hint = if self.unset_at.len() < MAX_SPELLING_HINTS {
                                spelling_hint(name, vars)
                            } else {
                                String::new()
                            };
                            let variable = format!("the variable '{name}'{hint}");
                            self.warn(
                                node,
                                key,
                                format!("{variable} is not set: it is replaced by an empty string (set it in the stack's .env or the host's env file, or write ${{{name}:-default}})"),
                            );
                            if self.unset_at.len() < MAX_PROBLEMS {
                                let at = self.located(node, key, String::new());
                                self.unset_at.push((at, variable));
                            }
                        }
                        let secret = out.used.iter().any(|v| vars.host_local.contains(v));
                        let sensitive = secret || out.used.iter().any(|v| is_secret_key(v));
                        Some(Text {
                            value: out.text,
                            secret,
                            sensitive,
                        })
                    }
                    Err(e) => {
                        // The value of a secret-looking key is not quoted back, even when broken.
                        let message = match &e {
                            InterpolateError::Syntax { .. }
                                if is_secret_key(key.rsplit('.').next().unwrap_or(key)) =>
                            {
                                "invalid interpolation syntax (the value is not shown: the key looks secret)".to_string()
                            }
                            _ => e.to_string(),
                        };
                        self.problem(node, key, message);
                        None
                    }
                }
            }
            _ => {
                self.problem(
                    node,
                    key,
                    format!("expected a value, found {}", node.kind()),
                );
                None
            }
        }
    }
}

/// How many unset variables get a "did you mean" hint.
const MAX_SPELLING_HINTS: usize = 20;

/// " (did you mean 'WEB_TAG'?)" when a set variable is a likely spelling of `name`. Bounded:
/// at most 2,000 variables of up to 64 characters are compared.
fn spelling_hint(name: &str, vars: &Variables) -> String {
    let known: Vec<&str> = vars
        .values
        .keys()
        .map(String::as_str)
        .filter(|k| k.len() <= 64)
        .take(2_000)
        .collect();
    super::keys::suggest(name, &known)
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}
