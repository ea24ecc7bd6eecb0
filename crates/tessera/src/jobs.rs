//! Background work of one instance (pollers, flushers, the audit sealer, cleanup, key
//! refresh): every loop is started here, on one `TaskTracker`, and stopped together by one
//! `CancellationToken` when the application shuts down, which then waits for each to finish
//! the step it is in.

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// The background loops of an instance. Cheap to clone; clones share the loops.
#[derive(Clone, Default)]
pub struct Jobs {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Jobs {
    /// No loops yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `step` every `period` until shutdown, the first time right away (after one
    /// period when `skip_first`). A step in progress finishes before the loop ends; steps late
    /// behind schedule are not bunched up.
    pub fn every<F, Fut>(&self, period: Duration, skip_first: bool, mut step: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            if skip_first {
                ticker.tick().await;
            }
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                step().await;
            }
        });
    }

    /// Runs `job` until it ends or shutdown begins, for loops with a schedule of their own;
    /// `job` may watch [`stopping`](Self::stopping) to end cleanly between steps.
    pub fn spawn<F>(&self, job: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = job => {}
            }
        });
    }

    /// Runs a job that ends by itself once shutdown begins, after finishing what it holds
    /// (an exporter flushing its queue, say): it is handed the shutdown token, is not cut off
    /// at cancellation, and shutdown waits for it. It must end promptly once the token fires.
    pub fn spawn_draining<F, Fut>(&self, job: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(job(self.stop.clone()));
    }

    /// Cancelled when shutdown begins.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops every loop when dropped: an application dropped without running its shutdown
    /// leaves nothing behind.
    pub fn drop_guard(&self) -> DropGuard {
        self.stop.clone().drop_guard()
    }

    /// Stops every loop and waits until each has ended.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn loops_run_on_schedule_and_all_end_at_shutdown() {
        let jobs = Jobs::new();
        let steps = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&steps);
        jobs.every(Duration::from_secs(10), false, move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        jobs.spawn(std::future::pending());
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 3, "at 0, 10 and 20 s");
        jobs.shutdown().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            steps.load(Ordering::SeqCst),
            3,
            "nothing runs after shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_job_finishes_its_work_before_shutdown_returns() {
        let jobs = Jobs::new();
        let flushed = Arc::new(AtomicU32::new(0));
        let done = Arc::clone(&flushed);
        jobs.spawn_draining(move |stop| async move {
            stop.cancelled().await;
            // Work after the signal (a last flush) still happens, and shutdown waits for it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.fetch_add(1, Ordering::SeqCst);
        });
        jobs.shutdown().await;
        assert_eq!(flushed.load(Ordering::SeqCst), 1);
    }
}
