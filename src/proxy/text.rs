//! Building the header values the proxy writes on every forward (Via, Record-Route, flow
//! tokens) without `format!`: its machinery cost about 4% of the proxy's instructions per
//! call (callgrind, `benches/proxy.rs`).

use std::net::IpAddr;

/// Appends `v` in lower-case hex, without leading zeros.
pub(crate) fn push_hex(s: &mut String, v: u64) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        s.push(hex_digit(v >> (i * 4)));
    }
}

/// Appends `v` in lower-case hex, all 16 digits.
pub(crate) fn push_hex16(s: &mut String, v: u64) {
    for i in (0..16).rev() {
        s.push(hex_digit(v >> (i * 4)));
    }
}

fn hex_digit(v: u64) -> char {
    char::from(b"0123456789abcdef"[(v & 0xf) as usize])
}

/// Appends `v` in decimal.
pub(crate) fn push_dec(s: &mut String, v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut v = v;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[at..] {
        s.push(char::from(b));
    }
}

/// Appends an address as a URI host: dotted quad, or bracketed IPv6.
pub(crate) fn push_ip(s: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_dec(s, u64::from(o));
            }
        }
        IpAddr::V6(a) => {
            use std::fmt::Write;
            let _ = write!(s, "[{a}]");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        for v in [
            0u64,
            1,
            9,
            10,
            15,
            16,
            255,
            4096,
            65535,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let (mut h, mut h16, mut d) = (String::new(), String::new(), String::new());
            push_hex(&mut h, v);
            push_hex16(&mut h16, v);
            push_dec(&mut d, v);
            assert_eq!(h, format!("{v:x}"));
            assert_eq!(h16, format!("{v:016x}"));
            assert_eq!(d, format!("{v}"));
        }
    }

    #[test]
    fn addresses_are_written_as_uri_hosts() {
        for a in [
            "127.0.0.1:5060",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[2001:db8::1]:5061",
        ] {
            let addr: std::net::SocketAddr = a.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, addr.ip());
            s.push(':');
            push_dec(&mut s, u64::from(addr.port()));
            assert_eq!(s, a);
        }
    }
}
