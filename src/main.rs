//! `reconciler`: parse the command line, set up logging, dispatch, map the outcome to an exit code.

use clap::Parser;
use reconciler::cli::{Cli, Command, LogFormat};
use reconciler::commands::{self, Host};
use reconciler::config::{default_state_dir, ApplySettings};
use reconciler::state::StateDir;

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli);
    let host = Host {
        docker_host: cli.docker_host.clone(),
        state_dir: StateDir::new(cli.state_dir.clone().unwrap_or_else(default_state_dir)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Validate { source, policy } => commands::validate(&host, source, policy).await,
            Command::Diff {
                source,
                policy,
                output,
                prune,
            } => commands::diff(&host, source, policy, *output, *prune).await,
            Command::Apply {
                source,
                policy,
                dry_run,
                prune,
                retry_failed,
                min_free_disk,
                parallel,
                images,
                notify,
            } => {
                let settings = ApplySettings {
                    dry_run: *dry_run,
                    prune: *prune,
                    min_free_disk: *min_free_disk,
                    retry_failed: *retry_failed,
                    self_heal: true,
                    parallel_stacks: parallel.parallel_stacks.into(),
                    parallel_services: parallel.parallel_services.into(),
                    keep_images: images.keep_images.into(),
                };
                commands::apply(&host, source, policy, &settings, notify).await
            }
            Command::Run {
                source,
                policy,
                interval,
                listen,
                webhook_secret,
                limits,
                prune,
                min_free_disk,
                no_self_heal,
                parallel,
                images,
                notify,
            } => {
                let settings = ApplySettings {
                    dry_run: false,
                    prune: *prune,
                    min_free_disk: *min_free_disk,
                    retry_failed: false,
                    self_heal: !*no_self_heal,
                    parallel_stacks: parallel.parallel_stacks.into(),
                    parallel_services: parallel.parallel_services.into(),
                    keep_images: images.keep_images.into(),
                };
                let looping = commands::LoopSettings {
                    interval: *interval,
                    listen: *listen,
                    webhook_secret: webhook_secret.clone(),
                    limits: limits.clone(),
                };
                commands::run(&host, source, policy, &settings, &looping, notify).await
            }
            Command::Sync => commands::sync(&host),
            Command::Retry { stack, service } => commands::retry(&host, stack, service),
            Command::Suspend { stack } => commands::suspend(&host, stack, true),
            Command::Resume { stack } => commands::suspend(&host, stack, false),
            Command::Status { output } => commands::status(&host, *output).await,
            Command::Backups { stack, output } => {
                commands::backups(&host, stack.as_deref(), *output)
            }
            Command::Restore {
                stack,
                volume,
                backup,
                timeout,
            } => commands::restore(&host, stack, volume, backup.as_deref(), *timeout).await,
            Command::History {
                stack,
                service,
                output,
            } => commands::history(&host, stack.as_deref(), service.as_deref(), *output),
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            // Our errors often embed their source already; print only what adds something.
            let top = e.to_string();
            let mut message = top.clone();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !top.contains(&cause) {
                    message.push_str(&format!("\n  caused by: {cause}"));
                }
            }
            tracing::error!("{message}");
            commands::exit_code_of(&e)
        }
    };
    std::process::exit(code);
}

fn init_tracing(cli: &Cli) {
    // Progress is info: shown unless -q; -v adds the engine's and git's details.
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "info",
        _ => "debug",
    };
    reconciler::logging::init(level, cli.log_format == LogFormat::Json);
}
