//! The acknowledgement gate: the spool's cursor may only pass a record once every consumer
//! (the uploader, the exporter) is done with it. Each consumer reports its position; the
//! gate acknowledges the smallest.

use std::sync::{Arc, Mutex};

use super::spool::{Spool, SpoolError};

/// See the module documentation.
pub struct AckGate {
    spool: Arc<Spool>,
    positions: Mutex<Vec<u64>>,
}

impl AckGate {
    /// A gate with one position per consumer, each starting where it left off (never before
    /// the spool's cursor).
    pub fn new(spool: Arc<Spool>, starts: &[u64]) -> AckGate {
        let cursor = spool.cursor();
        AckGate {
            positions: Mutex::new(starts.iter().map(|s| (*s).max(cursor)).collect()),
            spool,
        }
    }

    /// Where `consumer` is.
    pub fn position(&self, consumer: usize) -> u64 {
        self.lock().get(consumer).copied().unwrap_or(0)
    }

    /// `consumer` is done with every record up to `seq`; acknowledges in the spool what
    /// every consumer is done with.
    pub fn advance(&self, consumer: usize, seq: u64) -> Result<(), SpoolError> {
        let min = {
            let mut p = self.lock();
            if let Some(slot) = p.get_mut(consumer) {
                *slot = (*slot).max(seq);
            }
            p.iter().copied().min().unwrap_or(seq)
        };
        if min > self.spool.cursor() {
            self.spool.ack(min)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.positions.lock().unwrap_or_else(|e| e.into_inner())
    }
}
