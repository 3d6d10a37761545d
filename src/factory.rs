//! Type erasure of the typed factories: parsing, validation and `Any` live here, once.

use std::any::Any;
use std::sync::Arc;

use serde_yaml::Value;

use crate::component::{
    BuildContext, ComponentConfig, ComponentError, Exporter, ExporterFactory, Kind, Problem,
    Problems, Processor, ProcessorFactory, Receiver, ReceiverFactory,
};

/// A parsed, validated component config, waiting to be built.
pub struct ParsedConfig(Box<dyn Any + Send>);

/// A built component of any kind.
pub enum Built {
    Receiver(Box<dyn Receiver>),
    Processor(Box<dyn Processor>),
    Exporter(Box<dyn Exporter>),
}

/// What the host knows of a factory once its types are erased.
pub trait AnyFactory: Send + Sync {
    fn kind(&self) -> Kind;
    fn type_name(&self) -> &'static str;
    fn example_yaml(&self) -> &'static str;
    /// Parses and validates a config value; problems carry paths relative to the component.
    fn parse(&self, value: &Value) -> (Option<ParsedConfig>, Vec<Problem>);
    fn build(&self, config: ParsedConfig, ctx: &BuildContext) -> Result<Built, ComponentError>;
}

/// Deserializes `value` into `C` (null means all defaults) and validates it.
fn parse_typed<C: ComponentConfig>(value: &Value) -> (Option<C>, Vec<Problem>) {
    let mut problems = Problems::new();
    let config = if value.is_null() {
        C::default()
    } else {
        match serde_path_to_error::deserialize::<_, C>(value) {
            Ok(config) => config,
            Err(err) => {
                let (path, message) = describe_serde_error(&err);
                problems.error(path, message);
                return (None, problems.into_vec());
            }
        }
    };
    config.validate(&mut problems);
    (Some(config), problems.into_vec())
}

/// Turns a serde error into (relative path, message). For an unknown field the path names
/// the field itself, so the reported line is the line of the typo.
pub fn describe_serde_error(
    err: &serde_path_to_error::Error<serde_yaml::Error>,
) -> (String, String) {
    let mut path = String::new();
    for segment in err.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !path.is_empty() {
                    path.push_str("::");
                }
                path.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let message = err.inner().to_string();
    let message = strip_location(&message);
    (path, message)
}

/// serde_yaml appends " at line N column M" when it knows it; the host reports lines itself.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

macro_rules! erased_factory {
    ($wrapper:ident, $factory:ident, $kind:expr, $built:ident) => {
        /// Erases a typed factory of one kind.
        pub struct $wrapper<F>(pub F);

        impl<F: $factory> AnyFactory for $wrapper<F> {
            fn kind(&self) -> Kind {
                $kind
            }
            fn type_name(&self) -> &'static str {
                F::TYPE
            }
            fn example_yaml(&self) -> &'static str {
                F::EXAMPLE_YAML
            }
            fn parse(&self, value: &Value) -> (Option<ParsedConfig>, Vec<Problem>) {
                let (config, problems) = parse_typed::<F::Config>(value);
                (config.map(|c| ParsedConfig(Box::new(c))), problems)
            }
            fn build(
                &self,
                config: ParsedConfig,
                ctx: &BuildContext,
            ) -> Result<Built, ComponentError> {
                let config = config
                    .0
                    .downcast::<F::Config>()
                    .map_err(|_| ComponentError::other(&ctx.id, "config of the wrong type"))?;
                self.0.build(*config, ctx).map(Built::$built)
            }
        }
    };
}

erased_factory!(ReceiverEntry, ReceiverFactory, Kind::Receiver, Receiver);
erased_factory!(ProcessorEntry, ProcessorFactory, Kind::Processor, Processor);
erased_factory!(ExporterEntry, ExporterFactory, Kind::Exporter, Exporter);

/// A shared, erased factory.
pub type FactoryRef = Arc<dyn AnyFactory>;
