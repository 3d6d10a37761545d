//! Tenant ids: where a span's tenant is recorded and which ids are acceptable.

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
