//! One function per command: wire the source, the engine and the state dir to the core, and say
//! what happened. Each returns the process exit code (DESIGN 4).

use crate::cli::{Output, PolicyArgs, SourceArgs};
use crate::config::{policy_from_flags, ApplySettings};
use crate::desired::load::{load, LoadOptions};
use crate::desired::Desired;
use crate::engine::docker::DockerEngine;
use crate::executor::Executor;
use crate::observed::observe;
use crate::plan::{plan, PlanOptions};
use crate::state::StateDir;
use anyhow::{bail, Result};
use std::path::PathBuf;

pub const EXIT_OK: i32 = 0;
pub const EXIT_DRIFT_OR_FAILED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

pub struct Host {
    pub docker_host: Option<String>,
    pub state_dir: StateDir,
}

/// The folder of stacks a source names. Git sources arrive with the loop (`run`).
fn source_dir(source: &SourceArgs) -> Result<PathBuf> {
    let looks_remote =
        source.repo.contains("://") || (source.repo.contains('@') && source.repo.contains(':'));
    if looks_remote {
        bail!("--repo {}: git sources are not supported by this build yet; pass a local directory (a checkout works)", source.repo);
    }
    if source.rev.is_some() {
        bail!(
            "--rev needs a git source; {} is a plain directory, read as it is",
            source.repo
        );
    }
    let mut dir = PathBuf::from(&source.repo);
    if let Some(sub) = &source.path {
        dir = dir.join(sub);
    }
    if !dir.is_dir() {
        bail!("--repo {}: no such directory", dir.display());
    }
    Ok(dir)
}

fn load_desired(host: &Host, source: &SourceArgs, policy: &PolicyArgs) -> Result<Desired> {
    let dir = source_dir(source)?;
    let policy = policy_from_flags(&policy.allow, &policy.bind_roots, &policy.registries)
        .map_err(anyhow::Error::msg)?;
    let options = LoadOptions {
        stacks: source.stacks.clone(),
        host_env_dir: Some(host.state_dir.env_dir()),
        policy,
        revision: None,
    };
    Ok(load(&dir, &options)?)
}

fn engine(host: &Host) -> Result<DockerEngine> {
    Ok(DockerEngine::connect(host.docker_host.as_deref())?)
}

pub fn validate(host: &Host, source: &SourceArgs, policy: &PolicyArgs) -> Result<i32> {
    let desired = load_desired(host, source, policy)?;
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
    let desired = load_desired(host, source, policy)?;
    let engine = engine(host)?;
    let observed = observe(&engine, &desired).await?;
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
) -> Result<i32> {
    let desired = load_desired(host, source, policy)?;
    let engine = engine(host)?;
    let mut state = host.state_dir.load()?;
    let executor = Executor {
        engine: &engine,
        state_dir: &host.state_dir,
        settings,
    };
    let mut observed = observe(&engine, &desired).await?;
    if !settings.dry_run && executor.recover(&observed).await? {
        observed = observe(&engine, &desired).await?;
    }
    if settings.retry_failed {
        for stack in &desired.stacks {
            if let Some(st) = state.stacks.get_mut(&stack.name) {
                st.services.values_mut().for_each(|s| s.failed = None);
            }
        }
    }
    let plan = plan(
        &desired,
        &observed,
        &state,
        &PlanOptions {
            prune: settings.prune,
        },
    );
    print!("{plan}");
    if settings.dry_run {
        println!("dry run: nothing was changed");
        return Ok(EXIT_OK);
    }
    let outcome = executor
        .apply(&desired, &observed, &plan, &mut state)
        .await?;
    host.state_dir.save(&state)?;
    let blocked: Vec<_> = plan
        .stacks
        .iter()
        .flat_map(|s| s.services.iter().map(move |sv| (s, sv)))
        .filter(|(_, sv)| sv.action == crate::plan::Action::Failed)
        .map(|(s, sv)| format!("{}/{}", s.stack, sv.service))
        .collect();
    if outcome.failed.is_empty() && blocked.is_empty() {
        println!(
            "converged: {} service{} changed",
            outcome.changed.len(),
            plural(outcome.changed.len())
        );
        return Ok(EXIT_OK);
    }
    for f in &outcome.failed {
        println!("failed: {f}; the last good version keeps running");
    }
    for b in &blocked {
        println!("not retried: {b} failed before at this spec (apply --retry-failed to try again)");
    }
    Ok(EXIT_DRIFT_OR_FAILED)
}

pub async fn status(host: &Host, output: Output) -> Result<i32> {
    let state = host.state_dir.load()?;
    let engine = engine(host)?;
    let projects: Vec<String> = state.stacks.keys().cloned().collect();
    let containers = if projects.is_empty() {
        vec![]
    } else {
        crate::engine::Engine::list_containers(&engine, &projects).await?
    };
    let mut rows = Vec::new();
    for (stack, st) in &state.stacks {
        for (service, sv) in &st.services {
            let c = containers.iter().find(|c| {
                &c.project == stack
                    && &c.service == service
                    && c.role() == crate::observed::Role::Primary
            });
            rows.push(serde_json::json!({
                "stack": stack,
                "service": service,
                "running_image": c.map(|c| c.image.clone()),
                "state": c.map(|c| c.state.clone()).unwrap_or_else(|| "missing".into()),
                "health": c.map(|c| c.health),
                "sync": if sv.failed.is_some() { "Failed" } else if c.is_some_and(|c| c.revision() == st.last_applied.as_deref()) { "Synced" } else { "OutOfSync" },
                "revision": sv.running_revision,
                "since": sv.since,
                "last_error": sv.failed.as_ref().map(|f| f.reason.clone()),
            }));
        }
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(EXIT_OK);
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string().trim_matches('"').to_string(),
    };
    let columns = [
        "stack",
        "service",
        "running_image",
        "state",
        "health",
        "sync",
        "revision",
        "since",
        "last_error",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    print_table(&columns.map(|c| c.to_uppercase().replace('_', " ")), &table);
    Ok(EXIT_OK)
}

pub fn history(
    host: &Host,
    stack: Option<&str>,
    service: Option<&str>,
    output: Output,
) -> Result<i32> {
    let mut entries = host.state_dir.journal()?;
    entries
        .retain(|e| stack.is_none_or(|s| e.stack == s) && service.is_none_or(|s| e.service == s));
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
                e.action.clone(),
                e.revision.chars().take(12).collect(),
                format!(
                    "{} -> {}",
                    e.from.as_deref().unwrap_or("-"),
                    e.to.as_deref().unwrap_or("-")
                ),
                e.result.clone(),
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
pub fn exit_code_of(error: &anyhow::Error) -> i32 {
    match error.downcast_ref::<crate::executor::ExecError>() {
        Some(crate::executor::ExecError::Pull { source, .. }) if !source.is_transient() => {
            EXIT_DRIFT_OR_FAILED
        }
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
