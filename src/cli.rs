//! Command-line definitions. Raw flags only; `main` turns them into settings once.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "reconciler",
    version,
    about = "Converge Docker Compose hosts on a desired state kept in git"
)]
pub struct Cli {
    /// Docker Engine endpoint (unix:///var/run/docker.sock, tcp://host:2375).
    #[arg(long, global = true, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Where state, journal and host-local env files live [default: /var/lib/reconciler as root].
    #[arg(long, global = true, env = "RECONCILER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// More detail (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// Desired-state source: a local directory (read as it is) or a git URL.
    #[arg(long, env = "RECONCILER_REPO")]
    pub repo: String,
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// A revision to read instead of the branch tip (git sources).
    #[arg(long)]
    pub rev: Option<String>,
    /// Subfolder of the source that holds the stacks.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Only this stack (repeatable).
    #[arg(long = "stack")]
    pub stacks: Vec<String>,
    /// Token for https remotes (sent as the password).
    #[arg(long, env = "RECONCILER_GIT_TOKEN", hide_env_values = true)]
    pub git_token: Option<String>,
    /// Private key for ssh remotes; without it the ssh agent is asked.
    #[arg(long, env = "RECONCILER_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
    /// Follow the branch even when its history was rewritten (force-push).
    #[arg(long)]
    pub allow_non_fast_forward: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PolicyArgs {
    /// Loosen host policy (comma list, repeatable): privileged, host-namespaces,
    /// container-namespaces, docker-socket, system-binds, state-dir, capabilities, cap:<NAME>,
    /// devices, device:<PATH>, gpus, security-opt, runtime:<NAME>, cgroup-parent,
    /// oom-protection.
    #[arg(long)]
    pub allow: Vec<String>,
    /// Absolute bind sources must lie under one of these (repeatable).
    #[arg(long = "bind-root")]
    pub bind_roots: Vec<PathBuf>,
    /// Images must come from one of these registries, host[:port] (repeatable).
    #[arg(long = "allowed-registry")]
    pub registries: Vec<String>,
    /// Take over this Compose project's containers, which the reconciler did not create
    /// (repeatable). Without it, a stack that names a project already running on the host
    /// touches nothing; once taken over, the project is the reconciler's.
    #[arg(long = "adopt")]
    pub adopt: Vec<String>,
}

/// Where `apply` and `run` tell of releases.
#[derive(Debug, Args, Clone, Default)]
pub struct NotifyArgs {
    /// POST a JSON message (Slack-compatible `text`, plus event, stack, service, revision,
    /// from, to, reason, host, at) to this http:// or https:// URL when a release is applied,
    /// fails or is rolled back, or a stack is suspended. Only its scheme and host are ever
    /// shown.
    #[arg(long, env = "RECONCILER_NOTIFY_URL", hide_env_values = true)]
    pub notify_url: Option<String>,
}

/// Bounds that keep `run` responsive whatever the remote or the network clients do.
#[derive(Debug, Args, Clone)]
pub struct LoopLimits {
    /// /healthz answers 503 when no pass has completed for this long past when one was due
    /// (after the interval or retry backoff) [default: 3 x --interval, at least 5m].
    #[arg(long, value_parser = parse_duration)]
    pub unhealthy_after: Option<std::time::Duration>,
    /// A git fetch gives up when connecting, or any single read, takes longer than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub fetch_idle_timeout: std::time::Duration,
    /// A git fetch gives up when it takes longer than this in all.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub fetch_timeout: std::time::Duration,
    /// An HTTP connection on --listen is closed when a request head does not arrive within
    /// this (also between keep-alive requests), as is a webhook body that is slower; no
    /// connection lives longer than 4 times this, however it is used.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub http_idle_timeout: std::time::Duration,
    /// HTTP connections served at once on --listen; more wait until one closes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub http_max_connections: u16,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, interpolate and check policy; no Docker needed. Exit 0 valid, 2 invalid.
    Validate {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Compare desired with running. Exit 0 in sync, 1 drift, 2 error.
    Diff {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
        /// Show services that left the desired state as removals.
        #[arg(long)]
        prune: bool,
    },
    /// Converge once. Exit 0 converged, 1 a service failed and was restored, 2 error.
    Apply {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print the plan and touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove managed services that left the desired state (never their volumes).
        #[arg(long)]
        prune: bool,
        /// Try again services whose current spec failed before.
        #[arg(long)]
        retry_failed: bool,
        /// Refuse to update a stack (pull, create) with less free disk than this on the
        /// engine's data root (DockerRootDir), where images and containers are kept.
        #[arg(long, default_value = "512MiB", value_parser = parse_size)]
        min_free_disk: u64,
        #[command(flatten)]
        parallel: Parallelism,
        #[command(flatten)]
        images: ImageCleanup,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// The loop: fetch, plan, apply, repeat, until SIGTERM/SIGINT. SIGHUP (or `reconciler sync`)
    /// starts a pass at once.
    Run {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Time between passes (spread by ±10%).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        interval: std::time::Duration,
        /// Serve /healthz, /status, /metrics and POST /hooks/git on this address. Without
        /// --webhook-secret anyone who reaches it can start passes: keep it on loopback.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Shared secret the webhook must be signed with (GitHub/Gitea HMAC, GitLab token);
        /// must not be empty. Hooks coalesce: a burst starts one pass now and at most one after
        /// it, and passes they start are at least 1 s apart.
        #[arg(long, env = "RECONCILER_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        #[command(flatten)]
        limits: LoopLimits,
        #[arg(long)]
        prune: bool,
        /// As for `apply`: the least free disk on the engine's data root to update a stack.
        #[arg(long, default_value = "512MiB", value_parser = parse_size)]
        min_free_disk: u64,
        /// Report managed containers stopped or removed by hand instead of bringing them back.
        #[arg(long)]
        no_self_heal: bool,
        #[command(flatten)]
        parallel: Parallelism,
        #[command(flatten)]
        images: ImageCleanup,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// Make the running loop start a pass now.
    Sync,
    /// Try a failed service again on the next pass.
    Retry { stack: String, service: String },
    /// Pause the loop for one stack (incident work by hand).
    Suspend { stack: String },
    /// Resume the loop for a suspended stack.
    Resume { stack: String },
    /// Per service: stack, image, state, health, revision, since, last error. From the state
    /// dir and the engine; no --repo needed.
    Status {
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Volume backups in the state dir: stack, volume, time, size, file. No --repo needed.
    Backups {
        stack: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Put a volume back as a backup had it (default: the newest taken before an update),
    /// saving what it holds first. Exit 0 restored and healthy, 1 restored but not healthy,
    /// 2 error.
    Restore {
        stack: String,
        volume: String,
        /// A backup's name as `reconciler backups` lists it.
        backup: Option<String>,
        /// How long to wait for a pass on the stack to end, and for health once started.
        #[arg(long, default_value = "2m", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// The journal, newest first.
    History {
        #[arg(long)]
        stack: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// What is done with old images after a pass.
#[derive(Debug, Args, Clone, Copy)]
pub struct ImageCleanup {
    /// After a pass that changed a service, remove the images the reconciler ran that no
    /// container uses, keeping the last N good images of each service (the running one
    /// included) so a revert needs no pull; 0 keeps every image.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub keep_images: u16,
}

/// How much of a pass runs at once. Each service keeps its own safety (pull first, health
/// wait, restore) whatever runs beside it.
#[derive(Debug, Args, Clone, Copy)]
pub struct Parallelism {
    /// Stacks converged at once: a slow or failing stack never delays the others.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel_stacks: u16,
    /// Services of one stack updated at once, each as soon as what it depends on is done.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel_services: u16,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::desired::compose::parse_duration(s)
        .ok_or_else(|| format!("'{s}' is not a duration (e.g. 30s, 1m)"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    crate::desired::compose::parse_bytes(t)
        .map(|b| b as u64)
        .ok_or_else(|| format!("'{s}' is not a size (e.g. 512MiB, 2GiB)"))
}
