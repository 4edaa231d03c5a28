//! What runs: the containers of the desired stacks as the engine reports them.

mod resources;

pub use resources::{
    network_drift, volume_drift, ObservedNetwork, ObservedVolume, ResourceDrift, ResourceKind,
};

use crate::labels;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
    /// For `pull_policy: always`: the digest the registry now gives for a reference.
    pub registry_digests: BTreeMap<String, String>,
    /// By stack: its networks and volumes that exist with another definition than the file's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Vec<ResourceDrift>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The container has no healthcheck.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// The engine's `State.Health.Status` word; no health status (or `none`) is no healthcheck.
    pub fn from_engine(status: Option<&str>) -> Self {
        match status {
            Some("healthy") => Self::Healthy,
            Some("unhealthy") => Self::Unhealthy,
            Some("starting") => Self::Starting,
            _ => Self::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: String,
    /// The image reference it was created from.
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Engine state: created, running, exited, restarting, paused, dead.
    pub state: String,
    pub health: Health,
    /// Filled only for containers that `diff` must explain (see [`Details`]).
    pub details: Option<Details>,
}

/// What inspect adds: needed to explain a change or to judge a container we did not create.
/// Fixed for a container id (so it is cached by id).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Details {
    pub env: BTreeMap<String, String>,
    /// Env the image itself sets: not drift when the container carries it.
    pub image_env: BTreeMap<String, String>,
}

/// Role of a container by name: the service's container, or a leftover of an interrupted update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
    Candidate,
}

impl ObservedContainer {
    pub fn role(&self) -> Role {
        if self.name.ends_with(labels::BACKUP_SUFFIX) {
            Role::Backup
        } else if self.name.ends_with(labels::CANDIDATE_SUFFIX) {
            Role::Candidate
        } else {
            Role::Primary
        }
    }

    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(labels::SPEC_HASH).map(String::as_str)
    }

    pub fn revision(&self) -> Option<&str> {
        self.labels.get(labels::REVISION).map(String::as_str)
    }

    /// The content files (secrets, configs) it mounts, by name (see [`labels::FILES`]).
    pub fn content_files(&self) -> impl Iterator<Item = &str> {
        self.labels
            .get(labels::FILES)
            .into_iter()
            .flat_map(|names| names.split(','))
            .filter(|name| !name.is_empty())
    }

    pub fn is_managed(&self) -> bool {
        self.labels.contains_key(labels::MANAGED)
    }

    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// Which replica of its service it is: Compose's `container-number` label; a container
    /// without one (made by hand) counts as the first.
    pub fn number(&self) -> u32 {
        self.labels
            .get(labels::NUMBER)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1)
    }
}

impl Observed {
    /// The service's first replica (the lowest number), the one a single-container service has.
    pub fn primary(&self, project: &str, service: &str) -> Option<&ObservedContainer> {
        self.replicas(project, service).into_iter().next()
    }

    /// The container of a project with this name.
    pub fn named(&self, project: &str, name: &str) -> Option<&ObservedContainer> {
        self.containers
            .iter()
            .find(|c| c.project == project && c.name == name)
    }

    /// Every container of the service under its own name (no backup or candidate), by
    /// replica number, then name.
    pub fn replicas(&self, project: &str, service: &str) -> Vec<&ObservedContainer> {
        let mut found: Vec<&ObservedContainer> = self
            .containers
            .iter()
            .filter(|c| c.project == project && c.service == service && c.role() == Role::Primary)
            .collect();
        found.sort_by(|a, b| (a.number(), &a.name).cmp(&(b.number(), &b.name)));
        found
    }
}

/// A service's containers seen as one, for `status`, `/status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSummary {
    pub count: usize,
    pub running: usize,
    /// The state of the first container that is not running, else `running`; `None` when
    /// there is no container.
    pub state: Option<String>,
    /// The least healthy of the running containers.
    pub health: Health,
    /// The images the containers run, without repeats, in replica order.
    pub images: Vec<String>,
}

impl ReplicaSummary {
    pub fn of(containers: &[&ObservedContainer]) -> Self {
        let rank = |h: Health| match h {
            Health::Healthy => 0,
            Health::None => 1,
            Health::Starting => 2,
            Health::Unhealthy => 3,
        };
        let mut images: Vec<String> = Vec::new();
        for c in containers {
            if !images.contains(&c.image) {
                images.push(c.image.clone());
            }
        }
        Self {
            count: containers.len(),
            running: containers.iter().filter(|c| c.is_running()).count(),
            state: containers
                .iter()
                .find(|c| !c.is_running())
                .or(containers.first())
                .map(|c| c.state.clone()),
            health: containers
                .iter()
                .filter(|c| c.is_running())
                .map(|c| c.health)
                .max_by_key(|h| rank(*h))
                .unwrap_or_default(),
            images,
        }
    }

    /// The image to judge sync by: the one every container runs when `wanted` of them run, all
    /// on one image; `desired` itself when none is wanted and none runs.
    pub fn sync_image<'a>(&'a self, wanted: u32, desired: Option<&'a str>) -> Option<&'a str> {
        match self.images.as_slice() {
            [] if wanted == 0 => desired,
            [image] if self.running == self.count && self.count == wanted as usize => Some(image),
            _ => None,
        }
    }
}

/// Whether a reference is among the local image references (tags and `name@digest` forms).
pub fn image_present(local: &[String], reference: &str) -> bool {
    let full = normalize_reference(reference);
    local
        .iter()
        .any(|i| i == reference || normalize_reference(i) == full)
}

/// `nginx` and `docker.io/library/nginx:latest` name the same image.
pub fn normalize_reference(reference: &str) -> String {
    let (name, suffix) = match reference.split_once('@') {
        Some((n, d)) => (n.to_string(), format!("@{d}")),
        None => {
            let last = reference.rsplit('/').next().unwrap_or(reference);
            if last.contains(':') {
                let (n, t) = reference.rsplit_once(':').expect("has a colon");
                (n.to_string(), format!(":{t}"))
            } else {
                (reference.to_string(), ":latest".to_string())
            }
        }
    };
    let name = if crate::desired::policy::registry_of(&name) == "docker.io"
        && !name.starts_with("docker.io/")
    {
        if name.contains('/') {
            format!("docker.io/{name}")
        } else {
            format!("docker.io/library/{name}")
        }
    } else {
        name
    };
    format!("{name}{suffix}")
}

/// Parse the health part of a container list `Status` ("Up 3 minutes (healthy)"), which saves an
/// inspect call per container on every pass.
pub fn health_from_status(status: &str) -> Health {
    if status.contains("(healthy)") {
        Health::Healthy
    } else if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_references_compare_equal() {
        assert_eq!(
            normalize_reference("nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(normalize_reference("org/app:1"), "docker.io/org/app:1");
        assert_eq!(
            normalize_reference("127.0.0.1:5000/web:v1"),
            "127.0.0.1:5000/web:v1"
        );
        assert_eq!(
            normalize_reference("127.0.0.1:5000/web"),
            "127.0.0.1:5000/web:latest"
        );
    }

    fn replica(number: u32, image: &str, state: &str, health: Health) -> ObservedContainer {
        ObservedContainer {
            id: format!("id{number}"),
            name: format!("shop-web-{number}"),
            project: "shop".into(),
            service: "web".into(),
            image: image.into(),
            labels: BTreeMap::from([(labels::NUMBER.to_string(), number.to_string())]),
            state: state.into(),
            health,
            details: None,
        }
    }

    #[test]
    fn a_service_is_in_sync_only_when_every_wanted_replica_runs_the_one_image() {
        let all = [
            replica(1, "web:2", "running", Health::Healthy),
            replica(2, "web:2", "running", Health::Starting),
        ];
        let summary = ReplicaSummary::of(&all.iter().collect::<Vec<_>>());
        assert_eq!(summary.health, Health::Starting, "the least healthy");
        assert_eq!(summary.state.as_deref(), Some("running"));
        assert_eq!(summary.sync_image(2, Some("web:2")), Some("web:2"));
        assert_eq!(summary.sync_image(3, Some("web:2")), None, "one is missing");

        let mixed = [
            replica(1, "web:2", "running", Health::Healthy),
            replica(2, "web:1", "exited", Health::None),
        ];
        let summary = ReplicaSummary::of(&mixed.iter().collect::<Vec<_>>());
        assert_eq!(summary.images, ["web:2", "web:1"]);
        assert_eq!(summary.state.as_deref(), Some("exited"));
        assert_eq!(summary.sync_image(2, Some("web:2")), None);

        let none = ReplicaSummary::of(&[]);
        assert_eq!(
            none.sync_image(0, Some("web:2")),
            Some("web:2"),
            "none wanted, none runs"
        );
        assert_eq!(none.sync_image(1, Some("web:2")), None);
    }

    #[test]
    fn replicas_are_in_number_order_and_a_container_without_a_number_is_the_first() {
        let mut unnumbered = replica(1, "web:1", "running", Health::None);
        unnumbered.labels.clear();
        unnumbered.name = "web".into();
        let observed = Observed {
            containers: vec![
                replica(10, "web:1", "running", Health::None),
                replica(2, "web:1", "running", Health::None),
                unnumbered,
            ],
            ..Default::default()
        };
        let names: Vec<&str> = observed
            .replicas("shop", "web")
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["web", "shop-web-2", "shop-web-10"]);
        assert_eq!(observed.primary("shop", "web").unwrap().name, "web");
    }

    #[test]
    fn health_is_read_from_the_list_status() {
        assert_eq!(
            health_from_status("Up 2 seconds (health: starting)"),
            Health::Starting
        );
        assert_eq!(health_from_status("Up 1 minute (healthy)"), Health::Healthy);
        assert_eq!(
            health_from_status("Up 1 minute (unhealthy)"),
            Health::Unhealthy
        );
        assert_eq!(health_from_status("Exited (0) 3 seconds ago"), Health::None);
    }
}
