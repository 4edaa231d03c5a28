//! An in-memory [`Engine`] for tests of the executor's rules. It keeps a registry, local images,
//! containers, networks and volumes, with Docker's semantics where the executor relies on them
//! (names are unique, a removed container is gone, stopping a stopped one is fine, volumes
//! outlive containers). Health follows tokio's clock, so a test under
//! `#[tokio::test(start_paused = true)]` waits minutes of virtual time in milliseconds.

use super::{
    ContainerStatus, CreateRequest, Engine, EngineError, FreeDisk, HolderRequest, ImageInfo,
    ImageRemoval, LocalImage, OneOffContainer, PullProgress, Result, HOLDER_PATH,
};
use crate::desired::{MountKind, NetworkDef, VolumeDef};
use crate::labels;
use crate::observed::{Health, ObservedContainer, ObservedNetwork, ObservedVolume};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How a container of an image behaves once started, measured from its start on tokio's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs, and has no healthcheck.
    NoHealthcheck,
    /// Health "starting", then "healthy" once it has run `after`.
    Healthy { after: Duration },
    /// Health "starting", then "unhealthy" once it has run `unhealthy_after`.
    NeverHealthy { unhealthy_after: Duration },
    /// Runs without a healthcheck, then exits with `code` once it has run `after`.
    Exits { code: i64, after: Duration },
    /// Health "starting", "healthy" once it has run `healthy_after`, then `then` happens once
    /// it has run `after` (a container that passes its health wait and fails in the window).
    HealthyThen {
        healthy_after: Duration,
        after: Duration,
        then: Turn,
    },
}

/// What a [`Behaviour::HealthyThen`] container does later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Exits {
        code: i64,
    },
    /// Killed by the kernel for want of memory: exit code 137, OOMKilled.
    OomKilled,
    /// The engine restarts it (restart policy): it runs again, healthy, restart count 1.
    Restarts,
    TurnsUnhealthy,
}

/// An image as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeImage {
    pub id: String,
    /// `sha256:...`, what the registry answers for the reference.
    pub digest: String,
    pub env: BTreeMap<String, String>,
}

/// One engine call: `what` is `"<call> <target>"` (`"pull 127.0.0.1:5000/web:v2"`,
/// `"create web-web-1"`, `"stop ctr0001"`). `finished` differs from `started` only for calls
/// that wait (a pull with a delay).
#[derive(Debug, Clone)]
pub struct Call {
    pub what: String,
    pub started: Instant,
    pub finished: Instant,
}

impl Call {
    pub fn verb(&self) -> &str {
        self.what.split(' ').next().unwrap_or_default()
    }

    pub fn target(&self) -> &str {
        self.what.split_once(' ').map_or("", |(_, t)| t)
    }
}

/// A container as a test sees it, its state and health computed at the moment of asking.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: String,
    /// The reference it was created from.
    pub image: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// created, running or exited.
    pub state: String,
    pub health: Option<String>,
    /// Engine names of the named volumes it mounts.
    pub volumes: Vec<String>,
    pub command: Option<Vec<String>>,
    pub paused: bool,
}

#[derive(Debug, Clone, Copy)]
enum Lifecycle {
    Created,
    Running { since: Instant },
    Exited { code: i64 },
}

#[derive(Debug, Clone)]
struct Container {
    id: String,
    name: String,
    project: String,
    service: String,
    image: String,
    image_id: String,
    labels: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    volumes: Vec<String>,
    /// The networks it is attached to, by name.
    networks: Vec<String>,
    command: Option<Vec<String>>,
    lifecycle: Lifecycle,
    last_started: Option<Instant>,
    paused: bool,
    /// A holder that mounts its volume read-only.
    read_only: bool,
}

/// What a container is at one instant, after its behaviour has played out.
struct Now {
    state: &'static str,
    running: bool,
    health: Option<&'static str>,
    exit_code: i64,
    oom_killed: bool,
    restart_count: i64,
}

struct Injected {
    call: String,
    target: String,
    error: EngineError,
    always: bool,
}

#[derive(Default)]
struct World {
    registry: BTreeMap<String, FakeImage>,
    pull_delays: BTreeMap<String, Duration>,
    behaviours: BTreeMap<String, Behaviour>,
    logs: BTreeMap<String, Vec<String>>,
    /// How `pre_deploy` job containers of an image behave, and what they write.
    job_behaviours: BTreeMap<String, Behaviour>,
    job_logs: BTreeMap<String, Vec<String>>,
    local: BTreeMap<String, FakeImage>,
    containers: Vec<Container>,
    networks: BTreeMap<String, ObservedNetwork>,
    volumes: BTreeMap<String, ObservedVolume>,
    free_disk: Option<FreeDisk>,
    /// What each volume holds, as the tar the archive endpoint gives of it.
    volume_content: BTreeMap<String, Vec<u8>>,
    /// Host folders of volumes, as a local engine shows them.
    volume_paths: BTreeMap<String, std::path::PathBuf>,
    failures: Vec<Injected>,
    calls: Vec<Call>,
    next_id: u32,
    published: u32,
}

pub struct FakeEngine {
    world: Mutex<World>,
    epoch: Instant,
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeEngine {
    pub fn new() -> Self {
        Self {
            world: Mutex::new(World::default()),
            epoch: Instant::now(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // A test that panicked mid-call must not hide its own message behind a poisoned lock.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    // --- set up by the test ---

    /// Put `reference` in the registry (a new image each time: the tag moves) and say how its
    /// containers behave.
    pub fn publish(&self, reference: &str, behaviour: Behaviour) -> FakeImage {
        let mut w = self.world();
        w.published += 1;
        let seed = format!("{reference}#{}", w.published);
        let image = FakeImage {
            id: format!("sha256:{}", sha256_hex(&format!("id {seed}"))),
            digest: format!("sha256:{}", sha256_hex(&format!("digest {seed}"))),
            env: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
        };
        w.registry.insert(reference.to_string(), image.clone());
        w.behaviours.insert(reference.to_string(), behaviour);
        image
    }

    /// Put an exact image in the registry.
    pub fn publish_image(&self, reference: &str, image: FakeImage) {
        self.world().registry.insert(reference.to_string(), image);
    }

    /// Have `reference` on the host already, as if pulled earlier (no call is logged).
    pub fn preload(&self, reference: &str) {
        let mut w = self.world();
        let image = w.registry.get(reference).cloned().unwrap_or_else(|| {
            panic!("preload {reference}: publish it first");
        });
        w.local.insert(reference.to_string(), image);
    }

    /// How containers created from `reference` behave; looked up at each list or inspect.
    pub fn behave(&self, reference: &str, behaviour: Behaviour) {
        self.world()
            .behaviours
            .insert(reference.to_string(), behaviour);
    }

    /// Log lines every container of `reference` has written.
    pub fn set_logs(&self, reference: &str, lines: &[&str]) {
        self.world().logs.insert(
            reference.to_string(),
            lines.iter().map(|l| l.to_string()).collect(),
        );
    }

    /// How `pre_deploy` job containers of `reference` behave (by default they exit 0 after a
    /// second), and the log lines they write.
    pub fn set_job(&self, reference: &str, behaviour: Behaviour, lines: &[&str]) {
        let mut w = self.world();
        w.job_behaviours.insert(reference.to_string(), behaviour);
        w.job_logs.insert(
            reference.to_string(),
            lines.iter().map(|l| l.to_string()).collect(),
        );
    }

    pub fn set_pull_delay(&self, reference: &str, delay: Duration) {
        self.world()
            .pull_delays
            .insert(reference.to_string(), delay);
    }

    /// What the archive endpoint gives for `volume` (its tar, as far as tests care).
    pub fn set_volume_content(&self, volume: &str, content: &[u8]) {
        self.world()
            .volume_content
            .insert(volume.to_string(), content.to_vec());
    }

    pub fn volume_content(&self, volume: &str) -> Vec<u8> {
        self.world()
            .volume_content
            .get(volume)
            .cloned()
            .unwrap_or_default()
    }

    /// Make `volume` a plain local volume whose folder is `path` on this host.
    pub fn set_volume_path(&self, volume: &str, path: &std::path::Path) {
        self.world()
            .volume_paths
            .insert(volume.to_string(), path.to_path_buf());
    }

    /// Free bytes on the engine's data root (`/var/lib/docker`); `None`: it cannot be told.
    pub fn set_free_disk(&self, bytes: Option<u64>) {
        self.world().free_disk = bytes.map(|bytes| FreeDisk {
            path: "/var/lib/docker".into(),
            bytes,
        });
    }

    /// The next `call` (the first word of its log line) whose target contains
    /// `target_substring` fails with `error`; the failed call is logged.
    pub fn fail_next(&self, call: &str, target_substring: &str, error: EngineError) {
        self.inject(call, target_substring, error, false);
    }

    /// Every such call fails with `error`.
    pub fn fail_always(&self, call: &str, target_substring: &str, error: EngineError) {
        self.inject(call, target_substring, error, true);
    }

    fn inject(&self, call: &str, target: &str, error: EngineError, always: bool) {
        self.world().failures.push(Injected {
            call: call.to_string(),
            target: target.to_string(),
            error,
            always,
        });
    }

    // --- read by the test ---

    pub fn calls(&self) -> Vec<String> {
        self.world().calls.iter().map(|c| c.what.clone()).collect()
    }

    pub fn timed_calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.world().calls.clear();
    }

    /// Every container, by name.
    pub fn containers(&self) -> Vec<ContainerView> {
        let w = self.world();
        let now = Instant::now();
        let mut all: Vec<ContainerView> = w.containers.iter().map(|c| w.view(c, now)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn container(&self, name: &str) -> Option<ContainerView> {
        self.containers().into_iter().find(|c| c.name == name)
    }

    /// Volumes by engine name, with their labels.
    pub fn volumes(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let w = self.world();
        w.volumes
            .iter()
            .map(|(name, v)| (name.clone(), v.labels.clone()))
            .collect()
    }

    /// A network as someone made it by hand (or an older revision of the stack did).
    pub fn add_network(&self, name: &str, network: ObservedNetwork) {
        self.world().networks.insert(name.to_string(), network);
    }

    pub fn add_volume(&self, name: &str, volume: ObservedVolume) {
        self.world().volumes.insert(name.to_string(), volume);
    }

    pub fn network(&self, name: &str) -> Option<ObservedNetwork> {
        self.world().networks.get(name).cloned()
    }

    pub fn local_images(&self) -> Vec<String> {
        self.world().local.keys().cloned().collect()
    }

    /// The most health waits that ran at once. A wait runs from a container's start to the last
    /// inspect of it that followed.
    pub fn max_concurrent_health_waits(&self) -> usize {
        let mut open: BTreeMap<String, (Instant, Instant)> = BTreeMap::new();
        let mut spans = Vec::new();
        for call in self.world().calls.iter() {
            match call.verb() {
                "start" => {
                    if let Some(span) =
                        open.insert(call.target().into(), (call.started, call.started))
                    {
                        spans.push(span);
                    }
                }
                "inspect" => {
                    if let Some(span) = open.get_mut(call.target()) {
                        span.1 = call.started;
                    }
                }
                _ => {}
            }
        }
        spans.extend(open.into_values());
        (0..spans.len())
            .map(|i| {
                let (start, _) = spans[i];
                1 + (0..spans.len())
                    .filter(|&j| j != i && spans[j].0 <= start && start < spans[j].1)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    // --- the engine's side ---

    /// Log the call, then fail it if the test asked so.
    fn enter(&self, call: &str, target: &str) -> Result<usize> {
        let mut w = self.world();
        let now = Instant::now();
        w.calls.push(Call {
            what: if target.is_empty() {
                call.to_string()
            } else {
                format!("{call} {target}")
            },
            started: now,
            finished: now,
        });
        let index = w.calls.len() - 1;
        let hit = w
            .failures
            .iter()
            .position(|f| f.call == call && target.contains(&f.target));
        match hit {
            Some(i) if w.failures[i].always => Err(duplicate(&w.failures[i].error)),
            Some(i) => Err(w.failures.remove(i).error),
            None => Ok(index),
        }
    }

    fn started_at(&self, at: Option<Instant>) -> String {
        match at {
            // Docker's zero time: never started.
            None => "0001-01-01T00:00:00Z".to_string(),
            Some(t) => format!("virtual+{}ms", (t - self.epoch).as_millis()),
        }
    }
}

impl World {
    /// What create refuses, as Docker words it: a name in use, an image not on the host.
    fn name_free_and_image(
        &self,
        name: &str,
        image: &str,
        call: impl Fn(String) -> EngineError,
    ) -> Result<FakeImage> {
        if let Some(other) = self.name_taken(name, None) {
            return Err(call(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{}\"",
                other.id
            )));
        }
        self.local_image(image)
            .map(|(_, i)| i.clone())
            .ok_or_else(|| call(format!("No such image: {image}")))
    }

    fn behaviour_of(&self, c: &Container) -> Behaviour {
        if !is_job(c) {
            return self.behaviour(&c.image);
        }
        self.job_behaviours
            .get(&c.image)
            .copied()
            .unwrap_or(Behaviour::Exits {
                code: 0,
                after: Duration::from_secs(1),
            })
    }

    fn behaviour(&self, image: &str) -> Behaviour {
        self.behaviours
            .get(image)
            .copied()
            .unwrap_or(Behaviour::NoHealthcheck)
    }

    fn now(&self, c: &Container, now: Instant) -> Now {
        let since = match c.lifecycle {
            Lifecycle::Created => return Now::stopped("created", 0),
            Lifecycle::Exited { code } => return Now::stopped("exited", code),
            Lifecycle::Running { since } => since,
        };
        let ran = now - since;
        let health = match self.behaviour_of(c) {
            Behaviour::NoHealthcheck => None,
            Behaviour::Healthy { after } if ran >= after => Some("healthy"),
            Behaviour::NeverHealthy { unhealthy_after } if ran >= unhealthy_after => {
                Some("unhealthy")
            }
            Behaviour::Healthy { .. } | Behaviour::NeverHealthy { .. } => Some("starting"),
            Behaviour::Exits { code, after } if ran >= after => {
                return Now::stopped("exited", code)
            }
            Behaviour::Exits { .. } => None,
            Behaviour::HealthyThen { after, then, .. } if ran >= after => match then {
                Turn::Exits { code } => return Now::stopped("exited", code),
                Turn::OomKilled => {
                    return Now {
                        oom_killed: true,
                        ..Now::stopped("exited", 137)
                    }
                }
                Turn::Restarts => {
                    return Now {
                        restart_count: 1,
                        ..Now::running(Some("healthy"))
                    }
                }
                Turn::TurnsUnhealthy => Some("unhealthy"),
            },
            Behaviour::HealthyThen { healthy_after, .. } if ran >= healthy_after => Some("healthy"),
            Behaviour::HealthyThen { .. } => Some("starting"),
        };
        Now::running(health)
    }

    fn view(&self, c: &Container, now: Instant) -> ContainerView {
        let state = self.now(c, now);
        ContainerView {
            id: c.id.clone(),
            name: c.name.clone(),
            project: c.project.clone(),
            service: c.service.clone(),
            image: c.image.clone(),
            image_id: c.image_id.clone(),
            labels: c.labels.clone(),
            state: state.state.to_string(),
            health: state.health.map(str::to_string),
            volumes: c.volumes.clone(),
            command: c.command.clone(),
            paused: c.paused,
        }
    }

    /// Whether container `id` runs at `now`, after its behaviour has played out.
    fn is_running(&self, call: &'static str, id: &str, now: Instant) -> Result<bool> {
        let c = self
            .containers
            .iter()
            .find(|c| c.id == id || c.name == id)
            .ok_or_else(|| no_such_container(call, id))?;
        Ok(self.now(c, now).running)
    }

    fn container_mut(&mut self, call: &'static str, id: &str) -> Result<&mut Container> {
        self.containers
            .iter_mut()
            .find(|c| c.id == id || c.name == id)
            .ok_or_else(|| no_such_container(call, id))
    }

    fn name_taken(&self, name: &str, except: Option<&str>) -> Option<&Container> {
        self.containers
            .iter()
            .find(|c| c.name == name && Some(c.id.as_str()) != except)
    }

    /// A local image by reference (short or long form) or by id, with the reference it has.
    fn local_image(&self, reference: &str) -> Option<(&String, &FakeImage)> {
        let wanted = crate::observed::normalize_reference(reference);
        self.local
            .iter()
            .find(|(r, i)| r.as_str() == reference || i.id == reference)
            .or_else(|| {
                self.local
                    .iter()
                    .find(|(r, _)| crate::observed::normalize_reference(r) == wanted)
            })
    }
}

impl Now {
    fn stopped(state: &'static str, exit_code: i64) -> Self {
        Self {
            state,
            running: false,
            health: None,
            exit_code,
            oom_killed: false,
            restart_count: 0,
        }
    }

    fn running(health: Option<&'static str>) -> Self {
        Self {
            state: "running",
            running: true,
            health,
            exit_code: 0,
            oom_killed: false,
            restart_count: 0,
        }
    }
}

impl Engine for FakeEngine {
    async fn list_containers(&self, projects: &[String]) -> Result<Vec<ObservedContainer>> {
        self.enter("list-containers", &projects.join(","))?;
        if projects.is_empty() {
            return Ok(Vec::new());
        }
        let w = self.world();
        let now = Instant::now();
        let mut out: Vec<ObservedContainer> = w
            .containers
            .iter()
            .filter(|c| projects.contains(&c.project))
            // One-off containers (`docker compose run`) are not the service, as in the adapter.
            .filter(|c| {
                !c.labels
                    .get(labels::ONEOFF)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            })
            .map(|c| {
                let state = w.now(c, now);
                // Docker lists the image id once the reference points at another image.
                let image = match w.local.get(&c.image) {
                    Some(i) if i.id != c.image_id => c.image_id.clone(),
                    _ => c.image.clone(),
                };
                ObservedContainer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    project: c.project.clone(),
                    service: c.service.clone(),
                    image,
                    labels: c.labels.clone(),
                    // As Docker lists it: a paused container is "paused", not "running".
                    state: if c.paused && state.running {
                        "paused".to_string()
                    } else {
                        state.state.to_string()
                    },
                    health: Health::from_engine(state.health),
                    details: None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_oneoffs(&self, projects: &[String]) -> Result<Vec<OneOffContainer>> {
        self.enter("list-oneoffs", &projects.join(","))?;
        let w = self.world();
        let now = Instant::now();
        Ok(w.containers
            .iter()
            .filter(|c| projects.contains(&c.project))
            // As in the adapter: the role label alone may come from an image.
            .filter(|c| {
                c.labels
                    .get(labels::ONEOFF)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            })
            .filter_map(|c| {
                let role = c.labels.get(labels::ONEOFF_ROLE)?;
                Some(OneOffContainer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    project: c.project.clone(),
                    service: c.service.clone(),
                    role: role.clone(),
                    running: w.now(c, now).running,
                })
            })
            .collect())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerStatus> {
        self.enter("inspect", id)?;
        let w = self.world();
        let c = w
            .containers
            .iter()
            .find(|c| c.id == id || c.name == id)
            .ok_or_else(|| no_such_container("inspect container", id))?;
        let now = w.now(c, Instant::now());
        Ok(ContainerStatus {
            running: now.running,
            state: now.state.to_string(),
            health: Health::from_engine(now.health),
            exit_code: now.exit_code,
            oom_killed: now.oom_killed,
            restart_count: now.restart_count,
            started_at: self.started_at(c.last_started),
            env: c.env.clone(),
            image_id: c.image_id.clone(),
        })
    }

    async fn list_image_references(&self) -> Result<Vec<String>> {
        self.enter("list-images", "")?;
        let w = self.world();
        Ok(w.local
            .iter()
            .flat_map(|(r, i)| [r.clone(), format!("{}@{}", repository(r), i.digest)])
            .collect())
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.enter("inspect-image", reference)?;
        let w = self.world();
        let Some((name, image)) = w.local_image(reference) else {
            return Ok(None);
        };
        Ok(Some(ImageInfo {
            id: image.id.clone(),
            repo_digests: vec![format!("{}@{}", repository(name), image.digest)],
            env: image.env.clone(),
        }))
    }

    async fn list_images(&self) -> Result<Vec<LocalImage>> {
        self.enter("list-local-images", "")?;
        let w = self.world();
        let mut by_id: BTreeMap<String, LocalImage> = BTreeMap::new();
        for (r, i) in &w.local {
            let image = by_id.entry(i.id.clone()).or_insert_with(|| LocalImage {
                id: i.id.clone(),
                references: vec![],
                size: None,
            });
            image.references.push(r.clone());
            image
                .references
                .push(format!("{}@{}", repository(r), i.digest));
        }
        Ok(by_id.into_values().collect())
    }

    async fn images_in_use(&self) -> Result<std::collections::BTreeSet<String>> {
        self.enter("images-in-use", "")?;
        let w = self.world();
        Ok(w.containers
            .iter()
            .flat_map(|c| [c.image_id.clone(), c.image.clone()])
            .collect())
    }

    /// As the engine: a tag of an image that has others is only untagged; the last one, or the
    /// id, deletes the image unless a container uses it.
    async fn remove_image(&self, reference: &str) -> Result<ImageRemoval> {
        self.enter("remove-image", reference)?;
        let mut w = self.world();
        let wanted = crate::observed::normalize_reference(reference);
        let named: Vec<String> = w
            .local
            .iter()
            .filter(|(r, i)| {
                i.id == reference
                    || r.as_str() == reference
                    || crate::observed::normalize_reference(r) == wanted
                    || format!("{}@{}", repository(r), i.digest) == reference
            })
            .map(|(r, _)| r.clone())
            .collect();
        let Some(id) = named.first().map(|r| w.local[r].id.clone()) else {
            return Ok(ImageRemoval::default());
        };
        let all: Vec<String> = w
            .local
            .iter()
            .filter(|(_, i)| i.id == id)
            .map(|(r, _)| r.clone())
            .collect();
        let conflict = |message: String| EngineError::Call {
            call: "remove image",
            target: reference.to_string(),
            message,
        };
        if id == reference && all.len() > 1 {
            return Err(conflict(format!(
                "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories"
            )));
        }
        let last = named.len() == all.len();
        if last {
            if let Some(c) = w.containers.iter().find(|c| c.image_id == id) {
                return Err(conflict(format!(
                    "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {id}",
                    c.id
                )));
            }
        }
        for r in &named {
            w.local.remove(r);
        }
        Ok(ImageRemoval {
            untagged: named,
            deleted: if last { vec![id] } else { vec![] },
        })
    }

    async fn registry_digest(&self, reference: &str) -> Result<String> {
        self.enter("registry-digest", reference)?;
        self.world()
            .registry
            .get(reference)
            .map(|i| i.digest.clone())
            .ok_or_else(|| not_in_registry(reference))
    }

    async fn pull(
        &self,
        reference: &str,
        _platform: Option<&str>,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<()> {
        let index = self.enter("pull", reference)?;
        let delay = self.world().pull_delays.get(reference).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut w = self.world();
        w.calls[index].finished = Instant::now();
        let image = w
            .registry
            .get(reference)
            .cloned()
            .ok_or_else(|| not_in_registry(reference))?;
        w.local.insert(reference.to_string(), image);
        drop(w);
        progress(PullProgress {
            layer: None,
            status: format!("Downloaded newer image for {reference}"),
            current: None,
            total: None,
        });
        Ok(())
    }

    async fn inspect_network(&self, name: &str) -> Result<Option<ObservedNetwork>> {
        self.enter("inspect-network", name)?;
        Ok(self.world().networks.get(name).cloned())
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<ObservedVolume>> {
        self.enter("inspect-volume", name)?;
        Ok(self.world().volumes.get(name).cloned())
    }

    async fn ensure_network(&self, project: &str, key: &str, def: &NetworkDef) -> Result<bool> {
        self.enter("ensure-network", &def.name)?;
        let mut w = self.world();
        if w.networks.contains_key(&def.name) {
            return Ok(false);
        }
        if def.external {
            return Err(EngineError::Call {
                call: "use external network",
                target: def.name.clone(),
                message: "it does not exist; external networks are created outside the stack"
                    .into(),
            });
        }
        let mut labels = def.labels.clone();
        labels.insert(labels::PROJECT.into(), project.into());
        labels.insert(labels::NETWORK.into(), key.into());
        // As the engine reports what it made from the definition.
        let ipam = def.ipam.clone().unwrap_or_default();
        let network = ObservedNetwork {
            driver: def.driver.clone().unwrap_or_else(|| "bridge".into()),
            driver_opts: def.driver_opts.clone(),
            enable_ipv6: def.enable_ipv6,
            internal: def.internal,
            ipam_driver: ipam.driver.unwrap_or_else(|| "default".into()),
            ipam_config: ipam.config,
            ipam_options: ipam.options,
            labels,
        };
        w.networks.insert(def.name.clone(), network);
        Ok(true)
    }

    async fn remove_network_if_unused(&self, name: &str) -> Result<bool> {
        self.enter("remove-network", name)?;
        let mut w = self.world();
        if w.containers
            .iter()
            .any(|c| c.networks.iter().any(|n| n == name))
        {
            return Ok(false);
        }
        w.networks.remove(name);
        Ok(true)
    }

    async fn ensure_volume(&self, project: &str, key: &str, def: &VolumeDef) -> Result<()> {
        self.enter("ensure-volume", &def.name)?;
        let mut w = self.world();
        if w.volumes.contains_key(&def.name) {
            return Ok(());
        }
        if def.external {
            return Err(EngineError::Call {
                call: "use external volume",
                target: def.name.clone(),
                message: "it does not exist; external volumes are created outside the stack".into(),
            });
        }
        let mut labels = def.labels.clone();
        labels.insert(labels::PROJECT.into(), project.into());
        labels.insert(labels::VOLUME.into(), key.into());
        let volume = ObservedVolume {
            driver: def.driver.clone().unwrap_or_else(|| "local".into()),
            driver_opts: def.driver_opts.clone(),
            labels,
        };
        w.volumes.insert(def.name.clone(), volume);
        Ok(())
    }

    async fn create_container(&self, request: &CreateRequest) -> Result<String> {
        self.enter("create", &request.name)?;
        let mut w = self.world();
        let call = |message: String| EngineError::Call {
            call: "create container",
            target: request.name.clone(),
            message,
        };
        let image = w.name_free_and_image(&request.name, &request.spec.image, call)?;
        let mut networks = Vec::new();
        if request.spec.network_mode.is_none() {
            for key in request.spec.networks.keys() {
                let name = request.networks.get(key).unwrap_or(key);
                if !w.networks.contains_key(name) {
                    return Err(call(format!("network {name} not found")));
                }
                networks.push(name.clone());
            }
        }
        let volumes: Vec<String> = request
            .spec
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume)
            .filter_map(|m| m.source.as_ref())
            .map(|key| request.volumes.get(key).unwrap_or(key).clone())
            .collect();
        for name in &volumes {
            // Docker makes a missing named volume on create, without Compose's labels.
            w.volumes
                .entry(name.clone())
                .or_insert_with(|| ObservedVolume {
                    driver: "local".into(),
                    ..Default::default()
                });
        }
        // As the adapter sends them: the spec's labels, then Compose's and ours over them.
        let mut labels = request.spec.labels.clone();
        labels.extend(request.labels.clone());
        // The container's env is the image's with the spec's over it, as Docker merges them.
        let mut env = image.env.clone();
        env.extend(request.spec.environment.clone());
        w.next_id += 1;
        let id = format!("ctr{:04}", w.next_id);
        w.containers.push(Container {
            id: id.clone(),
            name: request.name.clone(),
            project: labels.get(labels::PROJECT).cloned().unwrap_or_default(),
            service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
            image: request.spec.image.clone(),
            image_id: image.id,
            labels,
            env,
            volumes,
            networks,
            command: request.spec.command.clone(),
            lifecycle: Lifecycle::Created,
            last_started: None,
            paused: false,
            read_only: false,
        });
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.enter("start", id)?;
        let now = Instant::now();
        let mut w = self.world();
        let running = w.is_running("start container", id, now)?;
        let c = w.container_mut("start container", id)?;
        if !running {
            c.lifecycle = Lifecycle::Running { since: now };
            c.last_started = Some(now);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, _grace: Option<Duration>) -> Result<()> {
        self.enter("stop", id)?;
        let now = Instant::now();
        let mut w = self.world();
        let settled = {
            let c = w
                .containers
                .iter()
                .find(|c| c.id == id || c.name == id)
                .ok_or_else(|| no_such_container("stop container", id))?;
            w.now(c, now)
        };
        let c = w.container_mut("stop container", id)?;
        c.lifecycle = match c.lifecycle {
            Lifecycle::Running { .. } if settled.running => Lifecycle::Exited { code: 0 },
            // Exited by itself meanwhile: keep its code. Stopping a stopped one is fine.
            Lifecycle::Running { .. } => Lifecycle::Exited {
                code: settled.exit_code,
            },
            other => other,
        };
        Ok(())
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<()> {
        self.enter("rename", &format!("{id} {new_name}"))?;
        let mut w = self.world();
        let call = |message: String| EngineError::Call {
            call: "rename container",
            target: id.to_string(),
            message,
        };
        let current = w.container_mut("rename container", id)?.name.clone();
        if current == new_name {
            return Err(call(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = w.name_taken(new_name, Some(id)) {
            return Err(call(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{}\"",
                other.id
            )));
        }
        w.container_mut("rename container", id)?.name = new_name.to_string();
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.enter("remove", id)?;
        // Forced, like the adapter's; a missing container is fine; volumes always stay.
        self.world().containers.retain(|c| c.id != id);
        Ok(())
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        self.enter("logs", id)?;
        let w = self.world();
        let c = w
            .containers
            .iter()
            .find(|c| c.id == id || c.name == id)
            .ok_or_else(|| no_such_container("logs", id))?;
        let logs = if is_job(c) { &w.job_logs } else { &w.logs };
        let all = logs.get(&c.image).cloned().unwrap_or_default();
        Ok(all[all.len().saturating_sub(lines)..].to_vec())
    }

    async fn free_disk(&self) -> Result<Option<FreeDisk>> {
        self.enter("free-disk", "")?;
        Ok(self.world().free_disk.clone())
    }

    async fn create_holder(&self, request: &HolderRequest) -> Result<String> {
        self.enter("create-holder", &request.name)?;
        let mut w = self.world();
        let call = |message: String| EngineError::Call {
            call: "create container",
            target: request.name.clone(),
            message,
        };
        let image = w.name_free_and_image(&request.name, &request.image, call)?;
        w.next_id += 1;
        let id = format!("ctr{:04}", w.next_id);
        w.containers.push(Container {
            id: id.clone(),
            name: request.name.clone(),
            project: request.project.clone(),
            service: request.service.clone(),
            image: request.image.clone(),
            image_id: image.id,
            labels: request.labels(),
            env: BTreeMap::new(),
            volumes: vec![request.volume.clone()],
            networks: Vec::new(),
            lifecycle: Lifecycle::Created,
            last_started: None,
            paused: false,
            read_only: request.read_only,
            command: None,
        });
        Ok(id)
    }

    async fn download_archive(
        &self,
        id: &str,
        path: &str,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<u64> {
        self.enter("download", id)?;
        let content = {
            let w = self.world();
            let c = w
                .containers
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(|| no_such_container("download archive", id))?;
            match c.volumes.first() {
                Some(volume) if path == HOLDER_PATH => {
                    w.volume_content.get(volume).cloned().unwrap_or_default()
                }
                _ => Vec::new(),
            }
        };
        sink.write_all(&content).map_err(|e| EngineError::Call {
            call: "download archive",
            target: id.to_string(),
            message: format!("cannot write the copy: {e}"),
        })?;
        Ok(content.len() as u64)
    }

    async fn upload_archive(
        &self,
        id: &str,
        path: &str,
        mut source: Box<dyn std::io::Read + Send>,
    ) -> Result<()> {
        self.enter("upload", id)?;
        let mut content = Vec::new();
        source
            .read_to_end(&mut content)
            .map_err(|e| EngineError::Call {
                call: "upload archive",
                target: id.to_string(),
                message: e.to_string(),
            })?;
        let mut w = self.world();
        let c = w.container_mut("upload archive", id)?;
        let call = |message: &str| EngineError::Call {
            call: "upload archive",
            target: id.to_string(),
            message: message.to_string(),
        };
        if c.read_only {
            return Err(call("container rootfs is marked read-only"));
        }
        let volume = c.volumes.first().cloned().filter(|_| path == "/");
        let volume = volume.ok_or_else(|| call("not a holder's volume"))?;
        w.volume_content.insert(volume, content);
        Ok(())
    }

    async fn pause_container(&self, id: &str) -> Result<()> {
        self.enter("pause", id)?;
        let now = Instant::now();
        let mut w = self.world();
        let running = w.is_running("pause container", id, now)?;
        let c = w.container_mut("pause container", id)?;
        if !running {
            return Err(EngineError::Call {
                call: "pause container",
                target: id.to_string(),
                message: format!("Container {id} is not running"),
            });
        }
        c.paused = true;
        Ok(())
    }

    async fn unpause_container(&self, id: &str) -> Result<()> {
        self.enter("unpause", id)?;
        let mut w = self.world();
        let c = w.container_mut("unpause container", id)?;
        if !c.paused {
            return Err(EngineError::Call {
                call: "unpause container",
                target: id.to_string(),
                message: format!("Container {id} is not paused"),
            });
        }
        c.paused = false;
        Ok(())
    }

    async fn local_volume_path(&self, name: &str) -> Result<Option<std::path::PathBuf>> {
        self.enter("volume-path", name)?;
        Ok(self.world().volume_paths.get(name).cloned())
    }
}

fn is_job(c: &Container) -> bool {
    c.labels.get(labels::ONEOFF_ROLE).map(String::as_str) == Some(labels::ONEOFF_JOB)
}

/// As the Docker adapter reports it for calls on a container: gone.
fn no_such_container(call: &'static str, id: &str) -> EngineError {
    EngineError::Gone {
        call,
        target: id.to_string(),
        message: format!("No such container: {id}"),
    }
}

fn not_in_registry(reference: &str) -> EngineError {
    EngineError::ImageNotFound {
        reference: reference.to_string(),
        message: format!("manifest for {reference} not found: manifest unknown"),
    }
}

/// `host:5000/web:v1` -> `host:5000/web` (a colon before the last `/` is a port).
fn repository(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        reference
            .rsplit_once(':')
            .map_or(reference, |(name, _)| name)
    } else {
        reference
    }
}

fn sha256_hex(text: &str) -> String {
    crate::desired::hex(&Sha256::digest(text.as_bytes()))
}

/// `EngineError` holds no handle, so a copy is its fields again (for `fail_always`).
fn duplicate(e: &EngineError) -> EngineError {
    match e {
        EngineError::Gone {
            call,
            target,
            message,
        } => EngineError::Gone {
            call,
            target: target.clone(),
            message: message.clone(),
        },
        EngineError::Unreachable { endpoint, message } => EngineError::Unreachable {
            endpoint: endpoint.clone(),
            message: message.clone(),
        },
        EngineError::ImageNotFound { reference, message } => EngineError::ImageNotFound {
            reference: reference.clone(),
            message: message.clone(),
        },
        EngineError::Unauthorized { reference, message } => EngineError::Unauthorized {
            reference: reference.clone(),
            message: message.clone(),
        },
        EngineError::RegistryUnreachable { reference, message } => {
            EngineError::RegistryUnreachable {
                reference: reference.clone(),
                message: message.clone(),
            }
        }
        EngineError::Call {
            call,
            target,
            message,
        } => EngineError::Call {
            call,
            target: target.clone(),
            message: message.clone(),
        },
    }
}

/// A container request as Compose (or a person using Compose's labels) makes it: the project
/// and service labels, none of the reconciler's. For tests of what is not ours.
pub fn compose_request(project: &str, service: &str, name: &str, image: &str) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        project: project.into(),
        service: service.into(),
        spec: crate::desired::ContainerSpec {
            image: image.into(),
            ..Default::default()
        },
        labels: BTreeMap::from([
            (crate::labels::PROJECT.to_string(), project.to_string()),
            (crate::labels::SERVICE.to_string(), service.to_string()),
        ]),
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
        repo_root: None,
        content_files: BTreeMap::new(),
        data_root: None,
    }
}

#[cfg(test)]
mod tests {
    //! The fake's own Docker semantics, so executor tests that rely on them rely on something true.
    use super::*;

    const WEB: &str = "127.0.0.1:5000/web:v1";

    async fn pulled(behaviour: Behaviour) -> FakeEngine {
        let fake = FakeEngine::new();
        fake.publish(WEB, behaviour);
        fake.pull(WEB, None, &mut |_| {}).await.unwrap();
        fake
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_in_use_refuses_create_and_rename_as_docker_does() {
        let fake = pulled(Behaviour::NoHealthcheck).await;
        let first = fake
            .create_container(&compose_request("web", "web", "web-web-1", WEB))
            .await
            .unwrap();
        let taken = fake
            .create_container(&compose_request("web", "web", "web-web-1", WEB))
            .await;
        assert!(
            matches!(&taken, Err(EngineError::Call { message, .. }) if message.contains("already in use")),
            "{taken:?}"
        );
        let second = fake
            .create_container(&compose_request("web", "web", "web-web-2", WEB))
            .await
            .unwrap();
        assert!(fake.rename_container(&second, "web-web-1").await.is_err());
        assert!(fake.rename_container(&first, "web-web-1").await.is_err());
        fake.rename_container(&first, "web-web-1-reconciler-old")
            .await
            .unwrap();
        fake.rename_container(&second, "web-web-1").await.unwrap();
        let names: Vec<String> = fake.containers().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["web-web-1", "web-web-1-reconciler-old"]);
    }

    #[tokio::test(start_paused = true)]
    async fn create_needs_the_image_locally_and_a_removed_container_cannot_be_started() {
        let fake = FakeEngine::new();
        fake.publish(WEB, Behaviour::NoHealthcheck);
        assert!(fake
            .create_container(&compose_request("web", "web", "a", WEB))
            .await
            .is_err());
        fake.pull(WEB, None, &mut |_| {}).await.unwrap();
        let id = fake
            .create_container(&compose_request("web", "web", "a", WEB))
            .await
            .unwrap();
        fake.start_container(&id).await.unwrap();
        fake.stop_container(&id, None).await.unwrap();
        fake.stop_container(&id, None).await.unwrap();
        assert_eq!(fake.container("a").unwrap().state, "exited");
        fake.remove_container(&id).await.unwrap();
        fake.remove_container(&id).await.unwrap();
        assert!(fake.start_container(&id).await.is_err());
        assert!(fake.inspect_container(&id).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn health_and_exits_follow_the_paused_clock_from_the_start() {
        for (behaviour, before, after) in [
            (
                Behaviour::Healthy {
                    after: Duration::from_secs(10),
                },
                ("running", Some("starting")),
                ("running", Some("healthy")),
            ),
            (
                Behaviour::NeverHealthy {
                    unhealthy_after: Duration::from_secs(10),
                },
                ("running", Some("starting")),
                ("running", Some("unhealthy")),
            ),
            (
                Behaviour::Exits {
                    code: 3,
                    after: Duration::from_secs(10),
                },
                ("running", None),
                ("exited", None),
            ),
        ] {
            let fake = pulled(behaviour).await;
            let id = fake
                .create_container(&compose_request("web", "web", "a", WEB))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert_eq!(fake.inspect_container(&id).await.unwrap().state, "created");
            fake.start_container(&id).await.unwrap();
            tokio::time::sleep(Duration::from_millis(9_999)).await;
            let s = fake.inspect_container(&id).await.unwrap();
            assert_eq!(
                (
                    s.state.as_str(),
                    Some(s.health)
                        .filter(|h| *h != Health::None)
                        .map(Health::as_str)
                ),
                before
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
            let s = fake.inspect_container(&id).await.unwrap();
            assert_eq!(
                (
                    s.state.as_str(),
                    Some(s.health)
                        .filter(|h| *h != Health::None)
                        .map(Health::as_str)
                ),
                after
            );
            let listed = fake.list_containers(&["web".into()]).await.unwrap();
            assert_eq!(listed[0].state, after.0);
        }
        let fake = pulled(Behaviour::Exits {
            code: 3,
            after: Duration::ZERO,
        })
        .await;
        let id = fake
            .create_container(&compose_request("web", "web", "a", WEB))
            .await
            .unwrap();
        fake.start_container(&id).await.unwrap();
        assert_eq!(fake.inspect_container(&id).await.unwrap().exit_code, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn injected_failures_hit_the_matching_call_once_or_always_and_are_logged() {
        let fake = pulled(Behaviour::NoHealthcheck).await;
        let id = fake
            .create_container(&compose_request("web", "web", "a", WEB))
            .await
            .unwrap();
        let unreachable = || EngineError::Unreachable {
            endpoint: "fake".into(),
            message: "down".into(),
        };
        fake.fail_next("start", &id, unreachable());
        fake.fail_always("logs", "", unreachable());
        assert!(fake
            .start_container("other")
            .await
            .is_err_and(|e| e.is_gone()));
        assert!(fake
            .start_container(&id)
            .await
            .is_err_and(|e| e.is_transient()));
        fake.start_container(&id).await.unwrap();
        assert!(fake.logs_tail(&id, 5).await.is_err());
        assert!(fake.logs_tail(&id, 5).await.is_err());
        let calls = fake.calls();
        let tail: Vec<&str> = calls[calls.len() - 5..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "start other",
                &format!("start {id}"),
                &format!("start {id}"),
                &format!("logs {id}"),
                &format!("logs {id}"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_waits_its_delay_and_an_unpublished_reference_is_not_found() {
        let fake = FakeEngine::new();
        fake.publish(WEB, Behaviour::NoHealthcheck);
        fake.set_pull_delay(WEB, Duration::from_secs(7));
        let missing = fake.pull("127.0.0.1:5000/web:v9", None, &mut |_| {}).await;
        assert!(matches!(missing, Err(EngineError::ImageNotFound { .. })));
        fake.pull(WEB, None, &mut |_| {}).await.unwrap();
        let pull = fake.timed_calls().pop().unwrap();
        assert_eq!(pull.finished - pull.started, Duration::from_secs(7));
        let local = fake.list_image_references().await.unwrap();
        assert!(crate::observed::image_present(&local, WEB));
        let info = fake.inspect_image(WEB).await.unwrap().unwrap();
        assert!(info.repo_digests[0].starts_with("127.0.0.1:5000/web@sha256:"));
    }

    #[tokio::test(start_paused = true)]
    async fn health_waits_that_overlap_are_counted_together() {
        let fake = pulled(Behaviour::NoHealthcheck).await;
        let a = fake
            .create_container(&compose_request("web", "web", "a", WEB))
            .await
            .unwrap();
        let b = fake
            .create_container(&compose_request("web", "web", "b", WEB))
            .await
            .unwrap();
        fake.start_container(&a).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        fake.inspect_container(&a).await.unwrap();
        fake.start_container(&b).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        fake.inspect_container(&b).await.unwrap();
        assert_eq!(fake.max_concurrent_health_waits(), 1);
        fake.inspect_container(&a).await.unwrap();
        assert_eq!(fake.max_concurrent_health_waits(), 2);
    }
}
