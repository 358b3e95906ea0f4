//! Git notes: sync reports and TaskRun status in, a note on each synced commit out.
