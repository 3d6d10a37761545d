pub mod params;
pub mod traceql;
