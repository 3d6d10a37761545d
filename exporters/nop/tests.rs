//! Tests for the nop exporter.

use super::{NopConfig, NopExporterFactory};
use crate::component::{
    BuildContext, Exporter, ExporterFactory, Health, ResourceSpans, ScopeSpans, Span, TraceBatch,
};

#[test]
fn takes_no_keys() {
    let doc: serde_yaml::Value = serde_yaml::from_str(NopExporterFactory::EXAMPLE_YAML).unwrap();
    let parsed: NopConfig = serde_yaml::from_value(doc["nop"].clone()).unwrap();
    assert_eq!(parsed, NopConfig::default());
    let err = serde_yaml::from_str::<NopConfig>("endpoint: x").unwrap_err();
    assert!(err.to_string().contains("endpoint"), "{err}");
}

#[tokio::test]
async fn accepts_every_batch() {
    let ctx = BuildContext {
        id: "nop".into(),
        pipeline: None,
    };
    let mut exporter = NopExporterFactory
        .build(NopConfig::default(), &ctx)
        .unwrap();
    exporter.start().await.unwrap();
    let batch = TraceBatch::measured(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span::default(); 100],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    for _ in 0..3 {
        exporter.export(&batch).await.unwrap();
    }
    exporter.export(&TraceBatch::default()).await.unwrap();
    exporter.flush().await.unwrap();
    exporter.shutdown().await;
    let mut exporter: Box<dyn Exporter> = Box::new(super::NopExporter);
    assert_eq!(exporter.healthcheck().await, Health::Healthy);
}
