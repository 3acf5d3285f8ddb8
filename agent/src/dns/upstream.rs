//! Forwarding a query the cluster DNS does not answer itself to the upstream resolvers.
//!
//! The query's bytes go to one upstream at a time, unchanged, from a fresh UDP socket
//! connected to it (a new random source port per query, as a resolver should); the first
//! response with the query's ID is relayed, unchanged too, so the client's ID and flags are
//! what the upstream answered. Each attempt has [`ATTEMPT_TIMEOUT`]; an upstream that does
//! not answer in time, refuses the port (ICMP) or cannot be reached is skipped for the next
//! one, in the configured order (as glibc walks resolv.conf), and the whole relay ends at
//! [`DEADLINE`], before glibc's own 5 s retry. A response with TC set is asked again over TCP
//! of the same upstream when the client came over TCP (it can take the whole answer); a UDP
//! client gets the truncated response and retries over TCP itself. After every upstream failed
//! the client gets SERVFAIL ([`answer::servfail`]).
//!
//! Memory is bounded by the caller: [`crate::dns::serve`] runs at most a fixed number of
//! relays at once; each holds one receive buffer of at most 64 KiB.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Header, MessageType};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use super::answer::{self, Transport};

/// How long one upstream has to answer (CoreDNS's forward plugin: 2 s read timeout).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a relay takes at most, every upstream included (CoreDNS's forward: 5 s).
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The largest DNS message: its TCP length prefix is 16 bits.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// How long each attempt and the whole relay may take; [`Timeouts::default`] is
/// [`ATTEMPT_TIMEOUT`] and [`DEADLINE`] (tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One upstream's time to answer.
    pub attempt: Duration,
    /// The whole relay.
    pub deadline: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt: ATTEMPT_TIMEOUT,
            deadline: DEADLINE,
        }
    }
}

/// The response to `query` from the first of `upstreams` that answers, or SERVFAIL when none
/// did; None when `query` is not even a DNS header (nothing to answer).
pub async fn relay(
    query: &[u8],
    upstreams: &[SocketAddr],
    client: Transport,
    timeouts: Timeouts,
) -> Option<Vec<u8>> {
    let id = Header::from_bytes(query.get(..12)?).ok()?.id();
    let deadline = Instant::now() + timeouts.deadline;
    for upstream in upstreams {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let until = deadline.min(now + timeouts.attempt);
        match attempt(query, id, *upstream, client, until).await {
            Ok(reply) => return Some(reply),
            Err(why) => debug!(%upstream, "upstream failed: {why}"),
        }
    }
    answer::servfail(query)
}

/// One upstream: UDP, then TCP when the client came over TCP and the answer was truncated.
async fn attempt(
    query: &[u8],
    id: u16,
    upstream: SocketAddr,
    client: Transport,
    until: Instant,
) -> Result<Vec<u8>, String> {
    let reply = over_udp(query, id, upstream, until).await?;
    let truncated = header(&reply).is_some_and(|h| h.truncated());
    if truncated && client == Transport::Tcp {
        return over_tcp(query, id, upstream, until).await;
    }
    Ok(reply)
}

/// The reply's header, when it parses.
fn header(reply: &[u8]) -> Option<Header> {
    Header::from_bytes(reply.get(..12)?).ok()
}

/// Whether `reply` is a response to the query with `id` (anything else on the socket is
/// ignored: a late answer to nothing, or a forgery).
fn answers(reply: &[u8], id: u16) -> bool {
    header(reply).is_some_and(|h| h.id() == id && h.message_type() == MessageType::Response)
}

async fn over_udp(
    query: &[u8],
    id: u16,
    upstream: SocketAddr,
    until: Instant,
) -> Result<Vec<u8>, String> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("could not open a UDP socket: {e}"))?;
    socket
        .connect(upstream)
        .await
        .map_err(|e| format!("could not connect: {e}"))?;
    timeout_at(until, socket.send(query))
        .await
        .map_err(|_| "timed out sending".to_string())?
        .map_err(|e| format!("could not send: {e}"))?;
    let mut buf = Vec::with_capacity(MAX_MESSAGE);
    // Bounded by `until`: stray datagrams only keep the loop going until then.
    loop {
        buf.clear();
        let n = timeout_at(until, socket.recv_buf(&mut buf))
            .await
            .map_err(|_| "no answer in time".to_string())?
            .map_err(|e| format!("could not receive: {e}"))?;
        if answers(&buf[..n], id) {
            buf.truncate(n);
            buf.shrink_to_fit();
            return Ok(buf);
        }
    }
}

async fn over_tcp(
    query: &[u8],
    id: u16,
    upstream: SocketAddr,
    until: Instant,
) -> Result<Vec<u8>, String> {
    let len = u16::try_from(query.len()).map_err(|_| "query too large for TCP".to_string())?;
    let exchange = async {
        let mut stream = TcpStream::connect(upstream)
            .await
            .map_err(|e| format!("could not connect over TCP: {e}"))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream
            .write_all(&framed)
            .await
            .map_err(|e| format!("could not send over TCP: {e}"))?;
        let mut prefix = [0u8; 2];
        stream
            .read_exact(&mut prefix)
            .await
            .map_err(|e| format!("could not read the TCP answer: {e}"))?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream
            .read_exact(&mut reply)
            .await
            .map_err(|e| format!("could not read the TCP answer: {e}"))?;
        if answers(&reply, id) {
            Ok(reply)
        } else {
            Err("the TCP answer is not a response to the query".to_string())
        }
    };
    timeout_at(until, exchange)
        .await
        .map_err(|_| "no TCP answer in time".to_string())?
}
