//! Group commit: one thread makes everything appended durable every `fsync_interval`, so
//! appends never wait for the disk and one fsync covers every record of the interval.
//!
//! When a round finds nothing left to sync, the thread sleeps until the next append (or a
//! failed sync) wakes it, instead of ticking through an idle night. An append pays one
//! atomic load for this while the thread is awake, which under load is always.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    thread: Option<JoinHandle<()>>,
}

/// What the group-commit thread waits on: stop, and work after an idle sleep.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<State>,
    cv: Condvar,
    /// Set by the thread before it sleeps for want of work; cleared by the waker.
    idle: AtomicBool,
    /// Sync rounds run by the thread (tests: proof that an idle spool is left alone).
    pub(super) rounds: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    stop: bool,
    work: bool,
}

impl Signal {
    /// Something may need syncing: wakes the thread if it sleeps idle.
    pub(super) fn wake(&self) {
        if self.idle.load(Ordering::SeqCst) {
            let mut s = lock(&self.state);
            s.work = true;
            self.idle.store(false, Ordering::SeqCst);
            self.cv.notify_all();
        }
    }

    fn stop(&self) {
        lock(&self.state).stop = true;
        self.cv.notify_all();
    }
}

impl Spool {
    /// Starts the thread that calls [`Spool::sync`] every `fsync_interval` while there is
    /// anything to sync. A failed sync repairs and is retried at the next tick (see
    /// [`Spool::sync`]; `durable_seq` does not advance meanwhile).
    pub fn spawn_group_commit(self: &Arc<Self>) -> GroupCommit {
        let interval = self.cfg.fsync_interval.max(MIN_INTERVAL);
        let spool = Arc::clone(self);
        *lock(&self.commit.state) = State::default();
        let thread = std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run(&spool, interval));
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
            thread,
        }
    }
}

fn run(spool: &Spool, interval: Duration) {
    let signal = &spool.commit;
    let mut next = Instant::now() + interval;
    loop {
        let mut state = lock(&signal.state);
        while !state.stop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            state = signal
                .cv
                .wait_timeout(state, next - now)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
        if state.stop {
            return;
        }
        drop(state);
        signal.rounds.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = spool.sync() {
            tracing::error!(%error, "spool: fsync failed, retrying at the next interval");
        }
        next = (next + interval).max(Instant::now());
        if spool.needs_sync() {
            continue;
        }
        // Idle. `idle` is published before the second look, under the state lock that
        // `wake` takes: an append the second look misses sees `idle` and wakes us.
        let mut state = lock(&signal.state);
        signal.idle.store(true, Ordering::SeqCst);
        if spool.needs_sync() {
            signal.idle.store(false, Ordering::SeqCst);
            continue;
        }
        while !state.stop && !state.work {
            state = signal
                .cv
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.work = false;
        signal.idle.store(false, Ordering::SeqCst);
        if state.stop {
            return;
        }
        // The first entry after a quiet spell waits at most one interval, as any other.
        next = Instant::now() + interval;
    }
}

impl GroupCommit {
    /// Stops the thread, waits for it, and makes everything appended so far durable.
    pub fn stop(mut self) -> Result<(), SpoolError> {
        self.halt();
        self.spool.sync()
    }

    fn halt(&mut self) {
        self.spool.commit.stop();
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
