//! A bloom filter over 16-byte trace ids, with a stable hash so files stay readable.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A fixed-size bloom filter; serialised into the block index as base64.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bloom {
    /// Number of bits (a multiple of 64).
    pub bits: u64,
    /// Number of probes per key.
    pub hashes: u32,
    /// The bit array, little-endian 64-bit words, base64. Shared, so copies of a block's
    /// index (one per query) do not copy the filter.
    #[serde(with = "words_base64")]
    pub words: Arc<Vec<u64>>,
}

impl Bloom {
    /// A filter sized for `items` keys at false-positive rate `fpp` (0 < fpp < 1).
    pub fn new(items: usize, fpp: f64) -> Self {
        let n = items.max(1) as f64;
        let fpp = fpp.clamp(1e-9, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let bits = (-(n * fpp.ln()) / (ln2 * ln2)).ceil().max(64.0) as u64;
        let words = bits.div_ceil(64);
        let hashes = ((words * 64) as f64 / n * ln2).round().clamp(1.0, 30.0) as u32;
        Self {
            bits: words * 64,
            hashes,
            words: Arc::new(vec![0; words as usize]),
        }
    }

    pub fn insert(&mut self, trace_id: &[u8]) {
        let probes = self.probes(trace_id);
        let words = Arc::make_mut(&mut self.words);
        for bit in probes {
            words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False means certainly absent; true means probably present.
    pub fn may_contain(&self, trace_id: &[u8]) -> bool {
        if self.words.is_empty() {
            return true;
        }
        self.probes(trace_id)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Kirsch–Mitzenmacher double hashing over a splitmix64 of the id.
    fn probes(&self, trace_id: &[u8]) -> impl Iterator<Item = u64> + use<> {
        let (h1, h2) = hash(trace_id);
        let bits = self.bits.max(1);
        (0..u64::from(self.hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
    }
}

/// Two 64-bit hashes of `key`; ids need not be random (64-bit ids padded with zeros are common).
fn hash(key: &[u8]) -> (u64, u64) {
    let mut h = 0x9e37_79b9_7f4a_7c15_u64;
    for chunk in key.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = splitmix64(h ^ u64::from_le_bytes(word));
    }
    let h2 = splitmix64(h ^ 0x5851_f42d_4c95_7f2d) | 1;
    (h, h2)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

mod words_base64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(words: &Arc<Vec<u64>>, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(words.len() * 8);
        for word in words.iter() {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<Vec<u64>>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| serde::de::Error::custom(format!("bloom words: {e}")))?;
        let mut words = Vec::with_capacity(bytes.len() / 8);
        for chunk in bytes.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            words.push(u64::from_le_bytes(word));
        }
        Ok(Arc::new(words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_no_false_negatives_and_about_the_asked_false_positive_rate() {
        let mut bloom = Bloom::new(10_000, 0.01);
        for i in 0u64..10_000 {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&i.to_be_bytes());
            bloom.insert(&id);
        }
        for i in 0u64..10_000 {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&i.to_be_bytes());
            assert!(bloom.may_contain(&id));
        }
        let mut false_positives = 0;
        for i in 10_000u64..110_000 {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&i.to_be_bytes());
            false_positives += usize::from(bloom.may_contain(&id));
        }
        let rate = false_positives as f64 / 100_000.0;
        assert!(rate < 0.02, "false-positive rate {rate}");
        let json = serde_json::to_string(&bloom).unwrap();
        let back: Bloom = serde_json::from_str(&json).unwrap();
        assert_eq!(back, bloom);
    }
}
