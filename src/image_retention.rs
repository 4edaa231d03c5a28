//! Which local images the clean-up after a pass may remove: a pure rule over the journal, the
//! engine's images, what containers use and how many good images to keep, so every reason to
//! keep an image is tested without an engine.
//!
//! Kept: an image any container uses (ours or not, running or stopped), the last `keep` good
//! images of each service (a `git revert` then needs no pull), what the desired state names now,
//! and every image the reconciler never ran (an operator's own images are not its business).

use crate::engine::LocalImage;
use crate::observed::normalize_reference;
use crate::outcome::Step;
use crate::state::{JournalEntry, JournalResult};
use std::collections::{BTreeMap, BTreeSet};

/// What the rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The journal, oldest first.
    pub journal: &'a [JournalEntry],
    pub images: &'a [LocalImage],
    /// Ids and references of the images of every container on the host.
    pub in_use: &'a BTreeSet<String>,
    /// References the desired state names now: a release that failed or waits keeps its image.
    pub wanted: &'a BTreeSet<String>,
    /// Good images kept per service, the running one included.
    pub keep: usize,
}

/// One image to remove, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub image_id: String,
    /// The reconciler's references to the image, to be removed in this order: the image goes
    /// with the last of its references, and stays when someone else's tag holds it.
    pub references: Vec<String>,
    pub size: Option<u64>,
}

/// The images that may go, ordered by id.
pub fn removable(inputs: &Inputs<'_>) -> Vec<Removal> {
    let ran = references_run(inputs.journal);
    let mut kept = last_good(inputs.journal, inputs.keep);
    kept.extend(inputs.wanted.iter().flat_map(|r| keys(r)));
    let in_use: BTreeSet<String> = inputs.in_use.iter().flat_map(|r| keys(r)).collect();
    let mut out: Vec<Removal> = inputs
        .images
        .iter()
        .filter_map(|image| {
            let id_keys = keys(&image.id);
            let all_keys: Vec<String> = image
                .references
                .iter()
                .flat_map(|r| keys(r))
                .chain(id_keys.iter().cloned())
                .collect();
            if all_keys
                .iter()
                .any(|k| in_use.contains(k) || kept.contains(k))
            {
                return None;
            }
            let ours: Vec<&String> = image
                .references
                .iter()
                .filter(|r| keys(r).iter().any(|k| ran.contains(k)))
                .collect();
            // Tags first: removing a repository's last tag takes its digest references with it.
            let (tags, digests): (Vec<&String>, Vec<&String>) =
                ours.into_iter().partition(|r| !r.contains('@'));
            let references: Vec<String> = if !tags.is_empty() {
                tags.into_iter().cloned().collect()
            } else if !digests.is_empty() {
                digests.into_iter().cloned().collect()
            } else if id_keys.iter().any(|k| ran.contains(k))
                && image.references.iter().all(|r| r.contains('@'))
            {
                // Known only by id: a service's tag moved on (`pull_policy: always`). Never
                // when someone tagged it since: the engine would take their only tag with it.
                vec![image.id.clone()]
            } else {
                return None;
            };
            Some(Removal {
                image_id: image.id.clone(),
                references,
                size: image.size,
            })
        })
        .collect();
    out.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    out
}

/// Every image the reconciler ran for a service, as it was named: the images it updated to and
/// from. A pull that failed ran nothing, so its reference does not count.
fn references_run(journal: &[JournalEntry]) -> BTreeSet<String> {
    journal
        .iter()
        .filter(|e| ran_an_image(e.action))
        .flat_map(|e| e.from.iter().chain(e.to.iter()))
        .flat_map(|r| keys(r))
        .collect()
}

/// Whether an entry's `from`/`to` are images a container ran: a failed pull ran nothing, and a
/// backup's or restore's name volumes (`data@<time>`), not images.
fn ran_an_image(step: Step) -> bool {
    !matches!(step, Step::Pull | Step::Backup | Step::Restore)
}

/// Per (stack, service), the `keep` newest distinct images its successful changes went to.
pub fn last_good(journal: &[JournalEntry], keep: usize) -> BTreeSet<String> {
    let mut per_service: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for entry in journal.iter().rev() {
        if entry.result != JournalResult::Ok || !ran_an_image(entry.action) {
            continue;
        }
        let Some(to) = entry.to.as_deref() else {
            continue;
        };
        let seen = per_service
            .entry((entry.stack.as_str(), entry.service.as_str()))
            .or_default();
        let key = normalize(to);
        if seen.len() < keep && !seen.contains(&key) {
            seen.push(key);
        }
    }
    per_service
        .into_values()
        .flatten()
        .flat_map(|r| keys(&r))
        .collect()
}

/// An image id (`sha256:` and 64 hex digits) as it is; a reference in its full form.
fn normalize(reference: &str) -> String {
    if is_image_id(reference) {
        reference.to_string()
    } else {
        normalize_reference(reference)
    }
}

fn is_image_id(reference: &str) -> bool {
    reference
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The names under which the engine may list the image a reference names: `web:v1@sha256:x`
/// is listed as `web:v1` and as `web@sha256:x`.
fn keys(reference: &str) -> Vec<String> {
    if is_image_id(reference) {
        return vec![reference.to_string()];
    }
    let mut out = vec![normalize_reference(reference)];
    if let Some((name, digest)) = reference.split_once('@') {
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains(':') {
            let (repository, _tag) = name.rsplit_once(':').expect("has a colon");
            out.push(normalize_reference(name));
            out.push(normalize_reference(&format!("{repository}@{digest}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "127.0.0.1:5000/web:v1";
    const V2: &str = "127.0.0.1:5000/web:v2";
    const V3: &str = "127.0.0.1:5000/web:v3";

    fn id(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn entry(service: &str, step: Step, from: Option<&str>, to: &str, ok: bool) -> JournalEntry {
        JournalEntry {
            at: "t".into(),
            revision: "r".into(),
            stack: "shop".into(),
            service: service.into(),
            action: step,
            from: from.map(str::to_string),
            to: Some(to.to_string()),
            result: if ok {
                JournalResult::Ok
            } else {
                JournalResult::Failed
            },
            duration_ms: 1,
            reason: None,
            log_tail: vec![],
        }
    }

    /// web went v1 -> v2 -> v3, each release good.
    fn three_releases() -> Vec<JournalEntry> {
        vec![
            entry("web", Step::Create, None, V1, true),
            entry("web", Step::Update, Some(V1), V2, true),
            entry("web", Step::Update, Some(V2), V3, true),
        ]
    }

    fn image(n: u8, references: &[&str]) -> LocalImage {
        LocalImage {
            id: id(n),
            references: references.iter().map(|r| r.to_string()).collect(),
            size: Some(1000 * n as u64),
        }
    }

    fn removed(journal: &[JournalEntry], images: &[LocalImage], in_use: &[&str]) -> Vec<String> {
        let in_use: BTreeSet<String> = in_use.iter().map(|s| s.to_string()).collect();
        removable(&Inputs {
            journal,
            images,
            in_use: &in_use,
            wanted: &BTreeSet::new(),
            keep: 2,
        })
        .into_iter()
        .flat_map(|r| r.references)
        .collect()
    }

    #[test]
    fn after_three_releases_the_oldest_goes_and_the_running_and_the_one_before_stay() {
        let images = [
            image(1, &[V1, "127.0.0.1:5000/web@sha256:aa"]),
            image(2, &[V2]),
            image(3, &[V3]),
        ];
        let id3 = id(3);
        assert_eq!(removed(&three_releases(), &images, &[&id3]), [V1]);
    }

    #[test]
    fn the_running_image_counts_as_one_of_the_kept_so_keep_one_keeps_only_it() {
        let images = [image(1, &[V1]), image(2, &[V2]), image(3, &[V3])];
        let none = BTreeSet::new();
        let out = removable(&Inputs {
            journal: &three_releases(),
            images: &images,
            in_use: &none,
            wanted: &none,
            keep: 1,
        });
        let refs: Vec<&str> = out
            .iter()
            .flat_map(|r| &r.references)
            .map(|s| s.as_str())
            .collect();
        assert_eq!(refs, [V1, V2]);
        assert_eq!(out[0].size, Some(1000));
    }

    #[test]
    fn an_image_any_container_uses_stays_even_a_stopped_unmanaged_one() {
        // in_use comes from every container on the host, ours or not, in any state.
        let images = [image(1, &[V1]), image(2, &[V2]), image(3, &[V3])];
        let id1 = id(1);
        assert!(removed(&three_releases(), &images, &[&id1]).is_empty());
        // Named by the reference it was created from, too.
        assert!(removed(&three_releases(), &images, &["127.0.0.1:5000/web:v1"]).is_empty());
    }

    #[test]
    fn images_the_reconciler_never_ran_are_never_touched() {
        let images = [
            image(1, &[V1]),
            image(7, &["127.0.0.1:5000/web:operator"]),
            image(8, &["busybox:latest", "busybox@sha256:bb"]),
            image(9, &[]),
        ];
        assert_eq!(removed(&three_releases(), &images, &[]), [V1]);
    }

    #[test]
    fn a_rollback_makes_its_image_the_newest_good_one() {
        let mut journal = three_releases();
        journal.push(entry("web", Step::Rollback, Some(V3), V2, true));
        let images = [image(2, &[V2]), image(3, &[V3])];
        assert!(removed(&journal, &images, &[]).is_empty());
        journal.push(entry("web", Step::Rollback, Some(V2), V1, true));
        let images = [image(1, &[V1]), image(2, &[V2]), image(3, &[V3])];
        assert_eq!(removed(&journal, &images, &[]), [V3]);
    }

    #[test]
    fn a_failed_release_is_not_a_good_image_but_the_desired_one_stays() {
        let mut journal = three_releases();
        let v4 = "127.0.0.1:5000/web:v4";
        journal.push(entry("web", Step::Update, Some(V3), v4, false));
        let images = [image(2, &[V2]), image(3, &[V3]), image(4, &[v4])];
        // Reverted: nothing wants v4 any more.
        assert_eq!(removed(&journal, &images, &[]), [v4]);
        // Still desired (the release is blocked, not abandoned): kept.
        let wanted = BTreeSet::from([v4.to_string()]);
        let none = BTreeSet::new();
        let out = removable(&Inputs {
            journal: &journal,
            images: &images,
            in_use: &none,
            wanted: &wanted,
            keep: 2,
        });
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_backup_or_restore_between_releases_takes_no_place_among_the_kept_images() {
        let mut journal = three_releases();
        let backup = |step| JournalEntry {
            action: step,
            from: None,
            to: Some("data@20261201T120000.000Z".into()),
            ..entry("web", step, None, V3, true)
        };
        journal.insert(2, backup(Step::Backup));
        journal.push(backup(Step::Backup));
        journal.push(backup(Step::Restore));
        let good = last_good(&journal, 2);
        assert!(good.iter().any(|k| k.ends_with("web:v3")), "{good:?}");
        assert!(good.iter().any(|k| k.ends_with("web:v2")), "{good:?}");
        assert!(!good.iter().any(|k| k.contains("data@")), "{good:?}");
    }

    #[test]
    fn a_pull_that_failed_ran_nothing_so_its_image_is_not_the_reconcilers() {
        let v4 = "127.0.0.1:5000/web:v4";
        let mut journal = three_releases();
        journal.push(entry("web", Step::Pull, None, v4, false));
        let images = [image(2, &[V2]), image(3, &[V3]), image(4, &[v4])];
        assert!(removed(&journal, &images, &[]).is_empty());
    }

    #[test]
    fn each_service_keeps_its_own_last_good_images() {
        let mut journal = three_releases();
        journal.push(entry("worker", Step::Create, None, "worker:1", true));
        journal.push(entry(
            "worker",
            Step::Update,
            Some("worker:1"),
            "worker:2",
            true,
        ));
        let images = [
            image(1, &[V1]),
            image(5, &["docker.io/library/worker:1"]),
            image(6, &["worker:2"]),
        ];
        assert_eq!(removed(&journal, &images, &[]), [V1]);
    }

    #[test]
    fn an_image_holding_a_kept_reference_stays_whatever_else_names_it() {
        // v1 and v2 are the same image: v2 is kept, so v1's tag stays too.
        let images = [image(2, &[V1, V2]), image(3, &[V3])];
        assert!(removed(&three_releases(), &images, &[]).is_empty());
    }

    #[test]
    fn only_the_reconcilers_tag_goes_when_an_operator_tagged_the_image_too() {
        let images = [image(1, &[V1, "mine:keep", "127.0.0.1:5000/web@sha256:aa"])];
        assert_eq!(removed(&three_releases(), &images, &[]), [V1]);
    }

    #[test]
    fn an_image_known_only_by_id_goes_by_id_and_a_digest_reference_by_digest() {
        let digest_ref = "127.0.0.1:5000/api@sha256:dd";
        let journal = vec![
            // The tag moved on: the old container was listed by its image id.
            entry("web", Step::Update, Some(&id(1)), V3, true),
            entry(
                "api",
                Step::Create,
                None,
                "127.0.0.1:5000/api:v1@sha256:dd",
                true,
            ),
            entry("api", Step::Update, None, "api:2", true),
            entry("api", Step::Update, None, "api:3", true),
        ];
        let images = [
            image(1, &["127.0.0.1:5000/web@sha256:aa"]),
            image(4, &[digest_ref]),
        ];
        assert_eq!(
            removed(&journal, &images, &[]),
            [id(1).as_str(), digest_ref]
        );
    }

    #[test]
    fn an_image_known_only_by_id_that_someone_tagged_since_stays_with_its_tag() {
        let journal = vec![
            entry("web", Step::Update, Some(&id(1)), V2, true),
            entry("web", Step::Update, Some(V2), V3, true),
        ];
        let images = [image(1, &["mine:keep"]), image(2, &[V2]), image(3, &[V3])];
        assert!(removed(&journal, &images, &[]).is_empty());
    }

    #[test]
    fn short_and_long_names_are_one_image() {
        let journal = vec![
            entry("web", Step::Create, None, "nginx", true),
            entry("web", Step::Update, None, "nginx:2", true),
            entry("web", Step::Update, None, "nginx:3", true),
        ];
        let images = [
            image(1, &["nginx:latest"]),
            image(2, &["docker.io/library/nginx:2"]),
        ];
        assert_eq!(removed(&journal, &images, &[]), ["nginx:latest"]);
    }
}
