//! The image clean-up against the real engine: after a release, the images the reconciler ran
//! that no container uses go, except the last two good ones of the service, so a revert works
//! with the registry down; an operator's images, an image a stopped container of someone else's
//! uses, and the stack's volume stay.
mod common;
use common::*;

/// Local tags this test made; untagged when it ends, also when it fails.
struct LocalTags(Vec<String>);

impl Drop for LocalTags {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = docker(&["image", "rm", "-f", tag]);
        }
    }
}

/// A new image of the web app with its own id (a label makes it differ), tagged `local`: only
/// this test ever names it, so removing it can break no other test.
fn make_image(env: &TestEnv, tags: &mut LocalTags, base: &str, variant: &str) -> String {
    let local = format!("{}-{variant}:local", env.project());
    let owner = format!("{OWNER_LABEL}={}", env.project());
    let container = docker_ok(&["create", "--label", &owner, base]);
    let container = container.trim();
    tags.0.push(local.clone());
    docker_ok(&[
        "commit",
        "--change",
        &format!("LABEL reconciler-test.variant={variant}"),
        container,
        &local,
    ]);
    docker_ok(&["rm", container]);
    local
}

/// [`make_image`], pushed to the test registry as `web:<variant>` and then gone from the host,
/// so the reconciler has to pull it.
fn release_image(env: &TestEnv, tags: &mut LocalTags, base: &str, variant: &str) -> String {
    let local = make_image(env, tags, base, variant);
    let remote = env.registry.push(&local, &format!("web:{variant}"));
    docker_ok(&["image", "rm", &local]);
    assert!(!image_exists(&remote), "{remote} must be pulled, not found");
    remote
}

fn web(image: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    volumes: [\"data:/data\"]\n{HEALTHCHECK}    x-reconciler: {{health_timeout: 30s}}\nvolumes:\n  data: {{}}\n"
    )
}

#[track_caller]
fn release(env: &TestEnv, image: &str) -> CmdOutput {
    env.write_compose(&web(image));
    let out = env.apply_ok();
    let web = env.container("web");
    assert_eq!(
        (web.image.as_str(), web.health.as_deref()),
        (image, Some("healthy")),
        "{out}"
    );
    out
}

#[test]
fn after_four_releases_only_unneeded_images_the_reconciler_ran_are_gone_and_a_revert_needs_no_pull()
{
    let mut env = TestEnv::new("image-cleanup");
    let mut tags = LocalTags(vec![]);
    let [v0, v1, v2, v3] =
        ["v0", "v1", "v2", "v3"].map(|v| release_image(&env, &mut tags, WEB_V1, v));
    // The operator's own images: one pulled by hand from the same repository, one made here.
    let operators = release_image(&env, &mut tags, WEB_V2, "operator");
    docker_ok(&["pull", &operators]);
    let unrelated = make_image(&env, &mut tags, WEB_V2, "unrelated");

    release(&env, &v0);
    release(&env, &v1);
    // Someone's container, never started, no part of any stack, made from v0.
    let owner = format!("{OWNER_LABEL}={}", env.project());
    let theirs = docker_ok(&["create", "--label", &owner, &v0]);
    let theirs = theirs.trim();
    release(&env, &v2);
    let out = release(&env, &v3);

    assert!(
        !image_exists(&v1),
        "v1 is neither running nor the one before:\n{out}"
    );
    assert!(
        out.stderr.contains(&format!("removed old image {v1}")),
        "the log says what went:\n{out}"
    );
    for kept in [&v2, &v3, &v0, &operators, &unrelated] {
        assert!(image_exists(kept), "{kept} must stay:\n{out}");
    }
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Status}}", theirs]).trim(),
        "created",
        "their container is untouched"
    );
    let volume = format!("{}_data", env.project());
    assert!(docker(&["volume", "inspect", &volume]).success());

    // Back to v2 with the registry down: the image kept for a revert is used.
    env.registry.stop();
    let out = release(&env, &v2);
    assert!(
        image_exists(&v3),
        "v3 is now the good one before the running one:\n{out}"
    );
    assert!(docker(&["volume", "inspect", &volume]).success());
    for kept in [&v0, &operators, &unrelated] {
        assert!(image_exists(kept), "{kept} must stay:\n{out}");
    }
}

#[test]
fn an_image_whose_tag_moved_on_stays_when_the_operator_tagged_it_for_themselves() {
    let env = TestEnv::new("image-cleanup-moved");
    let mut tags = LocalTags(vec![]);
    // `stable` moves from one build to the next in the registry; before the release the operator
    // keeps the running build as `previous`, to go back to by hand.
    let first = make_image(&env, &mut tags, WEB_V1, "first");
    let stable = env.registry.push(&first, "web:stable");
    docker_ok(&["image", "rm", &first]);
    let always = web(&stable).replace("    volumes:", "    pull_policy: always\n    volumes:");
    env.write_compose(&always);
    env.apply_ok();
    let first_id = image_id(&stable).unwrap();
    let previous = stable.replace(":stable", ":previous");
    docker_ok(&["tag", &stable, &previous]);

    let second = make_image(&env, &mut tags, WEB_V2, "second");
    env.registry.push(&second, "web:stable");
    docker_ok(&["image", "rm", &second]);
    let out = env.run("apply", &["--keep-images", "1"]);
    out.assert_code(0);
    assert_eq!(
        env.container("web").image_id,
        image_id(&stable).unwrap(),
        "the new stable runs:\n{out}"
    );

    // The reconciler ran the first build, known to it only by id now, but someone tagged it
    // since: removing it by id would take their only tag with it.
    assert_eq!(
        image_id(&previous).as_deref(),
        Some(first_id.as_str()),
        "{previous} lost its image:\n{out}"
    );
}
