//! Pure: a snapshot and the live TaskRuns in, the TaskRuns that should exist out.
