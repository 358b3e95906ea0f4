//! The I/O around one attempt's plan: fetches the ConfigMaps and Secrets a Job references,
//! and writes the planned directories and files (and the empty termination message file) into
//! the private run directory.

use super::plan::{Data, References, RunPlan, Sources};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use std::io;

/// Fetches every referenced ConfigMap and Secret from `namespace`; one that does not exist is
/// left out (the plan decides whether that is an error).
pub async fn fetch_sources(
    client: &Client,
    namespace: &str,
    refs: &References,
) -> Result<Sources, kube::Error> {
    let mut sources = Sources::default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for name in &refs.config_maps {
        if let Some(cm) = config_maps.get_opt(name).await? {
            let mut data: Data = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            sources.config_maps.insert(name.clone(), data);
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in &refs.secrets {
        if let Some(secret) = secrets.get_opt(name).await? {
            let mut data: Data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            // stringData is write-only on a real server, but an embedded one may keep it.
            data.extend(
                secret
                    .string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            sources.secrets.insert(name.clone(), data);
        }
    }
    Ok(sources)
}

/// Creates the plan's directories and writes its files.
pub fn write_files(plan: &RunPlan) -> io::Result<()> {
    for dir in &plan.dirs {
        std::fs::create_dir_all(dir)?;
    }
    for (path, bytes) in &plan.files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    if let Some(parent) = plan.termination_message.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&plan.termination_message, b"")?;
    Ok(())
}
