//! Group commit: one thread makes everything appended durable every `fsync_interval`, so
//! appends never wait for the disk and one fsync covers every record of the interval.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::engine::{lock, Spool};
use super::SpoolError;

/// Shortest interval honoured, so a zero setting cannot spin.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// The running group-commit thread ([`Spool::spawn_group_commit`]). [`GroupCommit::stop`]
/// ends it with a last sync; dropping it ends it too.
pub struct GroupCommit {
    spool: Arc<Spool>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Spool {
    /// Starts the thread that calls [`Spool::sync`] every `fsync_interval`. A failed sync
    /// is logged and tried again at the next tick (the records stay in the kernel's cache
    /// meanwhile and `durable_seq` does not advance).
    pub fn spawn_group_commit(self: &Arc<Self>) -> GroupCommit {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let interval = self.cfg.fsync_interval.max(MIN_INTERVAL);
        let (spool, flag) = (Arc::clone(self), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run(&spool, &flag, interval));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(error) => {
                // Without the thread nothing is fsynced until `stop`; say so loudly.
                tracing::error!(%error, "spool: cannot start the group-commit thread");
                None
            }
        };
        GroupCommit {
            spool: Arc::clone(self),
            stop,
            thread,
        }
    }
}

fn run(spool: &Spool, stop: &(Mutex<bool>, Condvar), interval: Duration) {
    let mut next = Instant::now() + interval;
    loop {
        let mut stopped = lock(&stop.0);
        while !*stopped {
            let now = Instant::now();
            if now >= next {
                break;
            }
            stopped = stop
                .1
                .wait_timeout(stopped, next - now)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
        if *stopped {
            return;
        }
        drop(stopped);
        if let Err(error) = spool.sync() {
            tracing::error!(%error, "spool: fsync failed, retrying at the next interval");
        }
        next = (next + interval).max(Instant::now());
    }
}

impl GroupCommit {
    /// Stops the thread, waits for it, and makes everything appended so far durable.
    pub fn stop(mut self) -> Result<(), SpoolError> {
        self.halt();
        self.spool.sync()
    }

    fn halt(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("spool: the group-commit thread panicked");
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.halt();
    }
}
