pub mod jaeger;
pub mod otlp_json;
pub mod params;
pub mod table;
pub mod traceql;
pub mod waterfall;
