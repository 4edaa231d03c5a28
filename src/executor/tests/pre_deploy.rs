//! `pre_deploy` jobs: run once per (revision, service) in a one-off container of the new image
//! while the old container keeps serving; a failure fails the release before anything of the
//! service is touched, and is not run again until a person asks.

use super::*;
use crate::state::jobs::JobResult;

const JOB: &str = "web-web-pre-deploy";

/// A stop-first service with a secret-looking env value, a volume and a pre_deploy job.
fn app(image: &str, job: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:8080:80\"]\n    environment: {{DB_PASSWORD: hunter22}}\n    volumes: [\"data:/data\"]\n    x-reconciler:\n      health_timeout: 30s\n      pre_deploy: {job}\nvolumes:\n  data: {{}}\n"
    )
}

const MIGRATE: &str = "{command: [\"migrate\", \"up\"]}";

/// The job's containers created in the calls, by `create <name>`.
fn job_creates(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.starts_with(&format!("create {JOB}")))
        .cloned()
        .collect()
}

fn counter(host: &Host, key: &str) -> u64 {
    host.state_dir().counters().get(key).copied().unwrap_or(0)
}

/// v1 running (its job ran at the first deploy), calls cleared.
async fn running_v1(host: &Host) -> String {
    host.engine.publish(WEB_V1, healthy_after(1));
    host.pass(&host.desired("web", &app(WEB_V1, MIGRATE)))
        .await
        .unwrap();
    host.engine.clear_calls();
    host.id("web-web-1")
}

#[tokio::test(start_paused = true)]
async fn the_job_runs_in_a_one_off_container_of_the_new_image_before_the_old_container_is_stopped()
{
    let host = Host::new();
    let old = running_v1(&host).await;
    assert_eq!(counter(&host, "job_ok"), 1, "a first deploy runs it too");
    host.engine.publish(WEB_V2, healthy_after(1));

    let desired = host.desired("web", &app(WEB_V2, MIGRATE));
    let outcome = host.pass(&desired).await.unwrap();

    assert!(outcome.failed().is_empty(), "{outcome:?}");
    let calls = host.engine.calls();
    let created = job_creates(&calls);
    assert_eq!(created.len(), 1, "{calls:#?}");
    let job_name = created[0].trim_start_matches("create ").to_string();
    let job = call_target_after(&calls, &created[0], "start");
    assert_in_order(
        &calls,
        &[
            format!("pull {WEB_V2}"),
            created[0].clone(),
            format!("start {job}"),
            format!("remove {job}"),
            format!("stop {old}"),
            "create web-web-1".to_string(),
        ],
    );
    assert!(job_name.starts_with(JOB), "{job_name}");
    assert_eq!(host.names(), ["web-web-1"], "the job's container is gone");
    assert_eq!(host.engine.container("web-web-1").unwrap().image, WEB_V2);
    assert_eq!(counter(&host, "job_ok"), 2);
    assert!(host.state_dir().activities().is_empty());
    let revision = &desired.stacks[0].revision;
    assert_eq!(
        host.state_dir()
            .job_record("web", "web", revision)
            .map(|r| r.result),
        Some(JobResult::Ok)
    );
}

/// The id the `verb` call right after `create` used (the created container's id).
fn call_target_after(calls: &[String], create: &str, verb: &str) -> String {
    let at = calls.iter().position(|c| c == create).unwrap();
    calls[at..]
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{verb} ")))
        .unwrap_or_else(|| panic!("no {verb} after {create}: {calls:#?}"))
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn the_jobs_container_is_labelled_as_composes_one_offs_and_runs_the_jobs_command() {
    let host = Host::new();
    host.engine.publish(WEB_V1, healthy_after(1));
    // A job that never ends: its container can be looked at while it runs.
    host.engine.set_job(WEB_V1, Behaviour::NoHealthcheck, &[]);
    let desired = host.desired("web", &app(WEB_V1, "{command: migrate up, timeout: 1m}"));
    let pass = host.pass(&desired);
    tokio::pin!(pass);
    let job = loop {
        tokio::select! {
            _ = &mut pass => panic!("the pass ended before the job was seen"),
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        if let Some(job) = host
            .engine
            .containers()
            .into_iter()
            .find(|c| c.name.starts_with(JOB))
        {
            break job;
        }
    };
    let activities = host.state_dir().activities();
    assert_eq!(activities.len(), 1);
    assert_eq!(
        activities[0].activity.summary().split(' ').next(),
        Some("migrating")
    );
    let outcome = pass.await.unwrap();

    assert_eq!(job.image, WEB_V1);
    assert_eq!(
        job.command,
        Some(vec!["migrate".to_string(), "up".to_string()])
    );
    assert_eq!(job.volumes, ["web_data"]);
    for (label, value) in [
        (labels::PROJECT, "web"),
        (labels::SERVICE, "web"),
        (labels::ONEOFF, "True"),
        (labels::ONEOFF_ROLE, labels::ONEOFF_JOB),
    ] {
        assert_eq!(
            job.labels.get(label).map(String::as_str),
            Some(value),
            "{label}"
        );
    }
    assert!(!job.labels.contains_key(labels::SPEC_HASH));
    // It timed out (a minute), so the service was never created; its container went.
    assert_eq!(outcome.failed().len(), 1);
    assert!(host.names().is_empty(), "{:?}", host.names());
    assert!(host.state_dir().activities().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_keeps_the_old_container_untouched_records_its_scrubbed_log_tail_and_is_not_run_again(
) {
    let host = Host::new();
    let old = running_v1(&host).await;
    host.engine.publish(WEB_V2, healthy_after(1));
    host.engine.set_job(
        WEB_V2,
        Behaviour::Exits {
            code: 3,
            after: Duration::from_secs(2),
        },
        &[
            "applying 0042_orders",
            "cannot connect with password hunter22",
        ],
    );
    let desired = host.desired("web", &app(WEB_V2, MIGRATE));

    let outcome = host.pass(&desired).await.unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    let touched: Vec<String> = host.engine.calls();
    assert!(
        !touched
            .iter()
            .any(|c| c.starts_with("stop ") && c.ends_with(&old) || c == "create web-web-1"),
        "the old container was never touched: {touched:#?}"
    );
    assert_eq!(host.names(), ["web-web-1"]);
    assert_eq!(host.id("web-web-1"), old);
    assert_eq!(host.engine.container("web-web-1").unwrap().state, "running");
    let failure = host.state().stacks["web"].services["web"]
        .failed
        .clone()
        .unwrap();
    assert!(
        failure.reason.contains("pre_deploy job exited with code 3"),
        "{failure:?}"
    );
    let last = host.journal().pop().unwrap();
    assert_eq!(last.result, crate::state::JournalResult::Failed);
    assert_eq!(
        last.log_tail,
        [
            "applying 0042_orders",
            "cannot connect with password (hidden)"
        ]
    );
    assert!(!serde_json::to_string(&last).unwrap().contains("hunter22"));
    assert_eq!(counter(&host, "job_failed"), 1);
    assert!(host.state_dir().activities().is_empty());

    // The loop does not run it again for this commit ...
    host.engine.clear_calls();
    host.pass(&desired).await.unwrap();
    host.pass(&desired).await.unwrap();
    assert!(job_creates(&host.engine.calls()).is_empty());
    assert_eq!(counter(&host, "job_failed"), 1);

    // ... a person's retry does.
    host.state_dir().request_retry("web", "web").unwrap();
    host.engine.clear_calls();
    host.pass(&desired).await.unwrap();
    assert_eq!(job_creates(&host.engine.calls()).len(), 1);
    assert_eq!(counter(&host, "job_failed"), 2);
    assert_eq!(host.id("web-web-1"), old);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_succeeded_is_not_run_again_when_the_new_container_failed_and_is_retried() {
    let host = Host::new();
    let old = running_v1(&host).await;
    host.engine.publish(WEB_V2, STARTING_FOR_AN_HOUR);
    let desired = host.desired("web", &app(WEB_V2, MIGRATE));
    let outcome = host.pass(&desired).await.unwrap();
    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(job_creates(&host.engine.calls()).len(), 1);
    assert_eq!(host.id("web-web-1"), old, "restored");

    host.state_dir().request_retry("web", "web").unwrap();
    host.engine.clear_calls();
    host.pass(&desired).await.unwrap();

    let calls = host.engine.calls();
    assert!(job_creates(&calls).is_empty(), "{calls:#?}");
    assert!(
        calls.contains(&"create web-web-1".to_string()),
        "the update was tried again"
    );
    assert_eq!(counter(&host, "job_ok"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_timeout_is_stopped_removed_and_fails_the_release() {
    let host = Host::new();
    let old = running_v1(&host).await;
    host.engine.publish(WEB_V2, healthy_after(1));
    host.engine
        .set_job(WEB_V2, Behaviour::NoHealthcheck, &["still migrating"]);
    let desired = host.desired("web", &app(WEB_V2, "{command: migrate, timeout: 90s}"));

    let started = tokio::time::Instant::now();
    let outcome = host.pass(&desired).await.unwrap();

    let failed = outcome.failed();
    assert_eq!(failed.len(), 1, "{outcome:?}");
    assert!(
        format!("{:?}", failed[0].result).contains("did not finish within 1m 30s"),
        "{:?}",
        failed[0].result
    );
    assert!(started.elapsed() >= Duration::from_secs(90));
    let calls = host.engine.calls();
    let job = call_target_after(&calls, &job_creates(&calls)[0], "start");
    assert_in_order(&calls, &[format!("stop {job}"), format!("remove {job}")]);
    assert_eq!(host.names(), ["web-web-1"]);
    assert_eq!(host.id("web-web-1"), old);
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_container_cannot_be_created_fails_the_release_and_the_old_one_serves_on() {
    let host = Host::new();
    let old = running_v1(&host).await;
    host.engine.publish(WEB_V2, healthy_after(1));
    host.engine.fail_next(
        "create",
        JOB,
        EngineError::Call {
            call: "create container",
            target: JOB.into(),
            message: "invalid mount config".into(),
        },
    );

    let outcome = host
        .pass(&host.desired("web", &app(WEB_V2, MIGRATE)))
        .await
        .unwrap();

    assert_eq!(outcome.failed().len(), 1, "{outcome:?}");
    assert_eq!(host.names(), ["web-web-1"]);
    assert_eq!(host.id("web-web-1"), old);
    assert_eq!(counter(&host, "job_failed"), 1);
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_a_running_job_is_stopped_and_removed_and_runs_again_at_the_next_start() {
    let host = Host::new();
    let old = running_v1(&host).await;
    host.engine.publish(WEB_V2, healthy_after(1));
    host.engine.set_job(WEB_V2, Behaviour::NoHealthcheck, &[]);
    let desired = host.desired("web", &app(WEB_V2, MIGRATE));
    let limits = Limits::default();
    let shutdown = limits.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(20)).await;
        shutdown.cancel();
    });

    let outcome = pass_with(&host.engine, &desired, &host.state_dir(), &limits)
        .await
        .unwrap();

    assert!(outcome.failed().iter().all(|o| !o.changed()), "{outcome:?}");
    assert_eq!(host.names(), ["web-web-1"]);
    assert_eq!(host.id("web-web-1"), old);
    let revision = &desired.stacks[0].revision;
    assert_eq!(host.state_dir().job_record("web", "web", revision), None);
    assert!(host.state().stacks["web"].services["web"].failed.is_none());

    host.engine.set_job(
        WEB_V2,
        Behaviour::Exits {
            code: 0,
            after: Duration::from_secs(1),
        },
        &[],
    );
    host.engine.clear_calls();
    host.pass(&desired).await.unwrap();
    assert_eq!(job_creates(&host.engine.calls()).len(), 1);
    assert_eq!(host.engine.container("web-web-1").unwrap().image, WEB_V2);
}

#[tokio::test(start_paused = true)]
async fn no_job_runs_when_a_stopped_container_is_started_or_the_service_is_scaled() {
    let host = Host::new();
    let old = running_v1(&host).await;
    host.engine.stop_container(&old, None).await.unwrap();
    host.engine.clear_calls();

    host.pass(&host.desired("web", &app(WEB_V1, MIGRATE)))
        .await
        .unwrap();
    assert!(host.engine.calls().contains(&format!("start {old}")));

    let farm = |replicas: u32| {
        format!(
            "services:\n  web:\n    image: {WEB_V1}\n    deploy: {{replicas: {replicas}}}\n    x-reconciler:\n      pre_deploy: {MIGRATE}\n"
        )
    };
    host.pass(&host.desired("farm", &farm(1))).await.unwrap();
    assert_eq!(counter(&host, "job_ok"), 2, "created: its job ran");
    host.engine.clear_calls();
    host.pass(&host.desired("farm", &farm(3))).await.unwrap();

    let calls = host.engine.calls();
    assert!(
        calls.contains(&"create farm-web-3".to_string()),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("pre-deploy")),
        "{calls:#?}"
    );
    assert_eq!(counter(&host, "job_ok"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_first_deploys_job_sees_the_tracked_files_it_binds_from_the_data_folder() {
    let host = Host::new();
    let conf = host.repo.path().join("shop/data/db.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "v1\n").unwrap();
    host.engine.publish(DB_V1, healthy_after(1));
    let compose = format!(
        "services:\n  db:\n    image: {DB_V1}\n    volumes: [\"./data/db.conf:/etc/db.conf\"]\n    x-reconciler:\n      pre_deploy: {MIGRATE}\n"
    );

    let outcome = host.pass(&host.desired("shop", &compose)).await.unwrap();

    assert!(outcome.failed().is_empty(), "{outcome:?}");
    assert_eq!(counter(&host, "job_ok"), 1);
    let data = host.state_dir().data_dir("shop").join("data");
    assert_eq!(
        std::fs::read_to_string(data.join("db.conf")).unwrap(),
        "v1\n"
    );
}
