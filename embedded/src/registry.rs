//! The set of served resources: built-ins plus what established CRDs add; lookups by path,
//! kind and storage key.

use super::resources::{ResourceInfo, builtin_resources, crd_resources};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Registry {
    builtins: Vec<Arc<ResourceInfo>>,
    /// By CRD name.
    custom: BTreeMap<String, Vec<Arc<ResourceInfo>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            builtins: builtin_resources().into_iter().map(Arc::new).collect(),
            custom: BTreeMap::new(),
        }
    }
}

impl Registry {
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.builtins.iter().chain(self.custom.values().flatten())
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Any served version of the resource stored under `key`.
    pub fn by_storage_key(&self, key: &str) -> Option<Arc<ResourceInfo>> {
        self.all().find(|r| r.storage_key() == key).cloned()
    }

    /// Groups in discovery order (core first, then built-in groups, then CRD groups), each with
    /// its versions in order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.all()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }

    /// Registers (or re-registers) what a CRD serves.
    pub fn register_crd(&mut self, crd: &Value) {
        let Some(name) = crd["metadata"]["name"].as_str() else {
            return;
        };
        let resources: Vec<_> = crd_resources(crd).into_iter().map(Arc::new).collect();
        self.custom.insert(name.to_string(), resources);
    }

    pub fn unregister_crd(&mut self, name: &str) {
        self.custom.remove(name);
    }
}
