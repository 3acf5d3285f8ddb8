//! The cluster DNS server's sockets: UDP and TCP listeners answering from memory
//! ([`answer::answer`] over the [`Store`] and [`Settings`] the watches keep current), relaying
//! the rest upstream ([`super::upstream`]), and [`run`], the whole `kubeboot dns` process.
//!
//! Every pod can reach this server, so everything is bounded:
//! - UDP: one socket per listen address, one receive buffer, answered in the receive loop
//!   (nothing per client is kept); at most [`Limits::max_forwards`] relays at once, and a query
//!   that needs one beyond that gets REFUSED at once (CoreDNS's forward plugin answers its
//!   `max_concurrent` overflow with REFUSED too).
//! - TCP: at most [`Limits::max_tcp`] connections (a connection beyond is closed at accept),
//!   each a 2-byte length prefix then the message (so at most 64 KiB), any number of queries
//!   per connection, answered in order; a connection idle or slow for [`Limits::tcp_idle`]
//!   is closed, as is one whose prefix is 0.
//!
//! Per-query logs are at trace level (`-v 5` and up), so a flood costs no log lines below it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tracing::{debug, info, trace, warn};

use super::answer::{self, Outcome, Settings, Transport};
use super::store::Store;
use super::upstream::{self, MAX_MESSAGE, Timeouts};

/// The bounds of one server; [`Limits::default`] is what `kubeboot dns` runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Relays to upstreams at once, UDP clients' (TCP clients' are bounded by `max_tcp`).
    pub max_forwards: usize,
    /// TCP connections at once, over all listen addresses.
    pub max_tcp: usize,
    /// How long a TCP connection may wait for the next query, or for the rest of one.
    pub tcp_idle: Duration,
    /// How long relays take ([`upstream::Timeouts`]).
    pub upstream: Timeouts,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_forwards: 256,
            max_tcp: 64,
            tcp_idle: Duration::from_secs(5),
            upstream: Timeouts::default(),
        }
    }
}

/// Counters of a running server (for tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// UDP queries received.
    pub udp_queries: u64,
    /// TCP queries received.
    pub tcp_queries: u64,
    /// Relays running now.
    pub forwards_in_flight: usize,
    /// Queries answered REFUSED because `max_forwards` relays were running.
    pub forwards_refused: u64,
    /// TCP connections open now.
    pub tcp_connections: usize,
    /// TCP connections closed at accept because `max_tcp` were open.
    pub tcp_rejected: u64,
}

#[derive(Default)]
struct Counters {
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
    forwards_refused: AtomicU64,
    tcp_connections: AtomicUsize,
    tcp_rejected: AtomicU64,
}

/// The server's state, shared by its listeners, its watches and its health endpoints.
pub struct Server {
    store: RwLock<Store>,
    settings: RwLock<Arc<Settings>>,
    synced: AtomicBool,
    limits: Limits,
    forwards: Arc<Semaphore>,
    tcp_slots: Arc<Semaphore>,
    counters: Counters,
}

impl Server {
    /// A server answering from `store` with `settings`, not yet synced.
    pub fn new(store: Store, settings: Settings, limits: Limits) -> Arc<Server> {
        Arc::new(Server {
            store: RwLock::new(store),
            settings: RwLock::new(Arc::new(settings)),
            synced: AtomicBool::new(false),
            limits,
            forwards: Arc::new(Semaphore::new(limits.max_forwards)),
            tcp_slots: Arc::new(Semaphore::new(limits.max_tcp)),
            counters: Counters::default(),
        })
    }

    /// Changes the records: `f` runs with the store locked for writing (briefly: queries wait).
    pub fn update_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        // A panic while holding the lock leaves a store that is still a store: keep serving.
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        f(&mut store)
    }

    /// Reads the records.
    pub fn read_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        f(&store)
    }

    /// The settings queries are answered with now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the settings at once: a query sees the old ones or the new ones, never a mix.
    pub fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// Marks the Services and Endpoints as synced (ready; it stays so).
    pub fn mark_synced(&self) {
        if !self.synced.swap(true, Ordering::SeqCst) {
            info!("Services and Endpoints synced; ready");
        }
    }

    /// Whether the Services and Endpoints have synced.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            udp_queries: c.udp_queries.load(Ordering::Relaxed),
            tcp_queries: c.tcp_queries.load(Ordering::Relaxed),
            forwards_in_flight: self.limits.max_forwards - self.forwards.available_permits(),
            forwards_refused: c.forwards_refused.load(Ordering::Relaxed),
            tcp_connections: c.tcp_connections.load(Ordering::Relaxed),
            tcp_rejected: c.tcp_rejected.load(Ordering::Relaxed),
        }
    }

    /// What to do with one query, from memory.
    pub fn answer(&self, packet: &[u8], transport: Transport) -> Outcome {
        let settings = self.settings();
        self.read_store(|store| answer::answer(store, &settings, packet, transport))
    }

    /// Serves UDP queries on `socket` until the task is aborted.
    pub async fn serve_udp(self: Arc<Self>, socket: UdpSocket) {
        let socket = Arc::new(socket);
        // One buffer for every query: the largest UDP payload.
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // A persistent error must not spin the thread.
                    debug!("UDP receive failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            self.counters.udp_queries.fetch_add(1, Ordering::Relaxed);
            let query = &buf[..n];
            trace!(%peer, bytes = n, "UDP query");
            let reply = match self.answer(query, Transport::Udp) {
                Outcome::Reply(bytes) => bytes,
                Outcome::Drop => continue,
                Outcome::Forward { upstreams } => match self.forwards.clone().try_acquire_owned() {
                    Ok(permit) => {
                        self.spawn_udp_relay(&socket, query.to_vec(), upstreams, peer, permit);
                        continue;
                    }
                    Err(_) => {
                        self.counters
                            .forwards_refused
                            .fetch_add(1, Ordering::Relaxed);
                        match refused(query) {
                            Some(r) => r,
                            None => continue,
                        }
                    }
                },
            };
            if let Err(e) = socket.send_to(&reply, peer).await {
                debug!(%peer, "UDP send failed: {e}");
            }
        }
    }

    fn spawn_udp_relay(
        &self,
        socket: &Arc<UdpSocket>,
        query: Vec<u8>,
        upstreams: Vec<SocketAddr>,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let socket = socket.clone();
        let timeouts = self.limits.upstream;
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(reply) = upstream::relay(&query, &upstreams, Transport::Udp, timeouts).await
                && let Err(e) = socket.send_to(&reply, peer).await
            {
                debug!(%peer, "UDP send failed: {e}");
            }
        });
    }

    /// Serves TCP connections on `listener` until the task is aborted.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: wait rather than spin.
                    debug!("TCP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.tcp_slots.clone().try_acquire_owned() else {
                self.counters.tcp_rejected.fetch_add(1, Ordering::Relaxed);
                trace!(%peer, "TCP connection refused: too many open");
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                server
                    .counters
                    .tcp_connections
                    .fetch_add(1, Ordering::Relaxed);
                if let Err(why) = server.connection(stream).await {
                    trace!(%peer, "TCP connection closed: {why}");
                }
                server
                    .counters
                    .tcp_connections
                    .fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    }

    /// One TCP connection: queries in order until the client closes, idles or misbehaves.
    async fn connection(&self, mut stream: TcpStream) -> Result<(), String> {
        let idle = self.limits.tcp_idle;
        let mut buf = Vec::new();
        loop {
            let mut prefix = [0u8; 2];
            match timeout(idle, stream.read_exact(&mut prefix)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(format!("read failed: {e}")),
                Err(_) => return Err("idle".into()),
            }
            let len = usize::from(u16::from_be_bytes(prefix));
            if len == 0 {
                return Err("zero-length message".into());
            }
            buf.resize(len, 0);
            match timeout(idle, stream.read_exact(&mut buf)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("read failed: {e}")),
                Err(_) => return Err("message not complete in time".into()),
            }
            self.counters.tcp_queries.fetch_add(1, Ordering::Relaxed);
            trace!(bytes = len, "TCP query");
            let reply = match self.answer(&buf, Transport::Tcp) {
                Outcome::Reply(bytes) => Some(bytes),
                Outcome::Drop => None,
                Outcome::Forward { upstreams } => {
                    upstream::relay(&buf, &upstreams, Transport::Tcp, self.limits.upstream).await
                }
            };
            // A large query's buffer is not kept for the connection's lifetime.
            if buf.capacity() > 4096 {
                buf = Vec::new();
            }
            let Some(reply) = reply else { continue };
            let Ok(len) = u16::try_from(reply.len()) else {
                return Err("answer over 64 KiB".into());
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            match timeout(idle, stream.write_all(&framed)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("write failed: {e}")),
                Err(_) => return Err("the client does not read".into()),
            }
        }
    }
}

/// REFUSED for `query` (built with hickory-proto), None when it does not parse.
fn refused(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut r = Message::error_msg(q.id(), q.op_code(), ResponseCode::Refused);
    r.set_recursion_desired(q.recursion_desired());
    r.add_queries(q.queries().iter().cloned());
    r.to_vec().ok()
}

/// What `kubeboot dns` runs with (its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `--kubeconfig`; None: in-cluster (the pod's service account).
    pub kubeconfig: Option<PathBuf>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// `--listen`: UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// `--health-listen`.
    pub health_listen: SocketAddr,
    /// `--ready-listen`.
    pub ready_listen: SocketAddr,
    /// `--resolv-conf`: the upstreams of `forward . /etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `--corefile-configmap`: namespace and name; None watches none.
    pub corefile_configmap: Option<(String, String)>,
    /// `--cluster-dns-ip`: this server's own Service IPs, never upstreams.
    pub cluster_dns_ips: Vec<IpAddr>,
}

/// Runs the cluster DNS server until SIGTERM or SIGINT, on a single-threaded tokio runtime
/// (one core answers tens of thousands of queries a second from memory; a second thread would
/// only add memory).
///
/// # Errors
/// When the cluster domain is not a valid name, a listen address cannot be bound, the
/// resolv.conf cannot be read, or no API client can be built.
pub fn run(cfg: DnsConfig) -> anyhow::Result<()> {
    crate::run_until_signal(|shutdown| async move {
        let tasks = start(cfg).await?;
        shutdown.await;
        for t in tasks {
            t.abort();
        }
        Ok(())
    })
}

/// Binds everything, then starts the listeners, the health endpoints and the watches.
async fn start(cfg: DnsConfig) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let store = Store::new(&cfg.cluster_domain).with_context(|| {
        format!(
            "--cluster-domain {:?} is not a valid domain name; pass the cluster's domain, e.g. cluster.local",
            cfg.cluster_domain
        )
    })?;
    let resolv = super::watch::read_resolv_conf(&cfg.resolv_conf)?;
    let own = super::watch::own_addresses(&cfg.cluster_dns_ips);
    let settings = super::watch::default_settings(&resolv, &own);
    if settings.upstreams.is_empty() {
        warn!(
            resolv_conf = %cfg.resolv_conf.display(),
            "no upstream resolvers (none in the resolv.conf, or all of them this server): names outside the cluster get SERVFAIL"
        );
    }
    let server = Server::new(store, settings, Limits::default());

    // Every socket first, so a taken port fails the command before anything runs.
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in &cfg.listen {
        udp.push(
            UdpSocket::bind(addr)
                .await
                .with_context(|| bind_error("UDP", addr))?,
        );
        tcp.push(
            TcpListener::bind(addr)
                .await
                .with_context(|| bind_error("TCP", addr))?,
        );
    }
    let mut http = vec![(
        TcpListener::bind(cfg.health_listen)
            .await
            .with_context(|| bind_error("TCP (--health-listen)", &cfg.health_listen))?,
        cfg.health_listen,
    )];
    if cfg.ready_listen != cfg.health_listen {
        http.push((
            TcpListener::bind(cfg.ready_listen)
                .await
                .with_context(|| bind_error("TCP (--ready-listen)", &cfg.ready_listen))?,
            cfg.ready_listen,
        ));
    }
    let client = super::watch::client(cfg.kubeconfig.as_deref()).await?;

    let mut tasks = Vec::new();
    for socket in udp {
        tasks.push(tokio::spawn(server.clone().serve_udp(socket)));
    }
    for listener in tcp {
        tasks.push(tokio::spawn(server.clone().serve_tcp(listener)));
    }
    for (listener, _) in http {
        tasks.push(tokio::spawn(super::health::serve(listener, server.clone())));
    }
    let watch = super::watch::WatchConfig {
        cluster_domain: cfg.cluster_domain.clone(),
        corefile_configmap: cfg.corefile_configmap.clone(),
        resolv_conf: cfg.resolv_conf.clone(),
        resolv_conf_upstreams: resolv,
        own,
    };
    tasks.extend(super::watch::spawn(client, server.clone(), watch));
    info!(
        listen = ?cfg.listen,
        health = %cfg.health_listen,
        ready = %cfg.ready_listen,
        domain = %cfg.cluster_domain,
        "serving cluster DNS"
    );
    Ok(tasks)
}

fn bind_error(what: &str, addr: &SocketAddr) -> String {
    let hint = if addr.port() < 1024 {
        " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
    } else {
        ""
    };
    format!("could not listen on {what} {addr}{hint}; free the port or choose another address")
}
