//! Who is asking: the tenant a query reads, from an API key or the tenant header.

use http::{HeaderMap, HeaderName};

use crate::component::tenant::{
    bearer_token, constant_time_eq, read_keys_file, validate_tenant_id,
};
use crate::query::config::QueryConfig;

/// Why a query's tenant cannot be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// API keys are configured and the query has no valid one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The tenant header holds an unusable id (400).
    #[error("{0}")]
    InvalidTenant(String),
}

/// Resolves the tenant of each query. With API keys configured a key is required and
/// names the tenant (a header cannot widen it); without keys the header names the tenant,
/// else the default one.
pub struct QueryAuth {
    keys: Vec<(Vec<u8>, String)>,
    header: HeaderName,
    default_tenant: String,
}

impl QueryAuth {
    /// Builds the resolver, reading `api_keys_file` if one is configured.
    pub fn new(config: &QueryConfig) -> Result<Self, String> {
        let mut keys = config.auth.api_keys.clone();
        if let Some(path) = &config.auth.api_keys_file {
            for (key, tenant) in read_keys_file(path)? {
                validate_tenant_id(&tenant).map_err(|m| format!("api_keys_file {path}: {m}"))?;
                keys.insert(key, tenant);
            }
        }
        let header = HeaderName::from_bytes(config.tenant_header.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", config.tenant_header))?;
        Ok(Self {
            keys: keys.into_iter().map(|(k, t)| (k.into_bytes(), t)).collect(),
            header,
            default_tenant: config.default_tenant.clone(),
        })
    }

    /// The tenant whose traces this request may read.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        if !self.keys.is_empty() {
            let token = bearer_token(headers).ok_or_else(|| {
                AuthError::Unauthorized(
                    "missing API key: send authorization: Bearer <key>".to_string(),
                )
            })?;
            return self
                .tenant_of_key(token)
                .map(str::to_string)
                .ok_or_else(|| AuthError::Unauthorized("invalid API key".to_string()));
        }
        let Some(value) = headers.get(&self.header) else {
            return Ok(self.default_tenant.clone());
        };
        let id = value.to_str().map_err(|_| {
            AuthError::InvalidTenant(format!("header {} is not visible ASCII", self.header))
        })?;
        validate_tenant_id(id)
            .map_err(|m| AuthError::InvalidTenant(format!("header {}: {m}", self.header)))?;
        Ok(id.to_string())
    }

    /// Compares against every key so the time taken does not tell which one matched.
    fn tenant_of_key(&self, token: &[u8]) -> Option<&str> {
        let mut found = None;
        for (key, tenant) in &self.keys {
            if constant_time_eq(key, token) && found.is_none() {
                found = Some(tenant.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn with_keys() -> QueryAuth {
        let mut config = QueryConfig::default();
        config.auth.api_keys = [("k-acme".to_string(), "acme".to_string())].into();
        QueryAuth::new(&config).unwrap()
    }

    #[test]
    fn without_keys_the_header_names_the_tenant_else_the_default() {
        let auth = QueryAuth::new(&QueryConfig::default()).unwrap();
        assert_eq!(auth.tenant(&headers(&[])), Ok("default".to_string()));
        assert_eq!(
            auth.tenant(&headers(&[("x-scope-orgid", "acme")])),
            Ok("acme".to_string())
        );
        let bad = auth.tenant(&headers(&[("x-scope-orgid", "../etc")]));
        assert!(matches!(bad, Err(AuthError::InvalidTenant(m)) if m.contains("x-scope-orgid")));
    }

    #[test]
    fn with_keys_a_valid_key_is_required_and_the_header_cannot_widen_it() {
        let auth = with_keys();
        assert_eq!(
            auth.tenant(&headers(&[("x-scope-orgid", "acme")])),
            Err(AuthError::Unauthorized(
                "missing API key: send authorization: Bearer <key>".into()
            ))
        );
        assert_eq!(
            auth.tenant(&headers(&[("authorization", "Bearer nope")])),
            Err(AuthError::Unauthorized("invalid API key".into()))
        );
        let other = headers(&[
            ("authorization", "Bearer k-acme"),
            ("x-scope-orgid", "globex"),
        ]);
        assert_eq!(auth.tenant(&other), Ok("acme".to_string()));
    }
}
