//! Header names: the headers ocedge understands, their compact forms (RFC 3261 §7.3.3 and
//! the registrations that followed), and case-insensitive matching of any other name.
//!
//! A name is classified once, when the header index is built, so typed accessors compare a
//! one-byte enum instead of strings.

/// A header name ocedge knows, or `Other` for any extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    /// `Via` / `v`
    Via,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `Call-ID` / `i`
    CallId,
    /// `CSeq`
    CSeq,
    /// `Max-Forwards`
    MaxForwards,
    /// `Contact` / `m`
    Contact,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Content-Length` / `l`
    ContentLength,
    /// `Content-Type` / `c`
    ContentType,
    /// `Content-Encoding` / `e`
    ContentEncoding,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Require`
    Require,
    /// `Supported` / `k`
    Supported,
    /// `Unsupported`
    Unsupported,
    /// `Session-Expires` / `x` (RFC 4028)
    SessionExpires,
    /// `Min-SE` (RFC 4028)
    MinSe,
    /// `P-Asserted-Identity` (RFC 3325)
    PAssertedIdentity,
    /// `Privacy` (RFC 3323)
    Privacy,
    /// `Event` / `o` (RFC 6665)
    Event,
    /// `Allow-Events` / `u`
    AllowEvents,
    /// `Subject` / `s`
    Subject,
    /// `Refer-To` / `r` (RFC 3515)
    ReferTo,
    /// `Retry-After`
    RetryAfter,
    /// `Expires`
    Expires,
    /// `Allow`
    Allow,
    /// `User-Agent`
    UserAgent,
    /// `Server`
    Server,
    /// Any other header; compare its text with [`eq_name`].
    Other,
}

impl HeaderName {
    /// Classifies a raw header name (no surrounding whitespace), case-insensitively, with
    /// compact forms.
    pub fn classify(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'k' => Supported,
                b'x' => SessionExpires,
                b'o' => Event,
                b'u' => AllowEvents,
                b's' => Subject,
                b'r' => ReferTo,
                _ => Other,
            };
        }
        // Dispatch on length and first letter so that at most one comparison is made; `| 0x20`
        // lowercases letters (anything else simply fails the final comparison).
        let lower = |i: usize| name.get(i).map_or(0, |b| b | 0x20);
        let (text, kind): (&[u8], HeaderName) = match (name.len(), lower(0)) {
            (2, b't') => (b"to", To),
            (3, b'v') => (b"via", Via),
            (4, b'f') => (b"from", From),
            (4, b'c') => (b"cseq", CSeq),
            (5, b'r') => (b"route", Route),
            (5, b'e') => (b"event", Event),
            (5, b'a') => (b"allow", Allow),
            (6, b'm') => (b"min-se", MinSe),
            (6, b's') => (b"server", Server),
            (7, b'c') if lower(1) == b'a' => (b"call-id", CallId),
            (7, b'c') => (b"contact", Contact),
            (7, b'r') => (b"require", Require),
            (7, b'p') => (b"privacy", Privacy),
            (7, b's') => (b"subject", Subject),
            (7, b'e') => (b"expires", Expires),
            (8, b'r') => (b"refer-to", ReferTo),
            (9, b's') => (b"supported", Supported),
            (10, b'u') => (b"user-agent", UserAgent),
            (11, b'u') => (b"unsupported", Unsupported),
            (11, b'r') => (b"retry-after", RetryAfter),
            (12, b'm') => (b"max-forwards", MaxForwards),
            (12, b'r') => (b"record-route", RecordRoute),
            (12, b'c') => (b"content-type", ContentType),
            (12, b'a') => (b"allow-events", AllowEvents),
            (13, b'p') => (b"proxy-require", ProxyRequire),
            (14, b'c') => (b"content-length", ContentLength),
            (15, b's') => (b"session-expires", SessionExpires),
            (16, b'c') => (b"content-encoding", ContentEncoding),
            (19, b'p') => (b"p-asserted-identity", PAssertedIdentity),
            _ => return Other,
        };
        if eq_lower(name, text) {
            kind
        } else {
            Other
        }
    }

    /// The canonical (long) spelling used when ocedge writes this header.
    pub fn canonical(self) -> Option<&'static str> {
        use HeaderName::*;
        Some(match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            Contact => "Contact",
            Route => "Route",
            RecordRoute => "Record-Route",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            ContentEncoding => "Content-Encoding",
            ProxyRequire => "Proxy-Require",
            Require => "Require",
            Supported => "Supported",
            Unsupported => "Unsupported",
            SessionExpires => "Session-Expires",
            MinSe => "Min-SE",
            PAssertedIdentity => "P-Asserted-Identity",
            Privacy => "Privacy",
            Event => "Event",
            AllowEvents => "Allow-Events",
            Subject => "Subject",
            ReferTo => "Refer-To",
            RetryAfter => "Retry-After",
            Expires => "Expires",
            Allow => "Allow",
            UserAgent => "User-Agent",
            Server => "Server",
            Other => return None,
        })
    }

    /// True for headers whose grammar allows several comma-separated values in one line
    /// (RFC 3261 §7.3.1), so that splitting on commas is meaningful.
    pub fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | ProxyRequire
                | Require
                | Supported
                | Unsupported
                | PAssertedIdentity
                | Privacy
                | AllowEvents
                | Allow
                | ContentEncoding
        )
    }

    /// True for headers that may appear at most once (RFC 3261 §20, the proxy's view): two
    /// of them make a request ambiguous and it is refused with 400.
    pub fn is_single(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            From | To
                | CallId
                | CSeq
                | MaxForwards
                | ContentLength
                | ContentType
                | SessionExpires
                | MinSe
                | Event
        )
    }
}

/// Case-insensitive comparison with an all-lowercase ASCII `lower`; cheaper than
/// `eq_ignore_ascii_case` because one side is known to be lowercase already.
#[inline]
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name
            .iter()
            .zip(lower)
            .all(|(&x, &c)| x == c || (x.is_ascii_uppercase() && (x | 0x20) == c))
}

/// Compares two header names the way SIP does: case-insensitively, with compact forms equal
/// to their long forms (`l` == `Content-Length`). Names of extension headers compare as text.
pub fn eq_name(a: &[u8], b: &[u8]) -> bool {
    let (ka, kb) = (HeaderName::classify(a), HeaderName::classify(b));
    if ka != HeaderName::Other || kb != HeaderName::Other {
        return ka == kb;
    }
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_forms_match() {
        assert_eq!(HeaderName::classify(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::classify(b"VIA"), HeaderName::Via);
        assert_eq!(HeaderName::classify(b"l"), HeaderName::ContentLength);
        assert_eq!(
            HeaderName::classify(b"content-LENGTH"),
            HeaderName::ContentLength
        );
        assert_eq!(HeaderName::classify(b"x"), HeaderName::SessionExpires);
        assert_eq!(HeaderName::classify(b"X-MS-TenantID"), HeaderName::Other);
        assert!(eq_name(b"i", b"call-id"));
        assert!(eq_name(b"x-ms-tenantid", b"X-MS-TenantID"));
        assert!(!eq_name(b"x-ms-tenantid", b"X-MS-Tenant"));
        assert!(!eq_name(b"To", b"From"));
    }

    #[test]
    fn every_canonical_name_classifies_to_itself() {
        use HeaderName::*;
        for k in [
            Via,
            From,
            To,
            CallId,
            CSeq,
            MaxForwards,
            Contact,
            Route,
            RecordRoute,
            ContentLength,
            ContentType,
            ContentEncoding,
            ProxyRequire,
            Require,
            Supported,
            Unsupported,
            SessionExpires,
            MinSe,
            PAssertedIdentity,
            Privacy,
            Event,
            AllowEvents,
            Subject,
            ReferTo,
            RetryAfter,
            Expires,
            Allow,
            UserAgent,
            Server,
        ] {
            let text = k.canonical().unwrap();
            assert_eq!(HeaderName::classify(text.as_bytes()), k, "{text}");
            assert_eq!(
                HeaderName::classify(text.to_ascii_lowercase().as_bytes()),
                k
            );
        }
    }
}
