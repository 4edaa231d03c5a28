//! The Compose files of one stack folder made into one document, as Compose makes them: the main
//! file and its `compose.override.yaml` (or the `COMPOSE_FILE` list from `.env`), services that
//! `extends` others, files brought in by `include`, and services left out by `profiles`.
//!
//! Every file is read through [`DirFiles`] (confined to the stack folder, bounded), and the whole
//! is bounded too: at most [`MAX_FILES`] files, the files read together and the assembled tree
//! each at most [`yaml::MAX_NODES`] nodes and [`yaml::MAX_TEXT_BYTES`] bytes of text, however
//! often `extends` copies a large service or `include` adds files.

mod merge;

use super::compose::{SourceFile, StackFiles, Variables};
use super::error::Problem;
use super::interpolate::{interpolate_within, Budget};
use super::load::{normalize, read_env_file, DirFiles, MAX_DEFINITION_BYTES};
use super::yaml::{self, Node, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most Compose files one stack may be made of (overrides, `extends` and `include` together).
pub const MAX_FILES: usize = 32;
/// Deepest chain of `extends`, and of `include` within included files.
const MAX_CHAIN: usize = 16;
const OVERRIDE_NAMES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// One stack's document and where each part of it came from.
pub struct Assembled {
    pub doc: Node,
    /// By [`Node::file`]: 0 is the main file.
    pub sources: Vec<SourceFile>,
    /// By [`SourceFile::vars`]: 0 is the stack's own.
    pub var_sets: Vec<Variables>,
    /// Services not deployed because none of their profiles is active, with their profiles.
    pub inactive: BTreeMap<String, Vec<String>>,
    /// What reading the included projects' env files had to say (an unset variable).
    pub warnings: Vec<Problem>,
}

/// Assemble the stack in `files`; `main` is the Compose file discovery found (shown as
/// `folder/main`), unless the variables name the files in `COMPOSE_FILE`.
pub fn assemble(
    files: &DirFiles,
    folder: &str,
    main: &str,
    vars: Variables,
) -> Result<Assembled, Vec<Problem>> {
    let var_bytes = vars_bytes(&vars);
    let mut a = Assembler {
        files,
        folder,
        sources: Vec::new(),
        var_sets: vec![vars],
        parsed: BTreeMap::new(),
        read_size: Size::default(),
        resolved: HashMap::new(),
        resolved_size: Size::default(),
        budget: RefCell::new(Budget::per_file()),
        var_bytes,
        warnings: Vec::new(),
    };
    let mut doc = a.document(main).map_err(|problems| a.scrubbed(problems))?;
    let inactive = a.profiles(&mut doc);
    Ok(Assembled {
        doc,
        sources: a.sources,
        var_sets: a.var_sets,
        inactive,
        warnings: a.warnings,
    })
}

struct Assembler<'a> {
    files: &'a DirFiles,
    folder: &'a str,
    sources: Vec<SourceFile>,
    var_sets: Vec<Variables>,
    /// Files read for `extends: file:`, by path, so each is read once.
    parsed: BTreeMap<String, Services>,
    /// Nodes and text of every file read so far: all of them may be held at once.
    read_size: Size,
    /// Services with `extends` already resolved, by source and name: thousands of services may
    /// extend the end of one long chain.
    resolved: HashMap<(u16, String), Node>,
    /// Nodes and text held in [`Self::resolved`].
    resolved_size: Size,
    /// Interpolated bytes left for the names of files and services and included env files:
    /// aliases may repeat an `extends` whose file is a `${BIG}` path thousands of times.
    budget: RefCell<Budget>,
    /// Bytes of names and values in [`Self::var_sets`].
    var_bytes: usize,
    warnings: Vec<Problem>,
}

/// A document's services by name, as `extends` looks them up: a file may hold thousands, and
/// each of them may extend another.
struct Services {
    /// The document's source ([`Node::file`]).
    file: u16,
    /// Where `services:` is, for a problem naming a service that is not there.
    line: usize,
    by_name: HashMap<String, Node>,
}

impl Services {
    fn of(doc: &Node) -> Self {
        let section = doc.get("services");
        let mut by_name = HashMap::new();
        for (k, v) in section.and_then(Node::as_map).unwrap_or_default() {
            by_name
                .entry(k.key_text().to_string())
                .or_insert_with(|| v.clone());
        }
        Services {
            file: doc.file,
            line: section.map_or(1, |s| s.line),
            by_name,
        }
    }
}

/// A tree's weight against the limits.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    text_bytes: usize,
}

impl Size {
    fn of(node: &Node) -> Self {
        Size {
            nodes: node.size(),
            text_bytes: node.text_bytes(),
        }
    }

    fn plus(self, other: Size) -> Self {
        Size {
            nodes: self.nodes.saturating_add(other.nodes),
            text_bytes: self.text_bytes.saturating_add(other.text_bytes),
        }
    }

    fn minus(self, other: Size) -> Self {
        Size {
            nodes: self.nodes.saturating_sub(other.nodes),
            text_bytes: self.text_bytes.saturating_sub(other.text_bytes),
        }
    }
}

fn problem(file: &str, line: usize, key: &str, message: impl Into<String>) -> Vec<Problem> {
    vec![Problem {
        file: file.to_string(),
        line,
        key: key.to_string(),
        message: message.into(),
    }]
}

/// `dir/rel`, or `rel` when it is absolute or `dir` is the stack folder itself.
pub fn join_dir(dir: &str, rel: &str) -> String {
    if dir.is_empty() || rel.starts_with('/') {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

fn vars_bytes(vars: &Variables) -> usize {
    vars.values.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn parent_dir(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, _)) => dir.to_string(),
        None => String::new(),
    }
}

fn scalar(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

impl Assembler<'_> {
    /// The main files merged, their services extended, their includes added.
    fn document(&mut self, main: &str) -> Result<Node, Vec<Problem>> {
        let names = self.main_files(main)?;
        let mut doc = self.project(&names, 0)?;
        self.extends(&mut doc, 0)?;
        self.includes(&mut doc, &mut vec![names[0].clone()])?;
        Ok(doc)
    }

    /// Problems with every secret value masked: a message may quote a path or name built from
    /// one, or a required variable's message (`${X:?${DB_PASS}}`).
    fn scrubbed(&self, problems: Vec<Problem>) -> Vec<Problem> {
        let secrets: Vec<&str> = self
            .var_sets
            .iter()
            .flat_map(Variables::secret_values)
            .collect();
        let scrub = |text: &str| crate::mask::scrub(text, secrets.iter().copied());
        problems
            .into_iter()
            .map(|p| Problem {
                file: scrub(&p.file),
                line: p.line,
                key: scrub(&p.key),
                message: scrub(&p.message),
            })
            .collect()
    }

    fn shown(&self, rel: &str) -> String {
        format!("{}/{rel}", self.folder)
    }

    /// `COMPOSE_FILE` (paths split by `COMPOSE_PATH_SEPARATOR`, `:` by default), else the main
    /// file and the first override file present next to it.
    fn main_files(&self, main: &str) -> Result<Vec<String>, Vec<Problem>> {
        let vars = &self.var_sets[0].values;
        if let Some(list) = vars.get("COMPOSE_FILE").filter(|l| !l.trim().is_empty()) {
            let separator = vars
                .get("COMPOSE_PATH_SEPARATOR")
                .filter(|s| !s.is_empty())
                .map_or(":", String::as_str);
            let names: Vec<String> = list
                .split(separator)
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            if names.is_empty() {
                return Err(problem(
                    &self.shown(".env"),
                    1,
                    "COMPOSE_FILE",
                    format!("names no file: '{list}' holds only the separator '{separator}'"),
                ));
            }
            return names
                .iter()
                .map(|n| normalize(n))
                .collect::<Result<_, _>>()
                .map_err(|e| problem(&self.shown(".env"), 1, "COMPOSE_FILE", e));
        }
        let mut names = vec![main.to_string()];
        if let Some(over) = OVERRIDE_NAMES.iter().find(|n| self.files.exists(n)) {
            names.push(over.to_string());
        }
        Ok(names)
    }

    /// Read and parse one file as source `vars`, relative paths in it resolved from `dir`.
    fn read(&mut self, rel: &str, dir: &str, vars: usize) -> Result<Node, Vec<Problem>> {
        let shown = self.shown(rel);
        if self.sources.len() >= MAX_FILES {
            return Err(problem(
                &shown,
                1,
                "",
                format!("the stack is made of more than {MAX_FILES} Compose files, the limit"),
            ));
        }
        let text = self
            .files
            .read_text(rel, MAX_DEFINITION_BYTES)
            .map_err(|e| problem(&shown, 1, "", e))?;
        let mut doc = yaml::parse(&text).map_err(|e| problem(&shown, e.line, "", e.message))?;
        if !matches!(doc.value, Value::Map(_) | Value::Null) {
            return Err(problem(
                &shown,
                doc.line,
                "",
                format!("a Compose file is a mapping, found {}", doc.kind()),
            ));
        }
        self.read_size = self.read_size.plus(Size::of(&doc));
        self.check_size(self.read_size, &shown)?;
        let id = self.sources.len() as u16;
        doc.set_file(id);
        self.sources.push(SourceFile {
            shown,
            dir: dir.to_string(),
            vars,
        });
        Ok(doc)
    }

    /// Files merged in order, paths in all of them relative to the first one's folder.
    fn project(&mut self, names: &[String], vars: usize) -> Result<Node, Vec<Problem>> {
        let dir = parent_dir(&names[0]);
        let mut doc: Option<Node> = None;
        for name in names {
            let next = self.read(name, &dir, vars)?;
            doc = Some(match doc {
                None => next,
                Some(base) => merge::merge_documents(base, next),
            });
            self.check_size(Size::of(doc.as_ref().expect("set")), &self.shown(name))?;
        }
        Ok(doc.expect("at least one file"))
    }

    fn check_size(&self, size: Size, shown: &str) -> Result<(), Vec<Problem>> {
        let over = if size.nodes > yaml::MAX_NODES {
            format!("{} nodes", yaml::MAX_NODES)
        } else if size.text_bytes > yaml::MAX_TEXT_BYTES {
            format!("{} bytes of text", yaml::MAX_TEXT_BYTES)
        } else {
            return Ok(());
        };
        Err(problem(
            shown,
            1,
            "",
            format!("the stack's Compose files together expand to more than {over}, the limit"),
        ))
    }

    /// A scalar of a Compose file, interpolated with its file's variables.
    fn text(&self, node: &Node, key: &str) -> Result<String, Vec<Problem>> {
        let shown = &self.sources[usize::from(node.file)].shown;
        let Some(raw) = scalar(node) else {
            return Err(problem(
                shown,
                node.line,
                key,
                format!("expected a value, found {}", node.kind()),
            ));
        };
        let vars = &self.var_sets[self.sources[usize::from(node.file)].vars];
        let lookup = |name: &str| vars.values.get(name).cloned();
        let out = interpolate_within(raw, &lookup, &mut self.budget.borrow_mut())
            .map_err(|e| problem(shown, node.line, key, e.to_string()))?;
        if out.used.iter().any(|v| vars.host_local.contains(v)) {
            // The name would be shown in messages and logs, whether the file is there or not.
            return Err(problem(
                shown,
                node.line,
                key,
                "a host-local (secret) variable may not name a file or a service: names are shown in messages and logs",
            ));
        }
        Ok(out.text)
    }

    fn located(&self, node: &Node, key: &str, message: impl Into<String>) -> Vec<Problem> {
        problem(
            &self.sources[usize::from(node.file)].shown,
            node.line,
            key,
            message,
        )
    }

    /// Every service of `doc` that `extends` another gets the other's definition under its own.
    fn extends(&mut self, doc: &mut Node, file: u16) -> Result<(), Vec<Problem>> {
        let original = Services::of(doc);
        let mut size = Size::of(doc);
        let Some(Value::Map(entries)) = doc.get_mut("services").map(|s| &mut s.value) else {
            return Ok(());
        };
        for (k, v) in entries.iter_mut() {
            if v.get("extends").is_none() {
                continue;
            }
            let resolved = self.resolve(&original, file, k.key_text(), &mut Vec::new())?;
            size = size.minus(Size::of(v)).plus(Size::of(&resolved));
            *v = resolved;
            self.check_size(size, &self.sources[usize::from(file)].shown)?;
        }
        Ok(())
    }

    /// Service `name` of `doc` (read as source `file`) with its `extends` chain applied.
    fn resolve(
        &mut self,
        doc: &Services,
        file: u16,
        name: &str,
        chain: &mut Vec<(u16, String)>,
    ) -> Result<Node, Vec<Problem>> {
        if let Some(done) = self.resolved.get(&(file, name.to_string())) {
            return Ok(done.clone());
        }
        let key = format!("services.{name}");
        let Some(service) = doc.by_name.get(name) else {
            return Err(problem(
                &self.sources[usize::from(file)].shown,
                doc.line,
                &key,
                format!(
                    "service '{name}' is not defined in {}",
                    self.sources[usize::from(file)].shown
                ),
            ));
        };
        if chain.contains(&(file, name.to_string())) || chain.len() >= MAX_CHAIN {
            let path: Vec<String> = chain.iter().map(|(_, n)| n.clone()).collect();
            return Err(self.located(
                service,
                &format!("{key}.extends"),
                format!(
                    "extends forms a cycle or a chain deeper than {MAX_CHAIN}: {} -> {name}",
                    path.join(" -> ")
                ),
            ));
        }
        let Some(ext) = service.get("extends") else {
            return Ok(service.clone());
        };
        let ext_key = format!("{key}.extends");
        let (base_file, base_name) = match &ext.value {
            Value::Scalar { .. } => (None, self.text(ext, &ext_key)?),
            Value::Map(entries) => {
                for (k, _) in entries {
                    if !matches!(k.key_text(), "service" | "file") {
                        return Err(self.located(
                            k,
                            &format!("{ext_key}.{}", k.key_text()),
                            format!(
                                "unknown key '{}' (allowed here: service, file)",
                                k.key_text()
                            ),
                        ));
                    }
                }
                let Some(s) = ext.get("service") else {
                    return Err(self.located(ext, &ext_key, "extends needs 'service'"));
                };
                let base_name = self.text(s, &format!("{ext_key}.service"))?;
                let base_file = match ext.get("file") {
                    Some(f) => Some(self.text(f, &format!("{ext_key}.file"))?),
                    None => None,
                };
                (base_file, base_name)
            }
            _ => {
                return Err(self.located(
                    ext,
                    &ext_key,
                    format!("expected a service name or a mapping, found {}", ext.kind()),
                ))
            }
        };
        chain.push((file, name.to_string()));
        let base = match base_file {
            None => self.resolve(doc, file, &base_name, chain)?,
            Some(path) => {
                let source = &self.sources[usize::from(file)];
                let vars = source.vars;
                let rel = normalize(&join_dir(&source.dir, &path))
                    .map_err(|e| self.located(ext, &format!("{ext_key}.file"), e))?;
                // Taken out while in use rather than cloned: a file many services extend may
                // be large. A chain that comes back to it reads it again, within MAX_FILES.
                let other = self.parsed_file(&rel, vars)?;
                let base = self.resolve(&other, other.file, &base_name, chain);
                self.parsed.insert(rel, other);
                base?
            }
        };
        chain.pop();
        let mut local = service.clone();
        if let Value::Map(entries) = &mut local.value {
            entries.retain(|(k, _)| k.key_text() != "extends");
        }
        let merged = merge::merge_service(base, local);
        self.resolved_size = self.resolved_size.plus(Size::of(&merged));
        self.check_size(self.resolved_size, &self.sources[usize::from(file)].shown)?;
        self.resolved
            .insert((file, name.to_string()), merged.clone());
        Ok(merged)
    }

    /// The file at `rel` (normalized, parsed once), for `extends: file:`; its own relative paths
    /// resolve from its folder. The caller puts it back in [`Self::parsed`].
    fn parsed_file(&mut self, rel: &str, vars: usize) -> Result<Services, Vec<Problem>> {
        if let Some(doc) = self.parsed.remove(rel) {
            return Ok(doc);
        }
        Ok(Services::of(&self.read(rel, &parent_dir(rel), vars)?))
    }

    /// Top-level `include:` entries: each a project of its own files, merged into `doc`; a
    /// service, network or volume defined twice is refused, as Compose refuses it.
    fn includes(&mut self, doc: &mut Node, seen: &mut Vec<String>) -> Result<(), Vec<Problem>> {
        let Some(list) = take_key(doc, "include") else {
            return Ok(());
        };
        let items = match list.value {
            Value::Seq(items) => items,
            Value::Null => return Ok(()),
            _ => {
                return Err(self.located(
                    &list,
                    "include",
                    format!("expected a list of files, found {}", list.kind()),
                ))
            }
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("include[{i}]");
            let including = &self.sources[usize::from(item.file)];
            let (base_dir, parent_vars) = (including.dir.clone(), including.vars);
            let (paths, project_dir, env_files) = self.include_entry(item, &key)?;
            let inside = |p: &str| {
                normalize(&join_dir(&base_dir, p)).map_err(|e| self.located(item, &key, e))
            };
            let paths = paths
                .iter()
                .map(|p| inside(p))
                .collect::<Result<Vec<_>, _>>()?;
            if seen.contains(&paths[0]) || seen.len() >= MAX_CHAIN {
                return Err(self.located(
                    item,
                    &key,
                    format!(
                        "'{}' is included in a cycle or deeper than {MAX_CHAIN} levels",
                        paths[0]
                    ),
                ));
            }
            let project_dir = match project_dir {
                Some(d) => inside(&d)?,
                None => parent_dir(&paths[0]),
            };
            let vars =
                self.include_vars(item, &key, &project_dir, &base_dir, env_files, parent_vars)?;
            // Paths in the included files are relative to its project directory.
            let mut included = self.project(&paths, vars)?;
            for id in (included.file as usize)..self.sources.len() {
                self.sources[id].dir = project_dir.clone();
            }
            let first = included.file;
            self.extends(&mut included, first)?;
            seen.push(paths[0].clone());
            self.includes(&mut included, seen)?;
            seen.pop();
            let shown = self.sources[usize::from(first)].shown.clone();
            self.add_included(doc, included)?;
            // Each included project is bounded on its own; together they must be too.
            self.check_size(Size::of(doc), &shown)?;
        }
        Ok(())
    }

    /// An include entry's files, project directory and env files.
    #[allow(clippy::type_complexity)]
    fn include_entry(
        &self,
        item: &Node,
        key: &str,
    ) -> Result<(Vec<String>, Option<String>, Option<Vec<String>>), Vec<Problem>> {
        let list = |node: &Node, key: &str| -> Result<Vec<String>, Vec<Problem>> {
            match &node.value {
                Value::Seq(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.text(n, &format!("{key}[{i}]")))
                    .collect(),
                _ => Ok(vec![self.text(node, key)?]),
            }
        };
        match &item.value {
            Value::Scalar { .. } => Ok((vec![self.text(item, key)?], None, None)),
            Value::Map(entries) => {
                for (k, _) in entries {
                    if !matches!(k.key_text(), "path" | "project_directory" | "env_file") {
                        return Err(self.located(
                            k,
                            &format!("{key}.{}", k.key_text()),
                            format!(
                                "unknown key '{}' (allowed here: path, project_directory, env_file)",
                                k.key_text()
                            ),
                        ));
                    }
                }
                let Some(path) = item.get("path") else {
                    return Err(self.located(item, key, "an include entry needs 'path'"));
                };
                let paths = list(path, &format!("{key}.path"))?;
                if paths.is_empty() {
                    return Err(self.located(path, &format!("{key}.path"), "no file given"));
                }
                let project_dir = match item.get("project_directory") {
                    Some(d) => Some(self.text(d, &format!("{key}.project_directory"))?),
                    None => None,
                };
                let env_files = match item.get("env_file") {
                    Some(e) => Some(list(e, &format!("{key}.env_file"))?),
                    None => None,
                };
                Ok((paths, project_dir, env_files))
            }
            _ => Err(self.located(
                item,
                key,
                format!("expected a path or a mapping, found {}", item.kind()),
            )),
        }
    }

    /// An included project's variables: the includer's, overridden by its own env files (`.env`
    /// in its project directory by default) except where the host's env file sets them.
    fn include_vars(
        &mut self,
        item: &Node,
        key: &str,
        project_dir: &str,
        base_dir: &str,
        env_files: Option<Vec<String>>,
        parent: usize,
    ) -> Result<usize, Vec<Problem>> {
        let env_files: Vec<String> = match env_files {
            Some(files) => files
                .iter()
                .map(|f| normalize(&join_dir(base_dir, f)).map_err(|e| self.located(item, key, e)))
                .collect::<Result<_, _>>()?,
            None => {
                let default = join_dir(project_dir, ".env");
                if !self.files.exists(&default) {
                    return Ok(parent);
                }
                vec![default]
            }
        };
        let mut vars = self.var_sets[parent].clone();
        for rel in env_files {
            let text = self
                .files
                .read_text(&rel, MAX_DEFINITION_BYTES)
                .map_err(|e| self.located(item, key, e))?;
            read_env_file(
                &text,
                &self.shown(&rel),
                false,
                &mut vars,
                &mut self.warnings,
                &mut self.budget.borrow_mut(),
            )?;
        }
        // Each set holds the includer's too: 31 copies of a large one would be gigabytes.
        self.var_bytes = self.var_bytes.saturating_add(vars_bytes(&vars));
        if self.var_bytes > yaml::MAX_TEXT_BYTES {
            return Err(self.located(
                item,
                key,
                format!(
                    "the stack's variables together hold more than {} bytes, the limit (an included project with env files of its own copies the includer's)",
                    yaml::MAX_TEXT_BYTES
                ),
            ));
        }
        self.var_sets.push(vars);
        Ok(self.var_sets.len() - 1)
    }

    /// The included project's resources added to `doc`; one already there is a conflict.
    fn add_included(&self, doc: &mut Node, included: Node) -> Result<(), Vec<Problem>> {
        let Value::Map(entries) = included.value else {
            return Ok(());
        };
        for (k, v) in entries {
            let section = k.key_text().to_string();
            if !matches!(
                section.as_str(),
                "services" | "networks" | "volumes" | "secrets" | "configs"
            ) {
                continue;
            }
            let Value::Map(items) = v.value else { continue };
            let target = section_mut(doc, &section, &k);
            let Value::Map(existing) = &mut target.value else {
                return Err(self.located(
                    target,
                    &section,
                    format!("expected a mapping, found {}", target.kind()),
                ));
            };
            let mut defined: HashMap<String, usize> = HashMap::new();
            for (i, (e, _)) in existing.iter().enumerate() {
                defined.entry(e.key_text().to_string()).or_insert(i);
            }
            for (name, def) in items {
                if let Some(&i) = defined.get(name.key_text()) {
                    let there = &existing[i].0;
                    return Err(self.located(
                        &name,
                        &format!("{section}.{}", name.key_text()),
                        format!(
                            "'{}' is also defined in {} (line {}): an included resource may not be defined twice",
                            name.key_text(),
                            self.sources[usize::from(there.file)].shown,
                            there.line
                        ),
                    ));
                }
                defined.insert(name.key_text().to_string(), existing.len());
                existing.push((name, def));
            }
        }
        Ok(())
    }

    /// Services with `profiles` none of which is active (`COMPOSE_PROFILES`, comma-separated;
    /// `*` activates all) are taken out; the rest keep their key.
    fn profiles(&self, doc: &mut Node) -> BTreeMap<String, Vec<String>> {
        let active: BTreeSet<String> = self.var_sets[0]
            .values
            .get("COMPOSE_PROFILES")
            .map(|p| {
                p.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut inactive = BTreeMap::new();
        let Some(Value::Map(services)) = doc.get_mut("services").map(|s| &mut s.value) else {
            return inactive;
        };
        services.retain(|(name, def)| {
            let profiles: Vec<String> = match def.get("profiles").map(|p| &p.value) {
                Some(Value::Seq(items)) => items
                    .iter()
                    .filter_map(scalar)
                    .map(str::to_string)
                    .collect(),
                Some(Value::Scalar { text, .. }) => vec![text.clone()],
                _ => return true,
            };
            if profiles.is_empty()
                || active.contains("*")
                || profiles.iter().any(|p| active.contains(p))
            {
                return true;
            }
            inactive.insert(name.key_text().to_string(), profiles);
            false
        });
        inactive
    }
}

/// Remove `key` from a mapping node and return its value.
fn take_key(doc: &mut Node, key: &str) -> Option<Node> {
    let Value::Map(entries) = &mut doc.value else {
        return None;
    };
    let i = entries.iter().position(|(k, _)| k.key_text() == key)?;
    Some(entries.remove(i).1)
}

/// `doc`'s top-level `section`, created empty (at `at`) when absent or null.
fn section_mut<'d>(doc: &'d mut Node, section: &str, at: &Node) -> &'d mut Node {
    if doc.value == Value::Null {
        doc.value = Value::Map(Vec::new());
    }
    let Value::Map(entries) = &mut doc.value else {
        unreachable!("a Compose document is a mapping, checked when read")
    };
    let i = match entries.iter().position(|(k, _)| k.key_text() == section) {
        Some(i) => i,
        None => {
            entries.push((
                at.clone(),
                Node {
                    line: at.line,
                    file: at.file,
                    value: Value::Map(Vec::new()),
                },
            ));
            entries.len() - 1
        }
    };
    let node = &mut entries[i].1;
    if node.value == Value::Null {
        node.value = Value::Map(Vec::new());
    }
    node
}

#[cfg(test)]
mod tests;
