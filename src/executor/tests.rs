//! The executor's rules against the in-memory engine, on tokio's paused clock: a 60 s health
//! timeout costs milliseconds. Desired state is loaded from a real compose.yaml, as the program
//! does; assertions look at the engine's world, state.json and the journal.

use super::{ExecError, Executor, Outcome};
use crate::config::ApplySettings;
use crate::desired::load::{load, LoadOptions};
use crate::desired::Desired;
use crate::engine::fake::{Behaviour, Call, FakeEngine};
use crate::engine::{Engine, EngineError};
use crate::labels;
use crate::plan::{plan, PlanOptions};
use crate::reconciler::{observe, DetailsCache};
use crate::state::{JournalEntry, State, StateDir};
use std::path::Path;
use std::time::Duration;

const WEB_V1: &str = "127.0.0.1:5000/web:v1";
const WEB_V2: &str = "127.0.0.1:5000/web:v2";
const WORKER_V1: &str = "127.0.0.1:5000/worker:v1";
const WORKER_V2: &str = "127.0.0.1:5000/worker:v2";
const DB_V1: &str = "127.0.0.1:5000/db:v1";
const DB_V2: &str = "127.0.0.1:5000/db:v2";
const DB_V3: &str = "127.0.0.1:5000/db:v3";

/// Calls that change a container.
const TOUCHES: [&str; 5] = ["create", "start", "stop", "rename", "remove"];

fn healthy_after(secs: u64) -> Behaviour {
    Behaviour::Healthy {
        after: Duration::from_secs(secs),
    }
}

/// Health "starting" for an hour: only a timeout ends the wait.
const STARTING_FOR_AN_HOUR: Behaviour = Behaviour::NeverHealthy {
    unhealthy_after: Duration::from_secs(3600),
};

// ---- the one place that knows the executor's API -------------------------------------------

/// One pass as the reconciler makes it: observe, undo or finish leftovers of an interrupted
/// update, observe again, plan (pruning on), apply.
async fn pass(
    engine: &FakeEngine,
    desired: &Desired,
    state_dir: &StateDir,
) -> Result<Outcome, ExecError> {
    let limits = Limits::default();
    pass_with(engine, desired, state_dir, &limits).await
}

/// What the command line sets beside the plan: parallelism and the shutdown token.
struct Limits {
    stacks: usize,
    services: usize,
    shutdown: tokio_util::sync::CancellationToken,
    notifier: crate::notify::Notifier,
    /// `--min-free-disk`, in bytes.
    min_free_disk: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            stacks: 4,
            services: 16,
            shutdown: Default::default(),
            notifier: Default::default(),
            min_free_disk: 0,
        }
    }
}

async fn pass_with(
    engine: &FakeEngine,
    desired: &Desired,
    state_dir: &StateDir,
    limits: &Limits,
) -> Result<Outcome, ExecError> {
    let settings = ApplySettings {
        dry_run: false,
        prune: true,
        min_free_disk: limits.min_free_disk,
        retry_failed: false,
        self_heal: true,
        parallel_stacks: limits.stacks,
        parallel_services: limits.services,
        keep_images: 2,
    };
    let shutdown = limits.shutdown.clone();
    let executor = Executor {
        engine,
        state_dir,
        settings: &settings,
        shutdown: &shutdown,
        data_writer: Default::default(),
        notifier: &limits.notifier,
    };
    let cache = DetailsCache::default();
    let mut observed = observe(engine, desired, &cache).await?;
    if executor.recover(desired, &observed).await? {
        observed = observe(engine, desired, &cache).await?;
    }
    let mut state = state_dir.load()?;
    // `reconciler retry`, as the pass takes it.
    crate::reconciler::clear_retried_failures(&mut state, state_dir, desired, false);
    let plan = plan(desired, &observed, &state, &PlanOptions { prune: true });
    if !plan.has_drift() {
        return Ok(Outcome::default());
    }
    executor.apply(desired, &observed, &plan, &mut state).await
}

// ---- the host: a repository of stacks, a state dir, the engine ------------------------------

struct Host {
    engine: FakeEngine,
    repo: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        Self {
            engine: FakeEngine::new(),
            repo: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// Write `compose` as the stack's compose.yaml, then load every stack of the repository.
    fn desired(&self, stack: &str, compose: &str) -> Desired {
        let dir = self.repo.path().join(stack);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), compose).unwrap();
        load_repo(self.repo.path())
    }

    fn state_dir(&self) -> StateDir {
        StateDir::new(self.state.path())
    }

    async fn pass(&self, desired: &Desired) -> Result<Outcome, ExecError> {
        pass(&self.engine, desired, &self.state_dir()).await
    }

    fn state(&self) -> State {
        self.state_dir().load().unwrap()
    }

    fn journal(&self) -> Vec<JournalEntry> {
        self.state_dir().journal().unwrap()
    }

    fn id(&self, name: &str) -> String {
        self.engine
            .container(name)
            .unwrap_or_else(|| panic!("no container {name}: {:?}", self.names()))
            .id
    }

    fn names(&self) -> Vec<String> {
        self.engine
            .containers()
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    /// (name, id, image, state) of every container.
    fn world(&self) -> Vec<(String, String, String, String)> {
        self.engine
            .containers()
            .into_iter()
            .map(|c| (c.name, c.id, c.image, c.state))
            .collect()
    }
}

fn load_repo(repo: &Path) -> Desired {
    let options = LoadOptions {
        stacks: vec![],
        host_env_dir: None,
        policy: Default::default(),
        revision: None,
        repo_root: None,
    };
    load(repo, &options).unwrap_or_else(|e| panic!("{e}"))
}

/// A stop-first service: it publishes a port.
fn web(image: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:8080:80\"]\n    x-reconciler: {{health_timeout: 30s}}\n"
    )
}

/// A start-first service, said so in the file.
fn worker(image: &str) -> String {
    format!(
        "services:\n  worker:\n    image: {image}\n    deploy: {{update_config: {{order: start-first}}}}\n    x-reconciler: {{health_timeout: 20s}}\n"
    )
}

// ---- reading the call log -------------------------------------------------------------------

fn touches_container(call: &Call) -> bool {
    TOUCHES.contains(&call.verb())
}

/// The calls that changed something, as logged.
fn touches(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| touches_container(c))
        .map(|c| c.what.clone())
        .collect()
}

/// `expected` happened in this order (other calls may come between).
#[track_caller]
fn assert_in_order(calls: &[String], expected: &[String]) {
    let mut rest = calls.iter();
    for wanted in expected {
        assert!(
            rest.any(|c| c == wanted),
            "'{wanted}' missing or out of order in {expected:?}; calls: {calls:#?}"
        );
    }
}

fn call<'a>(calls: &'a [Call], what: &str) -> &'a Call {
    calls
        .iter()
        .find(|c| c.what == what)
        .unwrap_or_else(|| panic!("no call '{what}' in {calls:#?}"))
}

/// The id of the container created by the call `create <name>` (it is started next).
fn started_after_create(calls: &[Call], name: &str) -> String {
    let create = calls
        .iter()
        .position(|c| c.what == format!("create {name}"))
        .unwrap_or_else(|| panic!("no create {name}"));
    calls[create..]
        .iter()
        .find(|c| c.verb() == "start")
        .map(|c| c.target().to_string())
        .unwrap_or_else(|| panic!("{name} was never started"))
}

// ---- pull first ----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn every_image_of_a_stack_is_pulled_before_any_of_its_containers_is_touched() {
    let host = Host::new();
    let stack = |web: &str, worker: &str| {
        format!(
            "services:\n  web:\n    image: {web}\n  worker:\n    image: {worker}\n    x-reconciler: {{health_timeout: 20s}}\n"
        )
    };
    host.engine.publish(WEB_V1, healthy_after(1));
    host.engine.publish(WORKER_V1, healthy_after(1));
    host.pass(&host.desired("shop", &stack(WEB_V1, WORKER_V1)))
        .await
        .unwrap();
    host.engine.publish(WEB_V2, healthy_after(1));
    host.engine.publish(WORKER_V2, healthy_after(1));
    host.engine.set_pull_delay(WEB_V2, Duration::from_secs(5));
    host.engine
        .set_pull_delay(WORKER_V2, Duration::from_secs(8));
    host.engine.clear_calls();

    let outcome = host
        .pass(&host.desired("shop", &stack(WEB_V2, WORKER_V2)))
        .await
        .unwrap();

    assert!(outcome.failed().is_empty(), "{outcome:?}");
    let calls = host.engine.timed_calls();
    let pulls: Vec<&Call> = calls.iter().filter(|c| c.verb() == "pull").collect();
    let mut pulled: Vec<&str> = pulls.iter().map(|c| c.target()).collect();
    pulled.sort();
    assert_eq!(pulled, [WEB_V2, WORKER_V2]);
    let first_touch = calls.iter().position(touches_container).unwrap();
    let last_pull = calls.iter().rposition(|c| c.verb() == "pull").unwrap();
    assert!(last_pull < first_touch, "{calls:#?}");
    let pulls_done = pulls.iter().map(|c| c.finished).max().unwrap();
    assert!(pulls_done <= calls[first_touch].started);
    // Pulled side by side: the slower pull sets the pace, not the sum.
    let took = pulls_done - calls[0].started;
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(13),
        "{took:?}"
    );
    assert_eq!(host.engine.container("shop-web-1").unwrap().image, WEB_V2);
    assert_eq!(
        host.engine.container("shop-worker-1").unwrap().image,
        WORKER_V2
    );
}

#[tokio::test(start_paused = true)]
async fn a_pull_that_is_not_found_changes_nothing_in_its_stack_and_records_the_failure() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.engine.publish(WORKER_V1, healthy_after(1));
    host.desired("web", &web(WEB_V1));
    host.pass(&host.desired("jobs", &worker(WORKER_V1)))
        .await
        .unwrap();
    host.engine.publish(WEB_V2, healthy_after(1));
    let worker_before = host.engine.container("jobs-worker-1").unwrap();
    host.engine.clear_calls();

    let missing = "127.0.0.1:5000/worker:never-pushed";
    host.desired("web", &web(WEB_V2));
    let desired = host.desired("jobs", &worker(missing));
    let result = host.pass(&desired).await;

    assert!(
        matches!(&result, Err(ExecError::Pull { service, .. }) if service == "worker"),
        "{result:?}"
    );
    // The stack whose image is missing is not touched at all ...
    let touched = touches(&host.engine.timed_calls());
    assert!(
        !touched
            .iter()
            .any(|c| c.contains("jobs") || c.contains(&worker_before.id)),
        "{touched:?}"
    );
    let worker_after = host.engine.container("jobs-worker-1").unwrap();
    assert_eq!(
        (worker_after.id, worker_after.image, worker_after.state),
        (worker_before.id, worker_before.image, worker_before.state)
    );
    // ... and another stack's release is not held up by it.
    assert_eq!(host.engine.container("web-web-1").unwrap().image, WEB_V2);
    let failure = host.state().failure("jobs", "worker").cloned().unwrap();
    assert!(failure.reason.contains("pull failed"), "{failure:?}");
    assert!(failure.reason.contains(missing), "{failure:?}");
    let pull = host
        .journal()
        .into_iter()
        .find(|e| e.service == "worker" && e.action == crate::outcome::Step::Pull)
        .expect("a journal line for the failed pull");
    assert_eq!(pull.result.as_str(), "failed");

    // Recorded means not tried again: the next pass leaves worker alone.
    host.engine.clear_calls();
    host.pass(&desired).await.unwrap();
    assert!(!host.engine.calls().iter().any(|c| c.contains(missing)));
    assert_eq!(
        host.engine.container("jobs-worker-1").unwrap().image,
        WORKER_V1
    );
}

// ---- stop-first ----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stop_first_update_stops_the_old_starts_the_new_and_removes_the_old_once_it_is_healthy() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(3));
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();
    let old = host.id("web-web-1");
    host.engine.publish(WEB_V2, healthy_after(3));
    host.engine.clear_calls();

    host.pass(&host.desired("web", &web(WEB_V2))).await.unwrap();

    let calls = host.engine.timed_calls();
    let new = started_after_create(&calls, "web-web-1");
    assert_eq!(
        touches(&calls),
        [
            format!("stop {old}"),
            format!("rename {old} web-web-1-reconciler-old"),
            "create web-web-1".to_string(),
            format!("start {new}"),
            format!("remove {old}"),
        ]
    );
    let removed = call(&calls, &format!("remove {old}")).started;
    assert!(removed - call(&calls, &format!("start {new}")).started >= Duration::from_secs(3));
    let running = host.engine.containers();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(
        (running[0].name.as_str(), running[0].id.as_str()),
        ("web-web-1", new.as_str())
    );
    assert_eq!(running[0].image, WEB_V2);
    assert_eq!(running[0].health.as_deref(), Some("healthy"));
    let last = host.journal().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.result.as_str()),
        ("update", "ok")
    );
    assert_eq!(
        (last.from.as_deref(), last.to.as_deref()),
        (Some(WEB_V1), Some(WEB_V2))
    );
    assert!(host.state().failure("web", "web").is_none());
}

#[tokio::test(start_paused = true)]
async fn stop_first_a_new_container_that_never_turns_healthy_is_removed_and_the_old_one_runs_again()
{
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(3));
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();
    let old = host.id("web-web-1");
    host.engine.publish(WEB_V2, STARTING_FOR_AN_HOUR);
    host.engine
        .set_logs(WEB_V2, &["web v2 starting", "web v2: cannot open config"]);
    host.engine.clear_calls();

    let outcome = host.pass(&host.desired("web", &web(WEB_V2))).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    let calls = host.engine.timed_calls();
    let new = started_after_create(&calls, "web-web-1");
    assert_in_order(
        &touches(&calls),
        &[
            format!("stop {old}"),
            format!("rename {old} web-web-1-reconciler-old"),
            format!("start {new}"),
            format!("remove {new}"),
            format!("rename {old} web-web-1"),
            format!("start {old}"),
        ],
    );
    let given_up = call(&calls, &format!("remove {new}")).started;
    assert_eq!(
        given_up - call(&calls, &format!("start {new}")).started,
        Duration::from_secs(30)
    );
    let left = host.engine.containers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (
            left[0].name.as_str(),
            left[0].id.as_str(),
            left[0].image.as_str()
        ),
        ("web-web-1", old.as_str(), WEB_V1)
    );
    assert_eq!(left[0].state, "running");
    assert_eq!(left[0].health.as_deref(), Some("healthy"));
    let failure = host.state().failure("web", "web").cloned().unwrap();
    assert!(
        failure.reason.contains("not healthy within 30s"),
        "{failure:?}"
    );
    let last = host.journal().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.result.as_str()),
        ("update", "failed")
    );
    assert_eq!(
        last.log_tail,
        ["web v2 starting", "web v2: cannot open config"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_container_that_exits_fails_at_once_without_waiting_for_the_timeout() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();
    let old = host.id("web-web-1");
    host.engine.publish(
        WEB_V2,
        Behaviour::Exits {
            code: 2,
            after: Duration::from_secs(2),
        },
    );
    host.engine.clear_calls();

    host.pass(&host.desired("web", &web(WEB_V2))).await.unwrap();

    let calls = host.engine.timed_calls();
    let new = started_after_create(&calls, "web-web-1");
    let waited = call(&calls, &format!("remove {new}")).started
        - call(&calls, &format!("start {new}")).started;
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    assert_eq!(host.id("web-web-1"), old);
    let failure = host.state().failure("web", "web").cloned().unwrap();
    assert!(failure.reason.contains("exited with code 2"), "{failure:?}");
}

// ---- start-first ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn start_first_update_stops_the_old_container_only_after_the_new_one_is_healthy() {
    let host = Host::new();
    host.engine.publish(WORKER_V1, healthy_after(1));
    host.pass(&host.desired("jobs", &worker(WORKER_V1)))
        .await
        .unwrap();
    let old = host.id("jobs-worker-1");
    host.engine.publish(WORKER_V2, healthy_after(4));
    host.engine.clear_calls();

    host.pass(&host.desired("jobs", &worker(WORKER_V2)))
        .await
        .unwrap();

    let calls = host.engine.timed_calls();
    let new = started_after_create(&calls, "jobs-worker-1-reconciler-new");
    assert_eq!(
        touches(&calls),
        [
            "create jobs-worker-1-reconciler-new".to_string(),
            format!("start {new}"),
            format!("stop {old}"),
            format!("remove {old}"),
            format!("rename {new} jobs-worker-1"),
        ]
    );
    let stopped = call(&calls, &format!("stop {old}")).started;
    assert!(stopped - call(&calls, &format!("start {new}")).started >= Duration::from_secs(4));
    let left = host.engine.containers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (
            left[0].name.as_str(),
            left[0].id.as_str(),
            left[0].image.as_str()
        ),
        ("jobs-worker-1", new.as_str(), WORKER_V2)
    );
}

#[tokio::test(start_paused = true)]
async fn start_first_the_old_container_is_never_stopped_when_the_new_one_fails() {
    let host = Host::new();
    host.engine.publish(WORKER_V1, healthy_after(1));
    host.pass(&host.desired("jobs", &worker(WORKER_V1)))
        .await
        .unwrap();
    let old = host.id("jobs-worker-1");
    host.engine.publish(
        WORKER_V2,
        Behaviour::NeverHealthy {
            unhealthy_after: Duration::from_secs(5),
        },
    );
    host.engine.clear_calls();

    host.pass(&host.desired("jobs", &worker(WORKER_V2)))
        .await
        .unwrap();

    let calls = host.engine.timed_calls();
    let new = started_after_create(&calls, "jobs-worker-1-reconciler-new");
    assert_eq!(
        touches(&calls),
        [
            "create jobs-worker-1-reconciler-new".to_string(),
            format!("start {new}"),
            format!("remove {new}"),
        ]
    );
    assert!(!calls
        .iter()
        .any(|c| c.target().contains(&old) && touches_container(c)));
    let left = host.engine.containers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (
            left[0].name.as_str(),
            left[0].id.as_str(),
            left[0].state.as_str()
        ),
        ("jobs-worker-1", old.as_str(), "running")
    );
    let failure = host.state().failure("jobs", "worker").cloned().unwrap();
    assert!(failure.reason.contains("turned unhealthy"), "{failure:?}");
}

// ---- crash recovery ------------------------------------------------------------------------

fn unreachable() -> EngineError {
    EngineError::Unreachable {
        endpoint: "unix:///var/run/docker.sock".into(),
        message: "connection reset".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_leftover_backup_with_no_primary_is_restored_under_its_name_and_started() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();
    let old = host.id("web-web-1");
    // The process died (kill -9, power) right after the old container was stopped and set
    // aside, as a stop-first update does before it creates the new one.
    host.engine.stop_container(&old, None).await.unwrap();
    host.engine
        .rename_container(&old, "web-web-1-reconciler-old")
        .await
        .unwrap();
    assert_eq!(host.names(), ["web-web-1-reconciler-old"]);
    assert_eq!(
        host.engine
            .container("web-web-1-reconciler-old")
            .unwrap()
            .state,
        "exited"
    );
    host.engine.clear_calls();

    // Meanwhile v2 was reverted: once restored, nothing else is to be done.
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();

    assert_eq!(
        touches(&host.engine.timed_calls()),
        [format!("rename {old} web-web-1"), format!("start {old}")]
    );
    let left = host.engine.containers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (
            left[0].name.as_str(),
            left[0].id.as_str(),
            left[0].state.as_str()
        ),
        ("web-web-1", old.as_str(), "running")
    );
    assert_eq!(left[0].image, WEB_V1);
}

#[tokio::test(start_paused = true)]
async fn a_leftover_backup_next_to_a_healthy_primary_is_removed_and_the_primary_left_alone() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();
    let old = host.id("web-web-1");
    host.engine.publish(WEB_V2, healthy_after(1));
    // The new container proved itself, then the engine went away before the old one was removed.
    host.engine.fail_next("remove", &old, unreachable());
    let v2 = host.desired("web", &web(WEB_V2));
    assert!(host.pass(&v2).await.is_err());
    let new = host.id("web-web-1");
    assert_eq!(host.names(), ["web-web-1", "web-web-1-reconciler-old"]);
    host.engine.clear_calls();

    host.pass(&v2).await.unwrap();

    assert_eq!(
        touches(&host.engine.timed_calls()),
        [format!("remove {old}")]
    );
    let left = host.engine.containers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (
            left[0].name.as_str(),
            left[0].id.as_str(),
            left[0].image.as_str()
        ),
        ("web-web-1", new.as_str(), WEB_V2)
    );
    assert_eq!(left[0].health.as_deref(), Some("healthy"));
}

#[tokio::test(start_paused = true)]
async fn an_unmanaged_container_named_like_a_candidate_is_left_alone() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let v1 = host.desired("web", &web(WEB_V1));
    host.pass(&v1).await.unwrap();
    let primary = host.id("web-web-1");
    // Someone's own container with Compose's labels and our candidate's name, not ours.
    let look_alike = host
        .engine
        .create_container(&crate::engine::fake::compose_request(
            "web",
            "web",
            "web-web-1-reconciler-new",
            WEB_V1,
        ))
        .await
        .unwrap();
    host.engine.start_container(&look_alike).await.unwrap();
    host.engine.clear_calls();

    host.pass(&v1).await.unwrap();

    assert_eq!(touches(&host.engine.timed_calls()), Vec::<String>::new());
    let left = host.world();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(
        host.engine
            .container("web-web-1-reconciler-new")
            .unwrap()
            .state,
        "running"
    );
    assert_eq!(host.id("web-web-1-reconciler-new"), look_alike);
    assert_eq!(host.id("web-web-1"), primary);
}

// ---- health timeout ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_health_wait_ends_once_health_timeout_has_passed_on_the_clock() {
    let host = Host::new();
    host.engine.publish(WEB_V1, STARTING_FOR_AN_HOUR);
    let compose = format!(
        "services:\n  web:\n    image: {WEB_V1}\n    x-reconciler: {{health_timeout: 60s}}\n"
    );
    let real = std::time::Instant::now();

    let outcome = host.pass(&host.desired("web", &compose)).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    let calls = host.engine.timed_calls();
    let new = started_after_create(&calls, "web-web-1");
    let waited = call(&calls, &format!("remove {new}")).started
        - call(&calls, &format!("start {new}")).started;
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(61),
        "waited {waited:?}"
    );
    assert!(
        real.elapsed() < Duration::from_secs(30),
        "the clock is paused, not slept on"
    );
    assert!(host.names().is_empty(), "{:?}", host.names());
    let failure = host.state().failure("web", "web").cloned().unwrap();
    assert!(
        failure.reason.contains("not healthy within 1m"),
        "{failure:?}"
    );
}

// ---- depends_on ----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_service_whose_dependency_failed_in_the_same_pass_is_skipped_and_reported() {
    let host = Host::new();
    host.engine.publish(
        DB_V1,
        Behaviour::Exits {
            code: 1,
            after: Duration::from_secs(1),
        },
    );
    host.engine.publish(WEB_V1, healthy_after(1));
    let compose = format!(
        "services:\n  db:\n    image: {DB_V1}\n  app:\n    image: {WEB_V1}\n    depends_on: [db]\n"
    );

    let outcome = host.pass(&host.desired("shop", &compose)).await.unwrap();

    let calls = host.engine.calls();
    assert!(
        calls.contains(&"create shop-db-1".to_string()),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("shop-app-1")),
        "{calls:#?}"
    );
    assert!(host.names().is_empty(), "{:?}", host.names());
    assert!(
        outcome
            .failed()
            .iter()
            .any(|f| f.who() == "shop/app" && f.reason() == Some("its dependency db failed")),
        "{outcome:?}"
    );
    let state = host.state();
    assert!(state.failure("shop", "db").is_some());
    assert_eq!(state.stacks["shop"].last_good, None);
}

#[tokio::test(start_paused = true)]
async fn a_first_deploy_that_never_turns_healthy_leaves_no_network_and_no_volume_is_touched() {
    let host = Host::new();
    host.engine.publish(WEB_V1, STARTING_FOR_AN_HOUR);
    let compose = format!(
        "services:\n  web:\n    image: {WEB_V1}\n    volumes: [\"data:/data\"]\n    x-reconciler: {{health_timeout: 30s}}\nvolumes:\n  data: {{}}\n"
    );

    let outcome = host.pass(&host.desired("shop", &compose)).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert!(host.names().is_empty(), "{:?}", host.names());
    assert!(host.engine.network("shop_default").is_none());
    assert!(host
        .engine
        .calls()
        .contains(&"remove-network shop_default".to_string()));
    assert!(
        host.engine.volumes().contains_key("shop_data"),
        "a volume always stays"
    );
}

#[tokio::test(start_paused = true)]
async fn a_network_another_stacks_container_is_attached_to_stays_when_a_first_deploy_fails() {
    let host = Host::new();
    host.engine.publish(WEB_V1, STARTING_FOR_AN_HOUR);
    host.engine.publish(DB_V1, healthy_after(1));
    let on_common = |image: &str| {
        format!("services:\n  app:\n    image: {image}\n    networks: [shared]\n    x-reconciler: {{health_timeout: 30s}}\nnetworks:\n  shared:\n    name: common\n")
    };
    host.desired("alpha", &on_common(WEB_V1));
    let desired = host.desired("beta", &on_common(DB_V1));

    let outcome = host.pass(&desired).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(host.names(), ["beta-app-1"]);
    // alpha created it and asked; beta's container is on it, so it stays.
    assert!(host
        .engine
        .calls()
        .contains(&"remove-network common".to_string()));
    assert!(host.engine.network("common").is_some());
}

#[tokio::test(start_paused = true)]
async fn a_failed_service_beside_one_that_runs_keeps_the_network_they_share() {
    let host = Host::new();
    host.engine.publish(WEB_V1, STARTING_FOR_AN_HOUR);
    host.engine.publish(DB_V1, healthy_after(1));
    let compose = format!(
        "services:\n  db:\n    image: {DB_V1}\n  web:\n    image: {WEB_V1}\n    x-reconciler: {{health_timeout: 30s}}\n"
    );

    let outcome = host.pass(&host.desired("shop", &compose)).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(host.names(), vec!["shop-db-1".to_string()]);
    assert!(host.engine.network("shop_default").is_some());
    assert!(!host
        .engine
        .calls()
        .iter()
        .any(|c| c.starts_with("remove-network")));
}

#[tokio::test(start_paused = true)]
async fn a_failed_update_keeps_the_network_the_old_container_runs_on() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &format!("services:\n  web:\n    image: {WEB_V1}\n")))
        .await
        .unwrap();
    host.engine.publish(WEB_V2, STARTING_FOR_AN_HOUR);

    let outcome = host
        .pass(&host.desired(
            "shop",
            &format!("services:\n  web:\n    image: {WEB_V2}\n    x-reconciler: {{health_timeout: 30s}}\n"),
        ))
        .await
        .unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(host.engine.container("shop-web-1").unwrap().image, WEB_V1);
    assert!(host.engine.network("shop_default").is_some());
}

// ---- networks and volumes that exist with another definition -----------------------------

fn ours(key_label: &str, key: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (labels::PROJECT.to_string(), "shop".to_string()),
        (key_label.to_string(), key.to_string()),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_network_made_with_another_subnet_stops_its_stack_before_anything_is_pulled() {
    use crate::desired::IpamPool;
    use crate::observed::ObservedNetwork;
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let made_before = ObservedNetwork {
        driver: "bridge".into(),
        ipam_driver: "default".into(),
        ipam_config: vec![IpamPool {
            subnet: Some("172.31.7.0/24".into()),
            ..Default::default()
        }],
        labels: ours(labels::NETWORK, "front"),
        ..Default::default()
    };
    host.engine.add_network("shop_front", made_before.clone());
    let compose = format!("services:\n  app:\n    image: {WEB_V1}\n    networks: [front]\nnetworks:\n  front:\n    ipam:\n      config:\n        - subnet: 172.31.8.0/24\n");

    let error = host
        .pass(&host.desired("shop", &compose))
        .await
        .unwrap_err();

    assert!(
        matches!(error, ExecError::ResourceDiffers { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("ipam.config.subnet 172.31.7.0/24 -> 172.31.8.0/24")
            && text.contains("docker network rm shop_front"),
        "{text}"
    );
    assert!(host.names().is_empty());
    assert!(!host.engine.calls().iter().any(|c| c.starts_with("pull")));
    assert_eq!(host.engine.network("shop_front"), Some(made_before));
}

#[tokio::test(start_paused = true)]
async fn networks_and_volumes_made_from_the_file_match_it_on_the_next_pass() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let compose = format!("services:\n  app:\n    image: {WEB_V1}\n    networks: [front]\n    volumes: [\"data:/data\"]\nnetworks:\n  front:\n    driver_opts: {{com.docker.network.driver.mtu: 1400}}\n    ipam:\n      config:\n        - subnet: 172.31.9.0/24\n    labels: {{team: a}}\nvolumes:\n  data:\n    driver_opts: {{type: tmpfs, device: tmpfs, o: size=10m}}\n    labels: {{team: a}}\n");
    let desired = host.desired("shop", &compose);
    host.pass(&desired).await.unwrap();
    let network = host.engine.network("shop_front").unwrap();
    assert_eq!(network.driver_opts["com.docker.network.driver.mtu"], "1400");
    assert_eq!(host.engine.volumes()["shop_data"]["team"], "a");

    let observed = observe(&host.engine, &desired, &DetailsCache::default())
        .await
        .unwrap();
    assert!(observed.resources.is_empty(), "{:?}", observed.resources);
    host.pass(&desired).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn labels_that_differ_are_said_but_do_not_stop_the_stack() {
    use crate::observed::ObservedVolume;
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let mut found = ObservedVolume {
        driver: "local".into(),
        labels: ours(labels::VOLUME, "data"),
        ..Default::default()
    };
    found.labels.insert("team".into(), "b".into());
    host.engine.add_volume("shop_data", found);
    let compose = format!("services:\n  app:\n    image: {WEB_V1}\n    volumes: [\"data:/data\"]\nvolumes:\n  data:\n    labels: {{team: a}}\n");
    let desired = host.desired("shop", &compose);

    let observed = observe(&host.engine, &desired, &DetailsCache::default())
        .await
        .unwrap();
    let said = observed.resources["shop"][0].to_string();
    assert!(said.contains("labels.team b -> a"), "{said}");
    host.pass(&desired).await.unwrap();
    assert_eq!(host.names(), ["shop-app-1"]);
}

// ---- volumes -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn no_volume_is_ever_removed_and_every_new_container_mounts_the_same_one() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.engine.publish(DB_V1, healthy_after(1));
    host.engine.publish(DB_V2, STARTING_FOR_AN_HOUR);
    host.engine.publish(DB_V3, healthy_after(1));
    let shop = |db: Option<&str>| {
        let db = db.map_or(String::new(), |image| {
            format!("  db:\n    image: {image}\n    volumes: [\"data:/var/lib/db\"]\n    x-reconciler: {{health_timeout: 20s}}\n")
        });
        format!("services:\n  app:\n    image: {WEB_V1}\n{db}volumes:\n  data: {{}}\n")
    };
    let mut mounted = Vec::new();
    for db in [Some(DB_V1), Some(DB_V2), Some(DB_V3)] {
        host.pass(&host.desired("shop", &shop(db))).await.unwrap();
        mounted.push(host.engine.container("shop-db-1").unwrap().volumes);
    }
    let volumes_before_removal = host.engine.volumes();
    // db leaves the stack: with pruning on, its container is removed.
    host.pass(&host.desired("shop", &shop(None))).await.unwrap();

    assert_eq!(host.names(), ["shop-app-1"]);
    assert_eq!(mounted, vec![vec!["shop_data".to_string()]; 3]);
    assert_eq!(
        host.journal().pop().unwrap().action,
        crate::outcome::Step::Remove
    );
    let volumes = host.engine.volumes();
    assert_eq!(volumes, volumes_before_removal);
    assert_eq!(
        volumes["shop_data"].get(labels::VOLUME).map(String::as_str),
        Some("data"),
        "made by the executor as Compose would, not by Docker on create: {volumes:?}"
    );
    assert!(!host.engine.calls().iter().any(|c| c.contains("volume")
        && !c.starts_with("ensure-volume")
        && !c.starts_with("inspect-volume")));
}

// ---- concurrency ---------------------------------------------------------------------------

/// `n` services `s1..sN` of one image, none depending on another.
fn many(image: &str, n: usize) -> String {
    let mut yaml = String::from("services:\n");
    for i in 1..=n {
        yaml.push_str(&format!(
            "  s{i}:\n    image: {image}\n    x-reconciler: {{health_timeout: 60s}}\n"
        ));
    }
    yaml
}

#[tokio::test(start_paused = true)]
async fn a_stack_that_never_turns_healthy_does_not_hold_up_another_stack() {
    let host = Host::new();
    let broken = "127.0.0.1:5000/broken:v1";
    host.engine.publish(broken, STARTING_FOR_AN_HOUR);
    host.engine.publish(WEB_V1, healthy_after(2));
    // "aaa" sorts first: a one-stack-at-a-time executor would wait out its 60 s before web.
    host.desired(
        "aaa",
        &format!(
            "services:\n  app:\n    image: {broken}\n    x-reconciler: {{health_timeout: 60s}}\n"
        ),
    );
    let desired = host.desired("web", &web(WEB_V1));
    let started = tokio::time::Instant::now();

    let outcome = host.pass(&desired).await.unwrap();

    let order: Vec<String> = outcome.services.iter().map(|o| o.who()).collect();
    assert_eq!(order, ["web/web", "aaa/app"], "web is done first");
    let web = &outcome.services[0];
    assert!(web.changed() && web.elapsed_ms < 10_000, "{web:?}");
    assert!(outcome.services[1].failed());
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "the broken one waited its timeout"
    );
    assert!(host.state().failure("aaa", "app").is_some());
    assert_eq!(
        host.state().stacks["web"].last_good,
        host.state().stacks["web"].last_applied
    );
}

#[tokio::test(start_paused = true)]
async fn services_without_dependencies_wait_for_health_side_by_side_within_the_limit() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(5));
    let desired = host.desired("farm", &many(WEB_V1, 10));
    let started = tokio::time::Instant::now();
    let limits = Limits {
        services: 4,
        ..Default::default()
    };

    let outcome = pass_with(&host.engine, &desired, &host.state_dir(), &limits)
        .await
        .unwrap();

    assert_eq!(outcome.services.iter().filter(|o| o.changed()).count(), 10);
    assert_eq!(host.engine.max_concurrent_health_waits(), 4);
    // Three rounds of 5 s health waits (4 + 4 + 2), not ten.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_service_starts_only_after_the_services_it_depends_on_are_proven() {
    let host = Host::new();
    host.engine.publish(DB_V1, healthy_after(5));
    host.engine.publish(WEB_V1, healthy_after(1));
    let desired = host.desired(
        "shop",
        &format!(
            "services:\n  db:\n    image: {DB_V1}\n  web:\n    image: {WEB_V1}\n    depends_on:\n      db: {{condition: service_healthy}}\n  side:\n    image: {WEB_V1}\n"
        ),
    );

    host.pass(&desired).await.unwrap();

    let calls = host.engine.timed_calls();
    let at = |what: &str| {
        calls
            .iter()
            .find(|c| c.what == what)
            .unwrap_or_else(|| panic!("no {what} in {calls:#?}"))
            .started
    };
    let db_created = at("create shop-db-1");
    let web_created = at("create shop-web-1");
    let side_created = at("create shop-side-1");
    assert!(
        web_created >= db_created + Duration::from_secs(5),
        "web waited for db's health"
    );
    assert!(
        side_created < db_created + Duration::from_secs(1),
        "side did not wait for db"
    );
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_services_in_progress_finish_no_other_starts_and_the_revision_is_not_last_good()
{
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(5));
    let desired = host.desired("farm", &many(WEB_V1, 6));
    let limits = Limits {
        services: 2,
        ..Default::default()
    };
    let shutdown = limits.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
    });

    let outcome = pass_with(&host.engine, &desired, &host.state_dir(), &limits)
        .await
        .unwrap();

    let done: Vec<String> = outcome.services.iter().map(|o| o.who()).collect();
    assert_eq!(done.len(), 2, "the two in progress finished: {done:?}");
    assert!(outcome.services.iter().all(|o| o.changed()));
    assert_eq!(host.names().len(), 2, "{:?}", host.names());
    assert!(
        host.engine
            .containers()
            .iter()
            .all(|c| c.state == "running"),
        "nothing is left half-done"
    );
    assert_eq!(
        host.state().stacks["farm"].last_good,
        None,
        "a revision of which 4 of 6 services never ran is not the last good one"
    );
}

// ---- review: a failed record must not abandon services in flight ----------------------------

/// Two independent stop-first services; `slow`'s new image has no healthcheck, needs 30 s of
/// min_ready, and exits after 20 s: it must never be accepted.
fn fast_and_slow(fast: &str, slow: &str) -> String {
    format!(
        "services:\n  fast:\n    image: {fast}\n    deploy: {{update_config: {{order: stop-first}}}}\n    x-reconciler: {{health_timeout: 30s}}\n  slow:\n    image: {slow}\n    deploy: {{update_config: {{order: stop-first}}}}\n    x-reconciler: {{health_timeout: 60s, min_ready: 30s}}\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_state_write_error_for_one_service_does_not_abandon_another_mid_update() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.engine.publish(WORKER_V1, Behaviour::NoHealthcheck);
    host.pass(&host.desired("shop", &fast_and_slow(WEB_V1, WORKER_V1)))
        .await
        .unwrap();
    let slow_old = host.id("shop-slow-1");
    host.engine.publish(WEB_V2, healthy_after(1));
    host.engine.publish(
        WORKER_V2,
        Behaviour::Exits {
            code: 1,
            after: Duration::from_secs(20),
        },
    );
    // state.json cannot be written from t+0.5 s on (disk full, read-only remount ...): `fast`
    // is recorded at about t+1 s, while `slow` is still in its 30 s min_ready.
    let blocker = host.state.path().join("state.json.tmp");
    let sabotage = blocker.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::create_dir_all(&sabotage).unwrap();
    });
    let desired = host.desired("shop", &fast_and_slow(WEB_V2, WORKER_V2));

    let result = host.pass(&desired).await;

    assert!(matches!(result, Err(ExecError::State(_))), "{result:?}");
    let mut wrong = Vec::new();
    // The old `slow` must be back (or its update still owned by someone): not left stopped
    // under its backup name beside an unproven new container.
    let world = host.world();
    let old = world.iter().find(|c| c.1 == slow_old).unwrap();
    if (old.0.as_str(), old.3.as_str()) != ("shop-slow-1", "running") {
        wrong.push(format!("old slow abandoned mid-update: {world:?}"));
    }
    // And the next pass (state writable again) must not accept the unproven one unrecorded.
    std::fs::remove_dir_all(&blocker).unwrap();
    let _ = host.pass(&desired).await;
    let slow = host.engine.container("shop-slow-1").unwrap();
    let journaled = host
        .journal()
        .iter()
        .any(|e| e.service == "slow" && e.to.as_deref() == Some(WORKER_V2));
    if slow.image == WORKER_V2 && !journaled {
        wrong.push(format!(
            "next pass promoted the unproven slow:v2 with no record; old one: {:?}",
            host.engine
                .containers()
                .iter()
                .find(|c| c.id == slow_old)
                .map(|c| &c.name)
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test(start_paused = true)]
async fn stop_first_a_create_the_engine_refuses_restores_the_old_container_at_once() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();
    let old = host.id("web-web-1");
    host.engine.publish(WEB_V2, healthy_after(1));
    // The release's own fault, as Docker says it at create (a bad device, an unknown runtime,
    // a missing network): the name is free (the old one is renamed), nobody is removing it.
    host.engine.fail_always(
        "create",
        "web-web-1",
        EngineError::Call {
            call: "create container",
            target: "web-web-1".into(),
            message: "invalid device mapping /dev/nope".into(),
        },
    );
    // What DockerEngine answers for a name nobody holds: Docker's 404 "No such container" on
    // "inspect container" is Gone (the fake says Call, so the rule never sees this).
    host.engine.fail_always(
        "inspect",
        "web-web-1",
        EngineError::Gone {
            call: "inspect container",
            target: "web-web-1".into(),
            message: "No such container: web-web-1".into(),
        },
    );
    host.engine.clear_calls();

    let outcome = host.pass(&host.desired("web", &web(WEB_V2))).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    let calls = host.engine.timed_calls();
    let creates = calls.iter().filter(|c| c.verb() == "create").count();
    let down = call(&calls, &format!("start {old}")).started
        - call(&calls, &format!("stop {old}")).started;
    assert!(
        down < Duration::from_secs(5) && creates == 1,
        "the old container was down {down:?} while create was tried {creates} times"
    );
}

#[tokio::test(start_paused = true)]
async fn an_engine_failure_during_a_stop_first_update_brings_the_old_container_back_at_once() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("web", &web(WEB_V1))).await.unwrap();
    let old = host.id("web-web-1");
    host.engine.publish(WEB_V2, healthy_after(1));
    // The engine drops the create call after the old container was stopped and set aside.
    host.engine.fail_next("create", "web-web-1", unreachable());

    let interrupted = host.pass(&host.desired("web", &web(WEB_V2))).await;

    assert!(
        matches!(interrupted, Err(ExecError::Engine(_))),
        "{interrupted:?}"
    );
    let left = host.world();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0].0.as_str(), left[0].1.as_str(), left[0].3.as_str()),
        ("web-web-1", old.as_str(), "running")
    );
    assert!(
        host.state().failure("web", "web").is_none(),
        "an engine outage is not the release's fault"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pruned_service_is_removed_only_after_the_rest_of_its_stack_is_done() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(3));
    let service = |name: &str| format!("  {name}:\n    image: {WEB_V1}\n");
    host.pass(&host.desired("shop", &format!("services:\n{}", service("legacy"))))
        .await
        .unwrap();
    let legacy = host.id("shop-legacy-1");
    host.engine.clear_calls();

    host.pass(&host.desired("shop", &format!("services:\n{}", service("www"))))
        .await
        .unwrap();

    let calls = host.engine.timed_calls();
    let at = |what: &str| {
        calls
            .iter()
            .find(|c| c.what == what)
            .unwrap_or_else(|| panic!("no {what} in {calls:#?}"))
            .started
    };
    assert!(
        at(&format!("remove {legacy}")) >= at("create shop-www-1") + Duration::from_secs(3),
        "legacy was removed before www was proven"
    );
    assert_eq!(host.names(), ["shop-www-1"]);
}

#[tokio::test(start_paused = true)]
async fn secrets_given_by_content_are_written_per_content_and_named_in_a_label_never_by_value() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let compose = format!(
        "services:\n  web:\n    image: {WEB_V1}\n    secrets:\n      - source: db\n        mode: 0400\n    configs: [app]\nsecrets:\n  db:\n    environment: DB_PASSWORD\nconfigs:\n  app:\n    content: level=info\n"
    );
    let with_password = |password: &str| {
        let dir = host.repo.path().join("shop");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env"), format!("DB_PASSWORD={password}\n")).unwrap();
        host.desired("shop", &compose)
    };
    let files = host.state.path().join("files/shop");
    let written = |labels: &std::collections::BTreeMap<String, String>| -> Vec<(String, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut found: Vec<(String, u32)> = labels[labels::FILES]
            .split(',')
            .map(|name| {
                let path = files.join(name);
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                (std::fs::read_to_string(&path).unwrap(), mode)
            })
            .collect();
        found.sort();
        found
    };

    host.pass(&with_password("first-pw-1")).await.unwrap();
    let first = host.engine.container("shop-web-1").unwrap();
    assert_eq!(
        written(&first.labels),
        [
            ("first-pw-1".to_string(), 0o400),
            ("level=info".to_string(), 0o444)
        ]
    );
    assert!(!format!("{:?}", first.labels).contains("first-pw-1"));

    host.pass(&with_password("second-pw-2")).await.unwrap();
    let second = host.engine.container("shop-web-1").unwrap();
    assert_ne!(
        second.id, first.id,
        "a changed secret recreates the service"
    );
    assert_eq!(
        written(&second.labels),
        [
            ("level=info".to_string(), 0o444),
            ("second-pw-2".to_string(), 0o400)
        ]
    );
    // The old file is left for pruning, which knows which containers still mount it.
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 3);
}

// ---- the data folder ------------------------------------------------------------------------

/// A database-like service writing `./data`, with a tracked config in it.
fn db(image: &str) -> String {
    format!(
        "services:\n  db:\n    image: {image}\n    volumes: [\"./data:/var/lib/db\"]\n    x-reconciler: {{health_timeout: 20s}}\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_puts_the_old_revisions_tracked_files_back_and_keeps_the_data() {
    let host = Host::new();
    let conf = host.repo.path().join("shop/data/db.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "v1\n").unwrap();
    host.engine.publish(DB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &db(DB_V1))).await.unwrap();
    let data = host.state_dir().data_dir("shop").join("data");
    assert_eq!(
        std::fs::read_to_string(data.join("db.conf")).unwrap(),
        "v1\n"
    );
    std::fs::write(data.join("table"), "rows\n").unwrap();

    host.engine.publish(DB_V2, STARTING_FOR_AN_HOUR);
    std::fs::write(&conf, "v2\n").unwrap();
    let outcome = host.pass(&host.desired("shop", &db(DB_V2))).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(host.engine.container("shop-db-1").unwrap().image, DB_V1);
    assert_eq!(
        std::fs::read_to_string(data.join("db.conf")).unwrap(),
        "v1\n",
        "the old container runs on its own revision's config"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("table")).unwrap(),
        "rows\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_link_planted_on_the_way_to_a_bound_folder_fails_the_release_before_any_create() {
    let host = Host::new();
    let outside = tempfile::tempdir().unwrap();
    let root = host.state_dir().data_dir("shop");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("data")).unwrap();
    host.engine.publish(DB_V1, healthy_after(1));

    let outcome = host.pass(&host.desired("shop", &db(DB_V1))).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    let failure = host.state().failure("shop", "db").cloned().unwrap();
    assert!(
        failure.reason.contains("'data' is a symlink"),
        "{failure:?}"
    );
    assert!(!host.engine.calls().iter().any(|c| c.starts_with("create")));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_service_skipped_for_its_failed_dependency_keeps_the_tracked_files_it_runs_with() {
    let host = Host::new();
    let conf = host.repo.path().join("shop/data/db.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "v1\n").unwrap();
    let stack = |migrate: &str| {
        format!(
            "services:\n  migrate:\n    image: {migrate}\n    x-reconciler: {{health_timeout: 20s}}\n  db:\n    image: {DB_V1}\n    depends_on: [migrate]\n    volumes: [\"./data:/var/lib/db\"]\n"
        )
    };
    host.engine.publish(WORKER_V1, healthy_after(1));
    host.engine.publish(DB_V1, healthy_after(1));
    host.pass(&host.desired("shop", &stack(WORKER_V1)))
        .await
        .unwrap();
    let db = host.id("shop-db-1");

    host.engine.publish(WORKER_V2, STARTING_FOR_AN_HOUR);
    std::fs::write(&conf, "v2\n").unwrap();
    let outcome = host
        .pass(&host.desired("shop", &stack(WORKER_V2)))
        .await
        .unwrap();

    assert!(
        outcome.failed().iter().any(|f| f.who() == "shop/db"),
        "{outcome:?}"
    );
    assert_eq!(host.id("shop-db-1"), db);
    let data = host.state_dir().data_dir("shop").join("data");
    assert_eq!(
        std::fs::read_to_string(data.join("db.conf")).unwrap(),
        "v1\n"
    );
}

mod pre_deploy;

mod backups;
mod replicas;
mod window;

/// A container of stack `web` as a `pre_deploy` job is labelled (`reconciler.oneoff`), with
/// Compose's `oneoff` label set to `oneoff`, from the web service's spec.
fn job_labelled_request(
    desired: &Desired,
    name: &str,
    service: &str,
    oneoff: &str,
) -> crate::engine::CreateRequest {
    let stack = &desired.stacks[0];
    crate::engine::CreateRequest {
        name: name.into(),
        project: "web".into(),
        service: service.into(),
        spec: stack.services["web"].spec.clone(),
        labels: std::collections::BTreeMap::from([
            (labels::PROJECT.to_string(), "web".to_string()),
            (labels::SERVICE.to_string(), service.to_string()),
            (labels::ONEOFF.to_string(), oneoff.to_string()),
            (
                labels::ONEOFF_ROLE.to_string(),
                labels::ONEOFF_JOB.to_string(),
            ),
        ]),
        networks: stack
            .networks
            .iter()
            .map(|(k, n)| (k.clone(), n.name.clone()))
            .collect(),
        volumes: Default::default(),
        repo_root: None,
        content_files: Default::default(),
        data_root: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_one_off_container_a_crash_left_is_stopped_and_removed_and_the_service_left_alone() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let desired = host.desired("web", &web(WEB_V1));
    host.pass(&desired).await.unwrap();
    let service_id = host.id("web-web-1");
    // A pre_deploy job that was running when the process died.
    let job = job_labelled_request(&desired, "web-web-pre-deploy", "web", "True");
    let job_id = host.engine.create_container(&job).await.unwrap();
    host.engine.start_container(&job_id).await.unwrap();
    host.engine.clear_calls();

    host.pass(&desired).await.unwrap();

    assert_eq!(
        touches(&host.engine.timed_calls()),
        [format!("stop {job_id}"), format!("remove {job_id}")]
    );
    assert_eq!(host.names(), ["web-web-1"]);
    assert_eq!(host.id("web-web-1"), service_id);
}

#[tokio::test(start_paused = true)]
async fn a_container_that_only_carries_the_one_off_role_label_from_its_image_is_not_removed() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    let desired = host.desired("web", &web(WEB_V1));
    host.pass(&desired).await.unwrap();
    // Docker merges an image's labels into its containers': an image may carry
    // `reconciler.oneoff`, but a container we created as a service says oneoff=False.
    let lookalike = job_labelled_request(&desired, "web-other-1", "other", "False");
    let id = host.engine.create_container(&lookalike).await.unwrap();
    host.engine.start_container(&id).await.unwrap();
    host.engine.clear_calls();

    host.pass(&desired).await.unwrap();

    let calls = host.engine.calls();
    assert!(
        !calls.iter().any(|c| c.contains(&id)),
        "touched a container that is no one-off: {calls:#?}"
    );
}

/// Hands each message body to the test.
struct Captured(std::sync::mpsc::Sender<Vec<u8>>);

impl crate::notify::Deliver for Captured {
    fn deliver(&mut self, body: &[u8]) -> Result<(), crate::notify::DeliveryError> {
        let _ = self.0.send(body.to_vec());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn each_recorded_outcome_is_handed_to_the_notifier_a_failed_update_as_rolled_back() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(3));
    let (bodies, received) = std::sync::mpsc::channel();
    let limits = Limits {
        notifier: crate::notify::Notifier::start(
            "test".into(),
            Captured(bodies),
            16,
            Default::default(),
        ),
        ..Default::default()
    };
    let state_dir = host.state_dir();
    let first = host.desired("web", &web(WEB_V1));
    pass_with(&host.engine, &first, &state_dir, &limits)
        .await
        .unwrap();
    host.engine.publish(WEB_V2, STARTING_FOR_AN_HOUR);
    let second = host.desired("web", &web(WEB_V2));
    pass_with(&host.engine, &second, &state_dir, &limits)
        .await
        .unwrap();

    assert_eq!(limits.notifier.finish(Duration::from_secs(5)), 0);
    let told: Vec<(String, String, String)> = received
        .try_iter()
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or("-").to_string();
            (s("event"), s("action"), s("from"))
        })
        .collect();
    assert_eq!(
        told,
        [
            ("applied".into(), "create".into(), "-".into()),
            ("rolled_back".into(), "update".into(), WEB_V1.into()),
        ]
    );
    assert_eq!(host.journal().len(), 2, "one message per journal entry");
}
