//! Git notes: sync reports and TaskRun status in, a note on each synced commit out.
//!
//! [`render`] is pure (report + states → note text); [`tracker`] decides which notes to write;
//! [`store`] and [`push`] carry that out with git2; [`writer`] runs it in the background
//! ([`writer::spawn_notes_writer`]); [`read`] is what `orchestrator status` and `wait` use.

pub mod error;
pub mod metrics;
pub mod model;
pub mod push;
pub mod read;
pub mod render;
pub mod store;
pub mod tracker;
pub mod verdict;
pub mod writer;

pub use error::NotesError;
pub use metrics::NotesMetrics;
pub use model::{DEFAULT_ENVIRONMENT, NOTE_API_VERSION, NOTES_REF, Note, TaskState, notes_ref_for};
pub use render::render_note;
pub use writer::{NotesConfig, NotesWriterHandle, TaskStates, report_stream, spawn_notes_writer};
