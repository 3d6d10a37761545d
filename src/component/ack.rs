//! Acknowledgement handles: a receiver learns when every copy of its batch has reached a
//! point where it is safe (a durable exporter's write-ahead log) or has been released.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Held by a batch (and by every copy, part and merge of it). When the last holder drops
/// it, the receiver's `AckWaiter` completes.
#[derive(Debug, Clone)]
pub struct Ack(#[allow(dead_code)] Arc<AckInner>);

#[derive(Debug)]
struct AckInner {
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        if let Some(done) = self.done.lock().take() {
            let _ = done.send(());
        }
    }
}

/// Completes when every holder of the paired `Ack` has dropped it.
#[derive(Debug)]
pub struct AckWaiter(oneshot::Receiver<()>);

impl AckWaiter {
    pub async fn wait(self) {
        // A closed channel also means every holder is gone.
        let _ = self.0.await;
    }
}

/// A new acknowledgement handle and its waiter.
pub fn ack_pair() -> (Ack, AckWaiter) {
    let (tx, rx) = oneshot::channel();
    (
        Ack(Arc::new(AckInner {
            done: Mutex::new(Some(tx)),
        })),
        AckWaiter(rx),
    )
}
