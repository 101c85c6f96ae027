//! Counters of the proxy core, one set per shard, summed by the app for `/metrics`.

/// What the proxy did since start. Plain integers: a shard is single-threaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests from a source outside the side's ACL, dropped unanswered.
    pub acl_dropped: u64,
    /// Requests answered statelessly by the first look (400, 416, 420, 483, 505, 513…).
    pub rejected_invalid: u64,
    /// Messages the first look dropped.
    pub dropped_invalid: u64,
    /// Requests carrying our own Via: 482.
    pub loops: u64,
    /// First excess requests of a source: 503 with Retry-After.
    pub flood_rejected: u64,
    /// Further excess requests, dropped.
    pub flood_dropped: u64,
    /// Requests refused by the policy.
    pub policy_rejected: u64,
    /// New requests with no destination available: 503.
    pub no_destination: u64,
    /// In-dialog requests with no acceptable next hop: 404.
    pub no_route: u64,
    /// Transaction table full: 503.
    pub overloaded: u64,
    /// Requests forwarded (each attempt of a failover counts).
    pub forwarded_requests: u64,
    /// Responses forwarded upstream.
    pub forwarded_responses: u64,
    /// Retries on the next destination after 408, 503 or a timeout.
    pub failovers: u64,
    /// Responses matching no transaction, dropped.
    pub stray_responses: u64,
    /// OPTIONS probes sent.
    pub probes_sent: u64,
    /// New requests refused with 503 while draining for shutdown.
    pub draining_rejected: u64,
    /// RFC 6035 quality reports accepted from configured SBCs (200).
    pub quality_reports: u64,
    /// Quality reports from anyone else, refused (403).
    pub quality_refused: u64,
}

impl ProxyStats {
    /// Adds another shard's counters.
    pub fn add(&mut self, o: &ProxyStats) {
        self.acl_dropped += o.acl_dropped;
        self.rejected_invalid += o.rejected_invalid;
        self.dropped_invalid += o.dropped_invalid;
        self.loops += o.loops;
        self.flood_rejected += o.flood_rejected;
        self.flood_dropped += o.flood_dropped;
        self.policy_rejected += o.policy_rejected;
        self.no_destination += o.no_destination;
        self.no_route += o.no_route;
        self.overloaded += o.overloaded;
        self.forwarded_requests += o.forwarded_requests;
        self.forwarded_responses += o.forwarded_responses;
        self.failovers += o.failovers;
        self.stray_responses += o.stray_responses;
        self.probes_sent += o.probes_sent;
        self.draining_rejected += o.draining_rejected;
        self.quality_reports += o.quality_reports;
        self.quality_refused += o.quality_refused;
    }
}
