//! One function per command: wire the source, the engine and the state dir to the core, and say
//! what happened. Each returns the process exit code.

use crate::cli::{NotifyArgs, Output, PolicyArgs, SourceArgs};
use crate::config::{policy_from_flags, ApplySettings};
use crate::desired::Desired;
use crate::engine::docker::DockerEngine;
use crate::plan::{plan, PlanOptions};
use crate::reconciler::{
    observe, read_desired, reconcile_once, run_loop, DetailsCache, LoopConfig, PassContext,
    SharedStatus, SourceSettings, Triggers, WarningsSaid,
};
use crate::source::{Credentials, FetchControl, FetchLimits, SourceSpec};
use crate::state::{check_service_name, check_stack_name, LockKind, StateDir};
use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

pub const EXIT_OK: i32 = 0;
pub const EXIT_DRIFT_OR_FAILED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

pub struct Host {
    pub docker_host: Option<String>,
    pub state_dir: StateDir,
}

fn source_settings(
    host: &Host,
    source: &SourceArgs,
    policy: &PolicyArgs,
    fetch: FetchControl,
) -> Result<SourceSettings> {
    Ok(SourceSettings {
        spec: SourceSpec::parse(&source.repo),
        branch: source.branch.clone(),
        rev: source.rev.clone(),
        path: source.path.clone(),
        stacks: source.stacks.clone(),
        credentials: Credentials {
            token: source.git_token.clone(),
            ssh_key: source.ssh_key.clone(),
        },
        allow_non_fast_forward: source.allow_non_fast_forward,
        policy: policy_from_flags(
            &policy.allow,
            &policy.bind_roots,
            &policy.registries,
            host.state_dir.root(),
            host.docker_host.as_deref(),
        )
        .map_err(anyhow::Error::msg)?,
        adopt: policy.adopt.clone(),
        fetch,
    })
}

async fn load_desired(host: &Host, source: &SourceArgs, policy: &PolicyArgs) -> Result<Desired> {
    let settings = source_settings(host, source, policy, FetchControl::default())?;
    Ok(
        read_desired(&settings, &host.state_dir, &WarningsSaid::default())
            .await?
            .0,
    )
}

fn engine(host: &Host) -> Result<DockerEngine> {
    Ok(DockerEngine::connect(host.docker_host.as_deref())?)
}

pub async fn validate(host: &Host, source: &SourceArgs, policy: &PolicyArgs) -> Result<i32> {
    let desired = load_desired(host, source, policy).await?;
    let services: usize = desired.stacks.iter().map(|s| s.services.len()).sum();
    println!(
        "valid: {} stack{}, {} service{}",
        desired.stacks.len(),
        plural(desired.stacks.len()),
        services,
        plural(services)
    );
    Ok(EXIT_OK)
}

pub async fn diff(
    host: &Host,
    source: &SourceArgs,
    policy: &PolicyArgs,
    output: Output,
    prune: bool,
) -> Result<i32> {
    let desired = load_desired(host, source, policy).await?;
    let engine = engine(host)?;
    let observed = observe(&engine, &desired, &DetailsCache::default()).await?;
    let state = host.state_dir.load()?;
    let plan = plan(&desired, &observed, &state, &PlanOptions { prune });
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Output::Text => print!("{plan}"),
    }
    Ok(if plan.has_drift() {
        EXIT_DRIFT_OR_FAILED
    } else {
        EXIT_OK
    })
}

pub async fn apply(
    host: &Host,
    source: &SourceArgs,
    policy: &PolicyArgs,
    settings: &ApplySettings,
    notify: &NotifyArgs,
) -> Result<i32> {
    // Two writers at once would race on containers and state: the second stops here.
    let _lock = host.state_dir.lock(LockKind::Writer)?;
    let source = source_settings(host, source, policy, FetchControl::default())?;
    let engine = engine(host)?;
    let notifier = notifier(notify)?;
    let print_plan = |plan: &crate::plan::Plan| print!("{plan}");
    let ctx = PassContext {
        engine: &engine,
        source: &source,
        state_dir: &host.state_dir,
        settings,
        shutdown: stop_on_signals()?,
        details: DetailsCache::default(),
        warned: WarningsSaid::default(),
        notifier: notifier.clone(),
    };
    let report = reconcile_once(&ctx, &print_plan).await;
    // Messages of what was done go out even when the pass ended in an error (a failed pull).
    finish_notifier(notifier, APPLY_NOTIFY_WAIT).await;
    let report = report?;
    if settings.dry_run {
        println!("dry run: nothing was changed");
        return Ok(EXIT_OK);
    }
    let blocked: Vec<String> = report
        .plan
        .stacks
        .iter()
        .flat_map(|s| s.services.iter().map(move |sv| (s, sv)))
        .filter(|(_, sv)| sv.action == crate::plan::Action::Failed)
        .map(|(s, sv)| format!("{}/{}", s.stack, sv.service))
        .collect();
    let changed = report.changed().count();
    if report.failed().count() == 0 && blocked.is_empty() {
        println!("converged: {changed} service{} changed", plural(changed));
        return Ok(EXIT_OK);
    }
    for f in report.failed() {
        let reason = f.reason().unwrap_or_default();
        match (&f.result, &f.from_image) {
            (crate::outcome::ServiceResult::Skipped { .. }, _) => {
                println!("skipped: {}: {reason}", f.who())
            }
            (_, Some(_)) => println!(
                "failed: {}: {reason}; the last good version keeps running",
                f.who()
            ),
            (_, None) => println!(
                "failed: {}: {reason}; nothing ran before, so nothing runs now",
                f.who()
            ),
        }
    }
    for b in &blocked {
        println!("not retried: {b} failed before at this spec (apply --retry-failed, or `reconciler retry`)");
    }
    Ok(EXIT_DRIFT_OR_FAILED)
}

/// The loop's settings beyond one pass.
pub struct LoopSettings {
    pub interval: std::time::Duration,
    pub listen: Option<std::net::SocketAddr>,
    pub webhook_secret: Option<String>,
    pub limits: crate::cli::LoopLimits,
}

impl LoopSettings {
    /// `--unhealthy-after`, or 3 intervals, at least 5 minutes (a slow fetch is not a stall).
    pub fn unhealthy_after(&self) -> std::time::Duration {
        self.limits
            .unhealthy_after
            .unwrap_or_else(|| (self.interval * 3).max(std::time::Duration::from_secs(300)))
    }
}

/// `run`: pass after pass until SIGTERM/SIGINT (see [`run_loop`]). Here: the lock, the
/// signals, the server and the triggers the loop is handed.
pub async fn run(
    host: &Host,
    source: &SourceArgs,
    policy: &PolicyArgs,
    settings: &ApplySettings,
    looping: &LoopSettings,
    notify: &NotifyArgs,
) -> Result<i32> {
    // Held until exit: keeps other writers out and tells `sync` (via the kernel) who we are.
    let _lock = host.state_dir.lock(LockKind::Loop)?;
    // First: a SIGTERM that arrives while we start must stop us cleanly, not by default action.
    let shutdown = stop_on_signals()?;
    let triggers = Triggers::default();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    {
        let trigger = triggers.asked.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                trigger.notify_one();
            }
        });
    }
    if looping
        .webhook_secret
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        bail!("--webhook-secret is empty: an empty secret would let anyone start passes; set a long random value, or leave the flag out");
    }
    if let Some(addr) = looping.listen {
        if !addr.ip().is_loopback() && looping.webhook_secret.is_none() {
            tracing::warn!("--listen {addr} is reachable from other hosts and no --webhook-secret is set: anyone who reaches it can start passes");
        }
    }
    let fetch = FetchControl {
        limits: FetchLimits {
            idle: looping.limits.fetch_idle_timeout,
            total: looping.limits.fetch_timeout,
        },
        cancel: shutdown.clone(),
        ..Default::default()
    };
    let source = source_settings(host, source, policy, fetch)?;
    let engine = engine(host)?;
    let notifier = notifier(notify)?;
    let status = SharedStatus::default();
    status.lock().expect("status lock").notifications = Some(notifier.counts());
    let heartbeat = crate::reconciler::Heartbeat::new(looping.unhealthy_after());
    std::fs::create_dir_all(host.state_dir.root())?;
    std::fs::write(host.state_dir.pid_file(), std::process::id().to_string())?;
    if let Some(addr) = looping.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("--listen {addr}: {e}"))?;
        let app = crate::server::router(crate::server::ServerState {
            status: status.clone(),
            trigger: triggers.asked.clone(),
            webhook_secret: looping.webhook_secret.clone(),
            heartbeat: heartbeat.clone(),
            unhealthy_after: looping.unhealthy_after(),
            idle_timeout: looping.limits.http_idle_timeout,
            state_dir: std::sync::Arc::new(crate::state::StateDir::new(host.state_dir.root())),
        });
        let limits = crate::server::HttpLimits {
            idle_timeout: looping.limits.http_idle_timeout,
            max_connections: looping.limits.http_max_connections.into(),
        };
        tokio::spawn(crate::server::serve(listener, app, limits));
        tracing::info!("listening on {addr}");
    }
    // Engine events and file changes come in bursts (a stop is several events, an editor several
    // writes): they pass through a short settle delay before starting a pass.
    let settled = std::sync::Arc::new(tokio::sync::Notify::new());
    {
        let (settled, trigger) = (settled.clone(), triggers.changed.clone());
        tokio::spawn(async move {
            loop {
                settled.notified().await;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                trigger.notify_one();
            }
        });
    }
    // A container stopped or removed by hand starts a pass now, not at the next interval; only
    // this loop's stacks: other Compose projects on the host are none of its business.
    let watched: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> =
        Default::default();
    let (on_event, watched_by_events) = (settled.clone(), watched.clone());
    engine.watch_container_events(move |project| {
        if watched_by_events
            .lock()
            .expect("watched lock")
            .contains(project)
        {
            on_event.notify_one();
        }
    });
    let _watch = match &source.spec {
        SourceSpec::Directory(dir) => {
            let on_change = settled.clone();
            Some(
                crate::source::watch_directory(dir, move || on_change.notify_one())
                    .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?,
            )
        }
        SourceSpec::Git { .. } => None,
    };
    tracing::info!(
        "following {} every {}{}",
        source_description(&source),
        humantime::format_duration(looping.interval),
        looping
            .listen
            .map(|a| format!(", serving http://{a}"))
            .unwrap_or_default()
    );
    let ctx = PassContext {
        engine: &engine,
        source: &source,
        state_dir: &host.state_dir,
        settings,
        shutdown,
        details: DetailsCache::default(),
        warned: WarningsSaid::default(),
        notifier: notifier.clone(),
    };
    let config = LoopConfig {
        interval: looping.interval,
        unhealthy_after: looping.unhealthy_after(),
    };
    let suspensions = crate::notify::SuspensionWatch::default();
    run_loop(&ctx, &config, &triggers, &status, &heartbeat, |report| {
        *watched.lock().expect("watched lock") =
            report.plan.stacks.iter().map(|s| s.stack.clone()).collect();
        let (suspended, resumed) = suspensions.changes(&report.suspended);
        for stack in suspended {
            notifier.stack(&stack, true);
        }
        for stack in resumed {
            notifier.stack(&stack, false);
        }
    })
    .await;
    finish_notifier(notifier, RUN_NOTIFY_WAIT).await;
    let _ = std::fs::remove_file(host.state_dir.pid_file());
    tracing::info!("stopped");
    Ok(EXIT_OK)
}

/// How long `apply` waits at exit for its notifications to go.
const APPLY_NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `run` waits at shutdown for its notifications (the unit allows 120 s to stop).
const RUN_NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The notification queue `--notify-url` asks for, or none.
fn notifier(notify: &NotifyArgs) -> Result<crate::notify::Notifier> {
    let Some(url) = notify.notify_url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(crate::notify::Notifier::off());
    };
    let notifier = crate::notify::Notifier::to_url(url)?;
    if let Some(shown) = notifier.shown() {
        tracing::info!("notifications go to {shown}");
    }
    Ok(notifier)
}

/// Give queued notifications at most `within` to go, off the runtime's threads.
async fn finish_notifier(notifier: crate::notify::Notifier, within: std::time::Duration) {
    let _ = tokio::task::spawn_blocking(move || notifier.finish(within)).await;
}

/// A token cancelled at the first SIGTERM or SIGINT. Installed before anything else, so a
/// signal during start-up stops us cleanly instead of by the default action.
fn stop_on_signals() -> Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        cancel.cancel();
    });
    Ok(token)
}

fn source_description(source: &SourceSettings) -> String {
    match &source.spec {
        SourceSpec::Directory(dir) => format!("{} (watched)", dir.display()),
        SourceSpec::Git { url } => {
            format!("{} branch {}", crate::mask::redact_url(url), source.branch)
        }
    }
}

/// Signal the running loop (`sync`, and after `retry`/`suspend`/`resume`): only the process
/// the kernel says holds the loop's lock, never a pid read from a file that may be stale.
fn poke_loop(host: &Host) -> Result<bool> {
    let Some(pid) = host.state_dir.loop_holder()? else {
        return Ok(false);
    };
    // SAFETY: kill has no memory preconditions.
    Ok(unsafe { libc::kill(pid, libc::SIGHUP) } == 0)
}

pub fn sync(host: &Host) -> Result<i32> {
    if poke_loop(host)? {
        println!("sync requested");
        Ok(EXIT_OK)
    } else {
        bail!(
            "no running `reconciler run` found for {}",
            host.state_dir.root().display()
        )
    }
}

pub fn retry(host: &Host, stack: &str, service: &str) -> Result<i32> {
    // Names become file names: checked before any path is built.
    check_stack_name(stack)?;
    check_service_name(service)?;
    let state = host.state_dir.load()?;
    let Some(recorded) = state
        .stacks
        .get(stack)
        .and_then(|s| s.services.get(service))
    else {
        anyhow::bail!(
            "nothing is recorded for {stack}/{service} in {}: check the names (`reconciler status` lists them) and the state dir (--state-dir, RECONCILER_STATE_DIR)",
            host.state_dir.root().display()
        );
    };
    if recorded.failed.is_none() {
        println!("{stack}/{service} has no failed release to try again");
        return Ok(EXIT_OK);
    }
    host.state_dir.request_retry(stack, service)?;
    let running = poke_loop(host)?;
    println!(
        "{stack}/{service} will be tried again on the {} pass",
        if running {
            "next"
        } else {
            "next `run` or `apply`"
        }
    );
    Ok(EXIT_OK)
}

pub fn suspend(host: &Host, stack: &str, suspended: bool) -> Result<i32> {
    check_stack_name(stack)?;
    // A stack may be suspended before its first pass, so an unknown name is allowed, but said:
    // it is more often a typo.
    let known = host.state_dir.load()?.stacks.contains_key(stack);
    let was_suspended = host.state_dir.suspended().iter().any(|s| s == stack);
    let resuming_a_suspended_one = was_suspended && !suspended;
    if !known && !resuming_a_suspended_one {
        tracing::warn!(
            "no stack {stack} is recorded in the state dir {}: check the name (`reconciler status` lists them)",
            host.state_dir.root().display()
        );
    }
    if !suspended && !was_suspended {
        println!("{stack} was not suspended");
        return Ok(EXIT_OK);
    }
    host.state_dir.suspend(stack, suspended)?;
    poke_loop(host)?;
    println!(
        "{stack}: {}",
        if suspended {
            "suspended; the loop leaves it alone until `reconciler resume`"
        } else {
            "resumed"
        }
    );
    Ok(EXIT_OK)
}

pub async fn status(host: &Host, output: Output) -> Result<i32> {
    let state = host.state_dir.load()?;
    if state.stacks.is_empty() {
        say_nothing_recorded(host, "no stack");
    }
    let engine = engine(host)?;
    let projects: Vec<String> = state.stacks.keys().cloned().collect();
    let observed = crate::observed::Observed {
        containers: if projects.is_empty() {
            vec![]
        } else {
            crate::engine::Engine::list_containers(&engine, &projects).await?
        },
        ..Default::default()
    };
    let suspended = host.state_dir.suspended();
    let activities = host.state_dir.activities();
    let mut rows = Vec::new();
    let mut replicated = false;
    for (stack, st) in &state.stacks {
        for (service, sv) in &st.services {
            let replicas = observed.replicas(stack, service);
            let summary = crate::observed::ReplicaSummary::of(&replicas);
            let wanted = sv.desired_replicas.unwrap_or(1);
            replicated |= wanted != 1 || summary.count > 1;
            rows.push(serde_json::json!({
                "stack": stack,
                "service": service,
                "desired_image": sv.desired_image,
                // Two images while a failed rollout left replicas on the old one.
                "running_image": (!summary.images.is_empty()).then(|| summary.images.join(", ")),
                "state": summary.state.clone().unwrap_or_else(|| "missing".into()),
                "health": (summary.count > 0).then_some(summary.health),
                "replicas": format!("{}/{wanted}", summary.running),
                "sync": crate::outcome::sync_status(
                    suspended.contains(stack),
                    sv.failed.is_some(),
                    sv.desired_image.as_deref(),
                    summary.sync_image(wanted, sv.desired_image.as_deref()),
                ),
                "revision": sv.running_revision,
                "since": sv.since,
                "last_error": sv.failed.as_ref().map(|f| f.reason.clone()),
                // A backup, a migration job, a watch window or a restore in progress.
                "activity": activities
                    .iter()
                    .find(|a| a.stack == *stack && a.service == *service)
                    .map(|a| a.activity.clone()),
            }));
        }
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(EXIT_OK);
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::Object(_) => {
            serde_json::from_value::<crate::state::runbook::Activity>(v.clone())
                .map_or_else(|_| v.to_string(), |a| a.summary())
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string().trim_matches('"').to_string(),
    };
    // A host of one-container services sees the table it always has.
    let columns: Vec<&str> = [
        "stack",
        "service",
        "desired_image",
        "running_image",
        "state",
        "health",
        "replicas",
        "sync",
        "revision",
        "since",
        "activity",
        "last_error",
    ]
    .into_iter()
    .filter(|c| replicated || *c != "replicas")
    .filter(|c| !activities.is_empty() || *c != "activity")
    .collect();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let header: Vec<String> = columns
        .iter()
        .map(|c| c.to_uppercase().replace('_', " "))
        .collect();
    print_table(&header, &table);
    let last_backups = host.state_dir.last_backups();
    if !last_backups.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = last_backups
            .iter()
            .map(|b| {
                vec![
                    b.stack.clone(),
                    b.volume.clone(),
                    b.time.clone(),
                    b.name.clone(),
                ]
            })
            .collect();
        print_table(
            &["STACK", "VOLUME", "LAST BACKUP", "NAME"].map(String::from),
            &rows,
        );
    }
    Ok(EXIT_OK)
}

pub fn backups(host: &Host, stack: Option<&str>, output: Output) -> Result<i32> {
    if let Some(stack) = stack {
        check_stack_name(stack)?;
    }
    let backups = host.state_dir.backups(stack);
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&backups)?);
        return Ok(EXIT_OK);
    }
    if backups.is_empty() {
        println!("no backups in {}", host.state_dir.backups_dir().display());
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            vec![
                b.stack.clone(),
                b.volume.clone(),
                b.time.clone(),
                b.size.to_string(),
                b.name.clone(),
                b.file.display().to_string(),
            ]
        })
        .collect();
    print_table(
        &["STACK", "VOLUME", "TIME", "SIZE", "BACKUP", "FILE"].map(String::from),
        &rows,
    );
    Ok(EXIT_OK)
}

pub async fn restore(
    host: &Host,
    stack: &str,
    volume: &str,
    backup: Option<&str>,
    timeout: std::time::Duration,
) -> Result<i32> {
    use crate::executor::restore::{restore, RestoreRequest, Restored};
    use tokio::signal::unix::{signal, SignalKind};
    check_stack_name(stack)?;
    // A volume key follows Compose's rule (`Db.data` is one), not a stack's: one that can be
    // backed up must be restorable.
    crate::state::check_volume_key(volume)?;
    let engine = engine(host)?;
    let request = RestoreRequest {
        stack,
        volume,
        backup,
        timeout,
    };
    // Killed in the middle, it would leave the stack suspended, its containers stopped and the
    // volume half written: a signal is noted and the restore ends by itself (or puts back what
    // the volume held), then resumes the stack.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let work = restore(&engine, &host.state_dir, &request);
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("restore of {stack}/{volume} goes on until it ends, then resumes the stack; it is not stopped half done");
    };
    match result {
        Ok(Restored::Healthy { backup, saved }) => {
            println!(
                "{stack}/{volume}: restored from {} and healthy; what it held before is in {}",
                backup.name,
                saved.display()
            );
            Ok(EXIT_OK)
        }
        Ok(Restored::NotHealthy {
            backup,
            saved,
            reason,
        }) => {
            println!(
                "{stack}/{volume}: restored from {} but not healthy: {reason}; what it held before is in {}",
                backup.name,
                saved.display()
            );
            Ok(EXIT_DRIFT_OR_FAILED)
        }
        Err(e) => bail!("restore of {stack}/{volume}: {e}"),
    }
}

pub fn history(
    host: &Host,
    stack: Option<&str>,
    service: Option<&str>,
    output: Output,
) -> Result<i32> {
    let journal = host.state_dir.read_journal()?;
    if journal.skipped > 0 {
        tracing::warn!(
            "skipped {} line{} of {} that {} not a journal entry (torn by a crash, or damaged)",
            journal.skipped,
            plural(journal.skipped),
            host.state_dir.journal_path().display(),
            if journal.skipped == 1 { "is" } else { "are" }
        );
    }
    let mut entries = journal.entries;
    if entries.is_empty() {
        say_nothing_recorded(host, "no change");
    }
    let recorded_any = !entries.is_empty();
    entries
        .retain(|e| stack.is_none_or(|s| e.stack == s) && service.is_none_or(|s| e.service == s));
    if recorded_any && entries.is_empty() {
        let who = match (stack, service) {
            (Some(st), Some(sv)) => format!("{st}/{sv}"),
            (Some(st), None) => format!("stack {st}"),
            (None, Some(sv)) => format!("a service named {sv}"),
            (None, None) => String::new(),
        };
        tracing::warn!(
            "no change of {who} is recorded in the state dir {}: check the names (`reconciler status` lists them)",
            host.state_dir.root().display()
        );
    }
    entries.reverse();
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                format!("{}/{}", e.stack, e.service),
                e.action.as_str().to_string(),
                e.revision.chars().take(12).collect(),
                format!(
                    "{} -> {}",
                    e.from.as_deref().unwrap_or("-"),
                    e.to.as_deref().unwrap_or("-")
                ),
                e.result.as_str().to_string(),
                e.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "AT", "SERVICE", "ACTION", "REVISION", "IMAGE", "RESULT", "REASON",
        ]
        .map(String::from),
        &rows,
    );
    Ok(EXIT_OK)
}

fn print_table(header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header));
    for row in rows {
        println!("{}", line(row));
    }
}

/// A pull that failed for the release's own sake (missing tag, refused access) is a failed
/// service, exit 1; everything else (engine or registry down, bad input) is an error, exit 2.
/// An empty state dir is most often the wrong one: say which was read (on stderr, so the output
/// stays what scripts parse).
fn say_nothing_recorded(host: &Host, what: &str) {
    eprintln!(
        "{what} is recorded in the state dir {}: nothing has been applied with it yet. `apply` and `run` fill it; another one is chosen with --state-dir or RECONCILER_STATE_DIR",
        host.state_dir.root().display()
    );
}

pub fn exit_code_of(error: &anyhow::Error) -> i32 {
    use crate::executor::ExecError;
    use crate::reconciler::PassError;
    let pull = match (
        error.downcast_ref::<PassError>(),
        error.downcast_ref::<ExecError>(),
    ) {
        (Some(PassError::Exec(ExecError::Pull { source, .. })), _) => Some(source),
        (_, Some(ExecError::Pull { source, .. })) => Some(source),
        _ => None,
    };
    match pull {
        Some(source) if !source.is_transient() => EXIT_DRIFT_OR_FAILED,
        _ => EXIT_ERROR,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    fn looping(args: &[&str]) -> LoopSettings {
        let mut argv = vec!["reconciler", "run", "--repo", "x"];
        argv.extend_from_slice(args);
        let crate::cli::Command::Run {
            interval, limits, ..
        } = crate::cli::Cli::parse_from(argv).command
        else {
            unreachable!()
        };
        LoopSettings {
            interval,
            listen: None,
            webhook_secret: None,
            limits,
        }
    }

    #[test]
    fn unhealthy_after_defaults_to_three_intervals_and_at_least_five_minutes() {
        assert_eq!(looping(&[]).unhealthy_after(), Duration::from_secs(300));
        assert_eq!(
            looping(&["--interval", "10m"]).unhealthy_after(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            looping(&["--unhealthy-after", "20s"]).unhealthy_after(),
            Duration::from_secs(20)
        );
        let limits = looping(&[]).limits;
        assert_eq!(limits.fetch_idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.fetch_timeout, Duration::from_secs(600));
        assert_eq!(limits.http_idle_timeout, Duration::from_secs(30));
        assert_eq!(limits.http_max_connections, 64);
    }
}
