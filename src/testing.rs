//! Test support for component authors: a receiver that hands its pipeline input to the test.

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::component::{
    BuildContext, ComponentConfig, ComponentError, Receiver, ReceiverContext, ReceiverFactory,
    TraceConsumer,
};

/// The config of a component that takes none.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoConfig {}

impl ComponentConfig for NoConfig {}

/// A receiver (`probe`) that sends the test the `TraceConsumer` the host gives it, so a test
/// can feed processors and exporters through a real pipeline without a network server.
pub struct ProbeReceiverFactory {
    consumers: mpsc::UnboundedSender<TraceConsumer>,
}

impl ProbeReceiverFactory {
    /// The factory, and where each started probe's consumer arrives.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<TraceConsumer>) {
        let (consumers, rx) = mpsc::unbounded_channel();
        (Self { consumers }, rx)
    }
}

struct Probe(mpsc::UnboundedSender<TraceConsumer>);

impl ReceiverFactory for ProbeReceiverFactory {
    type Config = NoConfig;
    const TYPE: &'static str = "probe";
    const EXAMPLE_YAML: &'static str = "probe: {}\n";

    fn build(&self, _: NoConfig, _: &BuildContext) -> Result<Box<dyn Receiver>, ComponentError> {
        Ok(Box::new(Probe(self.consumers.clone())))
    }
}

#[async_trait]
impl Receiver for Probe {
    async fn start(
        self: Box<Self>,
        ctx: ReceiverContext,
    ) -> Result<tokio::task::JoinHandle<()>, ComponentError> {
        let _ = self.0.send(ctx.consumer.clone());
        Ok(tokio::spawn(async move { ctx.shutdown.cancelled().await }))
    }
}

/// A config's validation problems as `path: message` lines, for asserting in tests.
pub fn problems_of<C: ComponentConfig>(config: &C) -> Vec<String> {
    let mut problems = crate::component::Problems::new();
    config.validate(&mut problems);
    problems
        .into_vec()
        .into_iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}
