//! Sends a few traces to spanline with the OpenTelemetry Rust SDK, as an application would.
//!
//! ```text
//! cargo run --example send_traces                          # gRPC to 127.0.0.1:4317
//! cargo run --example send_traces -- --protocol http       # HTTP protobuf to 127.0.0.1:4318
//! cargo run --example send_traces -- --protocol http-json --gzip --traces 50
//! ```

use std::time::Duration;

use clap::{Parser, ValueEnum};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::{
    Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::{Resource, runtime};

#[derive(Parser)]
struct Args {
    /// Where spanline listens (default: 4317 for grpc, 4318 for http).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Proto,
    /// How many traces (each a request with a database call) to send.
    #[arg(long, default_value_t = 10)]
    traces: usize,
    /// Compress requests with gzip.
    #[arg(long)]
    gzip: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    Grpc,
    Http,
    HttpJson,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let compression = if args.gzip {
        Some(Compression::Gzip)
    } else {
        None
    };
    let exporter = match args.protocol {
        Proto::Grpc => {
            let endpoint = args
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:4317".into());
            let builder = SpanExporter::builder().with_tonic().with_endpoint(endpoint);
            match compression {
                Some(c) => builder.with_compression(c).build()?,
                None => builder.build()?,
            }
        }
        Proto::Http | Proto::HttpJson => {
            let endpoint = args
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:4318/v1/traces".into());
            let protocol = if matches!(args.protocol, Proto::Http) {
                Protocol::HttpBinary
            } else {
                Protocol::HttpJson
            };
            let builder = SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .with_protocol(protocol);
            match compression {
                Some(c) => builder.with_compression(c).build()?,
                None => builder.build()?,
            }
        }
    };
    // The tokio-driven batch processor: the OTLP HTTP and gRPC clients need the runtime.
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name("checkout").build())
        .build();
    let tracer = provider.tracer("send_traces");
    for i in 0..args.traces {
        let mut root = tracer
            .span_builder("POST /checkout")
            .with_kind(SpanKind::Server)
            .start(&tracer);
        root.set_attribute(KeyValue::new("http.route", "/checkout"));
        root.set_attribute(KeyValue::new("order.id", i as i64));
        let cx = opentelemetry::Context::current_with_span(root);
        let mut db = tracer
            .span_builder("SELECT orders")
            .with_kind(SpanKind::Client)
            .start_with_context(&tracer, &cx);
        db.set_attribute(KeyValue::new("db.system", "postgresql"));
        if i % 5 == 4 {
            db.set_status(Status::error("deadlock detected"));
        }
        db.end();
        cx.span().end();
    }
    // The tokio-driven processor flushes on runtime threads: wait off the async thread.
    tokio::task::spawn_blocking(move || {
        provider.force_flush()?;
        provider.shutdown_with_timeout(Duration::from_secs(10))
    })
    .await??;
    println!("sent {} traces ({} spans)", args.traces, args.traces * 2);
    Ok(())
}
