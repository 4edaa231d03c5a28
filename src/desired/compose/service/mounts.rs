//! A service's `volumes:` (mounts): named volumes, binds and tmpfs, short and long form. A
//! relative bind is resolved inside the repository and its content digested, so a change to a
//! mounted file changes the service.

use crate::desired::compose::parse::{parse_short_mount, PROPAGATIONS};
use crate::desired::compose::{join, Cx};
use crate::desired::model::{hex, ContainerSpec, MountKind, MountOptions, MountSpec, VolumeDef};
use crate::desired::yaml::{Node, Value};
use sha2::Digest as _;
use std::collections::BTreeMap;

impl Cx<'_> {
    /// Sets the mounts and the digest of mounted repository content; returns the repository
    /// paths that are bound.
    pub(super) fn service_volumes(
        &mut self,
        node: &Node,
        path: &str,
        volumes: &BTreeMap<String, VolumeDef>,
        spec: &mut ContainerSpec,
    ) -> Vec<String> {
        let key = join(path, "volumes");
        let mut repo_binds = Vec::new();
        if let Some(n) = node.get("volumes") {
            spec.mounts = self.mounts(n, &key, volumes, &mut repo_binds);
        }
        if !repo_binds.is_empty() {
            let mut digests = Vec::new();
            for rel in &repo_binds {
                // A source git does not have is a folder created empty: it changes the
                // service when git starts to have it.
                if !self.files.exists(rel) {
                    digests.push(format!("{rel}=absent"));
                    continue;
                }
                match self.files.digest(rel) {
                    Ok(d) => digests.push(format!("{rel}={d}")),
                    Err(e) => self.problem(node, &key, e),
                }
            }
            spec.mounted_content = Some(hex(&sha2::Sha256::digest(digests.join("\n"))));
        }
        repo_binds
    }

    fn mounts(
        &mut self,
        node: &Node,
        key: &str,
        volumes: &BTreeMap<String, VolumeDef>,
        repo_binds: &mut Vec<String>,
    ) -> Vec<MountSpec> {
        let mut out = Vec::new();
        let Value::Seq(items) = &node.value else {
            self.problem(
                node,
                key,
                format!("expected a list of volumes, found {}", node.kind()),
            );
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            if let Some(mount) = self.mount(item, &k, volumes, repo_binds) {
                self.mount_lines
                    .insert(format!("volumes:{}", mount.target), item.line);
                out.push(mount);
            }
        }
        out.sort();
        out
    }

    /// One entry, with an absolute target and a source that is declared (named volume) or
    /// inside the repository (relative bind).
    fn mount(
        &mut self,
        item: &Node,
        k: &str,
        volumes: &BTreeMap<String, VolumeDef>,
        repo_binds: &mut Vec<String>,
    ) -> Option<MountSpec> {
        let mut mount = match &item.value {
            Value::Map(entries) => {
                self.check_keys(entries, k, LONG_KEYS);
                self.long_mount(item, k)
            }
            _ => self
                .string(item, k)
                .and_then(|text| match parse_short_mount(&text) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        self.problem(item, k, format!("'{text}': {e}"));
                        None
                    }
                }),
        }?;
        if !mount.target.starts_with('/') {
            self.problem(
                item,
                k,
                format!(
                    "the mount target '{}' must be an absolute path",
                    mount.target
                ),
            );
            return None;
        }
        let source_ok = match mount.kind {
            MountKind::Volume => match &mount.source {
                Some(source) if !volumes.contains_key(source) => {
                    self.problem(
                        item,
                        k,
                        format!("volume '{source}' is not declared under the top-level `volumes:`"),
                    );
                    false
                }
                _ => true,
            },
            MountKind::Bind => self.bind_source(item, k, &mut mount, repo_binds),
            MountKind::Tmpfs => true,
        };
        source_ok.then_some(mount)
    }

    /// A relative bind source becomes `./` + its path inside the repository; `~` is refused.
    /// A writable one, or one git does not have, points to the stack's data folder (see
    /// [`MountSpec::in_data_folder`]), by its real path.
    fn bind_source(
        &mut self,
        item: &Node,
        k: &str,
        mount: &mut MountSpec,
        repo_binds: &mut Vec<String>,
    ) -> bool {
        let source = mount.source.clone().unwrap_or_default();
        // Short form binds start with `.`; a long-form `source: conf/x` is relative too.
        if !source.starts_with('/') && !source.starts_with('~') {
            match self.files.bind_source(&self.path_from(item, &source)) {
                Ok(found) => {
                    repo_binds.push(found.rel.clone());
                    mount.source = Some(format!("./{}", found.rel));
                    mount.shared_data = mount.read_only && !found.exists;
                    mount.repo_relative = Some(if mount.read_only && found.exists {
                        found.rel
                    } else {
                        found.real
                    });
                }
                Err(e) => {
                    self.problem(item, k, e);
                    return false;
                }
            }
        } else if source.starts_with('~') {
            self.problem(item, k, "bind sources starting with '~' are not supported: the reconciler runs as a service, write an absolute path");
            return false;
        }
        true
    }

    fn long_mount(&mut self, node: &Node, key: &str) -> Option<MountSpec> {
        let type_key = join(key, "type");
        let kind = match node
            .get("type")
            .and_then(|t| self.string(t, &type_key))
            .as_deref()
        {
            Some("volume") => MountKind::Volume,
            Some("bind") => MountKind::Bind,
            Some("tmpfs") => MountKind::Tmpfs,
            Some(other) => {
                let message = match other {
                    "image" => "'type: image' is a Compose mount the reconciler cannot apply: it needs Docker Engine API 1.47 (Engine 28), and the reconciler speaks API 1.41".to_string(),
                    "npipe" => "'type: npipe' is a Compose mount the reconciler cannot apply: it is a Windows named pipe, and the reconciler runs Linux containers".to_string(),
                    "cluster" => "'type: cluster' is a Compose mount the reconciler cannot apply: it is a Swarm cluster (CSI) volume, with no meaning on one host".to_string(),
                    _ => format!("mount type '{other}' is not supported (volume, bind, tmpfs)"),
                };
                self.problem(node, &type_key, message);
                return None;
            }
            None => {
                self.problem(
                    node,
                    key,
                    "a long-form volume needs 'type' (volume, bind or tmpfs)",
                );
                return None;
            }
        };
        let Some(target) = node
            .get("target")
            .and_then(|t| self.string(t, &join(key, "target")))
        else {
            self.problem(node, key, "a long-form volume needs 'target'");
            return None;
        };
        let source = node
            .get("source")
            .and_then(|s| self.string(s, &join(key, "source")));
        if kind == MountKind::Bind && source.is_none() {
            self.problem(node, key, "a bind mount needs 'source'");
            return None;
        }
        let read_only = node
            .get("read_only")
            .and_then(|r| self.bool(r, &join(key, "read_only")))
            .unwrap_or(false);
        if let Some((k, _)) = node
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.key_text() == "consistency"))
        {
            self.warn(k, &join(key, "consistency"), "'consistency' is ignored: it tunes file sharing of Docker Desktop on macOS and has no effect on Linux (as with Compose)");
        }
        let mut mount = MountSpec {
            target,
            kind,
            source,
            read_only,
            repo_relative: None,
            tmpfs_size: None,
            no_copy: false,
            shared_data: false,
            options: MountOptions::default(),
        };
        let before = self.problems_kept();
        for (section, applies) in [
            ("bind", kind == MountKind::Bind),
            ("volume", kind == MountKind::Volume),
            ("tmpfs", kind == MountKind::Tmpfs),
            ("image", false),
        ] {
            let Some(n) = node.get(section) else {
                continue;
            };
            let skey = join(key, section);
            if !applies {
                self.problem(
                    n,
                    &skey,
                    format!(
                        "'{section}' settings do not apply to a mount of type {}",
                        type_name(kind)
                    ),
                );
                continue;
            }
            let Some(fields) = self.map(n, &skey) else {
                continue;
            };
            match kind {
                MountKind::Bind => self.bind_options(n, fields, &skey, &mut mount),
                MountKind::Volume => self.volume_options(n, fields, &skey, &mut mount),
                MountKind::Tmpfs => self.tmpfs_options(n, fields, &skey, &mut mount),
            }
        }
        (self.problems_kept() == before).then_some(mount)
    }

    /// `bind:` propagation, create_host_path, selinux and recursive.
    fn bind_options(
        &mut self,
        node: &Node,
        fields: &[(Node, Node)],
        key: &str,
        mount: &mut MountSpec,
    ) {
        self.check_keys(fields, key, BIND_KEYS);
        let options = &mut mount.options;
        if let Some(n) = node.get("propagation") {
            let pkey = join(key, "propagation");
            match self.string(n, &pkey) {
                Some(p) if PROPAGATIONS.contains(&p.as_str()) => options.propagation = Some(p),
                Some(p) => self.problem(
                    n,
                    &pkey,
                    format!("'{p}' is not a propagation ({})", PROPAGATIONS.join(", ")),
                ),
                None => {}
            }
        }
        if let Some(n) = node.get("create_host_path") {
            options.create_host_path = self.bool(n, &join(key, "create_host_path"));
        }
        if let Some(n) = node.get("selinux") {
            let skey = join(key, "selinux");
            match self.string(n, &skey).as_deref() {
                Some(z @ ("z" | "Z")) => options.selinux = Some(z.to_string()),
                Some(other) => self.problem(
                    n,
                    &skey,
                    format!("'{other}' is not an SELinux relabelling (z shared, Z private)"),
                ),
                None => {}
            }
        }
        if let Some(n) = node.get("recursive") {
            let rkey = join(key, "recursive");
            match self.string(n, &rkey).as_deref() {
                Some("enabled") | None => {}
                Some("disabled") => options.non_recursive = true,
                Some(r @ ("writable" | "readonly")) => self.problem(n, &rkey, format!("'recursive: {r}' is a Compose setting the reconciler cannot apply: it needs Docker Engine API 1.44 (Engine 25), and the reconciler speaks API 1.41")),
                Some(other) => self.problem(n, &rkey, format!("'{other}' is not a recursive mode (enabled, disabled, writable, readonly)")),
            }
        }
        if options.non_recursive && mount.needs_legacy_bind() {
            self.problem(node, key, "'recursive: disabled' cannot be combined with create_host_path: true or selinux: under API 1.41 only the legacy bind form creates folders and relabels, and it always binds recursively");
        }
    }

    /// `volume:` nocopy and labels; subpath needs a newer engine.
    fn volume_options(
        &mut self,
        node: &Node,
        fields: &[(Node, Node)],
        key: &str,
        mount: &mut MountSpec,
    ) {
        self.check_keys(fields, key, VOLUME_OPTION_KEYS);
        if let Some(n) = node.get("nocopy") {
            mount.no_copy = self.bool(n, &join(key, "nocopy")).unwrap_or(false);
        }
        if let Some(n) = node.get("labels") {
            mount.options.volume_labels = self.string_map(n, &join(key, "labels"));
        }
        if let Some((k, _)) = fields.iter().find(|(k, _)| k.key_text() == "subpath") {
            self.problem(k, &join(key, "subpath"), "'volume.subpath' is a Compose key the reconciler cannot apply: it needs Docker Engine API 1.45 (Engine 26), and the reconciler speaks API 1.41");
        }
    }

    /// `tmpfs:` size and mode (octal, as the specification says).
    fn tmpfs_options(
        &mut self,
        node: &Node,
        fields: &[(Node, Node)],
        key: &str,
        mount: &mut MountSpec,
    ) {
        self.check_keys(fields, key, TMPFS_KEYS);
        if let Some(n) = node.get("size") {
            mount.tmpfs_size = self.bytes(n, &join(key, "size"));
        }
        if let Some(n) = node.get("mode") {
            let mkey = join(key, "mode");
            if let Some(text) = self.string(n, &mkey) {
                let digits = text.strip_prefix("0o").unwrap_or(&text);
                match u32::from_str_radix(digits, 8) {
                    Ok(mode) if mode <= 0o7777 => mount.options.tmpfs_mode = Some(mode),
                    _ => self.problem(
                        n,
                        &mkey,
                        format!("'{text}' is not a file mode in octal (write e.g. 1777 or 0755)"),
                    ),
                }
            }
        }
    }
}

const LONG_KEYS: &[&str] = &[
    "type",
    "source",
    "target",
    "read_only",
    "bind",
    "volume",
    "tmpfs",
    "image",
    "consistency",
];
const BIND_KEYS: &[&str] = &["propagation", "create_host_path", "selinux", "recursive"];
const VOLUME_OPTION_KEYS: &[&str] = &["nocopy", "subpath", "labels"];
const TMPFS_KEYS: &[&str] = &["size", "mode"];

fn type_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Volume => "volume",
        MountKind::Bind => "bind",
        MountKind::Tmpfs => "tmpfs",
    }
}

impl Cx<'_> {
    /// A read-only bind of a folder that a service of the stack writes (the same folder, or one
    /// that holds it) sees the data folder too, as it would in a checkout: a web server serving
    /// what the application uploads.
    pub(in crate::desired::compose) fn share_written_folders(
        &mut self,
        services: &mut BTreeMap<String, crate::desired::model::Service>,
    ) {
        let written: Vec<String> = services
            .values()
            .flat_map(|s| &s.spec.mounts)
            .filter(|m| m.in_data_folder() && !m.read_only)
            .filter_map(|m| m.repo_relative.clone())
            .collect();
        let holds = |outer: &str, inner: &str| {
            outer == "."
                || inner == outer
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        for service in services.values_mut() {
            for mount in service.spec.mounts.iter_mut() {
                if mount.in_data_folder() || mount.repo_relative.is_none() {
                    continue;
                }
                let Some(real) = mount
                    .source
                    .as_deref()
                    .and_then(|source| self.files.bind_source(source).ok())
                    .map(|found| found.real)
                else {
                    continue;
                };
                if written.iter().any(|w| holds(&real, w)) {
                    mount.shared_data = true;
                    mount.repo_relative = Some(real);
                }
            }
        }
    }
}
