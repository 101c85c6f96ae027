//! The proxy task: owns a [`Proxy`], feeds it queued messages and timer ticks, and hands
//! what it returns to the transports.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::proxy::core::{Proxy, Received};
use crate::proxy::transaction::Millis;
use crate::sip::message::ParseFailure;
use crate::transport::{Target, Transports};

/// What the receive loops queue for the proxy task.
#[derive(Debug)]
pub enum Input {
    /// A parsed message.
    Message(Received),
    /// A message the parser refused: answered (requests) or dropped by the proxy.
    Unparsed {
        /// What went wrong, with the header index when it could be built.
        failure: Box<ParseFailure>,
        /// Where it came from.
        source: Target,
        /// Listener index.
        listener: usize,
    },
}

/// Most messages handled per wake-up before timers are looked at again.
const BATCH: usize = 256;

fn now_ms(epoch: Instant) -> Millis {
    Millis(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Runs the proxy until `cancel` fires.
pub async fn run(
    mut proxy: Proxy,
    mut rx: mpsc::Receiver<Input>,
    transports: Transports,
    cancel: CancellationToken,
    epoch: Instant,
) {
    loop {
        let sleep_for = proxy
            .poll_timeout()
            .map(|at| Duration::from_millis(at.0.saturating_sub(now_ms(epoch).0)))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            first = rx.recv() => {
                let Some(first) = first else { break };
                let now = now_ms(epoch);
                feed(&mut proxy, now, first);
                for _ in 1..BATCH {
                    match rx.try_recv() {
                        Ok(next) => feed(&mut proxy, now, next),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep_for) => {}
        }
        let now = now_ms(epoch);
        if proxy.poll_timeout().is_some_and(|at| at <= now) {
            proxy.handle_timeout(now);
        }
        for out in proxy.drain_output() {
            let sent = match out.side {
                Some(side) => transports.send_on(side, out.to, out.tls_name.as_deref(), out.bytes),
                None => transports.send(out.to, out.tls_name.as_deref(), out.bytes),
            };
            if let Err(e) = sent {
                tracing::debug!(to = %out.to.addr, error = %e, "send failed");
            }
        }
    }
}

fn feed(proxy: &mut Proxy, now: Millis, input: Input) {
    match input {
        Input::Message(r) => proxy.handle(now, r),
        Input::Unparsed {
            failure,
            source,
            listener,
        } => proxy.handle_unparsed(&failure, source, listener),
    }
}
