//! Long-form mount settings (`bind:`, `volume:`, `tmpfs:`) and the Compose mounts refused with
//! their reason.

use super::*;

fn mounts(volumes: &str) -> Vec<MountSpec> {
    let text =
        format!("services:\n  web:\n    image: web:1\n    volumes:\n{volumes}volumes:\n  data:\n");
    parts(&text).services.remove("web").unwrap().spec.mounts
}

#[test]
fn bind_propagation_create_host_path_selinux_and_recursive_are_read() {
    let m = mounts("      - type: bind\n        source: /srv/app\n        target: /app\n        bind:\n          propagation: rshared\n          create_host_path: true\n          selinux: Z\n      - type: bind\n        source: /srv/logs\n        target: /logs\n        bind:\n          recursive: disabled\n          create_host_path: false\n");
    assert_eq!(
        m[0].options,
        MountOptions {
            propagation: Some("rshared".into()),
            create_host_path: Some(true),
            selinux: Some("Z".into()),
            ..Default::default()
        }
    );
    assert!(m[0].needs_legacy_bind());
    assert_eq!(
        m[1].options,
        MountOptions {
            non_recursive: true,
            create_host_path: Some(false),
            ..Default::default()
        }
    );
    assert!(!m[1].needs_legacy_bind());
}

#[test]
fn a_short_bind_takes_a_propagation_and_a_volume_refuses_one() {
    let m = mounts("      - /srv/app:/app:ro,rslave\n");
    assert_eq!(m[0].options.propagation.as_deref(), Some("rslave"));
    assert!(m[0].read_only);
    let text = "services:\n  web:\n    image: web:1\n    volumes: [\"data:/data:rshared\"]\nvolumes:\n  data:\n";
    assert!(problem(text).message.contains("a volume has none"));
}

#[test]
fn tmpfs_mode_is_octal_and_volume_labels_and_nocopy_are_read() {
    let m = mounts("      - type: tmpfs\n        target: /scratch\n        tmpfs:\n          size: 10m\n          mode: 1777\n      - type: volume\n        target: /cache\n        volume:\n          nocopy: true\n          labels:\n            purpose: cache\n");
    assert_eq!(m[1].options.tmpfs_mode, Some(0o1777));
    assert_eq!(m[1].tmpfs_size, Some(10 * 1024 * 1024));
    assert!(m[0].no_copy);
    assert_eq!(m[0].options.volume_labels, env(&[("purpose", "cache")]));
}

#[test]
fn a_short_mount_and_its_long_form_without_settings_hash_as_before() {
    let short = hash(&web("image: web:1\nvolumes:\n  - /srv/app:/app:ro"));
    let long = hash(&web("image: web:1\nvolumes:\n  - type: bind\n    source: /srv/app\n    target: /app\n    read_only: true"));
    assert_eq!(short, long);
    let json = serde_json::to_string(&spec("image: web:1\nvolumes:\n  - /srv/app:/app")).unwrap();
    for field in [
        "propagation",
        "create_host_path",
        "selinux",
        "non_recursive",
        "tmpfs_mode",
        "volume_labels",
    ] {
        assert!(!json.contains(field), "{field} in {json}");
    }
}

#[test]
fn mount_settings_the_engine_api_cannot_take_are_refused_naming_the_compose_key() {
    let problems = problems(&web("image: web:1\nvolumes:\n  - type: volume\n    source: data\n    target: /a\n    volume:\n      subpath: sub\n  - type: bind\n    source: /srv\n    target: /b\n    bind:\n      recursive: readonly\n  - type: image\n    source: alpine\n    target: /c\n  - type: npipe\n    source: //./pipe/docker_engine\n    target: //./pipe/docker_engine\n  - type: cluster\n    source: vol\n    target: /d"));
    let got: Vec<(&str, bool)> = problems
        .iter()
        .map(|p| {
            (
                p.key.as_str(),
                p.message.contains("the reconciler cannot apply"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("services.web.volumes[0].volume.subpath", true),
            ("services.web.volumes[1].bind.recursive", true),
            ("services.web.volumes[2].type", true),
            ("services.web.volumes[3].type", true),
            ("services.web.volumes[4].type", true),
        ]
    );
    assert!(problems[0].message.contains("API 1.45"));
    assert!(problems.iter().all(|p| !p.message.contains("unknown key")));
}

#[test]
fn settings_of_another_mount_type_and_bad_values_are_errors() {
    let problems = problems(&web("image: web:1\nvolumes:\n  - type: bind\n    source: /srv\n    target: /a\n    tmpfs:\n      size: 1m\n  - type: bind\n    source: /srv\n    target: /b\n    bind:\n      propagation: sideways\n      selinux: q\n  - type: tmpfs\n    target: /c\n    tmpfs:\n      mode: 999\n  - type: bind\n    source: /srv\n    target: /d\n    bind:\n      recursive: disabled\n      selinux: z"));
    let got: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        got,
        [
            "services.web.volumes[0].tmpfs",
            "services.web.volumes[1].bind.propagation",
            "services.web.volumes[1].bind.selinux",
            "services.web.volumes[2].tmpfs.mode",
            "services.web.volumes[3].bind",
        ]
    );
}

#[test]
fn consistency_is_accepted_with_a_warning_that_it_does_nothing_on_linux() {
    let parts = parts(&web("image: web:1\nvolumes:\n  - type: bind\n    source: /srv\n    target: /a\n    consistency: cached"));
    assert!(parts
        .warnings
        .iter()
        .any(|w| w.key == "services.web.volumes[0].consistency"
            && w.message.contains("no effect on Linux")));
}
