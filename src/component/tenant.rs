//! Tenant ids: where a span's tenant is recorded and which ids are acceptable.

use std::collections::BTreeMap;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The resource attribute that carries a span's tenant once the receiver resolved it.
pub const TENANT_ATTRIBUTE: &str = "tenant.id";

/// The tenant of data that names none (when no default is configured).
pub const DEFAULT_TENANT: &str = "default";

/// The longest tenant id accepted, in bytes.
pub const MAX_TENANT_LEN: usize = 150;

/// Checks that `id` is a usable tenant id: 1 to 150 bytes of `[A-Za-z0-9._-]`, not `.` or
/// `..`, so it can be a path segment and a metric label without escaping anything.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("tenant id is empty".to_string());
    }
    if id.len() > MAX_TENANT_LEN {
        return Err(format!(
            "tenant id is {} bytes long; the limit is {MAX_TENANT_LEN}",
            id.len()
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("tenant id {id:?} is not allowed"));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "tenant id {id:?} contains {bad:?}; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The tenant recorded on a resource, if any.
pub fn tenant_of(resource: Option<&Resource>) -> Option<&str> {
    let resource = resource?;
    for kv in &resource.attributes {
        if kv.key == TENANT_ATTRIBUTE
            && let Some(any_value::Value::StringValue(value)) =
                kv.value.as_ref().and_then(|v| v.value.as_ref())
        {
            return Some(value);
        }
    }
    None
}

/// The token of an `authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Equality whose running time depends only on the lengths, not on where bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    let len = a.len().max(b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Reads a YAML map of API key -> tenant id.
pub fn read_keys_file(path: &str) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read api_keys_file {path}: {error}"))?;
    serde_yaml::from_str(&text).map_err(|error| {
        format!("api_keys_file {path} must be a YAML map of key: tenant ({error})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_ids_and_refuses_the_rest() {
        assert!(validate_tenant_id("acme-prod_1.eu").is_ok());
        assert!(validate_tenant_id("").is_err());
        assert!(validate_tenant_id("..").is_err());
        assert!(validate_tenant_id("a/b").unwrap_err().contains("'/'"));
        assert!(
            validate_tenant_id(&"x".repeat(151))
                .unwrap_err()
                .contains("limit is 150")
        );
        assert!(validate_tenant_id(&"x".repeat(150)).is_ok());
    }
}
