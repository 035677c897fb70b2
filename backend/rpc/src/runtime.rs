//! A tokio runtime owned by a thread of its own, for the remote clients: the
//! gateway's threads only hand work to it through a [`Handle`] and never block
//! on it. Dropping the [`RuntimeThread`] stops the runtime from its own thread
//! (a runtime must not be dropped from inside an async context).

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// How long the runtime waits for a last task (a flush) and then for its
/// blocking threads when it stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A runtime and the thread that owns it.
#[derive(Debug)]
pub(crate) struct RuntimeThread {
    handle: Handle,
    /// Sent once on drop, with an optional last task to wait for.
    stop: Option<oneshot::Sender<Option<tokio::task::JoinHandle<()>>>>,
    thread: Option<JoinHandle<()>>,
}

impl RuntimeThread {
    /// Starts a runtime with `workers` worker threads named after `name`.
    /// One worker is the owning thread itself (a current-thread runtime: the
    /// tasks run inside its `block_on`), so a small node pays for one thread
    /// per client, not two.
    pub(crate) fn start(name: &str, workers: usize) -> std::io::Result<Self> {
        let runtime = if workers <= 1 {
            Builder::new_current_thread().enable_all().build()?
        } else {
            Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(format!("{name}-rt"))
                .enable_all()
                .build()?
        };
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<Option<tokio::task::JoinHandle<()>>>();
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            runtime.block_on(async move {
                // An error means the owner vanished without sending: stop too.
                if let Ok(Some(last)) = stopped.await {
                    let _ = tokio::time::timeout(STOP_GRACE, last).await;
                }
            });
            runtime.shutdown_timeout(STOP_GRACE);
        })?;
        Ok(Self { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Where to spawn tasks.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Makes the drop wait (up to the grace period) for `task` before the
    /// runtime stops; the owner uses it to flush a queue.
    pub(crate) fn stop_after(&mut self, task: tokio::task::JoinHandle<()>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Some(task));
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(None);
        }
        if let Some(thread) = self.thread.take() {
            // Joining from a thread of this very runtime would wait for itself;
            // the clients never let a task own the runtime, but stay safe.
            if Handle::try_current().map(|h| h.id() != self.handle.id()).unwrap_or(true) {
                let _ = thread.join();
            }
        }
    }
}
