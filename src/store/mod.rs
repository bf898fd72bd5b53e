//! Where networks and endpoints are kept: two small traits, the seam a
//! second store plugs into, and the files that implement them by default.
//!
//! - A [`NetworkStore`] keeps network definitions ([`NetworkRecord`]) and
//!   the host's identity, under a lock that serialises network creation,
//!   removal and recovery. The default, [`FileNetworkStore`], keeps one
//!   fsync'd JSON record per network in the state directory.
//! - An [`EndpointStore`] keeps each network's endpoints
//!   ([`EndpointRecord`]) and hands out [`EndpointSession`]s: exclusive,
//!   up-to-date access to one network's endpoints and its address
//!   allocator. The default, [`FileEndpointStore`], is an append-only
//!   journal per network in the runtime directory.
//! - [`MemoryStore`] implements both in memory, for tests and for programs
//!   that keep their state elsewhere; it is not shared between processes.
//!
//! The engine makes every multi-step change by recording its intent first
//! (a network `creating` or `removing`, an endpoint `attaching`), so a store
//! only has to make each single write atomic; recovery reads the intents
//! back through the same traits.
//!
//! ```
//! use underlay::store::MemoryStore;
//! use underlay::Host;
//!
//! // A host whose state lives in memory (it still makes real links).
//! let store = MemoryStore::new();
//! let options = Host::options().network_store(store.clone()).endpoint_store(store);
//! # let _ = options;
//! ```

#[cfg(feature = "etcd")]
mod etcd;
mod files;
mod journal;
mod memory;
mod network_dir;
mod records;
mod shared;
mod table;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use files::DEFAULT_LOCK_TIMEOUT;
pub use journal::FileEndpointStore;
pub use memory::MemoryStore;
pub use network_dir::{FileNetworkStore, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR};
pub use records::{EndpointRecord, EndpointState, NetworkRecord, NetworkState, Owner};
pub(crate) use shared::{definition_of, read_definition};
pub use shared::{Claim, ClaimingEndpointStore, SharedStore};
pub(crate) use table::EndpointTable;

use crate::ipam::Ipam;
use crate::Result;

/// A held lock of a [`NetworkStore`]; dropping it releases the lock.
pub type StoreLock = Box<dyn Send>;

/// Network definitions and the host's identity.
///
/// Implementations must make each call atomic (a record is either saved
/// whole or not at all) and [`lock`](Self::lock) exclusive among every
/// process that shares the store.
pub trait NetworkStore: Send + Sync + fmt::Debug {
    /// This host's id: random, stable for the life of the store, and part
    /// of the ownership mark of every link the host makes.
    fn host_id(&self) -> &str;

    /// Takes the store's exclusive lock, waiting for other holders. Network
    /// creation, removal and recovery run under it.
    ///
    /// # Errors
    /// When the lock cannot be taken (an I/O error).
    fn lock(&self) -> Result<StoreLock>;

    /// Every network record, whatever its state, sorted by name.
    ///
    /// # Errors
    /// When the records cannot be read.
    fn networks(&self) -> Result<Vec<NetworkRecord>>;

    /// The record of the network called `name`, if there is one.
    ///
    /// # Errors
    /// When the record cannot be read or is corrupt.
    fn network(&self, name: &str) -> Result<Option<NetworkRecord>>;

    /// Saves (creates or replaces) a network's record, durably.
    ///
    /// # Errors
    /// When the record cannot be encoded or written.
    fn save(&self, record: &NetworkRecord) -> Result<()>;

    /// Removes the record of the network called `name`; a missing record is
    /// not an error.
    ///
    /// # Errors
    /// When the record exists and cannot be removed.
    fn remove(&self, name: &str) -> Result<()>;

    /// Notes that an operation on network `name` is under way, so that
    /// [`needs_recovery`](Self::needs_recovery) is true until
    /// [`end`](Self::end) (or recovery) if the process dies first. `name`
    /// is a network's name, or its id for the deletion of its links after
    /// its record is gone (new networks are never named like ids, so the
    /// two never meet).
    ///
    /// # Errors
    /// When the note cannot be written.
    fn begin(&self, name: &str) -> Result<()>;

    /// Ends what [`begin`](Self::begin) started.
    fn end(&self, name: &str);

    /// What [`begin`](Self::begin) noted and nothing ended yet (in any
    /// process), as it was named. Recovery on opening looks for links a
    /// crash left in every namespace only when one of them is not a
    /// network's name any more; a store that cannot tell returns nothing,
    /// and such links then wait for [`Host::recover`](crate::Host::recover)
    /// (or their namespace's end).
    ///
    /// # Errors
    /// When the store cannot tell.
    fn pending(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Whether opening must run recovery: it has not run since the machine
    /// booted, or an operation was interrupted.
    ///
    /// # Errors
    /// When the store cannot tell.
    fn needs_recovery(&self) -> Result<bool>;

    /// Moves aside network records that do not read back (corrupt, or not
    /// what underlay writes), so that the others keep working; returns each
    /// one's new place and what was wrong. The default does nothing.
    ///
    /// # Errors
    /// When a record cannot be moved.
    fn quarantine(&self) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    /// Whether records moved aside by [`quarantine`](Self::quarantine) are
    /// still kept: while they are, recovery deletes no link it cannot
    /// explain, since it may be one of theirs. The default says no.
    fn has_quarantined(&self) -> bool {
        false
    }

    /// Notes that recovery has run and settled every interrupted operation.
    ///
    /// # Errors
    /// When the note cannot be written.
    fn recovered(&self) -> Result<()>;

    /// Directories whose changes may mean a network was created or removed
    /// (by this process or another), for those who follow them with file
    /// notifications (the resolver). The default: none, and followers poll.
    fn watch_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// Each network's endpoints.
pub trait EndpointStore: Send + Sync + fmt::Debug {
    /// Makes the (empty) endpoint state of a new network; does nothing if
    /// it exists.
    ///
    /// # Errors
    /// When the state cannot be created.
    fn add_network(&self, network: &NetworkRecord) -> Result<()>;

    /// Exclusive access to a network's endpoints (among threads and every
    /// process that shares the store), with an up-to-date view of them and
    /// of the addresses they hold.
    ///
    /// # Errors
    /// [`Error::NetworkNotFound`](crate::Error::NetworkNotFound) when the
    /// network has no endpoint state (never added, or removed, perhaps
    /// while this call waited for the lock); otherwise when the state
    /// cannot be locked or read, or is corrupt.
    fn session<'a>(&'a self, network: &NetworkRecord) -> Result<Box<dyn EndpointSession + 'a>>;

    /// Moves a network's endpoint state aside (it does not read back) and
    /// starts it anew, empty; returns where the old state went. Recovery
    /// then rebuilds the records from the links in the kernel.
    ///
    /// # Errors
    /// When the state cannot be moved or made anew.
    fn quarantine_network(&self, network: &NetworkRecord) -> Result<String>;

    /// Forgets everything kept for a removed network. It may be called
    /// while a session on the network is open; sessions that were waiting
    /// then fail with `NetworkNotFound`.
    ///
    /// # Errors
    /// When that state cannot be removed.
    fn remove_network(&self, network: &NetworkRecord) -> Result<()>;

    /// Directories whose changes may mean an endpoint was attached or
    /// detached, by this process or another (see
    /// [`NetworkStore::watch_paths`]). The default: none.
    fn watch_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Recovery's look at what this host holds outside its own state (the
    /// addresses a shared store says it claimed): whatever no record of its
    /// own explains is given back. Returns how many were. The default:
    /// nothing is held outside.
    ///
    /// # Errors
    /// When the shared store cannot be reached.
    fn reconcile(&self, network: &NetworkRecord) -> Result<usize> {
        let _ = network;
        Ok(0)
    }
}

/// Exclusive access to one network's endpoints; ends when dropped.
///
/// Every change is applied to the session's view (its records and its
/// allocator) as it is stored, so the view is always what the store holds.
pub trait EndpointSession {
    /// The endpoints, by id, in any state.
    fn endpoints(&self) -> Box<dyn Iterator<Item = &EndpointRecord> + '_>;

    /// The endpoints still [`EndpointState::Attaching`] or
    /// [`EndpointState::Detaching`]. The default reads every record; a
    /// store that knows cheaper says so.
    fn unfinished(&self) -> Vec<EndpointRecord> {
        self.endpoints()
            .filter(|e| matches!(e.state, EndpointState::Attaching | EndpointState::Detaching))
            .cloned()
            .collect()
    }

    /// The network's address allocator, holding every endpoint's addresses.
    fn ipam(&mut self) -> &mut Ipam;

    /// Records an attach under way (its addresses already taken from
    /// [`ipam`](Self::ipam)), or a change to its record. The record is
    /// stored as [`EndpointState::Attaching`].
    ///
    /// # Errors
    /// When the record cannot be encoded or written.
    fn save(&mut self, record: &EndpointRecord) -> Result<()>;

    /// Marks the attach of endpoint `id` as done.
    ///
    /// # Errors
    /// When that cannot be written.
    fn mark_ready(&mut self, id: u64) -> Result<()>;

    /// Records that endpoint `id` is being detached by process `owner`
    /// (before its link is deleted): it is [`EndpointState::Detaching`]
    /// until forgotten.
    ///
    /// # Errors
    /// When that cannot be written.
    fn mark_detaching(&mut self, id: u64, owner: Owner) -> Result<()>;

    /// Records that endpoint `id` is off the network (its addresses are off
    /// its link): it is [`EndpointState::Detached`], holding its addresses,
    /// until forgotten once its link is deleted.
    ///
    /// # Errors
    /// When that cannot be written.
    fn mark_detached(&mut self, id: u64) -> Result<()>;

    /// Removes an endpoint's record and releases its addresses; returns the
    /// record it removed.
    ///
    /// # Errors
    /// When that cannot be written.
    fn forget(&mut self, id: u64) -> Result<Option<EndpointRecord>>;

    /// The addresses of this network that others hold outside this
    /// store (other hosts' claims in a shared store), for an allocator that
    /// lost a claim to move past them all at once. The default: none.
    ///
    /// # Errors
    /// When the shared store cannot be reached.
    fn held_elsewhere(&self) -> Result<Vec<IpAddr>> {
        Ok(Vec::new())
    }

    /// A seed for spreading this host's address proposals over a network
    /// it shares with other hosts (see [`Ipam::allocate_spread`]), so
    /// that hosts rarely propose the same one; `None` (the default): the
    /// network is this host's alone.
    fn spread(&self) -> Option<u64> {
        None
    }

    /// Undoes an attach that failed: endpoint `id` is forgotten and
    /// `addresses` (taken for it from the allocator) are released. When
    /// nothing else was stored since the attach was saved, the store reads
    /// exactly as before it.
    ///
    /// # Errors
    /// When the store cannot be put back.
    fn abandon(&mut self, id: u64, addresses: &[IpAddr]) -> Result<()>;
}
