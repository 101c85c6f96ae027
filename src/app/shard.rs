//! The proxy shard: one [`Proxy`] behind a mutex, driven inline by the receive loops and
//! by one timer task.
//!
//! Each receive loop parses its message, locks the proxy just long enough to hand it the
//! message and take what it wants sent, then sends on its own task. There is no queue and no
//! task hop per message: on a 2-core machine a cross-thread wake-up per message costs more
//! than the proxy's work itself (measured: scheduler and futex time dominated the profile
//! of the queue-based design). The lock is held for a few microseconds (transaction lookup
//! and the forward edit); sends and parsing happen outside it.
//!
//! The timer task sleeps until the proxy's earliest deadline, rounded up to the next
//! [`TIMER_TICK_MS`] tick. A message that creates an earlier deadline (a new transaction's
//! first retransmission timer) wakes it early.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::proxy::core::{Output, Proxy, Received};
use crate::proxy::transaction::Millis;
use crate::sip::{Limits, Message};
use crate::transport::{Inbound, Sink, Transports};

/// The proxy and what drives it; shared by the receive loops and the timer task.
pub struct Shard {
    proxy: OnceLock<Mutex<Proxy>>,
    /// Taken out by [`Shard::close`]: the transports hold the shard as their sink.
    transports: ArcSwapOption<Transports>,
    limits: Limits,
    epoch: Instant,
    /// The deadline the timer task sleeps until (ms since `epoch`; `u64::MAX`: none).
    armed: AtomicU64,
    wake: Notify,
    /// Messages received before the proxy was ready (start-up only).
    pub(super) early_drops: AtomicU64,
    send_log: LogLimit,
}

/// At most [`LogLimit::PER_SECOND`] lines a second for one kind of event; the first line of
/// the next second says how many were left out.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    /// Current second (since the Unix epoch) and lines logged in it, packed.
    window: std::sync::Mutex<(u64, u32, u64)>,
}

impl LogLimit {
    /// Lines allowed per second.
    pub(crate) const PER_SECOND: u32 = 10;

    /// `Some(lines suppressed since the last one logged)` when this one may be logged.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = crate::cdr::now_ms() / 1000;
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let (second, count, suppressed) = &mut *w;
        if *second != now {
            *second = now;
            *count = 0;
        }
        if *count < Self::PER_SECOND {
            *count += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

/// Timers run on ticks of this many milliseconds. Under load some deadline is always due
/// within a millisecond (every transaction ends on a timer), so waking for each one cost a
/// thread wake-up per call; on ticks one wake-up runs all that fell due since the last.
/// RFC 3261 timers are 500 ms and longer, and call timing ends a call at its deadline, not
/// when the timer ran, so 10 ms late changes no duration.
pub const TIMER_TICK_MS: u64 = 10;

/// The first tick at or after `at` (`u64::MAX` stays: nothing armed).
fn tick_at(at: u64) -> u64 {
    at.checked_next_multiple_of(TIMER_TICK_MS)
        .unwrap_or(u64::MAX)
}

impl Shard {
    /// A shard with no proxy yet: the transports must start (and bind) before the proxy can
    /// know its addresses.
    pub fn new(limits: Limits) -> Arc<Shard> {
        Arc::new(Shard {
            proxy: OnceLock::new(),
            transports: ArcSwapOption::empty(),
            limits,
            epoch: Instant::now(),
            armed: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
            early_drops: AtomicU64::new(0),
            send_log: LogLimit::default(),
        })
    }

    /// Installs the proxy and the transports it sends through.
    pub fn install(&self, proxy: Proxy, transports: Transports) {
        self.transports.store(Some(Arc::new(transports)));
        let _ = self.proxy.set(Mutex::new(proxy));
        self.wake.notify_one();
    }

    /// Lets go of the transports once every task has stopped. They hold this shard as
    /// their sink, so until then each keeps the other alive — and with them the proxy, its
    /// policy's CDR spool (whose directory lock then outlives the gateway: a gateway
    /// started again in the same process is refused the spool) and the bound sockets.
    pub fn close(&self) {
        self.transports.store(None);
    }

    /// The proxy's monotonic now.
    pub fn now(&self) -> Millis {
        Millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Runs `f` on the proxy (status and metrics); `None` before it is installed.
    pub fn inspect<R>(&self, f: impl FnOnce(&Proxy) -> R) -> Option<R> {
        self.lock().map(|p| f(&p))
    }

    /// Runs `f` on the proxy to change a setting (draining); `None` before it is installed.
    pub fn modify<R>(&self, f: impl FnOnce(&mut Proxy) -> R) -> Option<R> {
        self.lock().map(|mut p| f(&mut p))
    }

    fn lock(&self) -> Option<MutexGuard<'_, Proxy>> {
        // A panic while holding the lock would be a bug in the proxy; keep serving rather
        // than poisoning every later message.
        let m = self.proxy.get()?;
        Some(m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the proxy, then sends what it produced and re-arms the timer (waking the
    /// timer task when the deadline moved earlier, unless this is the timer task itself).
    fn with_proxy(&self, from_timer: bool, f: impl FnOnce(&mut Proxy, Millis)) {
        let Some(mut proxy) = self.lock() else {
            self.early_drops.fetch_add(1, Ordering::Relaxed);
            return;
        };
        f(&mut proxy, self.now());
        let out: Vec<Output> = proxy.drain_output().collect();
        let deadline = proxy.poll_timeout().map_or(u64::MAX, |m| m.0);
        drop(proxy);
        if deadline < self.armed.fetch_min(deadline, Ordering::AcqRel) && !from_timer {
            self.wake.notify_one();
        }
        self.send(out);
    }

    fn send(&self, out: Vec<Output>) {
        let transports = self.transports.load();
        let Some(t) = transports.as_deref() else {
            return;
        };
        for o in out {
            let name = o.tls_name.as_deref();
            let sent = match (o.side, o.reconnect) {
                (Some(side), Some(r)) => t.send_flow(side, o.to, r, name, o.bytes),
                (Some(side), None) => t.send_on(side, o.to, name, o.bytes),
                (None, _) => t.send(o.to, name, o.bytes),
            };
            if let Err(e) = sent {
                // Rate-limited: a dead peer under load must not flood the log.
                if let Some(suppressed) = self.send_log.allow() {
                    tracing::warn!(to = %o.to.addr, error = %e, suppressed, "send failed");
                }
            }
        }
    }

    /// The timer task: runs the proxy's timers and probes until `cancel`.
    pub async fn timers(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let armed = tick_at(self.armed.load(Ordering::Acquire));
            let sleep = Duration::from_millis(armed.saturating_sub(self.now().0))
                .min(Duration::from_secs(3600));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            self.armed.store(u64::MAX, Ordering::Release);
            self.with_proxy(true, |p, now| {
                if p.poll_timeout().is_some_and(|at| at <= now) {
                    p.handle_timeout(now);
                }
            });
        }
    }
}

impl Sink for Shard {
    fn deliver(&self, m: Inbound) {
        match Message::parse(m.bytes, &self.limits) {
            Ok(msg) => {
                let span = tracing::debug_span!(
                    "sip",
                    call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default())
                );
                let _entered = span.enter();
                let r = Received {
                    msg,
                    source: m.source,
                    listener: m.listener,
                };
                self.with_proxy(false, |p, now| p.handle(now, r));
            }
            Err(failure) => self.with_proxy(false, |p, _| {
                p.handle_unparsed(&failure, m.source, m.listener)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{tick_at, LogLimit, TIMER_TICK_MS};

    #[test]
    fn timers_wake_on_ticks_never_early() {
        assert_eq!(TIMER_TICK_MS, 10);
        assert_eq!(tick_at(0), 0);
        assert_eq!(tick_at(1), 10);
        assert_eq!(tick_at(10), 10);
        assert_eq!(tick_at(11), 20);
        assert_eq!(
            tick_at(u64::MAX),
            u64::MAX,
            "nothing armed stays nothing armed"
        );
        assert_eq!(tick_at(u64::MAX - 3), u64::MAX);
    }

    #[test]
    fn log_limit_lets_ten_a_second_through_and_counts_the_rest() {
        let l = LogLimit::default();
        // Pin the window to the current second and fill it.
        let allowed = (0..25).filter(|_| l.allow().is_some()).count();
        // A second boundary during the loop can let a few more through; never fewer.
        assert!(
            (10..=20).contains(&allowed),
            "{allowed} allowed out of 25 in about one second"
        );
        let w = l.window.lock().unwrap();
        assert!(w.2 <= 15, "suppressed lines are counted: {}", w.2);
    }
}
