//! URL sanitizing: query-string values and user info are masked, keys and path are kept.

use super::mask::Masker;

/// The attributes whose values are URLs (or parts of one).
pub const URL_KEYS: [&str; 4] = ["url.full", "http.url", "http.target", "url.query"];

/// The URL with user info and query values masked, or `None` when nothing changed.
/// `whole_is_query` treats the whole text as a query string (`url.query`).
pub fn sanitize(text: &str, whole_is_query: bool, masker: &Masker) -> Option<String> {
    let mut out = String::new();
    let rest = if whole_is_query {
        0
    } else {
        mask_user_info(text, masker, &mut out)
    };
    let query_start = if whole_is_query {
        Some(0)
    } else {
        text[rest..].find('?').map(|p| rest + p + 1)
    };
    if let Some(start) = query_start {
        let end = text[start..].find('#').map_or(text.len(), |p| start + p);
        let mut masked = String::new();
        if mask_pairs(&text[start..end], masker, &mut masked) {
            out.push_str(&text[rest..start]);
            out.push_str(&masked);
            out.push_str(&text[end..]);
            return Some(out);
        }
    }
    if rest == 0 {
        return None;
    }
    out.push_str(&text[rest..]);
    Some(out)
}

/// Masks `user:password@` after `scheme://` into `out`; returns where the rest starts
/// (0 when there was none, leaving `out` empty).
fn mask_user_info(text: &str, masker: &Masker, out: &mut String) -> usize {
    let Some(scheme_end) = text.find("://").map(|p| p + 3) else {
        return 0;
    };
    let authority_end = text[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |p| scheme_end + p);
    let Some(at) = text[scheme_end..authority_end].rfind('@') else {
        return 0;
    };
    let info = &text[scheme_end..scheme_end + at];
    if info.is_empty() || masker.is_masked(info) {
        return 0;
    }
    out.push_str(&text[..scheme_end]);
    out.push_str(&masker.mask(info));
    scheme_end + at
}

/// Writes `query` with each `key=value` value masked into `out`; true if any changed.
fn mask_pairs(query: &str, masker: &Masker, out: &mut String) -> bool {
    let mut changed = false;
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, value)) if !value.is_empty() && !masker.is_masked(value) => {
                out.push_str(key);
                out.push('=');
                out.push_str(&masker.mask(value));
                changed = true;
            }
            _ => out.push_str(pair),
        }
    }
    changed
}

/// True when a span name looks like it carries a URL with a query (`GET /a?b=c`).
pub fn name_has_query(name: &str) -> bool {
    match name.find('?') {
        Some(q) => name[..q].contains('/') && name[q..].contains('='),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Masker {
        Masker::Fixed("****".into())
    }

    #[test]
    fn query_values_and_user_info_are_masked() {
        let m = fixed();
        assert_eq!(
            sanitize("https://h/p?token=abc&x=&flag#frag", false, &m).as_deref(),
            Some("https://h/p?token=****&x=&flag#frag")
        );
        assert_eq!(
            sanitize("https://bob:pw@h:8080/p?a=1", false, &m).as_deref(),
            Some("https://****@h:8080/p?a=****")
        );
        assert_eq!(
            sanitize("postgres://u:p@db/x", false, &m).as_deref(),
            Some("postgres://****@db/x")
        );
        assert_eq!(
            sanitize("/users?id=7", false, &m).as_deref(),
            Some("/users?id=****")
        );
        assert_eq!(
            sanitize("a=1&b=2", true, &m).as_deref(),
            Some("a=****&b=****")
        );
    }

    #[test]
    fn urls_without_secrets_are_not_copied() {
        let m = fixed();
        assert_eq!(sanitize("https://h/p", false, &m), None);
        assert_eq!(sanitize("https://h/p?flag", false, &m), None);
        assert_eq!(
            sanitize("https://h/p?token=****", false, &m),
            None,
            "idempotent"
        );
        assert!(name_has_query("GET /a?b=c"));
        assert!(!name_has_query("is it done?"));
        assert!(!name_has_query("GET /a"));
    }
}
