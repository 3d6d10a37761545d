//! The exporter's live view: spans are queryable from `export` until their block commits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tokio::sync::{Notify, watch};

use super::{TraceStoreConfig, exporter_on};
use crate::component::{Exporter, TraceBatch};
use crate::store::live::merge_spans;
use crate::store::location::Location;
use crate::store::testdata::{self, flatten};
use crate::store::{SpanPredicate, TimeWindow};

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;

/// An object store whose writes wait until the test opens the gate.
#[derive(Debug)]
struct GatedStore {
    inner: Arc<dyn ObjectStore>,
    open: watch::Sender<bool>,
    /// Signalled when a write starts waiting.
    waiting: Notify,
}

impl fmt::Display for GatedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gated({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for GatedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.waiting.notify_one();
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn spans_are_queryable_while_buffered_while_uploading_and_once_from_the_store() {
    let (inner, layout) = Location::Memory
        .open("memory://", &BTreeMap::new())
        .unwrap();
    let gated = Arc::new(GatedStore {
        inner,
        open: watch::channel(false).0,
        waiting: Notify::new(),
    });
    let config = TraceStoreConfig {
        url: "memory://".into(),
        indexed_attributes: vec!["http.route".into()],
        ..Default::default()
    };
    let mut exporter = exporter_on(&config, "trace_store", None, gated.clone(), layout);
    let source = exporter
        .query_source()
        .expect("the trace store is queryable");
    assert_eq!(source.indexed_attributes, ["http.route"]);
    let live = source.live.clone().expect("the exporter has a live view");
    let sent = testdata::batch(1, 10, 4, Some("acme"), HOUR_START);
    exporter
        .export(&TraceBatch::measured(sent.clone()))
        .await
        .unwrap();
    let trace_id = sent[0].scope_spans[0].spans[3].trace_id.clone();
    let expected: Vec<_> = flatten(&sent)
        .into_iter()
        .filter(|(_, _, s)| s.trace_id == trace_id)
        .collect();
    assert_eq!(expected.len(), 4);
    let hour = TimeWindow {
        start_unix_nano: HOUR_START,
        end_unix_nano: HOUR_START + 3_599_999_999_999,
    };
    let peer = SpanPredicate {
        key: "net.peer.name".into(),
        value: "10.0.3.17".into(),
    };

    // Buffered.
    assert_eq!(flatten(&live.trace("acme", &trace_id).await), expected);
    assert!(live.trace("other", &trace_id).await.is_empty());
    assert_eq!(live.summaries("acme", hour).await.len(), 10);
    assert_eq!(live.scan("acme", hour, &peer).await.len(), 10);

    // Sealed, its upload stuck: not in the store yet, still live.
    let flushing = tokio::spawn(async move {
        let flushed = exporter.flush().await;
        flushed.map(|()| exporter)
    });
    gated.waiting.notified().await;
    assert!(source.reader.blocks("acme").await.unwrap().is_empty());
    assert_eq!(flatten(&live.trace("acme", &trace_id).await), expected);
    let summaries = live.summaries("acme", hour).await;
    assert_eq!(summaries.len(), 10);
    assert_eq!(summaries.iter().map(|t| t.span_count).sum::<u32>(), 40);
    assert_eq!(live.scan("acme", hour, &peer).await.len(), 10);

    // Committed: from the store only, and a caller merging both sees each span once.
    gated.open.send_replace(true);
    let mut exporter = flushing.await.unwrap().unwrap();
    let from_live = live.trace("acme", &trace_id).await;
    assert!(from_live.is_empty());
    assert!(live.summaries("acme", hour).await.is_empty());
    let stored = source.reader.trace("acme", &trace_id).await.unwrap();
    assert_eq!(flatten(&merge_spans(vec![from_live, stored])), expected);
    exporter.shutdown().await;
}
