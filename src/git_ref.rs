//! Moving a git ref with a compare-and-swap, as receive-pack does: the notes writer and the
//! API's commits both race other writers for a ref and must never overwrite a move they did
//! not see.

use git2::{ErrorCode, Oid, Repository};

/// Moves `name` from `expected` (`None`: the ref must not exist yet) to `new`; `false` when
/// someone else moved or created it first.
pub fn move_ref(
    repo: &Repository,
    name: &str,
    new: Oid,
    expected: Option<Oid>,
    message: &str,
) -> Result<bool, git2::Error> {
    let result = match expected {
        Some(old) => repo.reference_matching(name, new, true, old, message),
        None => repo.reference(name, new, false, message),
    };
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
