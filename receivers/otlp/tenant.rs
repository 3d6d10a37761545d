//! Who sent a request: API key authentication and the tenant written into every resource.

use http::HeaderMap;

use super::config::{AuthConfig, TenantConfig};
use crate::component::tenant::{
    TENANT_ATTRIBUTE, bearer_token, constant_time_eq, read_keys_file, validate_tenant_id,
};
use crate::component::wire::Scan;
use crate::component::{AnyValue, ComponentError, KeyValue, ResourceSpans, any_value, names};

/// Why a request's tenant cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TenantError {
    /// No key, or a key that names no tenant, where one is required.
    #[error("{0}")]
    Unauthenticated(String),
    /// The header or a resource names a tenant id that is not acceptable.
    #[error("{0}")]
    InvalidTenant(String),
}

impl TenantError {
    /// The refused-request reason this error is counted under.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            TenantError::Unauthenticated(_) => "unauthenticated",
            TenantError::InvalidTenant(_) => "invalid_tenant",
        }
    }
}

/// The tenant a request's headers establish, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Named by an API key or the tenant header: it overrides whatever the resources say.
    Trusted(String),
    /// Nothing in the headers: each resource's `tenant.id`, else the default.
    Anonymous,
}

/// Resolves tenants for one receiver; shared by its gRPC and HTTP servers.
pub(crate) struct TenantResolver {
    receiver: String,
    keys: Vec<(Vec<u8>, String)>,
    required: bool,
    header: http::HeaderName,
    from_resource: bool,
    default_tenant: String,
}

impl TenantResolver {
    /// Builds the resolver, reading `api_keys_file` if one is configured.
    pub(crate) fn new(
        receiver: &str,
        auth: &AuthConfig,
        tenant: &TenantConfig,
    ) -> Result<Self, ComponentError> {
        let mut map = auth.api_keys.clone();
        if let Some(path) = &auth.api_keys_file {
            for (key, id) in read_keys_file(path).map_err(|m| ComponentError::other(receiver, m))? {
                validate_tenant_id(&id).map_err(|m| {
                    ComponentError::other(receiver, format!("api_keys_file {path}: {m}"))
                })?;
                map.insert(key, id);
            }
        }
        let header = http::HeaderName::from_bytes(tenant.header.as_bytes()).map_err(|_| {
            ComponentError::other(receiver, format!("invalid header name {:?}", tenant.header))
        })?;
        Ok(Self {
            receiver: receiver.to_string(),
            keys: map.into_iter().map(|(k, t)| (k.into_bytes(), t)).collect(),
            required: auth.required,
            header,
            from_resource: tenant.from_resource_attribute,
            default_tenant: tenant.default_tenant.clone(),
        })
    }

    /// Decides from the request headers (gRPC metadata are HTTP/2 headers) who is calling.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Result<Caller, TenantError> {
        match bearer_token(headers) {
            Some(token) => {
                if let Some(tenant) = self.tenant_of_key(token) {
                    return Ok(Caller::Trusted(tenant.to_string()));
                }
                if self.required {
                    return Err(TenantError::Unauthenticated("invalid API key".to_string()));
                }
            }
            None if self.required => {
                return Err(TenantError::Unauthenticated(
                    "missing API key: send authorization: Bearer <key>".to_string(),
                ));
            }
            None => {}
        }
        let Some(value) = headers.get(&self.header) else {
            return Ok(Caller::Anonymous);
        };
        let id = value.to_str().map_err(|_| {
            TenantError::InvalidTenant(format!("header {} is not visible ASCII", self.header))
        })?;
        validate_tenant_id(id)
            .map_err(|m| TenantError::InvalidTenant(format!("header {}: {m}", self.header)))?;
        Ok(Caller::Trusted(id.to_string()))
    }

    /// Compares the token with every configured key in constant time, so the time taken
    /// tells nothing about how much of a key was right (or which key matched).
    fn tenant_of_key(&self, token: &[u8]) -> Option<&str> {
        let mut found = None;
        for (key, tenant) in &self.keys {
            if constant_time_eq(key, token) && found.is_none() {
                found = Some(tenant.as_str());
            }
        }
        found
    }

    /// Writes the resolved tenant into every resource as `tenant.id`. A trusted tenant
    /// replaces a differing client-supplied one, and the attempt is counted.
    pub(crate) fn apply(
        &self,
        caller: &Caller,
        resource_spans: &mut [ResourceSpans],
    ) -> Result<Applied, TenantError> {
        let mut applied = Applied::default();
        let mut overridden = 0u64;
        for rs in resource_spans.iter_mut() {
            let resource = rs.resource.get_or_insert_with(Default::default);
            let claimed = claimed_tenant(&resource.attributes)?;
            let Some(tenant) = self.tenant_for(caller, claimed)? else {
                continue;
            };
            if matches!(caller, Caller::Trusted(_)) && claimed.is_some_and(|c| c != tenant) {
                overridden += 1;
            }
            if let Some(added) = set_tenant(&mut resource.attributes, tenant) {
                applied.added += added;
                applied.changed = true;
            }
        }
        if overridden > 0 {
            metrics::counter!(names::RECEIVER_TENANT_OVERRIDES, "receiver" => self.receiver.clone())
                .increment(overridden);
        }
        Ok(applied)
    }

    /// The tenant a resource claiming `claimed` must carry, or `None` when its own claim
    /// stands (no trusted caller, and resources may name their tenant).
    fn tenant_for<'s>(
        &'s self,
        caller: &'s Caller,
        claimed: Option<&str>,
    ) -> Result<Option<&'s str>, TenantError> {
        match (caller, claimed) {
            (Caller::Trusted(tenant), _) => Ok(Some(tenant)),
            (Caller::Anonymous, Some(claimed)) if self.from_resource => {
                validate_tenant_id(claimed).map_err(|m| {
                    TenantError::InvalidTenant(format!(
                        "resource attribute {TENANT_ATTRIBUTE}: {m}"
                    ))
                })?;
                Ok(None)
            }
            (Caller::Anonymous, _) => Ok(Some(&self.default_tenant)),
        }
    }
}

/// What `TenantResolver::apply` did to a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// About how many bytes it added to the encoded request.
    pub added: usize,
    /// Whether any resource changed.
    pub changed: bool,
}

impl TenantResolver {
    /// What `apply` would do to a request that is still in wire form: the tenant to add to
    /// each resource that has no `tenant.id` (`None` where it has the right one already), or
    /// `Ok(None)` when some resource holds a differing or repeated `tenant.id`, which only
    /// the decoded request can have replaced.
    pub(crate) fn plan<'s>(
        &'s self,
        caller: &'s Caller,
        scan: &Scan<'_>,
    ) -> Result<Option<Vec<Option<&'s str>>>, TenantError> {
        let mut plan = Vec::with_capacity(scan.resources.len());
        for found in &scan.resources {
            let claim = found.tenant;
            let claimed = match claim.first {
                None => None,
                Some(Some(claimed)) => Some(claimed),
                Some(None) => return Err(not_a_string()),
            };
            let Some(tenant) = self.tenant_for(caller, claimed)? else {
                plan.push(None);
                continue;
            };
            match (claim.count, claimed) {
                (0, _) => plan.push(Some(tenant)),
                (1, Some(claimed)) if claimed == tenant => plan.push(None),
                _ => return Ok(None),
            }
        }
        Ok(Some(plan))
    }
}

impl std::fmt::Debug for TenantResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantResolver")
            .field("receiver", &self.receiver)
            .field("keys", &format_args!("<{} keys>", self.keys.len()))
            .field("required", &self.required)
            .field("header", &self.header)
            .field("from_resource", &self.from_resource)
            .field("default_tenant", &self.default_tenant)
            .finish()
    }
}

/// The `tenant.id` a resource claims; a non-string value is refused rather than ignored.
fn claimed_tenant(attributes: &[KeyValue]) -> Result<Option<&str>, TenantError> {
    for kv in attributes {
        if kv.key != TENANT_ATTRIBUTE {
            continue;
        }
        return match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(value)) => Ok(Some(value)),
            _ => Err(not_a_string()),
        };
    }
    Ok(None)
}

fn not_a_string() -> TenantError {
    TenantError::InvalidTenant(format!(
        "resource attribute {TENANT_ATTRIBUTE} must be a string"
    ))
}

/// Leaves exactly one `tenant.id` attribute, holding `tenant`; returns the bytes added, or
/// `None` when the attributes were so already.
fn set_tenant(attributes: &mut Vec<KeyValue>, tenant: &str) -> Option<usize> {
    let mut present = attributes.iter().filter(|kv| kv.key == TENANT_ATTRIBUTE);
    if let (Some(only), None) = (present.next(), present.next())
        && let Some(any_value::Value::StringValue(value)) =
            only.value.as_ref().and_then(|v| v.value.as_ref())
        && value == tenant
    {
        // The common case for well-behaved senders: nothing to change.
        return None;
    }
    let before = attributes.len();
    attributes.retain(|kv| kv.key != TENANT_ATTRIBUTE);
    let added = if attributes.len() == before {
        // key (2 + len) + value (2 + 2 + len) + the KeyValue's own tag and length (2).
        TENANT_ATTRIBUTE.len() + tenant.len() + 8
    } else {
        0
    };
    attributes.push(KeyValue {
        key: TENANT_ATTRIBUTE.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(tenant.to_string())),
        }),
        ..Default::default()
    });
    Some(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn resolver(required: bool) -> TenantResolver {
        let auth = AuthConfig {
            api_keys: [("key-abc".to_string(), "acme".to_string())].into(),
            api_keys_file: None,
            required,
        };
        TenantResolver::new("otlp", &auth, &TenantConfig::default()).unwrap()
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let text = format!("{:?}", resolver(true));
        assert!(!text.contains("key-abc"), "{text}");
        assert!(text.contains("<1 keys>"), "{text}");
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"key-abc", b"key-abc"));
        assert!(!constant_time_eq(b"key-abc", b"key-abd"));
        assert!(!constant_time_eq(b"key-abc", b"key-ab"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
        let r = resolver(false);
        let caller = r.identify(&headers(&[("authorization", "bearer key-abc")]));
        assert_eq!(caller, Ok(Caller::Trusted("acme".into())));
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic eA==")])),
            None
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer  ")])),
            None
        );
    }

    #[test]
    fn keys_come_before_headers_and_headers_are_validated() {
        let r = resolver(false);
        let both = headers(&[
            ("authorization", "Bearer key-abc"),
            ("x-scope-orgid", "other"),
        ]);
        assert_eq!(r.identify(&both), Ok(Caller::Trusted("acme".into())));
        let header = headers(&[("x-scope-orgid", "beta")]);
        assert_eq!(r.identify(&header), Ok(Caller::Trusted("beta".into())));
        let bad = r
            .identify(&headers(&[("x-scope-orgid", "..")]))
            .unwrap_err();
        assert_eq!(bad.reason(), "invalid_tenant");
        assert_eq!(r.identify(&HeaderMap::new()), Ok(Caller::Anonymous));
    }

    #[test]
    fn required_keys_refuse_missing_and_unknown_keys() {
        let r = resolver(true);
        let missing = r
            .identify(&headers(&[("x-scope-orgid", "beta")]))
            .unwrap_err();
        assert!(missing.to_string().contains("missing API key"));
        let wrong = r
            .identify(&headers(&[("authorization", "Bearer key-abd")]))
            .unwrap_err();
        assert_eq!(
            wrong,
            TenantError::Unauthenticated("invalid API key".into())
        );
    }

    #[test]
    fn keys_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, "k1: gamma\nk2: delta\n").unwrap();
        let auth = AuthConfig {
            api_keys_file: Some(path.display().to_string()),
            ..Default::default()
        };
        let r = TenantResolver::new("otlp", &auth, &TenantConfig::default()).unwrap();
        let caller = r.identify(&headers(&[("authorization", "Bearer k2")]));
        assert_eq!(caller, Ok(Caller::Trusted("delta".into())));

        std::fs::write(&path, "k1: a/b\n").unwrap();
        let error = TenantResolver::new("otlp", &auth, &TenantConfig::default()).unwrap_err();
        assert!(error.to_string().contains("'/'"), "{error}");
        let missing = AuthConfig {
            api_keys_file: Some(dir.path().join("none.yaml").display().to_string()),
            ..Default::default()
        };
        let error = TenantResolver::new("otlp", &missing, &TenantConfig::default()).unwrap_err();
        assert!(
            error.to_string().contains("cannot read api_keys_file"),
            "{error}"
        );
    }
}
