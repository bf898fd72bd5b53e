//! Attaching a container: the link, straight in the container's namespace,
//! its addresses, routes and announcements.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use netlink_packet_route::RouteNetlinkMessage;

use super::{link_present, now, Engine};
use crate::address::address_message;
use crate::endpoint::{AttachOptions, RouteRequest};
use crate::ipam::{Allocation, IpamError};
use crate::link::validate_name;
use crate::mark::Mark;
use crate::names::validate_dns_name;
use crate::netlink::{Netlink, Request};
use crate::netns::{receive_soon, NetNs};
use crate::route::{IpFamily, NewRoute};
use crate::store::{EndpointRecord, EndpointSession, EndpointState, NetworkRecord};
use crate::sysctl::{ProcSys, SettingsDir, IPV6_CONF};
use crate::{Error, Result};

impl Engine {
    /// Attaches the container whose namespace is `netns`. On error nothing
    /// is left behind: no link, no address taken, no record. Also says
    /// whether the network has detached links waiting for a sweep.
    ///
    /// The network's lock is held only to decide (addresses, name) and to
    /// record: the intent before the kernel is touched, the outcome after.
    /// The kernel work runs without it, so attaches from several processes
    /// (or threads) proceed side by side; the record names its process, so
    /// that an unfinished one is taken for a crash's only once that process
    /// is gone.
    pub fn attach(
        &self,
        network: &NetworkRecord,
        netns: &NetNs,
        options: &AttachOptions,
    ) -> Result<(EndpointRecord, bool, Vec<RouteRequest>)> {
        self.require_shared(network)?;
        check(network, options)?;
        let (mut record, allocations, detached) = match self
            .record_attach(network, netns, options, true)?
        {
            Recorded::Attaching(record, allocations, detached) => (*record, allocations, detached),
            // Links earlier detaches left that stand in this attach's
            // way: deleted first (off the lock), then the attach is
            // decided again. Rare: the usual attach takes the lock once.
            Recorded::InTheWay(in_the_way) => {
                self.clear_detached(network, &in_the_way)?;
                match self.record_attach(network, netns, options, false)? {
                    Recorded::Attaching(record, allocations, detached) => {
                        (*record, allocations, detached)
                    }
                    Recorded::InTheWay(_) => {
                        return Err(Error::Internal("detached links still in the way".into()))
                    }
                }
            }
        };
        // Logged once the lock is released: what follows runs without it.
        log::debug!("endpoint {}: recorded as attaching", record.name);
        let addresses: Vec<IpAddr> = allocations.iter().map(Allocation::ip).collect();
        let id = record.id;
        let mut link_left = false;
        let mut configured = self.configure(
            network,
            netns,
            &mut record,
            &allocations,
            options,
            &mut link_left,
        );
        if configured.is_ok() {
            // The host reaches the container through the network's shim.
            if let Err(e) = self.add_shim_routes(network, &record) {
                self.delete_shim_routes(network, &record);
                link_left = self
                    .remove_endpoint_link(network, Some(netns), &record)
                    .is_err();
                configured = Err(Error::AttachFailed {
                    network: network.name.clone(),
                    step: "route to it through the host shim".into(),
                    source: Box::new(e),
                });
            }
        }
        let mut session = match self.session(network) {
            Ok(session) => session,
            Err(e) => {
                // The network went away meanwhile (a forced removal): take
                // the link back; the record went with the network.
                let _ = self.remove_endpoint_link(network, Some(netns), &record);
                return Err(e);
            }
        };
        let routes = match configured {
            Ok(routes) => routes,
            Err(e) if link_left => {
                // Its link could not be taken back (no descriptor left for
                // a socket in the container, say): the record stays, as a
                // crash would leave it, for the next session of the network
                // (or `recover`) to delete the link and free the addresses.
                log::warn!(
                    "endpoint {}: its link {} could not be taken back after a failed attach; the next operation on network {} deletes it",
                    record.name,
                    record.ifname,
                    network.name
                );
                record.owner = None;
                session.save(&record)?;
                return Err(e);
            }
            Err(e) => {
                session.abandon(id, &addresses)?;
                return Err(e);
            }
        };
        session.mark_ready(id)?;
        record.state = EndpointState::Ready;
        record.owner = None;
        log::info!(
            "attached {} to network {} as {} with {:?}",
            record.name,
            network.name,
            record.ifname,
            record.addresses
        );
        Ok((record, detached, routes))
    }

    /// The decision and the intent of an attach, under the network's lock:
    /// the checks against the other endpoints, the addresses, the record
    /// saved as `attaching`. Or, when `in_the_way` is asked for and there
    /// are any, the detached endpoints whose links must go first (see
    /// `Engine::detached_in_the_way`), with nothing recorded.
    fn record_attach(
        &self,
        network: &NetworkRecord,
        netns: &NetNs,
        options: &AttachOptions,
        in_the_way: bool,
    ) -> Result<Recorded> {
        let mut session = self.session(network)?;
        if in_the_way {
            let found = Engine::detached_in_the_way(session.as_ref(), network, netns, options);
            if !found.is_empty() {
                return Ok(Recorded::InTheWay(found));
            }
        }
        let detached = session
            .endpoints()
            .any(|e| e.state == EndpointState::Detached);
        let previous = session
            .endpoints()
            .find(|e| e.netns_id == netns.id() && e.state != EndpointState::Detached)
            .cloned();
        if let Some(other) = previous {
            if self.is_live(network, &other) {
                return Err(Error::AlreadyAttached {
                    network: network.name.clone(),
                    endpoint: other.name.clone(),
                });
            }
            // A namespace that died without a detach, whose inode number the
            // kernel has given to this new one.
            log::info!(
                "endpoint {}: its namespace is gone; releasing it",
                other.name
            );
            session.forget(other.id)?;
        }
        if let Some(limit) = network.driver.endpoint_limit() {
            let holder = session
                .endpoints()
                .filter(|e| e.state != EndpointState::Detached)
                .nth(limit - 1);
            if let Some(holder) = holder {
                return Err(Error::invalid(
                    "endpoint",
                    options.name.clone().unwrap_or_default(),
                    format!(
                        "network {:?} is macvlan passthru: its endpoint {:?} has the parent to itself; detach it first",
                        network.name, holder.name
                    ),
                ));
            }
        }
        let id = new_id(session.as_ref())?;
        let name = match &options.name {
            Some(name) => {
                let holder = session
                    .endpoints()
                    .filter(|e| e.state != EndpointState::Detached)
                    .find(|e| &e.name == name || e.dns_names.contains(name))
                    .cloned();
                if let Some(holder) = holder {
                    if self.is_live(network, &holder) {
                        return Err(Error::NameInUse {
                            network: network.name.clone(),
                            name: name.clone(),
                        });
                    }
                    // A container that died without a detach (its namespace
                    // or link is gone): its name and addresses are free.
                    log::info!(
                        "endpoint {}: its container is gone; releasing it",
                        holder.name
                    );
                    session.forget(holder.id)?;
                }
                name.clone()
            }
            None => default_name(netns.path(), id),
        };
        let mac = network.driver.endpoint_mac(options.mac)?;
        let ifindex = endpoint_ifindex()?;
        let owner = self.owner()?;
        // The allocator proposes; a shared store, if the host has one,
        // decides (the save claims). An address another host holds is kept
        // out of this attach's way and the next one proposed.
        let mut elsewhere: Vec<IpAddr> = Vec::new();
        let mut tries = 0;
        let outcome = loop {
            // After a lost claim, the search starts at a random point: two
            // hosts filling the same stretch would otherwise keep proposing
            // the same next address.
            let seed = match tries {
                0 => session.spread(),
                _ => match random_seed() {
                    Ok(seed) => Some(seed),
                    Err(e) => break Err(e),
                },
            };
            let allocations = match allocate(network, session.as_mut(), id, options, seed) {
                Ok(allocations) => allocations,
                Err(e) => break Err(e),
            };
            let addresses: Vec<IpAddr> = allocations.iter().map(Allocation::ip).collect();
            let record = EndpointRecord {
                version: EndpointRecord::VERSION,
                id,
                name: name.clone(),
                dns_names: options.dns_names.clone(),
                netns_path: netns.path().to_owned(),
                netns_id: netns.id(),
                // Most containers have no eth0 yet: try it, and look for a
                // free name only when the kernel says it is taken.
                ifname: options.ifname.clone().unwrap_or_else(|| "eth0".into()),
                ifindex: Some(ifindex),
                mac,
                addresses: allocations.iter().map(Allocation::address).collect(),
                state: EndpointState::Attaching,
                owner: Some(owner),
                created: now(),
            };
            // Recorded before the kernel is touched: a crash from here on
            // leaves a record that the next session (or recovery) uses to
            // undo it.
            match session.save(&record) {
                Ok(()) => break Ok((record, allocations)),
                Err(Error::AddressClaimed { address, .. })
                    if Some(address) != options.ipv4
                        && Some(address) != options.ipv6
                        && tries < MAX_CLAIM_TRIES =>
                {
                    if let Err(e) = session.abandon(id, &addresses) {
                        break Err(e);
                    }
                    log::debug!("{address} is another host's; proposing the next");
                    // The first loss: every address other hosts hold is
                    // kept out of the way at once (one read), not found one
                    // lost claim at a time.
                    let mut taken = vec![address];
                    if elsewhere.is_empty() {
                        match session.held_elsewhere() {
                            Ok(held) => taken.extend(held),
                            Err(e) => break Err(e),
                        }
                    }
                    for address in taken {
                        if session.ipam().request(address, ELSEWHERE).is_ok() {
                            elsewhere.push(address);
                        }
                    }
                    tries += 1;
                }
                Err(e) => {
                    break session.abandon(id, &addresses).and(Err(e));
                }
            }
        };
        for address in elsewhere {
            session.ipam().release(address);
        }
        let (record, allocations) = outcome?;
        Ok(Recorded::Attaching(Box::new(record), allocations, detached))
    }

    /// Whether an endpoint still exists: its recorded path names a namespace
    /// with the recorded identity, holding a link with the endpoint's mark.
    /// (The kernel reuses a dead namespace's inode number, and a path can be
    /// reused for a new namespace, so the identity alone does not tell.)
    /// An attach or detach under way in a live process counts as live.
    pub(crate) fn is_live(&self, network: &NetworkRecord, record: &EndpointRecord) -> bool {
        if record.state != EndpointState::Ready && !record.is_abandoned() {
            return true;
        }
        let Some(netns) = record.netns() else {
            return false;
        };
        link_present(&netns, &self.endpoint_mark(network, record.id)).unwrap_or(true)
    }

    /// The kernel side of an attach: the link, made straight in the
    /// container's namespace from the host's socket, then everything else in
    /// one round trip from a socket inside it. On error, what was made is
    /// deleted (`link_left` says when that failed) and the error names the
    /// step that failed.
    fn configure(
        &self,
        network: &NetworkRecord,
        netns: &NetNs,
        record: &mut EndpointRecord,
        allocations: &[Allocation],
        options: &AttachOptions,
        link_left: &mut bool,
    ) -> Result<Vec<RouteRequest>> {
        let failed = |step: &str, e: Error| Error::AttachFailed {
            network: network.name.clone(),
            step: step.to_owned(),
            source: Box::new(e),
        };
        // Meanwhile, on the library's namespace thread: a socket inside the
        // container, handed over at once, then (once told the link exists)
        // the link's IPv6 setting. The socket overlaps with making the
        // link, the setting with the first half of the configuration (it
        // has to be in place only when the link goes up). Told nothing (a
        // failure below drops the sender), the thread only opens the socket.
        let (link_made, told) = mpsc::sync_channel::<Option<(String, Ipv6Setting)>>(1);
        let mut link_made = Some(link_made);
        let (socket, inside) = mpsc::sync_channel::<Result<Netlink>>(1);
        let sysctl = Arc::clone(&self.sysctl);
        let mut ipv6_set = self
            .worker
            .submit(netns, move || {
                let _ = socket.send(Netlink::open());
                // The settings' directory, looked up now: from it, the new
                // link's file is found in half the time.
                let conf = sysctl.open_dir(IPV6_CONF).ok();
                // Told within the time it takes to make a link.
                if let Ok(Some((ifname, setting))) = receive_soon(&told, LINK_SPIN) {
                    setting.apply(&sysctl, conf.as_ref(), &ifname);
                }
                Ok(())
            })
            .map_err(|e| failed("open a socket in the container", e))?;
        let cached = self.cached_parent_index(network);
        let mut parent = match cached {
            0 => self
                .parent_index(network)
                .map_err(|e| failed("find the parent interface", e))?,
            index => index,
        };
        let mut created = self.create_link(network, netns, parent, record, options);
        if cached != 0
            && created
                .as_ref()
                .is_err_and(|e| e.errno() == Some(libc::ENODEV))
        {
            // The parent went away (and perhaps came back): look again.
            parent = self
                .parent_index(network)
                .map_err(|e| failed("find the parent interface", e))?;
            created = self.create_link(network, netns, parent, record, options);
        }
        self.cache_parent_index(network, parent);
        if created
            .as_ref()
            .is_err_and(|e| e.errno() == Some(libc::EEXIST))
        {
            // The name may be a detached link's (another network's, or a
            // removed one's): deleted here, or just now by the thread that
            // deletes them. Either way, once more.
            self.delete_detached_named(netns, &record.ifname);
            created = self.create_link(network, netns, parent, record, options);
        }
        if created
            .as_ref()
            .is_err_and(|e| e.errno() == Some(libc::EEXIST))
        {
            // The namespace thread is let go first: waiting for the
            // network's lock can take long, and meanwhile it would keep the
            // container's namespace and every other attach of this process
            // waiting. The link's IPv6 setting gets a job of its own.
            if let Some(tell) = link_made.take() {
                let _ = tell.send(None);
            }
            // The kernel says the same (`EEXIST`) of a name and of an
            // index the container has.
            if let Some(name) = &options.ifname {
                let asked = name.clone();
                let taken = self
                    .in_container(netns, move |nl| match nl.link_by_name(&asked) {
                        Ok(_) => Ok(true),
                        Err(Error::LinkNotFound { .. }) => Ok(false),
                        Err(e) => Err(e),
                    })
                    .map_err(|e| failed("list the container's links", e))?;
                if taken {
                    return Err(Error::InterfaceExists {
                        ifname: name.clone(),
                    });
                }
                log::debug!(
                    "endpoint {}: the container has a link with index {:?}; another index",
                    record.name,
                    record.ifindex
                );
            } else {
                record.ifname = self
                    .in_container(netns, free_ifname)
                    .map_err(|e| failed("list the container's links", e))?;
                log::debug!(
                    "endpoint {}: the container has an eth0 of its own; the link is named {}",
                    record.name,
                    record.ifname
                );
            }
            // The index was perhaps what the kernel refused: another one
            // too.
            created = self.create_link_anew(network, netns, parent, record, options)?;
        }
        if record.ifindex.is_some()
            && created
                .as_ref()
                .is_err_and(|e| e.errno() == Some(libc::EBUSY))
        {
            // Kernels before 6.18 refuse an index the container has with
            // `EBUSY` (6.18 says `EEXIST`); so does a parent busy with a
            // passthru link, which the second try shows. Once more with
            // another index (the namespace thread let go first, as above).
            if let Some(tell) = link_made.take() {
                let _ = tell.send(None);
            }
            log::debug!(
                "endpoint {}: the kernel refused the link's index {:?} (busy); another",
                record.name,
                record.ifindex
            );
            created = self.create_link_anew(network, netns, parent, record, options)?;
        }
        if let Some(name) = &options.ifname {
            if created
                .as_ref()
                .is_err_and(|e| e.errno() == Some(libc::EEXIST))
            {
                // The name was free when looked at, and taken since.
                return Err(Error::InterfaceExists {
                    ifname: name.clone(),
                });
            }
        }
        created.map_err(|e| {
            failed(
                "create the link",
                explain_create(e, record, network, options),
            )
        })?;
        log::debug!("endpoint {}: created link {}", record.name, record.ifname);

        let mark = self.endpoint_mark(network, record.id);
        let record = &*record;
        // The rest from this thread, on the socket inside the container.
        let setting = Ipv6Setting::of(network, allocations);
        if let Some(tell) = &link_made {
            let _ = tell.send(setting.map(|s| (record.ifname.clone(), s)));
        }
        // Undone on failure: the link takes its addresses and routes with
        // it. It may not carry the mark yet (that step may have failed).
        // Says whether the link is gone.
        let undo = |nl: &Netlink| {
            let undone = super::remove::delete_attach_link(nl, network.driver, record, &mark);
            if let Err(e) = &undone {
                log::warn!(
                    "could not remove {} after a failed attach: {e}",
                    record.ifname
                );
            }
            undone.is_ok()
        };
        let nl = match receive_soon(&inside, HANDOFF_SPIN)
            .unwrap_or_else(|_| Err(Error::Internal("the namespace worker stopped".into())))
        {
            Ok(nl) => nl,
            Err(e) => {
                // No socket inside (out of descriptors?): one more try, from
                // a thread of its own, to take the link back.
                let gone = netns
                    .run(|| Ok(undo(&Netlink::open()?)))
                    .unwrap_or_else(|e| {
                        log::warn!(
                            "could not remove {} after a failed attach: {e}",
                            record.ifname
                        );
                        false
                    });
                *link_left = !gone;
                return Err(failed("open a socket in the container", e));
            }
        };
        if link_made.is_none() {
            let ifname = record.ifname.clone();
            let sysctl = Arc::clone(&self.sysctl);
            let submitted = self.worker.submit(netns, move || {
                if let Some(setting) = setting {
                    setting.apply(&sysctl, None, &ifname);
                }
                Ok(())
            });
            ipv6_set = match submitted {
                Ok(pending) => pending,
                Err(e) => {
                    *link_left = !undo(&nl);
                    return Err(failed("set the link's IPv6", e));
                }
            };
        }
        let ipv6_set = move || {
            if let Err(e) = ipv6_set.wait_soon(HANDOFF_SPIN) {
                log::debug!("the IPv6 setting of a new link: {e}");
            }
        };
        // See `Ipv6Setting`: announcing is made during the first half of
        // the configuration; IPv6 off is waited for first.
        let before_up = if setting == Some(Ipv6Setting::Announce) {
            Some(ipv6_set)
        } else {
            ipv6_set();
            None
        };
        let result = configure_inside(network, &nl, record, &mark, allocations, options, before_up);
        if result.is_err() {
            *link_left = !undo(&nl);
        }
        result.map_err(|(step, e)| failed(&step, explain_mac(e, record, network)))
    }

    fn cached_parent_index(&self, network: &NetworkRecord) -> u32 {
        let indexes = self
            .parent_indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        indexes.get(&network.id).copied().unwrap_or(0)
    }

    fn cache_parent_index(&self, network: &NetworkRecord, index: u32) {
        let mut indexes = self
            .parent_indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        indexes.insert(network.id.clone(), index);
    }

    /// Looks the parent up on the host. An owned parent deleted behind our
    /// back comes back, as after a reboot; a link of its name that
    /// underlay did not make is refused.
    pub(super) fn parent_index(&self, network: &NetworkRecord) -> Result<u32> {
        let parent = &network.parent;
        let mark = self.parent_mark(network);
        let link = match self.nl.link_by_name(&parent.name) {
            Err(Error::LinkNotFound { .. }) if parent.owned() => {
                crate::parent::ensure(&self.nl, parent, &mark)?;
                self.nl.link_by_name(&parent.name)?
            }
            found => found?,
        };
        crate::parent::check_owned(&self.nl, &link, parent, &mark)?;
        Ok(link.index)
    }

    /// [`create_link`](Self::create_link) once more, with another index,
    /// recorded (with the link's name) before the link is made with it.
    fn create_link_anew(
        &self,
        network: &NetworkRecord,
        netns: &NetNs,
        parent: u32,
        record: &mut EndpointRecord,
        options: &AttachOptions,
    ) -> Result<Result<()>> {
        record.ifindex = Some(endpoint_ifindex()?);
        self.session(network)?.save(record)?;
        Ok(self.create_link(network, netns, parent, record, options))
    }

    /// `work` on a socket inside the container, on the library's namespace
    /// thread, waited for.
    fn in_container<T: Send + 'static>(
        &self,
        netns: &NetNs,
        work: impl FnOnce(&Netlink) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.worker
            .submit(netns, move || work(&Netlink::open()?))?
            .wait_soon(HANDOFF_SPIN)
    }

    fn create_link(
        &self,
        network: &NetworkRecord,
        netns: &NetNs,
        parent: u32,
        record: &EndpointRecord,
        options: &AttachOptions,
    ) -> Result<()> {
        let mut spec = network
            .driver
            .endpoint_link(&record.ifname, parent)
            .netns(netns);
        if let Some(mac) = record.mac {
            spec = spec.mac(mac);
        }
        if let Some(mtu) = options.mtu.or(network.mtu) {
            spec = spec.mtu(mtu);
        }
        if let Some(index) = record.ifindex {
            spec = spec.index(index);
        }
        self.nl.create_link(&spec)
    }
}

/// What an attach's decision under the lock came to.
enum Recorded {
    /// Recorded as attaching, with its addresses; and whether the network
    /// has detached endpoints (links for a sweep).
    Attaching(Box<EndpointRecord>, Vec<Allocation>, bool),
    /// Nothing recorded: these detached endpoints' links must go first.
    InTheWay(Vec<EndpointRecord>),
}

/// Says what to do when the kernel refuses a MAC address another link on
/// the parent has (macvlan refuses it when the link goes up).
fn explain_mac(error: Error, record: &EndpointRecord, network: &NetworkRecord) -> Error {
    match (error.errno(), record.mac) {
        (Some(libc::EADDRINUSE), Some(mac)) => Error::invalid(
            "MAC address",
            mac.to_string(),
            format!(
                "another link on parent {} has it already: choose another, or leave it to underlay",
                network.parent.name
            ),
        ),
        _ => error,
    }
}

/// Says what to do about the kernel's usual refusals of a new link.
fn explain_create(
    error: Error,
    record: &EndpointRecord,
    network: &NetworkRecord,
    options: &AttachOptions,
) -> Error {
    match (error.errno(), options.mtu.or(network.mtu)) {
        (Some(libc::EADDRINUSE), _) => explain_mac(error, record, network),
        (Some(libc::EINVAL), Some(mtu)) => Error::invalid(
            "mtu",
            mtu.to_string(),
            format!(
                "the kernel refused it (the largest is the MTU of parent {}): lower it, or raise the parent's",
                network.parent.name
            ),
        ),
        _ => error,
    }
}

/// Checks the options against the network, before anything happens.
fn check(network: &NetworkRecord, options: &AttachOptions) -> Result<()> {
    if let Some(name) = &options.ifname {
        validate_name(name)?;
    }
    if let Some(name) = &options.name {
        validate_dns_name("endpoint name", name)?;
    }
    for name in &options.dns_names {
        validate_dns_name("DNS name", name)?;
    }
    network.driver.check_mac(options.mac)?;
    if let Some(mtu) = options.mtu {
        if !(68..=65535).contains(&mtu) {
            return Err(Error::invalid(
                "mtu",
                mtu.to_string(),
                "expected 68 to 65535 bytes",
            ));
        }
        if network.ipv6 && mtu < 1280 {
            return Err(Error::invalid(
                "mtu",
                mtu.to_string(),
                format!(
                    "network {:?} has IPv6, which needs an MTU of 1280 or more",
                    network.name
                ),
            ));
        }
    }
    Ok(())
}

fn random_seed() -> Result<u64> {
    let mut bytes = [0u8; 8];
    crate::random::fill(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// How many lost claims an attach takes before it gives up (each costs a
/// round trip to the shared store; after the first, it knows every
/// address other hosts held then).
const MAX_CLAIM_TRIES: usize = 64;

/// The allocator's holder for an address another host holds, during one
/// attach (endpoint ids are never 0).
const ELSEWHERE: u64 = 0;

/// Takes one address per family the network has: the requested one, or
/// the allocator's next. All or nothing.
fn allocate(
    network: &NetworkRecord,
    session: &mut dyn EndpointSession,
    id: u64,
    options: &AttachOptions,
    seed: Option<u64>,
) -> Result<Vec<Allocation>> {
    if !network.ipv4 && !network.ipv6 {
        return assigned(network, session, id, options);
    }
    if let Some(address) = options.assigned.first() {
        return Err(Error::invalid(
            "address",
            address.to_string(),
            format!(
                "network {:?} manages its addresses itself: ask for one with ip(), without a prefix length",
                network.name
            ),
        ));
    }
    let mut out: Vec<Allocation> = Vec::new();
    let families = [
        (IpFamily::V4, network.ipv4, options.ipv4),
        (IpFamily::V6, network.ipv6, options.ipv6),
    ];
    for (family, enabled, requested) in families {
        let result = match (enabled, requested) {
            (false, Some(address)) if !network.ipv4 && !network.ipv6 => Err(Error::invalid(
                "address",
                address.to_string(),
                format!(
                    "network {:?} has no address family: its containers get the link alone, and configure addresses themselves",
                    network.name
                ),
            )),
            (false, Some(address)) => Err(Error::invalid(
                "address",
                address.to_string(),
                format!("network {:?} has no {family} subnet", network.name),
            )),
            (false, None) => continue,
            (true, Some(address)) => session
                .ipam()
                .request(address, id)
                .map_err(|e| in_use(network, session, e)),
            (true, None) => match seed {
                Some(seed) => session.ipam().allocate_spread(family, id, seed),
                None => session.ipam().allocate(family, id),
            }
            .map_err(Error::from),
        };
        match result {
            Ok(allocation) => out.push(allocation),
            Err(e) => {
                for taken in &out {
                    session.ipam().release(taken.ip());
                }
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// The addresses the caller assigned, on a network with no address family:
/// at most one per family, none held by another endpoint of the network.
fn assigned(
    network: &NetworkRecord,
    session: &mut dyn EndpointSession,
    id: u64,
    options: &AttachOptions,
) -> Result<Vec<Allocation>> {
    if let Some(address) = options.ipv4.or(options.ipv6) {
        return Err(Error::invalid(
            "address",
            address.to_string(),
            format!(
                "network {:?} has no address family: its containers get the link alone and configure addresses themselves, or get addresses assigned by the caller (with their prefix length)",
                network.name
            ),
        ));
    }
    let mut out: Vec<Allocation> = Vec::new();
    for address in &options.assigned {
        let family = IpFamily::of(address.addr());
        if out.iter().any(|a| IpFamily::of(a.ip()) == family) {
            return Err(Error::invalid(
                "address",
                address.to_string(),
                format!("an endpoint gets one {family} address"),
            ));
        }
        if let Some(holder) = session
            .endpoints()
            .find(|e| e.id != id && e.ips().any(|ip| ip == address.addr()))
        {
            return Err(Error::AddressInUse {
                address: address.addr(),
                network: network.name.clone(),
                endpoint: holder.name.clone(),
            });
        }
        let gateway = options
            .gateways
            .iter()
            .copied()
            .find(|g| IpFamily::of(*g) == family);
        out.push(Allocation::assigned(*address, gateway, id));
    }
    if let Some(gateway) = options.gateways.iter().find(|g| {
        !out.iter()
            .any(|a| IpFamily::of(a.ip()) == IpFamily::of(**g))
    }) {
        return Err(Error::invalid(
            "gateway",
            gateway.to_string(),
            "no assigned address of its family",
        ));
    }
    Ok(out)
}

/// Names the endpoint holding an address in an "in use" error.
fn in_use(network: &NetworkRecord, session: &dyn EndpointSession, error: IpamError) -> Error {
    if let IpamError::AddressInUse {
        address, holder, ..
    } = &error
    {
        if let Some(holder) = session.endpoints().find(|e| e.id == *holder) {
            return Error::AddressInUse {
                address: *address,
                network: network.name.clone(),
                endpoint: holder.name.clone(),
            };
        }
    }
    error.into()
}

/// The per-link IPv6 setting of a new endpoint link, written inside the
/// container's namespace: IPv6 endpoints announce their addresses with
/// unsolicited neighbour advertisements; endpoints of IPv4-only networks
/// get no IPv6 at all (no link-local address, router solicitations or
/// MLD), as Docker's. A network with no address family leaves the link to
/// the container (its own DHCP or SLAAC), IPv6 included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ipv6Setting {
    /// `ndisc_notify` on: a plain value, made while the link is configured.
    Announce,
    /// `disable_ipv6` on: it takes the kernel's routing lock (rtnl), as
    /// every configuration request does, so it is made first.
    Off,
}

impl Ipv6Setting {
    fn of(network: &NetworkRecord, allocations: &[Allocation]) -> Option<Ipv6Setting> {
        if !(network.ipv4 || network.ipv6 || !allocations.is_empty()) {
            return None;
        }
        Some(if allocations.iter().any(|a| a.ip().is_ipv6()) {
            Ipv6Setting::Announce
        } else {
            Ipv6Setting::Off
        })
    }

    /// [`write`](Self::write), a failure logged: the link works without
    /// (as Docker's does when `/proc/sys` is read-only). A warning but
    /// where there is no IPv6 to set (a kernel or namespace without it).
    fn apply(self, sysctl: &ProcSys, conf: Option<&SettingsDir>, ifname: &str) {
        match self.write(sysctl, conf, ifname) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("no IPv6 to set {self:?} on {ifname}: {e}");
            }
            Err(e) => log::warn!(
                "could not set {} on {ifname} (the link works, without it): {e}",
                self.key()
            ),
        }
    }

    /// The setting's name under `/proc/sys/net/ipv6/conf/IFNAME/`.
    fn key(self) -> &'static str {
        match self {
            Ipv6Setting::Announce => "ndisc_notify",
            Ipv6Setting::Off => "disable_ipv6",
        }
    }

    /// Writes it for the link `ifname`, from a thread inside its
    /// namespace: through `conf` (`net/ipv6/conf`, open) when there is
    /// one, which halves the look-up.
    fn write(
        self,
        sysctl: &ProcSys,
        conf: Option<&SettingsDir>,
        ifname: &str,
    ) -> std::io::Result<()> {
        let key = format!("{ifname}/{}", self.key());
        sysctl.write(conf, IPV6_CONF, &key, b"1")
    }
}

/// How long the namespace thread waits for word that the link is made
/// before it sleeps (see [`receive_soon`]): making a link takes 0.1-0.3 ms.
const LINK_SPIN: Duration = Duration::from_micros(500);
/// How long an attach waits for the namespace thread before it sleeps.
const HANDOFF_SPIN: Duration = Duration::from_micros(200);

/// Configures a new link from a socket inside its namespace, in one round
/// trip, in order: the ownership mark, `arp_notify`, the addresses, up, the
/// routes. Given `before_up` (the link's IPv6 setting, made meanwhile on
/// the namespace thread), in two: up and the routes once it returns.
fn configure_inside(
    network: &NetworkRecord,
    nl: &Netlink,
    record: &EndpointRecord,
    mark: &Mark,
    allocations: &[Allocation],
    options: &AttachOptions,
    before_up: Option<impl FnOnce()>,
) -> std::result::Result<Vec<RouteRequest>, (String, Error)> {
    let index = match record.ifindex {
        Some(index) => index,
        None => nl
            .index_of(&record.ifname)
            .map_err(|e| ("find the new link".to_owned(), e))?,
    };
    let mut requests = vec![
        crate::link::alias_request(index, &mark.to_string()),
        crate::link::arp_notify_request(index),
    ];
    for allocation in allocations {
        let address = allocation.address();
        requests.push(Request {
            message: RouteNetlinkMessage::NewAddress(address_message(
                index,
                address,
                address.addr().is_ipv6(),
            )),
            flags: netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
            operation: format!("add address {address}"),
        });
    }
    let first_half = requests.len();
    requests.push(crate::link::up_request(index));
    let first_route = requests.len();
    let mut routes: Vec<NewRoute> = Vec::new();
    if !options.no_default_route {
        routes.extend(
            network
                .driver
                .default_routes(index, allocations, network.internal),
        );
    }
    for asked in &options.routes {
        routes.push(match asked.gateway {
            Some(gateway) => NewRoute::to_via(asked.destination, gateway, index),
            None => NewRoute::to_dev(asked.destination, index),
        });
    }
    for route in &routes {
        let route = match options.metric {
            Some(metric) => route.clone().metric(metric),
            None => route.clone(),
        };
        requests.push(route.request());
    }
    let results = match before_up {
        None => nl.batch(requests),
        Some(before_up) => {
            let second_half = requests.split_off(first_half);
            let mut results = nl.batch(requests);
            // The rest only if all of that went in; the link goes up with
            // its IPv6 setting in place, whatever became of it.
            before_up();
            if let Ok(first) = &mut results {
                if first.iter().all(Result::is_ok) {
                    first.extend(
                        nl.batch(second_half)
                            .map_err(|e| ("configure the link".to_owned(), e))?,
                    );
                }
            }
            results
        }
    }
    .map_err(|e| ("configure the link".to_owned(), e))?;
    let mut installed = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) if i >= first_route => {
                let route = &routes[i - first_route];
                installed.push(RouteRequest {
                    destination: route
                        .destination()
                        .unwrap_or_else(|| default_prefix(route.family())),
                    gateway: route.gateway(),
                });
            }
            Ok(()) => {}
            // Another network of this container provides the default
            // route for this family already (or the route exists).
            Err(e) if i >= first_route && e.errno() == Some(libc::EEXIST) => {
                log::info!(
                    "endpoint {}: a route to {} exists already; keeping it",
                    record.name,
                    routes[i - first_route]
                        .destination()
                        .unwrap_or_else(|| default_prefix(routes[i - first_route].family()))
                );
            }
            Err(e) => {
                let what = match &e {
                    Error::Kernel { operation, .. } => operation.clone(),
                    _ => "configure the link".into(),
                };
                return Err((what, e));
            }
        }
    }
    Ok(installed)
}

/// `0.0.0.0/0` or `::/0`.
fn default_prefix(family: IpFamily) -> ipnet::IpNet {
    match family {
        IpFamily::V4 => ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
        IpFamily::V6 => ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
    }
}

/// The interface index an endpoint's link is made with, chosen at random
/// from 2^24 to 2^31 - 1: far above the kernel's own, which count up from
/// 1 in each namespace, so that it is free in the container (and on the
/// host) but for a chance of about one in a hundred million per link there.
fn endpoint_ifindex() -> Result<u32> {
    const FIRST: u32 = 1 << 24;
    let mut bytes = [0u8; 4];
    crate::random::fill(&mut bytes)?;
    Ok(FIRST + u32::from_le_bytes(bytes) % (i32::MAX as u32 - FIRST + 1))
}

/// An endpoint id not used yet in this network (never 0).
fn new_id(session: &dyn EndpointSession) -> Result<u64> {
    loop {
        let mut bytes = [0u8; 8];
        crate::random::fill(&mut bytes)?;
        let id = u64::from_le_bytes(bytes);
        if id != 0 && !session.endpoints().any(|e| e.id == id) {
            return Ok(id);
        }
    }
}

/// The default endpoint name: the namespace's name under `/run/netns` if
/// it is a DNS name, or one made from the endpoint id.
fn default_name(path: &Path, id: u64) -> String {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name))
            if dir == Path::new("/run/netns") && validate_dns_name("", name).is_ok() =>
        {
            name.to_owned()
        }
        _ => format!("ep-{:012x}", id >> 16),
    }
}

/// The first `ethN` the container does not have.
fn free_ifname(nl: &Netlink) -> Result<String> {
    let links = nl.links()?;
    (0..=u16::MAX)
        .map(|i| format!("eth{i}"))
        .find(|n| !links.iter().any(|l| &l.name == n))
        .ok_or_else(|| Error::Internal("no free ethN interface name".into()))
}
