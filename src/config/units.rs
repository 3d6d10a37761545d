//! Durations (`200ms`, `10s`) and sizes (`64MiB`) written the way operators write them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in human units: `200ms`, `10s`, `5m`, `1h30m`. A bare `0` means zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses `200ms`, `10s`, `1m30s`; a unit is required except for `0`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Self(Duration::ZERO));
        }
        humantime::parse_duration(text).map(Self).map_err(|e| {
            format!("invalid duration {text:?} ({e}); use units such as 200ms, 10s, 5m")
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = StringOrNumber::deserialize(deserializer)?;
        match value {
            StringOrNumber::Text(text) => {
                HumanDuration::parse(&text).map_err(serde::de::Error::custom)
            }
            StringOrNumber::Number(0) => Ok(HumanDuration(Duration::ZERO)),
            StringOrNumber::Number(n) => Err(serde::de::Error::custom(format!(
                "invalid duration {n}: a unit is required, for example {n}ms or {n}s"
            ))),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// A size in bytes: `512`, `64KiB`, `16MiB`, `1GiB` (also `MB`/`KB`/`GB` as powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The size as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "Ki" => 1 << 10,
            "MiB" | "Mi" => 1 << 20,
            "GiB" | "Gi" => 1 << 30,
            "TiB" | "Ti" => 1 << 40,
            "KB" | "kB" | "K" | "k" => 1_000,
            "MB" | "M" => 1_000_000,
            "GB" | "G" => 1_000_000_000,
            "TB" | "T" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit {other:?}; use B, KiB, MiB, GiB (or KB, MB, GB)"
                ));
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid size {text:?}: expected a number such as 64MiB"))?;
        Ok(Self((value * multiplier as f64).round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match StringOrNumber::deserialize(deserializer)? {
            StringOrNumber::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
            StringOrNumber::Number(n) => Ok(ByteSize(n)),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string with a unit, such as 10s or 64MiB")]
enum StringOrNumber {
    Number(u64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(
            HumanDuration::parse("200ms").unwrap().get(),
            Duration::from_millis(200)
        );
        assert_eq!(
            HumanDuration::parse("1m30s").unwrap().get(),
            Duration::from_secs(90)
        );
        assert_eq!(HumanDuration::parse("0").unwrap().get(), Duration::ZERO);
        assert!(HumanDuration::parse("ten seconds").is_err());
    }

    #[test]
    fn bare_number_duration_needs_unit() {
        let err = serde_yaml::from_str::<HumanDuration>("10")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a unit is required"), "{err}");
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().bytes(), 64 << 20);
        assert_eq!(ByteSize::parse("1.5KiB").unwrap().bytes(), 1536);
        assert_eq!(ByteSize::parse("2MB").unwrap().bytes(), 2_000_000);
        assert_eq!(ByteSize::parse("512").unwrap().bytes(), 512);
        assert!(
            ByteSize::parse("12 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert_eq!(
            serde_yaml::from_str::<ByteSize>("1024").unwrap().bytes(),
            1024
        );
    }

    #[test]
    fn displays_round_units() {
        assert_eq!(ByteSize::mib(16).to_string(), "16MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(HumanDuration::from_millis(200).to_string(), "200ms");
    }
}
