//! How each `pre_deploy` job ended, per stack, service and revision, in
//! `<state-dir>/jobs/<stack>/<service>.json`: a job runs once per (revision, service).
//! A failed one is not run again by the loop (no retry loops on a broken migration) until a
//! person asks (`reconciler retry`); a successful one is never run again for that revision,
//! even when the new container then failed: migrations are rarely idempotent.

use super::{check_service_name, check_stack_name, StateDir, StateError};
use serde::{Deserialize, Serialize};
use std::fs;

/// Revisions remembered per service: the newest ones, enough for any revert a person makes.
const KEPT: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Ok,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub revision: String,
    pub result: JobResult,
    /// RFC 3339.
    pub at: String,
    /// Why it failed, scrubbed of secret values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StateDir {
    fn jobs_file(&self, stack: &str, service: &str) -> Result<std::path::PathBuf, StateError> {
        check_stack_name(stack)?;
        check_service_name(service)?;
        Ok(self
            .root
            .join("jobs")
            .join(stack)
            .join(format!("{service}.json")))
    }

    /// Every recorded job of a service, oldest first; missing or unreadable is none.
    pub fn job_records(&self, stack: &str, service: &str) -> Vec<JobRecord> {
        self.jobs_file(stack, service)
            .ok()
            .and_then(|path| fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// How the job of `revision` ended, if it ran.
    pub fn job_record(&self, stack: &str, service: &str, revision: &str) -> Option<JobRecord> {
        self.job_records(stack, service)
            .into_iter()
            .rev()
            .find(|r| r.revision == revision)
    }

    /// Record how a job ended (replacing an earlier record of the same revision), before the
    /// service is switched: a crash after it does not run the job again.
    pub fn record_job(
        &self,
        stack: &str,
        service: &str,
        record: JobRecord,
    ) -> Result<(), StateError> {
        let mut records = self.job_records(stack, service);
        records.retain(|r| r.revision != record.revision);
        records.push(record);
        let excess = records.len().saturating_sub(KEPT);
        records.drain(..excess);
        self.write_jobs(stack, service, &records)
    }

    /// `reconciler retry`: a person asks for the failed jobs of a service to run again; the
    /// successful ones stay done.
    pub fn forget_failed_jobs(&self, stack: &str, service: &str) -> Result<(), StateError> {
        let mut records = self.job_records(stack, service);
        let before = records.len();
        records.retain(|r| r.result == JobResult::Ok);
        if records.len() == before {
            return Ok(());
        }
        self.write_jobs(stack, service, &records)
    }

    fn write_jobs(
        &self,
        stack: &str,
        service: &str,
        records: &[JobRecord],
    ) -> Result<(), StateError> {
        let path = self.jobs_file(stack, service)?;
        let dir = path.parent().expect("a jobs file is in a folder");
        fs::create_dir_all(dir).map_err(self.io(dir))?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(records).expect("job records serialize");
        fs::write(&tmp, bytes).map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: &str, result: JobResult) -> JobRecord {
        JobRecord {
            revision: revision.into(),
            result,
            at: "2026-12-01T12:00:00Z".into(),
            reason: (result == JobResult::Failed).then(|| "exited with code 1".into()),
        }
    }

    #[test]
    fn a_job_is_recorded_per_revision_and_a_retry_forgets_only_the_failed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        assert_eq!(state_dir.job_record("shop", "db", "r1"), None);
        state_dir
            .record_job("shop", "db", record("r1", JobResult::Ok))
            .unwrap();
        state_dir
            .record_job("shop", "db", record("r2", JobResult::Failed))
            .unwrap();
        assert_eq!(
            state_dir.job_record("shop", "db", "r2").map(|r| r.result),
            Some(JobResult::Failed)
        );
        assert_eq!(state_dir.job_record("shop", "web", "r2"), None);
        state_dir.forget_failed_jobs("shop", "db").unwrap();
        assert_eq!(state_dir.job_record("shop", "db", "r2"), None);
        assert_eq!(
            state_dir.job_record("shop", "db", "r1").map(|r| r.result),
            Some(JobResult::Ok)
        );
    }

    #[test]
    fn only_the_newest_revisions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        for i in 0..KEPT + 5 {
            state_dir
                .record_job("shop", "db", record(&format!("r{i}"), JobResult::Ok))
                .unwrap();
        }
        let records = state_dir.job_records("shop", "db");
        assert_eq!(records.len(), KEPT);
        assert_eq!(records[0].revision, "r5");
    }

    #[test]
    fn a_name_that_is_not_a_service_name_never_becomes_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::new(dir.path());
        assert!(state_dir
            .record_job("shop", "../x", record("r1", JobResult::Ok))
            .is_err());
    }
}
