//! Random changes to the table (the emulator's churn).

use std::time::SystemTime;

use rand::Rng;

use super::Table;
use crate::emulator::seed::{is_guid, NumberSpec};
use crate::sip::number::E164;

impl Table {
    /// One random change: remove a number, move one to another tenant, or add a new one.
    /// Returns false when nothing could be changed.
    pub(crate) fn churn(&mut self, rng: &mut impl Rng, now: SystemTime) -> bool {
        let Some(pick) = self.random_number(rng) else {
            return fresh_spec(rng, None).is_some_and(|spec| self.upsert(&spec, now));
        };
        match rng.random_range(0..3u8) {
            0 => self.remove(pick),
            1 => {
                let Some(row) = self.rows.get(&pick) else {
                    return false;
                };
                let mut spec = self.spec(pick, row);
                let other = self
                    .random_number(rng)
                    .and_then(|n| self.rows.get(&n))
                    .map(|r| self.strings.get(r.tenant).to_owned())
                    .filter(|t| *t != spec.tenant_id);
                spec.tenant_id = other.unwrap_or_else(|| random_guid(rng));
                self.upsert(&spec, now);
                true
            }
            _ => {
                let template = self.rows.get(&pick).map(|r| self.spec(pick, r));
                for _ in 0..8 {
                    match fresh_spec(rng, template.as_ref()) {
                        Some(spec) if !self.rows.contains_key(&spec.number) => {
                            return self.upsert(&spec, now);
                        }
                        _ => {}
                    }
                }
                false
            }
        }
    }

    /// Some existing number (not uniformly drawn: the first at or after a random key).
    fn random_number(&self, rng: &mut impl Rng) -> Option<E164> {
        let lo: u64 = self.rows.keys().next()?.digits().parse().ok()?;
        let hi: u64 = self.rows.keys().next_back()?.digits().parse().ok()?;
        let key = E164::parse(&format!("+{}", rng.random_range(lo..=hi.max(lo)))).ok()?;
        self.rows
            .range(key..)
            .next()
            .or_else(|| self.rows.iter().next())
            .map(|(n, _)| *n)
    }
}

/// A new number near `template` (same tenant and host), or a made-up one; `None` when the
/// template is so close to the 15-digit limit that no neighbour exists.
fn fresh_spec(rng: &mut impl Rng, template: Option<&NumberSpec>) -> Option<NumberSpec> {
    let base: u64 = template
        .and_then(|t| t.number.digits().parse().ok())
        .unwrap_or(15_550_000_000);
    let number = format!("+{}", base.saturating_add(rng.random_range(1..10_000)));
    let tenant = template.map_or_else(|| random_guid(rng), |t| t.tenant_id.clone());
    let host = template
        .and_then(|t| t.sip_uri.rsplit_once('@'))
        .and_then(|(_, h)| h.split(';').next())
        .unwrap_or("churn.teams.example.com");
    let uri = format!("sip:{number}@{host};user=phone");
    NumberSpec::new(&number, &tenant, &uri, "CallingUserAssignment").ok()
}

/// A random version-4-looking GUID.
fn random_guid(rng: &mut impl Rng) -> String {
    let a: u128 = rng.random();
    let s = format!("{a:032x}");
    let g = format!(
        "{}-{}-4{}-{}-{}",
        s.get(0..8).unwrap_or_default(),
        s.get(8..12).unwrap_or_default(),
        s.get(13..16).unwrap_or_default(),
        s.get(16..20).unwrap_or_default(),
        s.get(20..32).unwrap_or_default()
    );
    debug_assert!(is_guid(&g));
    g
}
