//! The polling git source: a [`SourceConfig`] in, the latest [`SourceSnapshot`] out. Keeps a bare
//! mirror, re-reads only when the branch moved, keeps the last good snapshot when the remote
//! cannot be reached, and tells the caller how long to wait before the next try.

use super::credentials::Credentials;
use super::error::SourceError;
use super::mirror::{Mirror, MirrorFailure, local_repo_path};
use super::snapshot::SourceSnapshot;
use super::tree::{DigestCache, read_snapshot};
use git2::Oid;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the tasks come from.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// https, ssh or file:// URL, or a local path.
    pub url: String,
    /// Branch (`main`), tag, full ref (`refs/pull/7/head`) or `HEAD` (the remote's default).
    pub branch: String,
    /// The folder inside the repository that holds the task folders ("" for the root).
    pub path: String,
    /// Where bare mirrors are kept (one per URL).
    pub mirror_dir: PathBuf,
    /// How often to poll when nothing triggers a fetch sooner.
    pub interval: Duration,
    pub credentials: Credentials,
}

/// First retry after a failed fetch; doubles per failure up to the poll interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(2);

/// How long to wait before the next fetch: the poll interval while healthy, a doubling backoff
/// (2 s, 4 s, 8 s, …, capped at the interval) after consecutive failures.
pub fn next_fetch_delay(consecutive_failures: u32, interval: Duration) -> Duration {
    if consecutive_failures == 0 {
        return interval;
    }
    let factor = 1u32 << (consecutive_failures - 1).min(16);
    FIRST_RETRY
        .saturating_mul(factor)
        .min(interval.max(FIRST_RETRY))
}

pub struct GitSource {
    config: SourceConfig,
    mirror: Arc<Mirror>,
    cache: DigestCache,
    last_good: Option<(Oid, Arc<SourceSnapshot>)>,
    failures: u32,
}

impl GitSource {
    pub fn new(config: SourceConfig) -> Self {
        let mirror = Arc::new(Mirror::new(
            &config.url,
            &config.mirror_dir,
            config.credentials.clone(),
        ));
        GitSource {
            config,
            mirror,
            cache: DigestCache::new(),
            last_good: None,
            failures: 0,
        }
    }

    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The newest snapshot read successfully, if any.
    pub fn last_good(&self) -> Option<Arc<SourceSnapshot>> {
        self.last_good.as_ref().map(|(_, s)| s.clone())
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// See [`next_fetch_delay`].
    pub fn next_delay(&self) -> Duration {
        next_fetch_delay(self.failures, self.config.interval)
    }

    /// The repository's directory when the URL is local (the caller may watch its refs).
    pub fn local_path(&self) -> Option<PathBuf> {
        local_repo_path(&self.config.url)
    }

    /// The bare mirror's directory.
    pub fn mirror_path(&self) -> PathBuf {
        self.mirror.path().to_path_buf()
    }

    /// Fetches and returns the branch's snapshot; the same `Arc` as before when the branch did
    /// not move. git work runs on the blocking pool. On failure the last good snapshot stays
    /// available through [`GitSource::last_good`].
    pub async fn fetch_snapshot(&mut self) -> Result<Arc<SourceSnapshot>, SourceError> {
        let mirror = self.mirror.clone();
        let config = self.config.clone();
        let last = self.last_good.as_ref().map(|(oid, _)| *oid);
        let mut cache = std::mem::take(&mut self.cache);
        let outcome = tokio::task::spawn_blocking(move || {
            let result = fetch_and_read(&mirror, &config, last, &mut cache);
            (result, cache)
        })
        .await;
        let result = match outcome {
            Ok((result, cache)) => {
                self.cache = cache;
                result
            }
            Err(join) => Err(Failure::Source(SourceError::Worker(join.to_string()))),
        };
        self.record(result)
    }

    /// [`GitSource::fetch_snapshot`] on the calling thread, for the CLI.
    pub fn fetch_snapshot_blocking(&mut self) -> Result<Arc<SourceSnapshot>, SourceError> {
        let last = self.last_good.as_ref().map(|(oid, _)| *oid);
        let result = fetch_and_read(&self.mirror, &self.config, last, &mut self.cache);
        self.record(result)
    }

    fn record(
        &mut self,
        result: Result<Option<(Oid, SourceSnapshot)>, Failure>,
    ) -> Result<Arc<SourceSnapshot>, SourceError> {
        match result {
            Ok(Some((oid, mut snapshot))) => {
                self.failures = 0;
                if let Some((_, previous)) = &self.last_good {
                    snapshot.share_paths_with(previous);
                }
                let snapshot = Arc::new(snapshot);
                self.last_good = Some((oid, snapshot.clone()));
                Ok(snapshot)
            }
            Ok(None) => {
                self.failures = 0;
                self.last_good().ok_or_else(|| {
                    SourceError::Worker("unchanged commit without a previous snapshot".into())
                })
            }
            Err(failure) => {
                self.failures += 1;
                let error = match failure {
                    Failure::Fetch(message) => SourceError::Fetch {
                        url: self.mirror.display_url(),
                        attempt: self.failures,
                        message,
                        last_good: self.last_good().map(|s| s.revision.to_string()),
                    },
                    Failure::Source(e) => e,
                };
                tracing::warn!(
                    error = %error,
                    retry_in = ?self.next_delay(),
                    "git source fetch failed"
                );
                Err(error)
            }
        }
    }
}

enum Failure {
    Fetch(String),
    Source(SourceError),
}

/// Fetch, then read the snapshot unless the commit is `last`. A mirror whose objects turn out
/// unreadable while reading is cloned again once.
fn fetch_and_read(
    mirror: &Mirror,
    config: &SourceConfig,
    last: Option<Oid>,
    cache: &mut DigestCache,
) -> Result<Option<(Oid, SourceSnapshot)>, Failure> {
    let fetch = |mirror: &Mirror| {
        mirror.fetch(&config.branch).map_err(|f| match f {
            MirrorFailure::Fetch(message) => Failure::Fetch(message),
            MirrorFailure::Source(e) => Failure::Source(e),
        })
    };
    let (repo, commit, label) = fetch(mirror)?;
    if last == Some(commit) {
        return Ok(None);
    }
    match read_snapshot(&repo, commit, &label, &config.path, cache) {
        Ok(snapshot) => Ok(Some((commit, snapshot))),
        Err(SourceError::ReadObject { what, source }) => {
            tracing::warn!(mirror = %mirror.path().display(), %what, %source, "mirror objects unreadable; cloning again");
            drop(repo);
            mirror.recreate().map_err(Failure::Source)?;
            let (repo, commit, label) = fetch(mirror)?;
            *cache = DigestCache::new();
            read_snapshot(&repo, commit, &label, &config.path, cache)
                .map(|s| Some((commit, s)))
                .map_err(Failure::Source)
        }
        Err(e) => Err(Failure::Source(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let minute = Duration::from_secs(60);
        let secs = |n| Duration::from_secs(n);
        for (failures, interval, want) in [
            (0, minute, minute),
            (1, minute, secs(2)),
            (2, minute, secs(4)),
            (3, minute, secs(8)),
            (5, minute, secs(32)),
            (6, minute, minute),
            (60, minute, minute),
            (1, secs(1), secs(2)),
            (3, Duration::from_secs(600), secs(8)),
        ] {
            assert_eq!(
                next_fetch_delay(failures, interval),
                want,
                "{failures} failures, {interval:?}"
            );
        }
    }
}
