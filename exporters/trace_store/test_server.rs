//! A storage server run as a child process for a test (moto, Azurite), stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestServer {
    child: Child,
    /// The server's data directory, removed after it stops.
    _data: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Runs `program args`, then `setup` (Python: create the bucket or container) until it
    /// succeeds. Fails, never skips, when the program is missing: `install` says how `.ci/run`
    /// provides it.
    pub async fn start(
        program: &str,
        args: &[String],
        data: Option<tempfile::TempDir>,
        setup: &str,
        install: &str,
    ) -> TestServer {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} should be installed ({install}): {e}"));
        let server = TestServer { child, _data: data };
        for _ in 0..100 {
            let status = Command::new("python3")
                .args(["-c", setup])
                .stderr(Stdio::null())
                .status();
            if status.is_ok_and(|s| s.success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{program} did not become ready: {setup}");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
