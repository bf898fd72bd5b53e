//! Property tests with arbitrary input, as a fuzzer would feed it: the
//! Docker argument parser, the network record and endpoint journal readers
//! never panic, whatever the bytes. (The netlink reply parser has its own,
//! in `src/netlink`.) `PROPTEST_CASES` sets the number of cases per test.
//!
//! A long run: `PROPTEST_CASES=100000 cargo test --release --test fuzz`.

use std::path::PathBuf;

use proptest::prelude::*;
use underlay::docker::network_create_args;
use underlay::store::{
    EndpointStore, FileEndpointStore, FileNetworkStore, NetworkRecord, NetworkStore,
};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("underlay-test-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Words that steer the parser into its branches, mixed with noise.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-d".to_owned()),
        Just("--driver".to_owned()),
        Just("macvlan".to_owned()),
        Just("ipvlan".to_owned()),
        Just("-o".to_owned()),
        Just("--subnet".to_owned()),
        Just("--gateway".to_owned()),
        Just("--ip-range".to_owned()),
        Just("--aux-address".to_owned()),
        Just("--ipv6".to_owned()),
        Just("--internal".to_owned()),
        Just("--label".to_owned()),
        Just("parent=eth0.50".to_owned()),
        Just("ipvlan_mode=l3".to_owned()),
        Just("macvlan_mode=passthru".to_owned()),
        Just("mtu=1400".to_owned()),
        Just("no_gateway=true".to_owned()),
        Just("10.1.0.0/16".to_owned()),
        Just("fd00::/64".to_owned()),
        Just("10.1.0.1".to_owned()),
        Just("a=10.1.0.9".to_owned()),
        "[ -~]{0,24}",
        any::<String>(),
    ]
}

const RECORD: &str = r#"{"version":1,"id":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","name":"n","driver":{"name":"macvlan","mode":"bridge"},"parent":{"name":"eth0","kind":{"type":"existing"}},"ipam":{"subnets":[{"subnet":"10.1.0.0/24","gateway":"10.1.0.1"}]},"ipv4":true,"ipv6":false,"internal":false,"mtu":null,"labels":{},"policy":"lowest-free","created":0,"state":"ready"}"#;

proptest! {
    // 256 cases in the suite (it also runs under QEMU); a long run:
    // PROPTEST_CASES=100000 cargo test --release --test fuzz
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_docker_argument_parser_never_panics(words in prop::collection::vec(word(), 0..12)) {
        if let Ok(builder) = network_create_args(words.iter().map(String::as_str)) {
            let _ = builder.build();
        }
    }

    #[test]
    fn network_records_of_any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let dir = scratch("record");
        let store = FileNetworkStore::open(&dir).unwrap();
        std::fs::write(dir.join("networks/n.json"), &bytes).unwrap();
        let _ = store.network("n");
        prop_assert!(store.networks().is_ok());
        let _ = store.quarantine();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn journals_of_any_bytes_are_read_or_refused(
        lines in prop::collection::vec(prop_oneof![
            Just(r#"{"ready":1}"#.to_owned()),
            Just(r#"{"forget":1}"#.to_owned()),
            Just(r#"{"attaching":{"version":1,"id":1,"name":"a","aliases":[],"netns_path":"/x","netns_id":{"dev":1,"inode":2},"ifname":"eth0","mac":null,"addresses":["10.1.0.2/24"],"created":0}}"#.to_owned()),
            Just(r#"{"record":{"version":1,"id":2,"name":"b","aliases":[],"netns_path":"/y","netns_id":{"dev":1,"inode":3},"ifname":"eth0","mac":null,"addresses":["10.1.0.2/24","10.9.9.9/8"],"created":0}}"#.to_owned()),
            "[ -~]{0,40}",
            any::<String>(),
        ], 0..8),
        tail in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let dir = scratch("journal");
        let record: NetworkRecord = serde_json::from_str(RECORD).unwrap();
        let store = FileEndpointStore::new(&dir);
        store.add_network(&record).unwrap();
        let mut bytes = lines.join("\n").into_bytes();
        bytes.extend_from_slice(&tail);
        std::fs::write(dir.join(&record.id).join("endpoints.log"), &bytes).unwrap();
        if let Ok(mut session) = store.session(&record) {
            let ids: Vec<u64> = session.endpoints().map(|e| e.id).collect();
            for id in ids {
                session.forget(id).unwrap();
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
