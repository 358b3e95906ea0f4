//! The TaskRun controller: TaskRuns in, ConfigMaps, Jobs and TaskRun status out.
