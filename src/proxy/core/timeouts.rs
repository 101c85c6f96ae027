//! Timers: transaction expiries (408 upstream, failover on a client timeout), OPTIONS
//! health probes and the health changes they log.

use super::*;

impl Proxy {
    /// Moves the layer's actions to the output and reacts to timeouts and terminations.
    pub(super) fn drain_layer(&mut self, now: Millis) {
        while let Some(a) = self.layer.poll_action() {
            match a {
                Action::Send { to, bytes } => {
                    let peer = self.peers.get(&to);
                    self.out.push(Output {
                        to,
                        tls_name: peer.and_then(|p| p.tls_name.clone()),
                        side: peer.map(|p| p.side),
                        bytes,
                        reconnect: peer.and_then(|p| p.reconnect),
                    });
                }
                Action::ClientTimedOut {
                    client,
                    server,
                    expiry,
                } => self.on_client_timeout(now, client, server, expiry),
                Action::Terminated(TxId::Server(sid)) => {
                    if let Some(p) = self.pending.remove(&sid) {
                        self.peer_unref(p.source);
                    }
                }
                Action::Terminated(TxId::Client(cid)) => {
                    if let Some((_, target)) = self.clients.remove(&cid) {
                        self.peer_unref(target);
                    }
                }
            }
        }
        while let Some(ev) = self.layer.poll_event() {
            self.policy.observe(&ev);
        }
    }

    pub(super) fn on_client_timeout(
        &mut self,
        now: Millis,
        client: ClientId,
        server: Option<ServerId>,
        expiry: Expiry,
    ) {
        match self.clients.get(&client).map(|c| c.0) {
            Some(ClientRole::Probe(side, dest)) => {
                let change = self.sets[idx(side)].on_probe_result(dest, false, now);
                self.health(side, change);
            }
            Some(ClientRole::Forward(sid, dest)) => match expiry {
                Expiry::TimerB | Expiry::TimerF => {
                    if let Some((side, d)) = dest {
                        let change = self.sets[idx(side)].on_call_result(d, false, now);
                        self.health(side, change);
                    }
                    let retry =
                        dest.is_some() && self.pending.get(&sid).is_some_and(|p| p.out_of_dialog);
                    let cancelled = self.pending.get(&sid).is_some_and(|p| p.cancelled);
                    if retry && self.forward_to_next(now, sid) {
                        self.stats.failovers += 1;
                    } else if cancelled {
                        self.answer(now, sid, 487, &[]);
                    } else {
                        self.answer(now, sid, 408, &[]);
                    }
                }
                Expiry::CancelUnanswered => self.answer(now, sid, 487, &[]),
                _ => {}
            },
            None => {
                if let Some(sid) = server {
                    self.answer(now, sid, 408, &[]);
                }
            }
        }
    }

    /// Sends an OPTIONS health probe to a destination (RFC 3261 §11; Kamailio dispatcher
    /// style). Its result feeds the destination's health.
    pub(super) fn send_probe(&mut self, now: Millis, side: Side, dest: DestId) {
        let d = self.sets[idx(side)].dest(dest);
        let (target, name) = (d.target, d.tls_name.clone());
        let Some(egress) = self.routing.egress(side, target.transport).cloned() else {
            return;
        };
        self.next_branch += 1;
        let n = self.next_branch;
        let via = self.new_via(&egress.advertise, target.transport);
        let host = name.clone().unwrap_or_else(|| target.addr.to_string());
        let text = format!(
            "OPTIONS sip:{host} SIP/2.0\r\n\
             Via: {via}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:ocedge@{adv}>;tag=p{shard:x}.{n:x}\r\n\
             To: <sip:{host}>\r\n\
             Call-ID: probe.{shard:x}.{n:x}@{adv}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Contact: <sip:{adv};transport={t}>\r\n\
             Content-Length: 0\r\n\r\n",
            adv = egress.advertise,
            shard = self.shard,
            t = target.transport.as_str(),
        );
        let Ok(msg) = Message::parse(Bytes::from(text), self.layer.limits()) else {
            return;
        };
        if let Ok(cid) = self.layer.send_request(now, None, msg, target) {
            self.stats.probes_sent += 1;
            self.clients
                .insert(cid, (ClientRole::Probe(side, dest), target));
            self.peer_ref(target, side, name, None);
        }
    }

    /// Logs a destination's health change.
    pub(super) fn health(&mut self, side: Side, change: Option<HealthChange>) {
        if let Some(c) = change {
            let name = &self.sets[idx(side)].dest(c.id).name;
            if c.up {
                tracing::info!(side = side.as_str(), dest = %name, "destination up");
            } else {
                tracing::warn!(side = side.as_str(), dest = %name, "destination down");
            }
        }
    }
}
