//! Reading task folders from a plain directory (a working tree, a CI checkout): directory and
//! path in, `SourceSnapshot` out. Symlinks are reported, never followed.

use super::error::SourceError;
use super::folder::{EntryKind, ParsedFolder, RawEntry, is_hidden, parse_folder, wants_content};
use super::layout::{ParsedEntry, TopKind, TopLevel, assemble, classify_entry, normalize_path};
use super::snapshot::{Revision, SourceSnapshot};
use std::fs;
use std::path::Path;

/// The snapshot of `dir/path` as it is on disk, uncommitted changes included. Its revision is
/// [`Revision::working_tree`].
pub fn read_folder_snapshot(dir: &Path, path: &str) -> Result<SourceSnapshot, SourceError> {
    let path = normalize_path(path);
    let root = dir.join(&path);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SourceError::ReadFolder { path: p, source }
    };
    let meta = fs::metadata(&root).map_err(io(&root))?;
    let revision = Revision::working_tree();
    if !meta.is_dir() {
        return Err(SourceError::PathNotAFolder {
            path: root.display().to_string(),
            revision: revision.to_string(),
        });
    }
    let mut candidates = Vec::new();
    let mut broken = Vec::new();
    for entry in fs::read_dir(&root).map_err(io(&root))? {
        let entry = entry.map_err(io(&root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let file_type = entry.file_type().map_err(io(&entry.path()))?;
        let kind = if file_type.is_symlink() {
            TopKind::Symlink
        } else if file_type.is_dir() {
            TopKind::Dir
        } else {
            TopKind::File
        };
        match classify_entry(&path, &name, kind) {
            TopLevel::Ignored => {}
            TopLevel::Broken(error) => broken.push(error),
            TopLevel::TaskFolder { task_id } => {
                let parsed = read_folder_dir(&entry.path())?;
                candidates.push((name, task_id, parsed));
            }
        }
    }
    let folders = candidates
        .iter()
        .map(|(name, task_id, parsed)| ParsedEntry {
            name: name.clone(),
            task_id: *task_id,
            parsed: parsed.as_ref().map_err(Vec::as_slice),
        })
        .collect();
    Ok(assemble(revision, &path, folders, broken))
}

fn read_folder_dir(dir: &Path) -> Result<ParsedFolder, SourceError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SourceError::ReadFolder { path: p, source }
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_hidden(&name) {
            continue;
        }
        let file_type = entry.file_type().map_err(io(&entry.path()))?;
        let kind = if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else {
            let size = entry.metadata().map_err(io(&entry.path()))?.len();
            let content = if wants_content(&name, size) {
                Some(fs::read(entry.path()).map_err(io(&entry.path()))?)
            } else {
                None
            };
            EntryKind::File { size, content }
        };
        entries.push(RawEntry { name, kind });
    }
    Ok(parse_folder(entries))
}
