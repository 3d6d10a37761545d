//! The synthetic topology: a small web shop's services, and how generated spans are grouped into requests.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::generate::GenSpan;

/// One service of the synthetic topology.
pub struct Service {
    pub name: &'static str,
    pub version: &'static str,
    /// Routes this service serves, `METHOD /path`.
    pub routes: &'static [&'static str],
    /// Indexes into `SERVICES` of the services it calls over HTTP.
    pub callees: &'static [usize],
    /// The database it talks to: `(db.system, db.name, statements)`.
    pub db: Option<(&'static str, &'static str, &'static [&'static str])>,
}

pub const FRONTEND: usize = 0;

pub const SERVICES: [Service; 7] = [
    Service {
        name: "frontend",
        version: "2.14.1",
        routes: &[
            "GET /",
            "GET /product/{id}",
            "POST /cart",
            "POST /checkout",
            "GET /search",
        ],
        callees: &[1, 3, 4, 5],
        db: None,
    },
    Service {
        name: "checkout",
        version: "1.8.0",
        routes: &["POST /api/checkout", "GET /api/orders/{order_id}"],
        callees: &[2, 3, 6],
        db: Some((
            "postgresql",
            "orders",
            &[
                "SELECT id, status, total_cents FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20",
                "INSERT INTO orders (customer_id, total_cents, currency, status) VALUES ($1, $2, $3, 'pending')",
            ],
        )),
    },
    Service {
        name: "payment",
        version: "3.2.7",
        routes: &["POST /api/charge", "POST /api/refund"],
        callees: &[],
        db: Some((
            "postgresql",
            "payments",
            &[
                "INSERT INTO charges (order_id, amount_cents, card_token, idempotency_key) VALUES ($1, $2, $3, $4)",
                "SELECT status FROM charges WHERE idempotency_key = $1 FOR UPDATE",
            ],
        )),
    },
    Service {
        name: "inventory",
        version: "0.19.3",
        routes: &["GET /api/stock/{sku}", "POST /api/reserve"],
        callees: &[],
        db: Some((
            "redis",
            "0",
            &[
                "HMGET stock:{sku} available reserved",
                "EVALSHA reserve_stock 1 stock:{sku} 2",
            ],
        )),
    },
    Service {
        name: "catalog",
        version: "5.0.2",
        routes: &["GET /api/products/{id}", "GET /api/products"],
        callees: &[3],
        db: Some((
            "postgresql",
            "catalog",
            &[
                "SELECT p.id, p.name, p.price_cents, p.image_url FROM products p WHERE p.id = $1",
                "SELECT id, name, price_cents FROM products WHERE category_id = $1 ORDER BY rank LIMIT 50",
            ],
        )),
    },
    Service {
        name: "cart",
        version: "1.1.12",
        routes: &["GET /api/cart/{user_id}", "PUT /api/cart/{user_id}"],
        callees: &[],
        db: Some((
            "redis",
            "1",
            &["HGETALL cart:{user_id}", "HSET cart:{user_id} {sku} {qty}"],
        )),
    },
    Service {
        name: "shipping",
        version: "0.7.0",
        routes: &["POST /api/quote", "POST /api/shipments"],
        callees: &[],
        db: None,
    },
];

/// Groups spans of whole traces into one request: one `ResourceSpans` per service, `tenant` on each resource.
pub fn request(
    spans: Vec<GenSpan>,
    tenant: Option<&str>,
    pod_seed: u32,
) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for generated in spans {
        by_service[generated.service].push(generated.span);
    }
    let mut resource_spans = Vec::new();
    for (index, spans) in by_service.into_iter().enumerate() {
        if spans.is_empty() {
            continue;
        }
        resource_spans.push(ResourceSpans {
            resource: Some(resource(&SERVICES[index], tenant, pod_seed)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "spanline-loadgen".to_string(),
                    version: crate::VERSION.to_string(),
                    ..Default::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
            }],
            schema_url: String::new(),
        });
    }
    ExportTraceServiceRequest { resource_spans }
}

fn resource(service: &Service, tenant: Option<&str>, pod_seed: u32) -> Resource {
    let mut attributes = vec![
        kv_str("service.name", service.name),
        kv_str("service.version", service.version),
        kv_str(
            "host.name",
            &format!("node-{}.eu-west-1.compute.internal", pod_seed % 8),
        ),
        kv_str("deployment.environment", "production"),
        kv_str(
            "k8s.pod.name",
            &format!("{}-7d9f8b6c4-{:05x}", service.name, pod_seed),
        ),
        kv_str("telemetry.sdk.language", "rust"),
    ];
    if let Some(tenant) = tenant {
        attributes.push(kv_str("tenant.id", tenant));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(int_value(value)),
        ..Default::default()
    }
}

pub fn int_value(value: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(value)),
    }
}
