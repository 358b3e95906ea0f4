//! The PM handler: HTTP requests in, commits (and a sync trigger) out.
