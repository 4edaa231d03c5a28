//! reconciler: converge a Docker Compose host on a desired state kept in git.
//!
//! Functional core, imperative shell:
//! - [`desired`]: Compose files -> validated, normalized desired state (pure, plus file reads);
//! - [`observed`]: what runs, as the engine reports it;
//! - [`plan`]: pure `plan(desired, observed, state) -> Plan`, and its rendering for `diff`;
//! - [`engine`]: the Docker Engine behind a trait (bollard adapter);
//! - [`executor`]: carries out a plan safely (pull first, recreate, wait healthy, restore);
//! - [`state`]: `state.json` and the journal;
//! - [`source`]: a local directory or a git remote (git2), read at one commit;
//! - [`image_retention`]: which local images the clean-up after a pass may remove (pure);
//! - [`outcome`]: what a pass did to each service, and the one sync-status rule;
//! - [`reconciler`]: the controller: one pass (read, observe, plan, apply), its error policy,
//!   and the loop that repeats it on a timer, triggers and a shutdown token;
//! - [`logging`]: every event through `tracing`, as text lines or JSON objects;
//! - [`metrics`]: the Prometheus registry each pass updates, as `/metrics` shows it;
//! - [`server`]: `/healthz`, `/status`, `/metrics`, the git webhook;
//! - [`notify`]: messages to a webhook (`--notify-url`) through a bounded queue.
pub mod cli;
pub mod commands;
pub mod config;
pub mod desired;
pub mod engine;
pub mod executor;
pub mod image_retention;
pub mod label_key;
pub mod labels;
pub mod logging;
pub mod mask;
pub mod metrics;
pub mod notify;
pub mod observed;
pub mod outcome;
pub mod plan;
pub mod reconciler;
pub mod server;
pub mod source;
pub mod state;
