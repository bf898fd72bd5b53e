//! The store seam: the engine runs unchanged over another implementation
//! of the store traits. Here, the in-memory one (a test double that keeps
//! everything in this process), against a real kernel: the links, addresses
//! and routes are real, the state is not in any file.

mod common;

use std::net::IpAddr;

use common::{ip_json, ip_routes, link_names, ping, Sandbox, StateDir};
use underlay::endpoint::AttachOptions;
use underlay::netns::NetNs;
use underlay::store::{EndpointStore, MemoryStore, NetworkState, NetworkStore};
use underlay::{Error, Host, Network};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn memory_host(sb: &Sandbox, store: &MemoryStore) -> Host {
    Host::options()
        .network_store(store.clone())
        .endpoint_store(store.clone())
        .netns(NetNs::open(format!("/proc/self/fd/{}", common::fd_of(&sb.host))).unwrap())
        .open()
        .unwrap()
}

#[test]
fn create_attach_detach_and_remove_run_through_the_engine_over_a_memory_store() {
    let sb = Sandbox::new();
    let store = MemoryStore::new();
    let host = memory_host(&sb, &store);
    assert_eq!(host.state_dir(), None);
    let net = host
        .create_network(
            Network::builder("pub_net")
                .macvlan()
                .parent("eth0")
                .subnet("172.16.86.0/24")
                .gateway("172.16.86.1"),
        )
        .unwrap();
    // The definition is in the memory store, ready, and nowhere else.
    let record = store.network("pub_net").unwrap().unwrap();
    assert_eq!(record.state, NetworkState::Ready);
    assert_eq!(record.id, net.id());

    let a = sb.container();
    let b = sb.container();
    let ea = net
        .attach(&a, &AttachOptions::new().ip(ip("172.16.86.10")).name("a"))
        .unwrap();
    let eb = net.attach(&b, &AttachOptions::new().name("b")).unwrap();
    assert_eq!(ea.addresses()[0].to_string(), "172.16.86.10/24");
    assert_eq!(eb.addresses()[0].to_string(), "172.16.86.2/24");
    // The kernel's state is real: the link, its address, its route.
    let addr = ip_json(&a, &["addr", "show", "dev", "eth0"]);
    assert_eq!(addr[0]["addr_info"][0]["local"], "172.16.86.10");
    assert!(ip_routes(&a, false).contains("default via 172.16.86.1 dev eth0"));
    assert!(ping(&a, "172.16.86.2"));
    // The records are in the memory store, through its session.
    {
        let session = EndpointStore::session(&store, &record).unwrap();
        let mut names: Vec<_> = session.endpoints().map(|e| e.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }
    // A second handle on the same store (as a second process on the same
    // state directory) sees the endpoints and the addresses they hold.
    let other = memory_host(&sb, &store);
    let err = other
        .network("pub_net")
        .unwrap()
        .attach(
            &sb.container(),
            &AttachOptions::new().ip(ip("172.16.86.10")),
        )
        .unwrap_err();
    assert!(matches!(err, Error::AddressInUse { .. }), "{err}");

    assert!(net.detach(&a).unwrap());
    common::wait_for_links(&a, &["lo"]);
    assert_eq!(net.endpoints().unwrap().len(), 1);
    // The released address is handed out again.
    let ec = net.attach(&sb.container(), &AttachOptions::new()).unwrap();
    assert_eq!(ec.addresses()[0].to_string(), "172.16.86.3/24");
    let ea = net.attach(&a, &AttachOptions::new()).unwrap();
    assert_eq!(ea.addresses()[0].to_string(), "172.16.86.4/24");

    assert!(matches!(
        host.remove_network("pub_net"),
        Err(Error::NetworkHasEndpoints { count: 3, .. })
    ));
    host.force_remove_network("pub_net").unwrap();
    host.settle();
    assert_eq!(link_names(&a), ["lo"]);
    assert_eq!(link_names(&b), ["lo"]);
    assert!(store.networks().unwrap().is_empty());
    assert!(matches!(
        host.network("pub_net"),
        Err(Error::NetworkNotFound { .. })
    ));
    // The parent was not the store's to delete.
    assert!(link_names(&sb.host).contains(&"eth0".to_owned()));
}

#[test]
fn recovery_runs_over_the_memory_store_too() {
    let sb = Sandbox::new();
    let store = MemoryStore::new();
    let host = memory_host(&sb, &store);
    let net = host
        .create_network(
            Network::builder("n")
                .macvlan()
                .parent("eth0")
                .subnet("10.9.0.0/24"),
        )
        .unwrap();
    let gone = sb.container();
    net.attach(&gone, &AttachOptions::new().name("gone"))
        .unwrap();
    drop(gone); // the container dies without a detach
    let report = host.recover().unwrap();
    assert_eq!(report.released_endpoints, ["n/gone"]);
    assert!(net.endpoints().unwrap().is_empty());
    host.remove_network("n").unwrap();
}

#[test]
fn the_file_stores_can_be_named_explicitly() {
    let sb = Sandbox::new();
    let dir = StateDir::new();
    let networks = underlay::store::FileNetworkStore::open(&dir.0)
        .unwrap()
        .with_runtime_dir(dir.0.join("run"));
    let endpoints = underlay::store::FileEndpointStore::new(dir.0.join("run"));
    let host = Host::options()
        .network_store(networks)
        .endpoint_store(endpoints)
        .netns(NetNs::open(format!("/proc/self/fd/{}", common::fd_of(&sb.host))).unwrap())
        .open()
        .unwrap();
    let net = host
        .create_network(
            Network::builder("n")
                .macvlan()
                .parent("eth0")
                .subnet("10.9.0.0/24"),
        )
        .unwrap();
    assert!(dir.0.join("networks/n.json").is_file());
    net.attach(&sb.container(), &AttachOptions::new()).unwrap();
    assert!(dir
        .0
        .join("run")
        .join(net.id())
        .join("endpoints.log")
        .is_file());
    host.force_remove_network("n").unwrap();
    host.settle();
}

/// A network record for the journal tests (no kernel needed).
const JOURNAL_NETWORK: &str = r#"{"version":1,"id":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","name":"n","driver":{"name":"macvlan","mode":"bridge"},"parent":{"name":"eth0","kind":{"type":"existing"}},"ipam":{"subnets":[{"subnet":"10.1.0.0/24","gateway":"10.1.0.1"}]},"ipv4":true,"ipv6":false,"internal":false,"mtu":null,"labels":{},"policy":"lowest-free","created":0,"state":"ready"}"#;

fn journal_record(id: u64, ifname: &str, address: &str) -> underlay::store::EndpointRecord {
    serde_json::from_str(&format!(
        r#"{{"version":1,"id":{id},"name":"e{id}","aliases":[],"netns_path":"/x","netns_id":{{"dev":1,"inode":{id}}},"ifname":"{ifname}","mac":null,"addresses":["{address}/24"],"created":0}}"#
    ))
    .unwrap()
}

#[test]
fn an_attach_given_up_after_the_journal_was_compacted_under_it_leaves_no_record() {
    use underlay::store::FileEndpointStore;
    let dir = StateDir::new();
    let network: underlay::store::NetworkRecord = serde_json::from_str(JOURNAL_NETWORK).unwrap();
    let store = FileEndpointStore::new(dir.0.join("run"));
    store.add_network(&network).unwrap();
    let mut session = store.session(&network).unwrap();
    // An attach records its intent...
    session
        .save(&journal_record(1, "eth0", "10.1.0.2"))
        .unwrap();
    // ...other endpoints of this process come and go meanwhile, and the
    // journal is compacted under it...
    let journal = dir.0.join("run").join(&network.id).join("endpoints.log");
    let mut compacted = false;
    let mut last = std::fs::metadata(&journal).unwrap().len();
    for k in 0..60u64 {
        session
            .save(&journal_record(
                100 + k,
                "eth0",
                &format!("10.1.0.{}", 10 + k),
            ))
            .unwrap();
        session.mark_ready(100 + k).unwrap();
        session.forget(100 + k).unwrap();
        let len = std::fs::metadata(&journal).unwrap().len();
        compacted |= len < last;
        last = len;
    }
    assert!(compacted, "never compacted");
    // ...the attach records a new interface name (its first was taken),
    // then fails and is given up.
    session
        .save(&journal_record(1, "eth1", "10.1.0.2"))
        .unwrap();
    session.abandon(1, &[ip("10.1.0.2")]).unwrap();
    drop(session);
    // Read back as another process would: no trace of it.
    let other = FileEndpointStore::new(dir.0.join("run"));
    let session = other.session(&network).unwrap();
    let left: Vec<u64> = session.endpoints().map(|e| e.id).collect();
    assert!(left.is_empty(), "{left:?}");
}
