//! Running pipelines: pipeline tasks, exporter runners, shutdown.
