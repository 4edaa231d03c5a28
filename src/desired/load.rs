//! Load the desired state from a folder of stacks: discover, read `.env` and the host-local env,
//! parse, convert, check policy. Files are read only through [`DirFiles`], which keeps every path
//! inside the stack folder.

use super::compose::{self, StackFiles, Variables};
use super::dotenv;
use super::error::{DesiredError, Problem};
use super::model::{hex, Desired, Stack};
use super::policy::Policy;
use super::yaml;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

pub const COMPOSE_FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Only these stacks (`--stack`); all when empty.
    pub stacks: Vec<String>,
    /// Folder of host-local env files, `<dir>/<stack>.env`, kept outside git for secrets.
    pub host_env_dir: Option<PathBuf>,
    pub policy: Policy,
    /// The commit id when the folder is a git checkout of one; else each stack's files are digested.
    pub revision: Option<String>,
}

/// Load every stack under `root`. All problems of all stacks are reported together.
pub fn load(root: &Path, options: &LoadOptions) -> Result<Desired, DesiredError> {
    let stack_dirs = discover(root)?;
    if stack_dirs.is_empty() {
        return Err(DesiredError::NoStacks(root.to_path_buf()));
    }
    for wanted in &options.stacks {
        if !stack_dirs.iter().any(|(name, _)| name == wanted) {
            return Err(DesiredError::UnknownStack(wanted.clone()));
        }
    }
    let mut desired = Desired::default();
    let mut problems = Vec::new();
    for (folder, file) in stack_dirs {
        if !options.stacks.is_empty() && !options.stacks.contains(&folder) {
            continue;
        }
        match load_stack(root, &folder, &file, options) {
            Ok(stack) => desired.stacks.push(stack),
            Err(mut p) => problems.append(&mut p),
        }
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for stack in &desired.stacks {
        if let Some(other) = seen.insert(&stack.name, &stack.file) {
            problems.push(Problem {
                file: stack.file.clone(),
                line: 1,
                key: "name".into(),
                message: format!("project name '{}' is also used by {other}", stack.name),
            });
        }
    }
    if problems.is_empty() {
        Ok(desired)
    } else {
        Err(DesiredError::Invalid(problems))
    }
}

/// Direct subfolders holding a Compose file, sorted by name: (folder name, compose file name).
fn discover(root: &Path) -> Result<Vec<(String, String)>, DesiredError> {
    let io = |source| DesiredError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(root).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        if let Some(file) = COMPOSE_FILE_NAMES
            .iter()
            .find(|f| entry.path().join(f).is_file())
        {
            out.push((name, file.to_string()));
        }
    }
    out.sort();
    Ok(out)
}

fn load_stack(
    root: &Path,
    folder: &str,
    file_name: &str,
    options: &LoadOptions,
) -> Result<Stack, Vec<Problem>> {
    let dir = root.join(folder);
    let file = format!("{folder}/{file_name}");
    let whole_file = |file: &str, line: usize, message: String| {
        vec![Problem {
            file: file.to_string(),
            line,
            key: String::new(),
            message,
        }]
    };
    let text = fs::read_to_string(dir.join(file_name))
        .map_err(|e| whole_file(&file, 1, format!("cannot read: {e}")))?;
    let vars = variables(&dir, folder, options)?;
    let doc = yaml::parse(&text).map_err(|e| whole_file(&file, e.line, e.message))?;
    let files = DirFiles::new(&dir).map_err(|e| whole_file(&file, 1, e))?;
    let default_name = folder.to_ascii_lowercase();
    let parts = compose::convert(&doc, &file, &default_name, &vars, &files)?;
    let name = parts.name.unwrap_or(default_name);
    if !valid_project_name(&name) {
        return Err(whole_file(
            &file,
            doc.get("name").map_or(1, |n| n.line),
            format!("'{name}' is not a valid project name: use lowercase letters, digits, '-' and '_', starting with a letter or digit"),
        ));
    }
    let revision = match &options.revision {
        Some(rev) => rev.clone(),
        None => directory_digest(&dir).map_err(|e| whole_file(&file, 1, e))?,
    };
    let stack = Stack {
        name,
        dir,
        file,
        revision,
        services: parts.services,
        volumes: parts.volumes,
        networks: parts.networks,
    };
    let problems = options.policy.check(&stack);
    if problems.is_empty() {
        Ok(stack)
    } else {
        Err(problems)
    }
}

/// `.env` from the repository, then the host-local file; later wins.
fn variables(dir: &Path, folder: &str, options: &LoadOptions) -> Result<Variables, Vec<Problem>> {
    let mut vars = Variables::default();
    let mut read = |path: &Path, shown: String, host_local: bool| -> Result<(), Vec<Problem>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(vec![Problem {
                    file: shown,
                    line: 1,
                    key: String::new(),
                    message: format!("cannot read: {e}"),
                }])
            }
        };
        let entries = dotenv::parse(&text).map_err(|e| {
            vec![Problem {
                file: shown.clone(),
                line: e.line,
                key: String::new(),
                message: e.reason.clone(),
            }]
        })?;
        for entry in entries {
            if host_local {
                vars.host_local.insert(entry.key.clone());
            } else {
                vars.host_local.remove(&entry.key);
            }
            vars.values.insert(entry.key, entry.value);
        }
        Ok(())
    };
    read(&dir.join(".env"), format!("{folder}/.env"), false)?;
    if let Some(env_dir) = &options.host_env_dir {
        let path = env_dir.join(format!("{folder}.env"));
        read(&path, path.display().to_string(), true)?;
    }
    Ok(vars)
}

fn valid_project_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Digest of a stack folder's files: the revision of a plain-directory source.
pub fn directory_digest(dir: &Path) -> Result<String, String> {
    let mut hasher = Sha256::new();
    hash_tree(dir, dir, &mut hasher)?;
    Ok(hex(&hasher.finalize())[..16].to_string())
}

fn hash_tree(root: &Path, path: &Path, hasher: &mut Sha256) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rel = path.strip_prefix(root).unwrap_or(path).to_string_lossy();
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            hash_tree(root, &entry, hasher)?;
        }
    } else {
        let content = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    Ok(())
}

/// The files of one stack folder. Paths are resolved lexically first (no `..` above the folder),
/// then through symlinks (no link that leaves the folder).
pub struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    pub fn new(root: &Path) -> Result<Self, String> {
        let root = root
            .canonicalize()
            .map_err(|e| format!("cannot open stack folder {}: {e}", root.display()))?;
        Ok(Self { root })
    }
}

impl StackFiles for DirFiles {
    fn resolve(&self, rel: &str) -> Result<String, String> {
        if rel.starts_with('/') {
            return Err(format!("'{rel}' must be relative to the stack folder"));
        }
        let mut parts: Vec<String> = Vec::new();
        for c in Path::new(rel).components() {
            match c {
                Component::CurDir => {}
                Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
                Component::ParentDir if parts.pop().is_some() => {}
                _ => return Err(format!("'{rel}' leaves the stack folder")),
            }
        }
        let normalized = parts.join("/");
        let full = self.root.join(&normalized);
        let real = full
            .canonicalize()
            .map_err(|_| format!("'{rel}' does not exist in the stack folder"))?;
        if !real.starts_with(&self.root) {
            return Err(format!("'{rel}' is a symlink that leaves the stack folder"));
        }
        Ok(if normalized.is_empty() {
            ".".into()
        } else {
            normalized
        })
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        fs::read(self.root.join(rel)).map_err(|e| format!("cannot read '{rel}': {e}"))
    }

    fn digest(&self, rel: &str) -> Result<String, String> {
        let mut hasher = Sha256::new();
        let path = self.root.join(rel);
        hash_tree(&path, &path, &mut hasher)?;
        Ok(hex(&hasher.finalize()))
    }

    fn exists(&self, rel: &str) -> bool {
        self.root.join(rel).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn paths_that_leave_the_stack_folder_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "web/conf/app.conf", "x");
        write(tmp.path(), "secret.txt", "x");
        let files = DirFiles::new(&tmp.path().join("web")).unwrap();
        assert_eq!(
            files.resolve("./conf/../conf/app.conf").unwrap(),
            "conf/app.conf"
        );
        assert!(files
            .resolve("../secret.txt")
            .unwrap_err()
            .contains("leaves"));
        assert!(files.resolve("/etc/passwd").is_err());
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), tmp.path().join("web/link"))
            .unwrap();
        assert!(files.resolve("./link").unwrap_err().contains("symlink"));
    }

    #[test]
    fn stacks_are_the_subfolders_with_a_compose_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "web/compose.yaml",
            "services:\n  web:\n    image: web:1\n",
        );
        write(
            tmp.path(),
            "db/docker-compose.yml",
            "services:\n  db:\n    image: db:1\n",
        );
        write(tmp.path(), "notes/readme.md", "not a stack");
        let desired = load(tmp.path(), &LoadOptions::default()).unwrap();
        let names: Vec<_> = desired.stacks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "web"]);
    }

    #[test]
    fn host_local_variables_override_the_repository_and_are_marked_secret() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "repo/web/compose.yaml", "services:\n  web:\n    image: web:${TAG}\n    environment:\n      DSN: postgres://app:${DB_PASS}@db\n      LEVEL: ${LEVEL}\n");
        write(
            tmp.path(),
            "repo/web/.env",
            "TAG=v1\nLEVEL=info\nDB_PASS=placeholder\n",
        );
        write(tmp.path(), "env/web.env", "DB_PASS=s3cr3t-value\n");
        let options = LoadOptions {
            host_env_dir: Some(tmp.path().join("env")),
            ..LoadOptions::default()
        };
        let desired = load(&tmp.path().join("repo"), &options).unwrap();
        let web = &desired.stacks[0].services["web"];
        assert_eq!(web.spec.image, "web:v1");
        assert_eq!(
            web.spec.environment["DSN"],
            "postgres://app:s3cr3t-value@db"
        );
        assert!(web.secret_env.contains("DSN"));
        assert!(!web.secret_env.contains("LEVEL"));
    }

    #[test]
    fn a_host_local_variable_outside_environment_is_refused_because_it_would_not_be_masked() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "repo/web/compose.yaml",
            "services:\n  web:\n    image: web:1\n    command: [\"run\", \"--token=${API_TOKEN}\"]\n",
        );
        write(tmp.path(), "env/web.env", "API_TOKEN=s3cr3t-value\n");
        let options = LoadOptions {
            host_env_dir: Some(tmp.path().join("env")),
            ..LoadOptions::default()
        };
        let err = load(&tmp.path().join("repo"), &options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "web/compose.yaml:4: services.web.command[1]: a host-local (secret) variable"
            ),
            "{err}"
        );
        assert!(!err.contains("s3cr3t-value"), "{err}");
    }

    #[test]
    fn every_problem_of_every_stack_is_reported_with_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "a/compose.yaml",
            "services:\n  web:\n    imagee: web:1\n",
        );
        write(
            tmp.path(),
            "b/compose.yaml",
            "services:\n  db:\n    image: db:1\n    privileged: true\n",
        );
        let err = load(tmp.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a/compose.yaml:3: services.web.imagee: unknown key 'imagee' (did you mean 'image'?)"), "{err}");
        assert!(
            err.contains("b/compose.yaml:4: services.db.privileged"),
            "{err}"
        );
    }

    #[test]
    fn editing_any_file_of_a_plain_directory_stack_changes_its_revision() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "web/compose.yaml", "services: {}\n");
        let before = directory_digest(&tmp.path().join("web")).unwrap();
        write(tmp.path(), "web/Caddyfile", "x");
        assert_ne!(before, directory_digest(&tmp.path().join("web")).unwrap());
    }
}
