//! Host policy (DESIGN 6): what a stack may ask of the host. Strict by default; each rule can be
//! loosened by a host setting, never by the repository.

use super::error::Problem;
use super::model::{MountKind, Stack};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_privileged: bool,
    pub allow_host_namespaces: bool,
    pub allow_docker_socket: bool,
    pub allow_system_binds: bool,
    /// When set, absolute bind sources must lie under one of these.
    pub bind_roots: Vec<PathBuf>,
    /// When set, images must come from one of these registries (host[:port]).
    pub registries: Vec<String>,
}

const SYSTEM_DIRS: &[&str] = &["/etc", "/proc", "/sys", "/boot", "/dev", "/root"];
const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

impl Policy {
    pub fn check(&self, stack: &Stack) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (name, service) in &stack.services {
            let mut refuse = |key: &str, message: String| {
                problems.push(Problem {
                    file: stack.file.clone(),
                    line: service
                        .lines
                        .get(key)
                        .or_else(|| service.lines.get("image"))
                        .copied()
                        .unwrap_or(1),
                    key: format!("services.{name}.{}", key.split(':').next().unwrap_or(key)),
                    message,
                });
            };
            let spec = &service.spec;
            if spec.privileged && !self.allow_privileged {
                refuse(
                    "privileged",
                    "privileged containers are refused by host policy".into(),
                );
            }
            for (key, value) in [
                ("network_mode", &spec.network_mode),
                ("pid", &spec.pid),
                ("ipc", &spec.ipc),
            ] {
                if value.as_deref() == Some("host") && !self.allow_host_namespaces {
                    refuse(key, format!("{key}: host is refused by host policy (it shares the host's namespace)"));
                }
            }
            for mount in spec
                .mounts
                .iter()
                .filter(|m| m.kind == MountKind::Bind && m.repo_relative.is_none())
            {
                let source = normalize(Path::new(mount.source.as_deref().unwrap_or("/")));
                let key = format!("volumes:{}", mount.target);
                if let Some(reason) = self.bind_refusal(&source) {
                    refuse(
                        &key,
                        format!(
                            "bind source '{}' is refused by host policy: {reason}",
                            source.display()
                        ),
                    );
                }
            }
            if !self.registries.is_empty() {
                let registry = registry_of(&spec.image);
                if !self.registries.iter().any(|r| r == &registry) {
                    refuse("image", format!("image registry '{registry}' is not in the host's allowed registries ({})", self.registries.join(", ")));
                }
            }
        }
        problems
    }

    fn bind_refusal(&self, source: &Path) -> Option<String> {
        if DOCKER_SOCKETS.iter().any(|s| source == Path::new(s)) {
            return (!self.allow_docker_socket)
                .then(|| "the Docker socket gives root on the host".to_string());
        }
        if !self.allow_system_binds {
            if source == Path::new("/") {
                return Some("the host's root folder".into());
            }
            if let Some(dir) = SYSTEM_DIRS.iter().find(|d| source.starts_with(d)) {
                return Some(format!("{dir} is a system folder"));
            }
        }
        if !self.bind_roots.is_empty() && !self.bind_roots.iter().any(|r| source.starts_with(r)) {
            return Some("it is outside the allowed bind roots".into());
        }
        None
    }
}

/// Resolve `.` and `..` lexically, so `/srv/../etc` is seen as `/etc`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

/// The registry host of an image reference, `docker.io` when it names none.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_the_first_component_only_when_it_looks_like_a_host() {
        assert_eq!(registry_of("nginx:1"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/web:v1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/web"), "localhost");
        assert_eq!(registry_of("ghcr.io/org/app@sha256:00"), "ghcr.io");
    }

    #[test]
    fn system_folders_are_refused_even_through_dot_dot() {
        let policy = Policy::default();
        assert!(policy
            .bind_refusal(&normalize(Path::new("/srv/../etc/passwd")))
            .is_some());
        assert!(policy.bind_refusal(&normalize(Path::new("/"))).is_some());
        assert!(policy
            .bind_refusal(&normalize(Path::new("/var/run/docker.sock")))
            .is_some());
        assert!(policy
            .bind_refusal(&normalize(Path::new("/srv/data")))
            .is_none());
    }

    #[test]
    fn bind_roots_confine_absolute_binds() {
        let policy = Policy {
            bind_roots: vec![PathBuf::from("/srv")],
            ..Policy::default()
        };
        assert!(policy.bind_refusal(Path::new("/srv/app")).is_none());
        assert!(policy.bind_refusal(Path::new("/opt/app")).is_some());
    }
}
