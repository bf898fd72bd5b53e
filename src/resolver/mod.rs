//! Names: a DNS resolver at `127.0.0.11` inside every container, as
//! Docker's embedded DNS server, for a runtime to run (feature `dns`).
//!
//! [`Resolver::start`] serves the endpoints of every network of a [`Host`]:
//! for each container namespace, UDP and TCP listeners on `127.0.0.11:53`
//! inside it (its loopback is brought up if it is down), answering
//!
//! - `A`/`AAAA` for the names of the containers on the same networks as the
//!   asker (the endpoint's name and its DNS names, any case), alone or under
//!   the search domain (`underlay.internal` by default: `ipv1` and
//!   `ipv1.underlay.internal` are the same), and `PTR` for their addresses;
//! - anything else by relaying it, unchanged, to the host's resolvers (from
//!   the host's `/etc/resolv.conf`, or [`ResolverOptions::upstream`]), and
//!   their answer back; `SERVFAIL` when none answers.
//!
//! It follows attaches and detaches of every process on the same state
//! (file notifications on [`Host::watch_paths`], and a look every second),
//! and stops serving a namespace once it has no endpoint or is gone. One
//! thread serves every listener; forwarded queries and TCP connections get
//! threads of their own, a bounded number. Dropping the [`Resolver`] stops
//! it all.
//!
//! ```no_run
//! use underlay::resolver::{Resolver, ResolverOptions};
//! use underlay::Host;
//!
//! let host = Host::open("/var/lib/underlay")?;
//! let resolver = Resolver::start(&host, ResolverOptions::new())?;
//! // Containers with `nameserver 127.0.0.11` in their resolv.conf now
//! // resolve each other by name.
//! # drop(resolver);
//! # Ok::<(), underlay::Error>(())
//! ```

mod answer;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::epoll;

use self::answer::{answer, servfail, Names, Outcome, Rules};
use crate::netlink::Netlink;
use crate::netns::{NetNs, NetNsId};
use crate::{Error, Host, Result};

/// Where a container asks: `127.0.0.11:53`, as Docker's.
pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

/// At most this many forwarded queries and TCP connections at once, in
/// all; more get `SERVFAIL` (or are closed).
const MAX_IN_FLIGHT: usize = 256;

/// At most this many per container namespace, so that one container
/// cannot take every slot from the others.
const MAX_IN_FLIGHT_PER_NAMESPACE: usize = 16;

/// How long an upstream resolver has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Options for [`Resolver::start`].
///
/// ```
/// use underlay::resolver::ResolverOptions;
///
/// let options = ResolverOptions::new()
///     .upstream("192.0.2.53:53".parse().unwrap())
///     .domain("lan.example")?;
/// # Ok::<(), underlay::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ResolverOptions {
    upstreams: Vec<SocketAddr>,
    resolv_conf: std::path::PathBuf,
    domain: String,
    ttl: u32,
    refresh: Duration,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        ResolverOptions {
            upstreams: Vec::new(),
            resolv_conf: "/etc/resolv.conf".into(),
            domain: "underlay.internal".into(),
            ttl: 5,
            refresh: Duration::from_secs(1),
        }
    }
}

impl ResolverOptions {
    /// The defaults: upstreams from `/etc/resolv.conf`, the domain
    /// `underlay.internal`, answers valid for 5 seconds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forwards to this resolver (repeat for more, tried in turn) instead
    /// of those of `/etc/resolv.conf`.
    pub fn upstream(mut self, address: SocketAddr) -> Self {
        self.upstreams.push(address);
        self
    }

    /// Reads the upstream resolvers from this file (`nameserver` lines)
    /// instead of `/etc/resolv.conf`.
    pub fn resolv_conf(mut self, path: impl AsRef<Path>) -> Self {
        self.resolv_conf = path.as_ref().to_owned();
        self
    }

    /// The search domain the containers' names are also answered under.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name that is not a DNS name.
    pub fn domain(mut self, domain: &str) -> Result<Self> {
        let domain = domain.trim_end_matches('.');
        for label in domain.split('.') {
            crate::names::validate_dns_name("search domain", label)
                .map_err(|_| Error::invalid("search domain", domain, "expected DNS labels (letters, digits, hyphens) separated by dots, such as lan.example"))?;
        }
        self.domain = domain.to_ascii_lowercase();
        Ok(self)
    }

    /// How often the endpoints are read again with no file notification
    /// (every second by default): the safety net for stores that name no
    /// paths to watch, and for containers that die without a detach.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh = interval.max(Duration::from_millis(10));
        self
    }

    /// How long answers may be cached, in seconds (5 by default).
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = seconds;
        self
    }

    /// The upstream resolvers: the given ones, or those of the resolv.conf
    /// file (never `127.0.0.11`, which would be this resolver).
    fn resolved_upstreams(&self) -> Vec<SocketAddr> {
        let upstreams = if self.upstreams.is_empty() {
            let text = std::fs::read_to_string(&self.resolv_conf).unwrap_or_default();
            parse_resolv_conf(&text)
        } else {
            self.upstreams.clone()
        };
        // The resolver itself would be a loop.
        upstreams
            .into_iter()
            .filter(|u| {
                let own = u.ip() == LISTEN.ip();
                if own {
                    log::warn!("resolver: upstream {u} is this resolver's own address: ignored");
                }
                !own
            })
            .collect()
    }
}

/// The `nameserver` lines of a resolv.conf, as socket addresses.
fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|address| address.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|address| *address != LISTEN.ip())
        .map(|address| SocketAddr::new(address, 53))
        .collect()
}

/// A running resolver; stops when dropped.
#[derive(Debug)]
pub struct Resolver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// An eventfd that wakes the serving thread.
    wake: OwnedFd,
    /// Namespaces served now.
    served: AtomicUsize,
    /// Forwarded queries and TCP connections under way.
    in_flight: AtomicUsize,
    /// How many times the endpoints were read.
    refreshes: AtomicUsize,
}

impl Resolver {
    /// Starts serving the endpoints of `host`'s networks, and keeps
    /// following them until dropped.
    ///
    /// # Errors
    /// When the serving thread's descriptors cannot be made, or the first
    /// reading of the networks fails.
    pub fn start(host: &Host, options: ResolverOptions) -> Result<Resolver> {
        let io = |what: &str, e: rustix::io::Errno| Error::io(what.to_owned(), e.into());
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| io("make an eventfd", e))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            wake,
            served: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            refreshes: AtomicUsize::new(0),
        });
        let mut server = Server::new(host.clone(), options, shared.clone())?;
        server.refresh();
        let thread = std::thread::Builder::new()
            .name("underlay-dns".into())
            .spawn(move || server.run())
            .map_err(|e| Error::io("start the resolver thread".to_owned(), e))?;
        Ok(Resolver {
            shared,
            thread: Some(thread),
        })
    }

    /// How many container namespaces it serves now.
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// How many times it has read the endpoints (for tests and metrics).
    pub fn refreshes(&self) -> usize {
        self.shared.refreshes.load(Ordering::Relaxed)
    }

    /// Stops serving and waits for the serving thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(&self.shared.wake, &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The listeners in one container namespace.
struct Served {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    /// Its forwarded queries and TCP connections under way.
    in_flight: Arc<AtomicUsize>,
    /// The networks it has endpoints on.
    networks: Vec<String>,
}

/// Epoll tokens for the two descriptors that are not listeners.
const WAKE: u64 = u64::MAX;
const NOTIFY: u64 = u64::MAX - 1;

struct Server {
    host: Host,
    shared: Arc<Shared>,
    upstreams: Arc<Vec<SocketAddr>>,
    rules: Arc<Rules>,
    refresh_every: Duration,
    epoll: OwnedFd,
    inotify: Option<OwnedFd>,
    served: HashMap<NetNsId, Served>,
    /// Each network's names.
    names: HashMap<String, Arc<Names>>,
    /// Epoll token → namespace and whether it is the TCP listener.
    tokens: HashMap<u64, (NetNsId, bool)>,
    next_token: u64,
    /// Namespaces whose listeners could not be made, and when to try
    /// again.
    failed: HashMap<NetNsId, Instant>,
    /// Endpoints (network, endpoint id) checked once for their link in
    /// their namespace: a dead namespace's path and inode number can name
    /// a new namespace, which must not be served as the container's.
    checked: HashMap<(String, String), bool>,
}

impl Server {
    fn new(host: Host, options: ResolverOptions, shared: Arc<Shared>) -> Result<Server> {
        let io = |what: &str, e: rustix::io::Errno| Error::io(what.to_owned(), e.into());
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| io("epoll", e))?;
        epoll::add(
            &epoll,
            &shared.wake,
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )
        .map_err(|e| io("epoll", e))?;
        let inotify = rustix::fs::inotify::init(
            rustix::fs::inotify::CreateFlags::CLOEXEC | rustix::fs::inotify::CreateFlags::NONBLOCK,
        )
        .ok();
        if let Some(inotify) = &inotify {
            epoll::add(
                &epoll,
                inotify,
                epoll::EventData::new_u64(NOTIFY),
                epoll::EventFlags::IN,
            )
            .map_err(|e| io("epoll", e))?;
        }
        let upstreams = options.resolved_upstreams();
        if upstreams.is_empty() {
            log::warn!(
                "resolver: no upstream resolver: names other than the containers' get SERVFAIL"
            );
        }
        Ok(Server {
            host,
            shared,
            upstreams: Arc::new(upstreams),
            rules: Arc::new(Rules {
                domain: options.domain,
                ttl: options.ttl,
            }),
            refresh_every: options.refresh,
            epoll,
            inotify,
            served: HashMap::new(),
            names: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 0,
            failed: HashMap::new(),
            checked: HashMap::new(),
        })
    }

    fn run(mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        let mut last = Instant::now();
        while !self.shared.stop.load(Ordering::SeqCst) {
            events.clear();
            let wait = self.refresh_every.saturating_sub(last.elapsed());
            let timeout = rustix::time::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&timeout),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("resolver: epoll_wait failed: {e}; stopping");
                    return;
                }
            }
            let mut changed = last.elapsed() >= self.refresh_every;
            for event in &events {
                match event.data.u64() {
                    WAKE => {
                        let mut buf = [0u8; 8];
                        let _ = rustix::io::read(&self.shared.wake, &mut buf);
                    }
                    NOTIFY => {
                        if let Some(inotify) = &self.inotify {
                            let mut buf = [0u8; 4096];
                            while matches!(rustix::io::read(inotify, &mut buf), Ok(n) if n > 0) {}
                        }
                        changed = true;
                    }
                    token => self.ready(token),
                }
            }
            if changed {
                self.refresh();
                last = Instant::now();
            }
        }
        log::info!("resolver: stopped");
    }

    /// Reads the networks and endpoints again, and opens or closes
    /// listeners to match.
    fn refresh(&mut self) {
        self.shared.refreshes.fetch_add(1, Ordering::Relaxed);
        if let Some(inotify) = &self.inotify {
            use rustix::fs::inotify::WatchFlags;
            let flags = WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MODIFY
                | WatchFlags::MOVED_TO
                | WatchFlags::MOVED_FROM
                | WatchFlags::CLOSE_WRITE;
            for path in self.host.watch_paths() {
                // A path already watched keeps its watch.
                let _ = rustix::fs::inotify::add_watch(inotify, &path, flags);
            }
        }
        let networks = match self.host.networks() {
            Ok(networks) => networks,
            Err(e) => {
                log::warn!("resolver: cannot read the networks: {e}");
                return;
            }
        };
        let mut names = HashMap::new();
        let mut wanted: HashMap<NetNsId, (NetNs, Vec<String>)> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for network in networks {
            let endpoints = match network.endpoints() {
                Ok(endpoints) => endpoints,
                Err(e) => {
                    log::warn!(
                        "resolver: cannot read the endpoints of {}: {e}",
                        network.name()
                    );
                    continue;
                }
            };
            let mut table = Names::default();
            for endpoint in endpoints {
                let Some(netns) = endpoint.netns() else {
                    continue; // its container is gone
                };
                let key = (network.name().to_owned(), endpoint.id());
                let live = *self
                    .checked
                    .entry(key.clone())
                    .or_insert_with(|| network.is_attached(&endpoint));
                seen.insert(key);
                if !live {
                    continue; // a new namespace with a dead one's identity
                }
                let addresses: Vec<IpAddr> =
                    endpoint.addresses().iter().map(|a| a.addr()).collect();
                table.add(endpoint.name(), endpoint.dns_names(), &addresses);
                wanted
                    .entry(netns.id())
                    .or_insert_with(|| (netns, Vec::new()))
                    .1
                    .push(network.name().to_owned());
            }
            log::debug!(
                "resolver: network {}: {} names",
                network.name(),
                table.len()
            );
            names.insert(network.name().to_owned(), Arc::new(table));
        }
        self.names = names;
        self.checked.retain(|key, _| seen.contains(key));
        // Gone: their listeners close.
        let gone: Vec<NetNsId> = self
            .served
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(served) = self.served.remove(&id) {
                let _ = epoll::delete(&self.epoll, &*served.udp);
                let _ = epoll::delete(&self.epoll, &served.tcp);
            }
            self.tokens.retain(|_, (ns, _)| *ns != id);
            log::debug!("resolver: stopped serving namespace {id:?}");
        }
        self.failed.retain(|id, _| wanted.contains_key(id));
        for (id, (netns, networks)) in wanted {
            if let Some(served) = self.served.get_mut(&id) {
                served.networks = networks;
                continue;
            }
            if self
                .failed
                .get(&id)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(5))
            {
                continue;
            }
            match listen(&netns) {
                Ok((udp, tcp)) => {
                    let (u, t) = (self.next_token, self.next_token + 1);
                    self.next_token += 2;
                    let added = epoll::add(
                        &self.epoll,
                        &udp,
                        epoll::EventData::new_u64(u),
                        epoll::EventFlags::IN,
                    )
                    .and_then(|()| {
                        epoll::add(
                            &self.epoll,
                            &tcp,
                            epoll::EventData::new_u64(t),
                            epoll::EventFlags::IN,
                        )
                    });
                    if let Err(e) = added {
                        log::warn!(
                            "resolver: cannot poll the listeners in {}: {e}",
                            netns.path().display()
                        );
                        continue;
                    }
                    self.tokens.insert(u, (id, false));
                    self.tokens.insert(t, (id, true));
                    log::debug!(
                        "resolver: serving {} for {networks:?}",
                        netns.path().display()
                    );
                    self.served.insert(
                        id,
                        Served {
                            udp: Arc::new(udp),
                            tcp,
                            in_flight: Arc::new(AtomicUsize::new(0)),
                            networks,
                        },
                    );
                }
                Err(e) => {
                    log::warn!(
                        "resolver: cannot listen on {LISTEN} in {}: {e}",
                        netns.path().display()
                    );
                    self.failed.insert(id, Instant::now());
                }
            }
        }
        self.shared
            .served
            .store(self.served.len(), Ordering::Relaxed);
    }

    /// The names a namespace's containers see.
    fn view(&self, served: &Served) -> Vec<Arc<Names>> {
        served
            .networks
            .iter()
            .filter_map(|n| self.names.get(n).cloned())
            .collect()
    }

    /// A listener is readable.
    fn ready(&mut self, token: u64) {
        let Some(&(id, tcp)) = self.tokens.get(&token) else {
            return;
        };
        let Some(served) = self.served.get(&id) else {
            return;
        };
        let view = self.view(served);
        if tcp {
            while let Ok((stream, _)) = served.tcp.accept() {
                let Some(guard) = InFlight::take(&self.shared, &served.in_flight) else {
                    continue; // closed at once
                };
                let (view, rules, upstreams, netns) = (
                    view.clone(),
                    self.rules.clone(),
                    self.upstreams.clone(),
                    self.host.netns().try_clone(),
                );
                let spawned = std::thread::Builder::new()
                    .name("underlay-dns-tcp".into())
                    .spawn(move || {
                        let _guard = guard;
                        if let Ok(netns) = netns {
                            serve_tcp(stream, &view, &rules, &upstreams, &netns);
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("resolver: cannot start a TCP thread: {e}");
                }
            }
            return;
        }
        let mut buf = [0u8; 4096];
        // At most a batch at a time, so one busy container cannot starve
        // the others.
        for _ in 0..64 {
            let Ok((len, from)) = served.udp.recv_from(&mut buf) else {
                break;
            };
            let query = &buf[..len];
            let refs: Vec<&Names> = view.iter().map(|n| &**n).collect();
            match answer(query, &refs, &self.rules, false) {
                Outcome::Reply(bytes) => {
                    let _ = served.udp.send_to(&bytes, from);
                }
                Outcome::Drop => {}
                Outcome::Forward => {
                    let Some(guard) = InFlight::take(&self.shared, &served.in_flight) else {
                        if let Some(bytes) = servfail(query) {
                            let _ = served.udp.send_to(&bytes, from);
                        }
                        continue;
                    };
                    let (udp, query, upstreams, netns) = (
                        served.udp.clone(),
                        query.to_vec(),
                        self.upstreams.clone(),
                        self.host.netns().try_clone(),
                    );
                    let spawned = std::thread::Builder::new()
                        .name("underlay-dns-forward".into())
                        .spawn(move || {
                            let _guard = guard;
                            let reply = netns
                                .ok()
                                .and_then(|netns| forward(&query, &upstreams, &netns, false))
                                .or_else(|| servfail(&query));
                            if let Some(reply) = reply {
                                let _ = udp.send_to(&reply, from);
                            }
                        });
                    if let Err(e) = spawned {
                        log::warn!("resolver: cannot start a forwarding thread: {e}");
                    }
                }
            }
        }
    }
}

/// One forwarded query or TCP connection under way; counted, in all and
/// for its namespace, while alive.
struct InFlight(Arc<Shared>, Arc<AtomicUsize>);

impl InFlight {
    fn take(shared: &Arc<Shared>, namespace: &Arc<AtomicUsize>) -> Option<InFlight> {
        let mine = namespace.fetch_add(1, Ordering::SeqCst);
        if mine >= MAX_IN_FLIGHT_PER_NAMESPACE {
            namespace.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let before = shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if before >= MAX_IN_FLIGHT {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            namespace.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(InFlight(shared.clone(), namespace.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Binds `127.0.0.11:53`, UDP and TCP, inside `netns` (bringing its
/// loopback up first if it is down).
fn listen(netns: &NetNs) -> Result<(UdpSocket, TcpListener)> {
    netns.run(|| {
        let nl = Netlink::open()?;
        let lo = nl.link_by_name("lo")?;
        if !lo.up {
            nl.set_link_up_by_index(lo.index, true)?;
        }
        let bind = |what: &str, e: std::io::Error| Error::io(format!("bind {what} {LISTEN}"), e);
        let udp = UdpSocket::bind(LISTEN).map_err(|e| bind("UDP", e))?;
        udp.set_nonblocking(true).map_err(|e| bind("UDP", e))?;
        let tcp = TcpListener::bind(LISTEN).map_err(|e| bind("TCP", e))?;
        tcp.set_nonblocking(true).map_err(|e| bind("TCP", e))?;
        Ok((udp, tcp))
    })
}

/// Relays `query` to the upstreams in turn, over UDP (or TCP, `tcp`),
/// from a socket in the host namespace: the first answer to this very
/// question (same id, same question section), unchanged. An upstream
/// that answers SERVFAIL or REFUSED is passed over for the next one; its
/// answer is relayed only if none does better.
fn forward(query: &[u8], upstreams: &[SocketAddr], netns: &NetNs, tcp: bool) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let question = answer::question_of(query)?;
    let mut fallback = None;
    for upstream in upstreams {
        // Each exchange keeps only an answer to this very question.
        let reply = if tcp {
            ask_tcp(query, *upstream, netns, &question)
        } else {
            ask_udp(query, *upstream, netns, &question)
        };
        let Some(reply) = reply else {
            log::debug!("resolver: upstream {upstream} gave no answer to the question");
            continue;
        };
        let code = reply[3] & 0x0f;
        // SERVFAIL (2), REFUSED (5): perhaps another knows better.
        if code == 2 || code == 5 {
            fallback = Some(reply);
            continue;
        }
        return Some(reply);
    }
    fallback
}

/// One UDP exchange with `upstream`.
fn ask_udp(query: &[u8], upstream: SocketAddr, netns: &NetNs, question: &[u8]) -> Option<Vec<u8>> {
    let socket = netns
        .run(move || {
            let local: SocketAddr = if upstream.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket =
                UdpSocket::bind(local).map_err(|e| Error::io("bind a forwarding socket", e))?;
            socket
                .connect(upstream)
                .map_err(|e| Error::io(format!("connect to {upstream}"), e))?;
            Ok(socket)
        })
        .ok()?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    socket.send(query).ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match socket.recv(&mut buf) {
            Ok(len)
                if len >= 12
                    && buf[..2] == query[..2]
                    && answer::question_of(&buf[..len]).as_deref() == Some(question) =>
            {
                buf.truncate(len);
                return Some(buf);
            }
            Ok(_) => continue, // not the answer to this query
            Err(_) => return None,
        }
    }
}

/// One TCP exchange with `upstream` (for answers too large for UDP).
fn ask_tcp(query: &[u8], upstream: SocketAddr, netns: &NetNs, question: &[u8]) -> Option<Vec<u8>> {
    let stream = netns
        .run(move || {
            TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT)
                .map_err(|e| Error::io(format!("connect to {upstream}"), e))
        })
        .ok()?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut stream = stream;
    let _ = stream.set_write_timeout(Some(UPSTREAM_TIMEOUT));
    let len = u16::try_from(query.len()).ok()?;
    stream.write_all(&len.to_be_bytes()).ok()?;
    stream.write_all(query).ok()?;
    let mut len = [0u8; 2];
    read_until(&mut stream, &mut len, deadline)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_until(&mut stream, &mut reply, deadline)?;
    (reply.len() >= 12
        && reply[..2] == query[..2]
        && answer::question_of(&reply).as_deref() == Some(question))
    .then_some(reply)
}

/// Fills `buf` from `stream` before `deadline` (the whole message, not
/// each read: a client that sends a byte a second gets nowhere).
fn read_until(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Option<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return None,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// Serves one TCP connection: queries framed by a two-byte length, each
/// read whole within two seconds, until the client closes it or is idle.
fn serve_tcp(
    mut stream: TcpStream,
    view: &[Arc<Names>],
    rules: &Rules,
    upstreams: &[SocketAddr],
    netns: &NetNs,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(UPSTREAM_TIMEOUT));
    let refs: Vec<&Names> = view.iter().map(|n| &**n).collect();
    for _ in 0..16 {
        let deadline = Instant::now() + UPSTREAM_TIMEOUT;
        let mut len = [0u8; 2];
        if read_until(&mut stream, &mut len, deadline).is_none() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if read_until(&mut stream, &mut query, deadline).is_none() {
            return;
        }
        let reply = match answer(&query, &refs, rules, true) {
            Outcome::Reply(bytes) => Some(bytes),
            Outcome::Drop => None,
            Outcome::Forward => {
                forward(&query, upstreams, netns, true).or_else(|| servfail(&query))
            }
        };
        if let Some(reply) = reply {
            let Ok(len) = u16::try_from(reply.len()) else {
                return;
            };
            if stream.write_all(&len.to_be_bytes()).is_err() || stream.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

impl NetNs {
    /// Another handle on the same namespace (for a thread of its own).
    fn try_clone(&self) -> Result<NetNs> {
        let fd = self
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("duplicate a namespace descriptor", e))?;
        NetNs::open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_become_upstreams() {
        let text = "# comment\nsearch lan\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 127.0.0.11\nnameserver bogus\noptions ndots:1\n";
        let upstreams = parse_resolv_conf(text);
        assert_eq!(
            upstreams,
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn search_domains_are_checked() {
        assert!(ResolverOptions::new().domain("lan.example.").is_ok());
        for bad in ["", "a..b", "bad domain", "x\ny"] {
            assert!(ResolverOptions::new().domain(bad).is_err(), "{bad:?}");
        }
    }
}
