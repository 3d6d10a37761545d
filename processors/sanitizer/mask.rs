//! How a found secret is hidden: a fixed mask or the salted SHA-256 of the secret.

use sha2::{Digest, Sha256};

/// Replaces secrets; built once from the config.
#[derive(Debug, Clone)]
pub enum Masker {
    /// Every secret becomes this text.
    Fixed(String),
    /// Every secret becomes the hex SHA-256 of the salt followed by the secret, so equal
    /// secrets stay joinable without being readable.
    Hash { salt: String },
}

impl Masker {
    pub fn mask(&self, secret: &str) -> String {
        match self {
            Masker::Fixed(text) => text.clone(),
            Masker::Hash { salt } => {
                let mut hasher = Sha256::new();
                hasher.update(salt.as_bytes());
                hasher.update(secret.as_bytes());
                hex(&hasher.finalize())
            }
        }
    }

    /// True when `text` already is what this masker produces, so masking twice (two
    /// sanitizers in a row, a retried batch) neither changes nor counts anything.
    pub fn is_masked(&self, text: &str) -> bool {
        match self {
            Masker::Fixed(mask) => text == mask,
            Masker::Hash { .. } => {
                text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}
