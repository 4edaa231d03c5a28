//! A service's `pre_deploy` job (a migration): once per (revision, service), in a one-off
//! container of the new image with the service's environment, networks and volumes, while the
//! old container keeps serving. Exit 0 lets the update go on; anything else fails the release
//! before anything of the service was touched. The container is removed in every path; one a
//! crash left is removed by the next pass's recovery.

use super::readiness::POLL;
use super::service::{scrubbed, Rejected};
use super::{ExecError, Executor};
use crate::desired::{ContainerSpec, HealthSpec, PreDeploy, Service, Stack};
use crate::engine::{CreateRequest, Engine};
use crate::labels;
use crate::logging::Who;
use crate::plan::Action;
use crate::state::jobs::{JobRecord, JobResult};
use crate::state::now_rfc3339;
use crate::state::runbook::{Activity, ActivityKind, RunbookCounter};
use std::time::Duration;
use tokio::time::Instant;

/// How often a job that is still running says so.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// What the update does after the job step.
#[derive(Debug)]
pub(super) enum JobVerdict {
    /// No job, it succeeded now, or it succeeded before for this revision: go on.
    Go,
    /// The release fails here; the old container was never touched.
    Failed(Rejected),
    /// Shutdown stopped the job: nothing of the service changed, the next run runs it again.
    Stopped(String),
}

/// How one run of the job ended.
enum JobEnd {
    Succeeded,
    Failed(Rejected),
    Stopped,
}

impl<E: Engine> Executor<'_, E> {
    /// Run the service's `pre_deploy` job when this action needs it (a create or an update:
    /// a first deploy needs its schema too) and it has not run for this revision yet.
    pub(super) async fn run_pre_deploy(
        &self,
        stack: &Stack,
        service: &Service,
        action: Action,
    ) -> Result<JobVerdict, ExecError> {
        let Some(job) = &service.pre_deploy else {
            return Ok(JobVerdict::Go);
        };
        if !matches!(action, Action::Create | Action::Update) {
            return Ok(JobVerdict::Go);
        }
        let who = Who::of(stack, &service.name);
        let (stack_name, revision) = (&stack.name, &stack.revision);
        match self
            .state_dir
            .job_record(stack_name, &service.name, revision)
        {
            Some(r) if r.result == JobResult::Ok => {
                crate::progress!(
                    who,
                    "pre_deploy job already succeeded for revision {revision}; not run again"
                );
                return Ok(JobVerdict::Go);
            }
            Some(r) => {
                let reason = format!(
                    "pre_deploy job failed for this revision ({}); `reconciler retry {stack_name} {}` runs it again",
                    r.reason.as_deref().unwrap_or("no reason recorded"),
                    service.name
                );
                return Ok(JobVerdict::Failed(Rejected::new(reason, vec![])));
            }
            None => {}
        }
        let detail = scrubbed(service, &job.command[0]);
        crate::progress!(
            who,
            "running pre_deploy job {detail} (at most {}); the old container keeps serving",
            humantime::format_duration(job.timeout)
        );
        let activity = Activity::now(ActivityKind::Migrating, detail);
        if let Err(e) = self
            .state_dir
            .set_activity(stack_name, &service.name, Some(&activity))
        {
            tracing::warn!(stack = %who.stack, service = %who.service, "cannot show the job in status: {e}");
        }
        let ended = self.run_job(&who, stack, service, job, action).await;
        if let Err(e) = self.state_dir.set_activity(stack_name, &service.name, None) {
            tracing::warn!(stack = %who.stack, service = %who.service, "cannot clear the job from status: {e}");
        }
        let (result, reason, verdict) = match ended? {
            JobEnd::Stopped => {
                crate::progress!(
                    who,
                    "pre_deploy job stopped at shutdown; the next run runs it again"
                );
                return Ok(JobVerdict::Stopped(
                    "stopped at shutdown while its pre_deploy job ran; the next run runs it again"
                        .into(),
                ));
            }
            JobEnd::Succeeded => {
                crate::progress!(who, "pre_deploy job succeeded");
                (JobResult::Ok, None, JobVerdict::Go)
            }
            JobEnd::Failed(rejected) => (
                JobResult::Failed,
                Some(scrubbed(service, &rejected.reason)),
                JobVerdict::Failed(rejected),
            ),
        };
        // Recorded before the switch: a crash after this point does not run the job again.
        let record = JobRecord {
            revision: revision.clone(),
            result,
            at: now_rfc3339(),
            reason,
        };
        self.state_dir
            .record_job(stack_name, &service.name, record)?;
        self.state_dir.count(match result {
            JobResult::Ok => RunbookCounter::JobOk,
            JobResult::Failed => RunbookCounter::JobFailed,
        });
        Ok(verdict)
    }

    /// Create, start and wait for the job's container, then remove it whatever happened.
    async fn run_job(
        &self,
        who: &Who,
        stack: &Stack,
        service: &Service,
        job: &PreDeploy,
        action: Action,
    ) -> Result<JobEnd, ExecError> {
        // A first deploy has no container using the data folder yet: its tracked files go there
        // now rather than right after the job. An update's job sees the folder as the running
        // container has it (the old one keeps its files until it is stopped).
        if action == Action::Create {
            self.write_data_binds(stack, service)?;
        }
        if let Err(reason) = self.check_data_binds(stack, service) {
            return Ok(JobEnd::Failed(Rejected::new(
                format!("pre_deploy job not started: {reason}"),
                vec![],
            )));
        }
        let request = self.job_request(stack, service, job);
        self.remove_stale_job(&request).await?;
        let id = match self.engine.create_container(&request).await {
            Ok(id) => id,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                return Ok(JobEnd::Failed(Rejected::new(
                    format!("pre_deploy job's container could not be created: {e}"),
                    vec![],
                )))
            }
        };
        let ended = match self.engine.start_container(&id).await {
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Ok(JobEnd::Failed(Rejected::new(
                format!("pre_deploy job's container could not be started: {e}"),
                self.logs_of(&id).await,
            ))),
            Ok(()) => {
                super::failpoint("after-start-pre-deploy");
                self.wait_job(who, &id, service, job).await
            }
        };
        if let Err(e) = self.engine.remove_container(&id).await {
            tracing::warn!(
                stack = %who.stack, service = %who.service,
                "cannot remove the job's container {} now ({e}); the next pass removes it", request.name
            );
        }
        ended
    }

    /// Poll the job on tokio's clock until it exits, times out or shutdown comes.
    async fn wait_job(
        &self,
        who: &Who,
        id: &str,
        service: &Service,
        job: &PreDeploy,
    ) -> Result<JobEnd, ExecError> {
        let started = Instant::now();
        let deadline = started + job.timeout;
        let mut last_report = started;
        let grace = service.spec.stop_grace_period_ms.map(Duration::from_millis);
        loop {
            let s = self.engine.inspect_container(id).await?;
            if !s.running {
                let logs = self.logs_of(id).await;
                return Ok(match s.exit_code {
                    0 => JobEnd::Succeeded,
                    code => JobEnd::Failed(Rejected::new(
                        format!("pre_deploy job exited with code {code}"),
                        logs,
                    )),
                });
            }
            // Nothing of the service changed yet: at shutdown the job stops (SIGTERM, then
            // SIGKILL after the service's grace period) rather than hold the process up.
            if self.stopping() {
                self.engine.stop_container(id, grace).await?;
                return Ok(JobEnd::Stopped);
            }
            if Instant::now() >= deadline {
                self.engine.stop_container(id, grace).await?;
                return Ok(JobEnd::Failed(Rejected::new(
                    format!(
                        "pre_deploy job did not finish within {}; it was stopped",
                        humantime::format_duration(job.timeout)
                    ),
                    self.logs_of(id).await,
                )));
            }
            if last_report.elapsed() >= REPORT_EVERY {
                last_report = Instant::now();
                crate::progress!(
                    who,
                    "pre_deploy job still running after {}s",
                    started.elapsed().as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The service's container request, turned into the job's: its command, no ports, no
    /// healthcheck or restart policy, and labelled as Compose labels a one-off container.
    fn job_request(&self, stack: &Stack, service: &Service, job: &PreDeploy) -> CreateRequest {
        let name = job_container_name(stack, service);
        let mut request = self.request(stack, service, name, 1, None);
        request.spec = job_spec(request.spec, job);
        request.labels.retain(|k, _| {
            [
                labels::PROJECT,
                labels::SERVICE,
                labels::CONFIG_HASH,
                labels::COMPOSE_VERSION,
                labels::REVISION,
                labels::FILES,
                labels::MANAGED,
            ]
            .contains(&k.as_str())
        });
        request.labels.extend([
            (labels::ONEOFF.to_string(), "True".to_string()),
            (labels::NUMBER.to_string(), "1".to_string()),
            (labels::SLUG.to_string(), slug(&stack.revision)),
            (
                labels::ONEOFF_ROLE.to_string(),
                labels::ONEOFF_JOB.to_string(),
            ),
        ]);
        request
    }

    /// A job container of the same name is ours and left over (recovery removes those at the
    /// start of a pass; this covers one made since).
    async fn remove_stale_job(&self, request: &CreateRequest) -> Result<(), ExecError> {
        let stale = self
            .engine
            .list_oneoffs(std::slice::from_ref(&request.project))
            .await?;
        for c in stale.iter().filter(|c| c.name == request.name) {
            self.remove_old(&c.id).await?;
        }
        Ok(())
    }
}

/// `<project>-<service>-pre-deploy-<revision>`, so `docker ps` says what it is.
fn job_container_name(stack: &Stack, service: &Service) -> String {
    let mut revision = slug(&stack.revision);
    revision.truncate(12);
    format!(
        "{}-{}-{}-{revision}",
        stack.name,
        service.name,
        labels::ONEOFF_JOB
    )
}

/// The revision as a name part: letters and digits only.
fn slug(revision: &str) -> String {
    let s: String = revision
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect();
    if s.is_empty() {
        "0".into()
    } else {
        s.to_ascii_lowercase()
    }
}

/// What the job runs in: the service's container (image, environment, user, working dir,
/// volumes, binds, secrets, configs, networks) with the job's command, and nothing that would
/// clash with the old container still running or let it serve: no published ports, no fixed
/// name or addresses, no network aliases, no healthcheck, no restart policy.
fn job_spec(mut spec: ContainerSpec, job: &PreDeploy) -> ContainerSpec {
    spec.command = Some(job.command.clone());
    spec.ports.clear();
    spec.container_name = None;
    spec.restart = None;
    // Nobody attaches to it: a job reading its input gets end-of-file rather than wait forever.
    spec.stdin_open = false;
    spec.healthcheck = Some(HealthSpec {
        test: vec!["NONE".into()],
        interval_ms: None,
        timeout_ms: None,
        start_period_ms: None,
        retries: None,
    });
    for aliases in spec.networks.values_mut() {
        aliases.clear();
    }
    for endpoint in spec.network_endpoints.values_mut() {
        endpoint.ipv4_address = None;
        endpoint.ipv6_address = None;
        endpoint.link_local_ips.clear();
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{EndpointSpec, PortSpec};
    use std::collections::BTreeMap;

    #[test]
    fn the_job_keeps_the_services_container_but_not_what_would_clash_with_it_or_serve() {
        let spec = ContainerSpec {
            image: "app:2".into(),
            command: Some(vec!["serve".into()]),
            entrypoint: Some(vec!["/entry".into()]),
            environment: BTreeMap::from([("DB_URL".into(), "postgres://db".into())]),
            ports: vec![PortSpec {
                host_ip: None,
                published: Some("8080".into()),
                target: 80,
                protocol: "tcp".into(),
            }],
            networks: BTreeMap::from([("back".into(), vec!["api".into()])]),
            network_endpoints: BTreeMap::from([(
                "back".into(),
                EndpointSpec {
                    ipv4_address: Some("10.5.0.9".into()),
                    priority: Some(5),
                    ..Default::default()
                },
            )]),
            container_name: Some("the-app".into()),
            restart: Some("always".into()),
            user: Some("1000".into()),
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        let job = PreDeploy {
            command: vec!["migrate".into(), "up".into()],
            timeout: PreDeploy::DEFAULT_TIMEOUT,
        };
        let out = job_spec(spec.clone(), &job);
        assert_eq!(out.command, Some(vec!["migrate".into(), "up".into()]));
        assert_eq!(out.entrypoint, spec.entrypoint);
        assert_eq!(out.environment, spec.environment);
        assert_eq!((out.user, out.working_dir), (spec.user, spec.working_dir));
        assert!(out.ports.is_empty());
        assert_eq!((out.container_name, out.restart), (None, None));
        assert_eq!(out.healthcheck.unwrap().test, ["NONE"]);
        assert_eq!(out.networks["back"], Vec::<String>::new());
        assert_eq!(out.network_endpoints["back"].ipv4_address, None);
        assert_eq!(out.network_endpoints["back"].priority, Some(5));
    }

    #[test]
    fn a_revision_becomes_a_name_part_of_letters_and_digits() {
        assert_eq!(slug("3C2de63/../x"), "3c2de63x");
        assert_eq!(slug(""), "0");
        assert_eq!(slug(&"a".repeat(100)).len(), 64);
    }
}
