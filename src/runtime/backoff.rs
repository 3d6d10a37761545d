//! Exponential backoff with jitter, as the retry settings describe.

use std::time::Duration;

use rand::Rng;

use crate::config::exporter_settings::RetrySettings;

/// The waits between attempts at one batch.
pub struct Backoff {
    next: Duration,
    settings: RetrySettings,
}

impl Backoff {
    pub fn new(settings: &RetrySettings) -> Self {
        Self {
            next: settings.initial_interval.get(),
            settings: settings.clone(),
        }
    }

    /// The next wait: the current interval ± the randomization factor; the interval grows
    /// by the multiplier up to `max_interval`.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next.as_secs_f64();
        let spread = base * self.settings.randomization_factor;
        let wait = if spread > 0.0 {
            rand::rng().random_range((base - spread)..=(base + spread))
        } else {
            base
        };
        let grown =
            (base * self.settings.multiplier).min(self.settings.max_interval.get().as_secs_f64());
        self.next = Duration::from_secs_f64(grown);
        Duration::from_secs_f64(wait.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::HumanDuration;

    #[test]
    fn grows_to_the_cap_within_jitter() {
        let settings = RetrySettings {
            initial_interval: HumanDuration::from_secs(1),
            max_interval: HumanDuration::from_secs(4),
            multiplier: 2.0,
            randomization_factor: 0.5,
            ..RetrySettings::default()
        };
        let mut backoff = Backoff::new(&settings);
        let waits: Vec<f64> = (0..6).map(|_| backoff.next_wait().as_secs_f64()).collect();
        assert!((0.5..=1.5).contains(&waits[0]), "{waits:?}");
        assert!((1.0..=3.0).contains(&waits[1]), "{waits:?}");
        for wait in &waits[3..] {
            assert!((2.0..=6.0).contains(wait), "{waits:?}");
        }
    }

    #[test]
    fn no_jitter_is_exact() {
        let settings = RetrySettings {
            initial_interval: HumanDuration::from_millis(100),
            randomization_factor: 0.0,
            multiplier: 1.5,
            ..RetrySettings::default()
        };
        let mut backoff = Backoff::new(&settings);
        assert_eq!(backoff.next_wait(), Duration::from_millis(100));
        assert_eq!(backoff.next_wait(), Duration::from_millis(150));
    }
}
