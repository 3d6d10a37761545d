//! Component tests for the memory limiter: a scripted RSS on a paused clock, and the real one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::config::{Limits, MemoryLimiterConfig};
use super::memory::{
    MemoryError, ProcRss, RssSource, parse_limit, parse_mem_total, v2_cgroup_path,
};
use super::{MemoryLimiter, MemoryLimiterProcessorFactory};
use crate::component::{
    BuildContext, ComponentConfig, Dropped, Emitter, HumanDuration, Problems, ProcessError,
    Processor, ProcessorFactory, RefusalReason, ResourceSpans, ScopeSpans, Span, TraceBatch,
};

const MIB: u64 = 1024 * 1024;

/// An RSS a test sets by hand.
#[derive(Clone, Default)]
struct ScriptedRss(Arc<AtomicU64>);

impl ScriptedRss {
    fn set_mib(&self, mib: u64) {
        self.0.store(mib * MIB, Ordering::Relaxed);
    }
}

impl RssSource for ScriptedRss {
    fn rss_bytes(&self) -> Result<u64, MemoryError> {
        Ok(self.0.load(Ordering::Relaxed))
    }
}

fn batch(n: usize) -> TraceBatch {
    let spans = (0..n)
        .map(|i| Span {
            name: format!("s{i}"),
            ..Default::default()
        })
        .collect();
    TraceBatch::measured(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn mib_config(limit: u64, spike: Option<u64>) -> MemoryLimiterConfig {
    MemoryLimiterConfig {
        limit_mib: Some(limit),
        spike_limit_mib: spike,
        ..Default::default()
    }
}

fn problems_of(config: &MemoryLimiterConfig) -> Vec<(String, String)> {
    let mut problems = Problems::new();
    config.validate(&mut problems);
    problems
        .into_vec()
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

/// A limiter over a scripted RSS: limit 100 MiB, spike 20 MiB, so the soft limit is 80 MiB.
fn scripted(interval: Duration) -> (MemoryLimiter, ScriptedRss, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let rss = ScriptedRss::default();
    let limits = Limits::resolve(&mib_config(100, None), 0);
    let limiter = metrics::with_local_recorder(&recorder, || {
        MemoryLimiter::new(
            "memory_limiter",
            "traces",
            limits,
            interval,
            Duration::from_secs(1),
            Arc::new(rss.clone()),
        )
    });
    (limiter, rss, handle)
}

async fn offer(p: &mut dyn Processor, spans: usize) -> Result<Vec<TraceBatch>, ProcessError> {
    let mut out = Emitter::default();
    let mut dropped = Dropped::default();
    p.process(batch(spans), &mut out, &mut dropped).await?;
    assert_eq!(dropped.total(), 0, "the limiter never drops");
    Ok(out.drain().collect())
}

fn gauge_value(handle: &PrometheusHandle, name: &str) -> f64 {
    let text = handle.render();
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn exactly_one_limit_must_be_set() {
    let neither = problems_of(&MemoryLimiterConfig::default());
    assert_eq!(neither.len(), 1);
    assert!(
        neither[0]
            .1
            .contains("limit_mib and limit_percentage, got neither")
    );
    let both = MemoryLimiterConfig {
        limit_mib: Some(100),
        limit_percentage: Some(50),
        ..Default::default()
    };
    assert!(problems_of(&both)[0].1.contains("got both"));
}

#[test]
fn validation_reports_every_problem() {
    let bad = MemoryLimiterConfig {
        check_interval: HumanDuration::from_secs(0),
        limit_mib: Some(100),
        spike_limit_mib: Some(100),
        ..Default::default()
    };
    let problems = problems_of(&bad);
    assert_eq!(
        problems,
        vec![
            (
                "check_interval".into(),
                "must be greater than 0, got 0".into()
            ),
            (
                "spike_limit_mib".into(),
                "must be less than limit_mib (100), got 100".into()
            ),
        ]
    );
    let percent = MemoryLimiterConfig {
        limit_percentage: Some(120),
        spike_limit_mib: Some(10),
        ..Default::default()
    };
    let problems = problems_of(&percent);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].1, "must be between 1 and 100, got 120");
    assert_eq!(problems[1].0, "spike_limit_mib");
}

#[test]
fn example_yaml_parses_and_validates() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(MemoryLimiterProcessorFactory::EXAMPLE_YAML).unwrap();
    let parsed: MemoryLimiterConfig =
        serde_yaml::from_value(doc["memory_limiter"].clone()).unwrap();
    assert!(problems_of(&parsed).is_empty());
    assert_eq!(parsed.limit_mib, Some(1024));
}

#[test]
fn limits_resolve_with_defaults() {
    let absolute = Limits::resolve(&mib_config(1000, None), 0);
    assert_eq!(absolute.limit, 1000 * MIB);
    assert_eq!(absolute.spike, 200 * MIB, "spike defaults to 20%");
    assert_eq!(absolute.soft(), 800 * MIB);
    let percent = MemoryLimiterConfig {
        limit_percentage: Some(80),
        spike_limit_percentage: Some(25),
        ..Default::default()
    };
    let limits = Limits::resolve(&percent, 1000 * MIB);
    assert_eq!(limits.limit, 1000 * MIB / 100 * 80);
    assert_eq!(limits.spike, 1000 * MIB / 100 * 25);
}

#[test]
fn retry_after_rounds_the_interval_up_to_seconds() {
    let mut config = mib_config(10, None);
    config.check_interval = HumanDuration::from_millis(200);
    assert_eq!(config.retry_after(), Duration::from_secs(1));
    config.check_interval = HumanDuration::from_millis(2500);
    assert_eq!(config.retry_after(), Duration::from_secs(3));
}

#[test]
fn parses_proc_and_cgroup_files() {
    assert_eq!(
        parse_mem_total("MemTotal:       24684084 kB\nMemFree: 1 kB\n"),
        Some(24684084 * 1024)
    );
    assert_eq!(
        v2_cgroup_path("4:memory:/x\n0::/kubepods/pod1\n"),
        Some("/kubepods/pod1")
    );
    assert_eq!(parse_limit("536870912\n"), Some(512 * MIB));
    assert_eq!(parse_limit("max\n"), None);
    assert_eq!(parse_limit("9223372036854771712\n"), None, "v1 unlimited");
}

#[tokio::test(start_paused = true)]
async fn refuses_above_the_soft_limit_and_recovers() {
    let (mut limiter, rss, handle) = scripted(Duration::from_secs(1));
    rss.set_mib(50);
    limiter.start().await.unwrap();
    let passed = offer(&mut limiter, 3).await.unwrap();
    assert_eq!(passed.len(), 1);
    assert_eq!(passed[0], batch(3), "batches pass untouched");
    assert_eq!(
        gauge_value(&handle, "spanline_memory_limiter_rss_bytes"),
        (50 * MIB) as f64
    );

    rss.set_mib(90);
    assert!(
        offer(&mut limiter, 1).await.is_ok(),
        "not measured again yet"
    );
    tokio::time::sleep(Duration::from_millis(1001)).await;
    let Err(ProcessError::Refused(refusal)) = offer(&mut limiter, 1).await else {
        panic!("expected a refusal above 80 MiB");
    };
    assert_eq!(refusal.reason, RefusalReason::MemoryLimit);
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
    assert!(
        refusal.message.contains(
            "90.0 MiB is above the soft limit 80.0 MiB (limit 100.0 MiB, spike 20.0 MiB)"
        ),
        "{}",
        refusal.message
    );
    assert_eq!(
        gauge_value(&handle, "spanline_memory_limiter_refusing"),
        1.0
    );

    rss.set_mib(79);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(offer(&mut limiter, 2).await.unwrap().len(), 1);
    assert_eq!(
        gauge_value(&handle, "spanline_memory_limiter_refusing"),
        0.0
    );
    limiter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refuses_from_the_first_batch_when_already_over() {
    let (mut limiter, rss, _handle) = scripted(Duration::from_secs(5));
    rss.set_mib(81);
    limiter.start().await.unwrap();
    assert!(matches!(
        offer(&mut limiter, 1).await,
        Err(ProcessError::Refused(_))
    ));
    limiter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_check() {
    let (mut limiter, rss, _handle) = scripted(Duration::from_secs(1));
    rss.set_mib(10);
    limiter.start().await.unwrap();
    limiter.shutdown().await;
    rss.set_mib(500);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        offer(&mut limiter, 1).await.is_ok(),
        "no check runs after shutdown"
    );
}

#[tokio::test]
async fn measures_the_real_resident_memory() {
    let before = ProcRss
        .rss_bytes()
        .expect("/proc/self/statm should be readable");
    assert!(
        before > MIB,
        "a test process holds more than 1 MiB, got {before}"
    );
    // Touch every page of 96 MiB so it is resident.
    let ballast = vec![1u8; 96 * MIB as usize];
    let during = ProcRss.rss_bytes().unwrap();
    assert!(
        during >= 96 * MIB,
        "rss {during} should include the ballast"
    );

    // A real limiter with a 64 MiB soft limit refuses while the ballast is held.
    let config = mib_config(72, Some(8));
    let ctx = BuildContext {
        id: "memory_limiter".into(),
        pipeline: Some("traces".into()),
    };
    let mut limiter = MemoryLimiterProcessorFactory.build(config, &ctx).unwrap();
    limiter.start().await.unwrap();
    let refused = offer(limiter.as_mut(), 1).await;
    std::hint::black_box(&ballast);
    assert!(
        matches!(refused, Err(ProcessError::Refused(_))),
        "{refused:?}"
    );
    limiter.shutdown().await;
}

#[test]
fn finds_the_memory_available() {
    let available = super::available_memory().expect("/proc/meminfo should be readable");
    assert!(available >= 64 * MIB, "got {available}");
    let percent = MemoryLimiterConfig {
        limit_percentage: Some(50),
        ..Default::default()
    };
    let ctx = BuildContext {
        id: "memory_limiter".into(),
        pipeline: None,
    };
    assert!(MemoryLimiterProcessorFactory.build(percent, &ctx).is_ok());
}
