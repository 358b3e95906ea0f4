//! The Prometheus registry shared by every stage; each stage registers its own metrics.
