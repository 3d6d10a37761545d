//! SQL obfuscation: string and number literals become `?`, IN-lists collapse to `(?)`.
//!
//! A single forward scan over the bytes; identifiers (bare, `"quoted"` or `` `quoted` ``),
//! keywords, placeholders (`$1`, `:name`) and comments are copied as they are, so the statement
//! keeps its shape and stays useful for grouping slow queries. Every split point is an ASCII
//! byte, so slicing never cuts a UTF-8 character.

use std::sync::LazyLock;

use regex::Regex;

/// `IN (?, ?, ?)` in any case and spacing, after literals were replaced.
static IN_LIST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?P<kw>(?-u:\b)IN\s*)\(\s*\?(?:\s*,\s*\?)*\s*\)")
        .expect("the IN-list pattern should compile")
});

/// The obfuscated statement, or `None` when it holds no literal (nothing allocated).
pub fn obfuscate(sql: &str) -> Option<String> {
    if !sql.bytes().any(|b| b == b'\'' || b.is_ascii_digit()) {
        return None;
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut i, mut last, mut changed) = (0, 0, false);
    while i < bytes.len() {
        let b = bytes[i];
        let literal_end = match b {
            b'\'' => Some(skip_string(bytes, i)),
            b'0'..=b'9' => Some(skip_number(bytes, i)),
            _ => None,
        };
        if let Some(end) = literal_end {
            out.push_str(&sql[last..i]);
            out.push('?');
            (i, last, changed) = (end, end, true);
            continue;
        }
        i = match b {
            b'"' | b'`' => skip_quoted(bytes, i, b),
            b'-' if bytes.get(i + 1) == Some(&b'-') => skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => skip_block_comment(bytes, i),
            _ if is_ident(b) => skip_ident(bytes, i),
            _ => i + 1,
        };
    }
    if !changed {
        return None;
    }
    out.push_str(&sql[last..]);
    match IN_LIST.replace_all(&out, "${kw}(?)") {
        std::borrow::Cow::Borrowed(_) => Some(out),
        std::borrow::Cow::Owned(collapsed) => Some(collapsed),
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'@' | b':' | b'#') || b >= 0x80
}

/// Past a `'...'` literal; `''` and `\'` are escapes. An unterminated one runs to the end.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past a number: digits, a decimal point, hex digits and an exponent with its sign.
fn skip_number(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        let exponent_sign =
            matches!(b, b'+' | b'-') && i > start && matches!(bytes[i - 1], b'e' | b'E');
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    match bytes[start + 1..].iter().position(|&b| b == quote) {
        Some(p) => start + 1 + p + 1,
        None => bytes.len(),
    }
}

fn skip_line(bytes: &[u8], start: usize) -> usize {
    match bytes[start..].iter().position(|&b| b == b'\n') {
        Some(p) => start + p + 1,
        None => bytes.len(),
    }
}

fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 2;
    while i + 1 < bytes.len() {
        if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            return i + 2;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_ident(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() && is_ident(bytes[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::obfuscate;

    #[test]
    fn literals_become_placeholders_and_in_lists_collapse() {
        assert_eq!(
            obfuscate("SELECT * FROM t WHERE a = 'x' AND b IN (1,2,3)").as_deref(),
            Some("SELECT * FROM t WHERE a = ? AND b IN (?)")
        );
        assert_eq!(
            obfuscate("SELECT * FROM users WHERE email='a@b.c' AND id=42").as_deref(),
            Some("SELECT * FROM users WHERE email=? AND id=?")
        );
        assert_eq!(
            obfuscate("update t2 set v = 'it''s', w = 3.5e-2 where id in ( 'a' , 'b' )").as_deref(),
            Some("update t2 set v = ?, w = ? where id in (?)")
        );
    }

    #[test]
    fn identifiers_placeholders_and_comments_are_kept() {
        assert_eq!(obfuscate("SELECT col1 FROM t2 WHERE x = $1"), None);
        assert_eq!(obfuscate("SELECT \"col 9\" FROM `t 3` WHERE y = :p1"), None);
        assert_eq!(
            obfuscate("SELECT 1 -- note 5\nFROM t /* 7 */").as_deref(),
            Some("SELECT ? -- note 5\nFROM t /* 7 */")
        );
        assert_eq!(obfuscate("SELECT * FROM t"), None);
        assert_eq!(
            obfuscate("SELECT 'é', nom_é1 FROM t WHERE v = 'ünterminated").as_deref(),
            Some("SELECT ?, nom_é1 FROM t WHERE v = ?")
        );
    }
}
