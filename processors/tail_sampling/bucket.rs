//! A token bucket on the tokio clock, for the rate- and bytes-limiting policies.

use tokio::time::Instant;

/// A token bucket refilled continuously, on the tokio clock.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let capacity = if burst > 0.0 { burst } else { rate };
        Self {
            rate,
            capacity,
            tokens: capacity,
            at: None,
        }
    }

    pub fn take(&mut self, amount: f64, now: Instant) -> bool {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        }
        self.at = Some(now);
        if amount <= self.tokens {
            self.tokens -= amount;
            return true;
        }
        false
    }
}
