//! The floor under the gateway's CPU per call: a relay that does nothing but move datagrams
//! between the SIPp peers of `bench/gateway.toml`, on the same runtime and socket calls the
//! gateway uses (a multi-threaded Tokio runtime, `recv_from` and `try_send_to` on
//! non-blocking UDP sockets). No parsing, no state, no allocation per datagram.
//!
//! What arrives on the carrier port (127.0.0.1:5062, SIPp's UAC) goes out of the Microsoft
//! port (127.0.0.1:5066) to SIPp's UAS (127.0.0.1:5070); what arrives on the Microsoft port
//! goes back to the last address the UAC sent from. SIPp's UDP scenarios address every
//! request to the command line's remote host and answer the sender, so calls complete
//! through it. Per call it receives 6 datagrams and sends 6; the gateway sends one more (its
//! 100 Trying).
//!
//! ```text
//! cargo build --release --example udp_floor
//! python3 ../shared/bench/sipload.py compare --gateway-cmd target/release/examples/udp_floor \
//!     --gateway-port 5062 --rate 1000 --calls 20000 --rounds 3
//! ```
//!
//! The ratio it reports is the part of Kamailio's CPU per call that the kernel and the
//! runtime take for the datagrams alone; whatever the gateway does per call has to fit in the
//! rest. Loopback only; it stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::net::UdpSocket;

const CARRIER: &str = "127.0.0.1:5062";
const MICROSOFT: &str = "127.0.0.1:5066";
const UAS: &str = "127.0.0.1:5070";

fn main() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let carrier = Arc::new(UdpSocket::bind(CARRIER).await?);
        let microsoft = Arc::new(UdpSocket::bind(MICROSOFT).await?);
        let uas: SocketAddr = UAS.parse().map_err(std::io::Error::other)?;
        let uac: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let up = tokio::spawn(relay(
            carrier.clone(),
            microsoft.clone(),
            uac.clone(),
            Dest::Fixed(uas),
        ));
        let down = tokio::spawn(relay(microsoft, carrier, uac, Dest::LastUac));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate() => {}
        }
        up.abort();
        down.abort();
        Ok(())
    })
}

enum Dest {
    Fixed(SocketAddr),
    LastUac,
}

/// Receives on `from` and sends each datagram out of `to`.
async fn relay(
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    uac: Arc<Mutex<Option<SocketAddr>>>,
    dest: Dest,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = from.recv_from(&mut buf).await else {
            continue;
        };
        let target = match dest {
            Dest::Fixed(addr) => {
                *uac.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
                addr
            }
            Dest::LastUac => match *uac.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(addr) => addr,
                None => continue,
            },
        };
        if let Some(data) = buf.get(..n) {
            let _ = to.try_send_to(data, target);
        }
    }
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
