//! ConfigMap volumes: written into the pod's directory and rewritten when the ConfigMap
//! changes; paths under their mount paths translated to that directory.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, PodSpec};

/// A ConfigMap volume as written into the pod's directory.
pub(super) struct Volume {
    pub(super) config_map: String,
    items: Option<Vec<KeyToPath>>,
    dir: PathBuf,
    written: Option<BTreeMap<String, String>>,
}

/// (mount path in the container, directory standing for it), longest mount path first.
pub(super) type Mounts = Vec<(String, PathBuf)>;

/// The container's ConfigMap volumes, written under `dir/volumes/<name>`, and the (mount path,
/// directory) pairs, longest mount path first (nested mounts win).
pub(super) fn mount_volumes(
    spec: &PodSpec,
    container: &Container,
    dir: &Path,
    maps: &BTreeMap<String, ConfigMap>,
) -> Result<(Vec<Volume>, Mounts), String> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        if m.sub_path.is_some() {
            return Err(format!(
                "volumeMount {}: subPath is not supported here",
                m.name
            ));
        }
        let v = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .ok_or_else(|| format!("volumeMount {} names no volume", m.name))?;
        let source = v.config_map.as_ref().ok_or_else(|| {
            format!(
                "volume {}: only configMap volumes are supported here",
                v.name
            )
        })?;
        let host = dir.join("volumes").join(&v.name);
        std::fs::create_dir_all(&host).map_err(|e| format!("{}: {e}", host.display()))?;
        let mut volume = Volume {
            config_map: source.name.clone(),
            items: source.items.clone(),
            dir: host.clone(),
            written: None,
        };
        match maps.get(&source.name) {
            Some(cm) => {
                volume.write(cm)?;
            }
            None if source.optional == Some(true) => {}
            None => {
                return Err(format!(
                    "FailedMount: volume {}: ConfigMap {} not found",
                    v.name, source.name
                ));
            }
        }
        mounts.push((m.mount_path.clone(), host));
        volumes.push(volume);
    }
    mounts.sort_by_key(|(path, _)| Reverse(path.len()));
    Ok((volumes, mounts))
}

/// `value` with a leading mount path replaced by the directory standing for it.
pub(super) fn translate_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, host) in mounts {
        let mount = mount.trim_end_matches('/');
        if let Some(rest) = value.strip_prefix(mount)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", host.display());
        }
    }
    value.to_owned()
}

impl Volume {
    /// Writes the ConfigMap's keys (or its `items`) as files; returns whether anything changed.
    /// Each file is written beside its final name and renamed over it, so a reader sees the old
    /// or the new content, never a part (kubelet swaps a symlink for the same effect).
    pub(super) fn write(&mut self, cm: &ConfigMap) -> Result<bool, String> {
        let data = cm.data.clone().unwrap_or_default();
        if self.written.as_ref() == Some(&data) {
            return Ok(false);
        }
        let files: Vec<(String, &String)> = match &self.items {
            Some(items) => items
                .iter()
                .map(|item| {
                    data.get(&item.key)
                        .map(|value| (item.path.clone(), value))
                        .ok_or_else(|| {
                            format!("ConfigMap {} has no key {}", self.config_map, item.key)
                        })
                })
                .collect::<Result<_, _>>()?,
            None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
        };
        for (file, value) in &files {
            let path = self.dir.join(file);
            let staged = self.dir.join(format!(".{file}.staged"));
            std::fs::write(&staged, value)
                .and_then(|()| std::fs::rename(&staged, &path))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        if self.items.is_none()
            && let Some(before) = &self.written
        {
            for key in before.keys().filter(|k| !data.contains_key(*k)) {
                let _ = std::fs::remove_file(self.dir.join(key));
            }
        }
        self.written = Some(data);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_mount_move_into_its_directory() {
        let mounts = vec![
            ("/etc/q/replay".to_owned(), PathBuf::from("/tmp/p/replay")),
            ("/etc/q".to_owned(), PathBuf::from("/tmp/p/config")),
        ];
        assert_eq!(
            translate_path("/etc/q/worker.json", &mounts),
            "/tmp/p/config/worker.json"
        );
        assert_eq!(
            translate_path("/etc/q/replay/r.ndjson", &mounts),
            "/tmp/p/replay/r.ndjson"
        );
        assert_eq!(translate_path("/etc/qq", &mounts), "/etc/qq");
        assert_eq!(translate_path("0.0.0.0:8080", &mounts), "0.0.0.0:8080");
    }
}
