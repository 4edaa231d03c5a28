//! Volumes through the engine's archive endpoint: a holder container that mounts the volume
//! (never started), the tar of its content streamed out and in, pause/unpause around a copy.

use super::DockerEngine;
use crate::engine::{HolderRequest, Result, HOLDER_PATH};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Chunks read from a backup file for the engine, and how many may wait in between.
const UPLOAD_CHUNK: usize = 64 * 1024;
const UPLOAD_QUEUE: usize = 4;

impl DockerEngine {
    pub(super) async fn holder(&self, request: &HolderRequest) -> Result<String> {
        let labels: HashMap<String, String> = request.labels().into_iter().collect();
        let body = ContainerCreateBody {
            image: Some(request.image.clone()),
            // Never started: the command only has to exist for create to accept an image that
            // names none.
            cmd: Some(vec!["reconciler-volume-holder".to_string()]),
            entrypoint: Some(vec!["reconciler-volume-holder".to_string()]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_string()),
                mounts: Some(vec![Mount {
                    target: Some(HOLDER_PATH.to_string()),
                    source: Some(request.volume.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(request.read_only),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(request.name.clone()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(options), body)
            .await
            .map(|created| created.id)
            .map_err(|e| self.error("create container", &request.name, e))
    }

    pub(super) async fn download(
        &self,
        id: &str,
        path: &str,
        sink: &mut (dyn Write + Send),
    ) -> Result<u64> {
        let options = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error("download archive", id, e))?;
            sink.write_all(&chunk)
                .map_err(|e| crate::engine::EngineError::Call {
                    call: "download archive",
                    target: id.to_string(),
                    message: format!("cannot write the copy: {e}"),
                })?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    pub(super) async fn upload(
        &self,
        id: &str,
        path: &str,
        mut source: Box<dyn Read + Send>,
    ) -> Result<()> {
        // The file is read on a thread of its own, a few chunks ahead of the engine.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(UPLOAD_QUEUE);
        let reader = tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0u8; UPLOAD_CHUNK];
            loop {
                let item = match source.read(&mut buffer) {
                    Ok(0) => return,
                    Ok(n) => Ok(bytes::Bytes::copy_from_slice(&buffer[..n])),
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let options = UploadToContainerOptions {
            path: path.to_string(),
            ..Default::default()
        };
        let result = self
            .docker
            .upload_to_container(id, Some(options), bollard::body_try_stream(stream))
            .await
            .map_err(|e| self.error("upload archive", id, e));
        let _ = reader.await;
        result
    }

    pub(super) async fn pause(&self, id: &str) -> Result<()> {
        self.docker
            .pause_container(id)
            .await
            .map_err(|e| self.error("pause container", id, e))
    }

    pub(super) async fn unpause(&self, id: &str) -> Result<()> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(|e| self.error("unpause container", id, e))
    }

    pub(super) async fn volume_path(&self, name: &str) -> Result<Option<PathBuf>> {
        if !self.endpoint.starts_with("unix://") {
            return Ok(None);
        }
        let volume = match self.docker.inspect_volume(name).await {
            Ok(v) => v,
            Err(e) if super::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.error("inspect volume", name, e)),
        };
        let plain = volume.driver == "local" && volume.options.is_empty();
        Ok(plain.then(|| PathBuf::from(volume.mountpoint)))
    }
}
