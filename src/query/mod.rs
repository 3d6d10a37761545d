pub mod jaeger;
pub mod otlp_json;
pub mod params;
pub mod traceql;
