//! Pipelines turned into nodes and edges: which receivers feed which pipelines, which
//! exporters each pipeline feeds, and the order to start them in.

use crate::config::Config;

/// What the runtime builds, in start order: exporters, then pipelines, then receivers.
/// Stopping goes the other way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Exporters used by at least one pipeline, in config order.
    pub exporters: Vec<String>,
    pub pipelines: Vec<PipelineNode>,
    /// Receivers used by at least one pipeline, with the pipelines each one feeds.
    pub receivers: Vec<ReceiverNode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineNode {
    pub id: String,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverNode {
    pub id: String,
    pub pipelines: Vec<String>,
}

impl Graph {
    pub fn from_config(config: &Config) -> Self {
        let pipelines: Vec<PipelineNode> = config
            .pipelines
            .iter()
            .map(|p| PipelineNode {
                id: p.id.clone(),
                processors: p.processors.clone(),
                exporters: p.exporters.clone(),
            })
            .collect();
        let exporters = config
            .exporters
            .iter()
            .filter(|e| pipelines.iter().any(|p| p.exporters.contains(&e.id)))
            .map(|e| e.id.clone())
            .collect();
        let mut receivers = Vec::new();
        for receiver in &config.receivers {
            let feeds: Vec<String> = config
                .pipelines
                .iter()
                .filter(|p| p.receivers.contains(&receiver.id))
                .map(|p| p.id.clone())
                .collect();
            if !feeds.is_empty() {
                receivers.push(ReceiverNode {
                    id: receiver.id.clone(),
                    pipelines: feeds,
                });
            }
        }
        Self {
            exporters,
            pipelines,
            receivers,
        }
    }
}
