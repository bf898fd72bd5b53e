//! `underlay`: Docker's `network` commands for macvlan and ipvlan, on
//! underlay's public API, with no daemon.
//!
//! ```sh
//! cargo build --example underlay
//! sudo target/debug/examples/underlay network create -d macvlan \
//!     --subnet=172.16.86.0/24 --gateway=172.16.86.1 -o parent=eth0 pub_net
//! sudo ip netns add web1
//! sudo target/debug/examples/underlay network connect pub_net web1
//! sudo target/debug/examples/underlay network inspect pub_net
//! ```
//!
//! It works on the network namespace it is started in (the "host", which
//! holds the parent interfaces) and on a state directory (`--state-dir`,
//! `/var/lib/underlay` by default). Each call is one short process, so it
//! does only the work its command needs.
//!
//! Errors go to stderr as `underlay: MESSAGE` with exit status 1.
//! `UNDERLAY_LOG=debug` (or `info`, `warn`) shows what the library does.
//! For crash tests, `UNDERLAY_CRASH_AT=TEXT` kills the process (SIGKILL)
//! when the library logs a message containing TEXT.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use underlay::docker::network_create_args;
use underlay::endpoint::AttachOptions;
use underlay::link::MacAddress;
use underlay::netns::NetNs;
use underlay::{Error, Host};

const USAGE: &str = "\
Usage: underlay [--state-dir DIR] [--runtime-dir DIR] COMMAND [ARGS...]

Puts containers on the physical network with macvlan and ipvlan, as Docker's
drivers do, in Docker's words. Works on the network namespace it is started in
(the \"host\", which holds the parent interfaces); no daemon.

Options:
      --state-dir DIR    where network definitions live (default /var/lib/underlay;
                         keep it on persistent storage)
      --runtime-dir DIR  where endpoint records live (default
                         /run/underlay/STATE_ID, on tmpfs)
      --etcd URL[,URL]   claim every address in etcd (its v3 JSON gateway,
                         http://HOST:2379), shared with the other hosts on the
                         segment, so no two hosts hand out the same address
                         (also UNDERLAY_ETCD; needs the feature etcd)
  -h, --help             show this help

Commands:
  network create       Create a network
  network rm           Remove one or more networks
  network ls           List networks
  network inspect      Show networks, with their endpoints, as JSON
  network connect      Connect a container's network namespace to a network
  network disconnect   Disconnect a container's network namespace from a network
  recover              Finish or undo what crashes left, free dead containers'
                       addresses, delete links nothing explains
  dns                  Serve names at 127.0.0.11 in every container (feature dns)
  host forget ID       Forget a host that is gone for good (with --etcd): free every
                       address it claimed

Every command first finishes or undoes a network operation a crash
interrupted; `recover` also checks every endpoint.

NETNS is a path to a network namespace (/run/netns/NAME, /proc/PID/ns/net) or a
name under /run/netns. NETWORK is a name, an id or a unique id prefix.
Run 'underlay network COMMAND --help' for more on a command.
UNDERLAY_LOG=debug (or info, warn) shows what the library does, on stderr.
";

const NETWORK_USAGE: &str = "\
Usage: underlay [--state-dir DIR] network COMMAND [ARGS...]

Commands:
  create       Create a network
  rm           Remove one or more networks
  ls           List networks
  inspect      Show networks, with their endpoints, as JSON
  connect      Connect a container's network namespace to a network
  disconnect   Disconnect a container's network namespace from a network

Run 'underlay network COMMAND --help' for more on a command.
";

const CREATE_USAGE: &str = "\
Usage: underlay network create -d DRIVER [OPTIONS] NAME

Create a network, as `docker network create` does. The driver is required
(there is no default driver): -d macvlan or -d ipvlan. Prints the network id.

Options (both --flag=value and --flag value work):
  -d, --driver DRIVER        macvlan or ipvlan (required)
      --subnet CIDR          a subnet, IPv4 or IPv6 (repeatable; default: one
                             from Docker's default pools)
      --gateway IP           the gateway of the subnet that holds it (repeatable;
                             default: the subnet's first address)
      --ip-range CIDR        hand out addresses from this part of its subnet
                             (repeatable)
      --aux-address NAME=IP  never hand out this address (repeatable)
      --ipv6                 enable IPv6 (an IPv6 subnet enables it too)
      --internal             isolate the network: a dummy parent, no default route
  -o, --opt KEY=VALUE        a driver option (repeatable):
                               parent=IFACE       eth0, or eth0.50 to have the 802.1q
                                                  link created (and deleted with the
                                                  network); no parent: isolated
                               macvlan_mode=MODE  bridge (default), private, vepa,
                                                  passthru
                               ipvlan_mode=MODE   l2 (default), l3, l3s
                               ipvlan_flag=FLAG   bridge (default), private, vepa
                               mtu=BYTES
                               host_shim=IP|auto  give the host a link on the network
                                                  with this address (auto: one of
                                                  each family, reserved), so host
                                                  and containers reach each other
      --label KEY=VALUE      a label (repeatable)
  -h, --help                 show this help

Example:
  underlay network create -d macvlan --subnet=192.168.50.0/24 \\
      --gateway=192.168.50.1 -o parent=eth0.50 macvlan50
";

const RECOVER_USAGE: &str = "\
Usage: underlay recover [--json]

Bring the host back in line with its state after crashes or a reboot: finish
or undo interrupted network operations and attaches, recreate missing owned
parents, release the addresses of endpoints whose namespace or link is gone,
move aside network records that do not read back, and delete links marked as
underlay's that nothing explains. Links underlay did not make are never
touched. Prints what it did, one line each (nothing when all was well).

Options:
      --json   print the report as a JSON object
  -h, --help   show this help
";

const RM_USAGE: &str = "\
Usage: underlay network rm [-f|--force] NETWORK...

Remove networks. A parent interface underlay created (eth0.50, a dummy) is
deleted with its network; one that existed before is never touched.

A network shared with other hosts (--etcd) is removed from this host only;
its shared definition goes when the last host removes it, or with -f.

Options:
  -f, --force   detach the network's endpoints first (otherwise a network with
                endpoints is refused); a shared network is removed on every
                host, unless other hosts hold addresses of it
  -ff           a shared network is removed on every host even while other
                hosts hold addresses (they keep them until they detach)
  -h, --help    show this help
";

const LS_USAGE: &str = "\
Usage: underlay network ls [-q|--quiet]

List networks: NAME DRIVER PARENT SUBNETS.

Options:
  -q, --quiet   print the names only
  -h, --help    show this help
";

const INSPECT_USAGE: &str = "\
Usage: underlay network inspect NETWORK...

Print networks as a JSON array: name, id, driver, options, parent (and whether
underlay owns it), ipam subnets with gateways, ranges and aux addresses, flags,
labels, and endpoints with their namespace, interface, MAC and addresses.

Options:
  -h, --help   show this help
";

const CONNECT_USAGE: &str = "\
Usage: underlay network connect [OPTIONS] NETWORK NETNS

Connect the container whose network namespace is NETNS (a path, or a name under
/run/netns) to NETWORK: a macvlan or ipvlan link in it, with addresses, default
routes and a gratuitous ARP. Prints the interface and its addresses.

Options (both --flag=value and --flag value work):
      --ip IP            the IPv4 address (default: the next free one)
      --ip6 IP           the IPv6 address (default: the next free one)
      --mac-address MAC  the MAC address (macvlan only)
      --alias NAME       another name for the container (repeatable)
      --ifname NAME      the interface name in the container (default: eth0, or
                         the next free ethN)
      --name NAME        the endpoint's name (default: the namespace's name
                         under /run/netns, or one made up)
      --no-default-route add no default route
      --metric N         the default routes' metric (lower wins)
  -h, --help             show this help

Names (--name, --alias) are DNS names: labels of letters, digits, '_' and '-'
joined by dots.
";

const DISCONNECT_USAGE: &str = "\
Usage: underlay network disconnect [--wait] NETWORK NETNS|ENDPOINT

Disconnect the container whose network namespace is NETNS (a path, or a name
under /run/netns) from NETWORK: take its addresses off its link and release
them, at once. The link itself, marked detached and with no address, is
deleted by the next connect to NETWORK, recover or rm -f, or with the
namespace: deleting a link makes the kernel wait about 20 ms. Until then the
addresses stay reserved (the container could put them back on the link),
except for a connect that asks for one of them with --ip, which deletes
that link first. Works when the
namespace is gone too: the endpoint is found by the path it was connected
with, or by its name (ENDPOINT, as `inspect` shows it), which frees a dead
container's addresses.

Options:
      --wait   delete the link before returning
  -h, --help   show this help
";

/// Why a command failed.
enum Failure {
    /// A message still to print.
    Message(String),
    /// Messages printed already (several names, several errors).
    Reported,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Message(message)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Message(error.to_string())
    }
}

type CliResult = Result<(), Failure>;

fn main() -> ExitCode {
    init_logger();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Message(message)) => {
            eprintln!("underlay: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Reported) => ExitCode::from(1),
    }
}

/// Whether `arg` asks for help.
fn is_help(arg: &str) -> bool {
    arg == "-h" || arg == "--help"
}

/// Splits `--flag=value` into the flag and its inline value.
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
        _ => (arg, None),
    }
}

/// The value of `flag`: inline (`--flag=value`) or the next argument.
fn flag_value(
    flag: &str,
    inline: Option<&str>,
    args: &[String],
    i: &mut usize,
) -> Result<String, String> {
    if let Some(value) = inline {
        return Ok(value.to_owned());
    }
    match args.get(*i) {
        Some(value) => {
            *i += 1;
            Ok(value.clone())
        }
        None => Err(format!("option {flag} needs a value")),
    }
}

/// Global options, then `network COMMAND`.
fn run(args: &[String]) -> CliResult {
    let mut state_dir: PathBuf = underlay::host::DEFAULT_STATE_DIR.into();
    let mut runtime_dir: Option<PathBuf> = None;
    let mut etcd: Option<String> = std::env::var("UNDERLAY_ETCD")
        .ok()
        .filter(|e| !e.is_empty());
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let (flag, inline) = split_flag(&args[i]);
        i += 1;
        match flag {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--state-dir" => state_dir = flag_value(flag, inline, args, &mut i)?.into(),
            "--runtime-dir" => runtime_dir = Some(flag_value(flag, inline, args, &mut i)?.into()),
            "--etcd" => etcd = Some(flag_value(flag, inline, args, &mut i)?.to_owned()),
            _ => return Err(format!("unknown option {flag} (see underlay --help)").into()),
        }
    }
    let ctx = Context {
        state_dir,
        runtime_dir,
        etcd,
    };
    match args.get(i).map(String::as_str) {
        None => Err(format!("missing command\n\n{USAGE}").into()),
        Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("network") => network(&ctx, &args[i + 1..]),
        Some("recover") => recover(&ctx, &args[i + 1..]),
        Some("host") => host_command(&ctx, &args[i + 1..]),
        Some("dns") => dns(&ctx, &args[i + 1..]),
        Some(other) => Err(format!("unknown command {other:?} (see underlay --help)").into()),
    }
}

/// Where the state lives; the host is opened only by commands that need it.
struct Context {
    state_dir: PathBuf,
    runtime_dir: Option<PathBuf>,
    /// `--etcd URL[,URL...]` (or `UNDERLAY_ETCD`): address claims shared
    /// with the other hosts on the segment.
    etcd: Option<String>,
}

impl Context {
    fn host(&self) -> Result<Host, Error> {
        let mut options = Host::options().state_dir(&self.state_dir);
        if let Some(dir) = &self.runtime_dir {
            options = options.runtime_dir(dir);
        }
        if let Some(endpoints) = &self.etcd {
            options = with_etcd(options, endpoints)?;
        }
        options.open()
    }
}

#[cfg(feature = "etcd")]
fn with_etcd(
    options: underlay::host::HostOptions,
    endpoints: &str,
) -> Result<underlay::host::HostOptions, Error> {
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    Ok(options.shared_store(underlay::store::EtcdStore::new(&endpoints)?))
}

#[cfg(not(feature = "etcd"))]
fn with_etcd(
    _: underlay::host::HostOptions,
    _: &str,
) -> Result<underlay::host::HostOptions, Error> {
    Err(Error::InvalidArgument {
        what: "option",
        value: "--etcd".into(),
        reason: "this build has no etcd support: build it with --features etcd".into(),
    })
}

fn network(ctx: &Context, args: &[String]) -> CliResult {
    let Some(command) = args.first() else {
        return Err(format!("network: missing command\n\n{NETWORK_USAGE}").into());
    };
    let rest = &args[1..];
    match command.as_str() {
        "-h" | "--help" | "help" => {
            print!("{NETWORK_USAGE}");
            Ok(())
        }
        "create" => create(ctx, rest),
        "rm" | "remove" => rm(ctx, rest),
        "ls" | "list" => ls(ctx, rest),
        "inspect" => inspect(ctx, rest),
        "connect" => connect(ctx, rest),
        "disconnect" => disconnect(ctx, rest),
        other => {
            Err(format!("unknown command \"network {other}\" (see underlay network --help)").into())
        }
    }
}

fn create(ctx: &Context, args: &[String]) -> CliResult {
    if args.iter().any(|a| is_help(a)) {
        print!("{CREATE_USAGE}");
        return Ok(());
    }
    let has_driver = args.iter().any(|a| {
        let (flag, _) = split_flag(a);
        flag == "-d" || flag == "--driver"
    });
    if !has_driver {
        return Err("network create: -d/--driver is required: macvlan or ipvlan (see underlay network create --help)"
            .to_owned()
            .into());
    }
    // Everything goes to the library's parser of Docker's arguments, and is
    // checked before the state directory is opened (or created).
    let builder = network_create_args(args)?;
    builder.build()?;
    let net = ctx.host()?.create_network(builder)?;
    println!("{}", net.id());
    Ok(())
}

fn rm(ctx: &Context, args: &[String]) -> CliResult {
    // How many times -f was given: once detaches endpoints and removes a
    // shared network everywhere; twice also while other hosts use it.
    let mut force = 0;
    let mut names = Vec::new();
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{RM_USAGE}");
                return Ok(());
            }
            "-f" | "--force" => force += 1,
            "-ff" => force += 2,
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "network rm: unknown option {flag} (see underlay network rm --help)"
                )
                .into())
            }
            name => names.push(name),
        }
    }
    if names.is_empty() {
        return Err(
            "network rm: give at least one network (see underlay network rm --help)"
                .to_owned()
                .into(),
        );
    }
    let host = ctx.host()?;
    let mut failed = false;
    for name in names {
        let result = if force > 0 {
            // (Also a shared network of which this host has no half left.)
            host.remove_network_everywhere(name, force > 1)
        } else {
            host.network(name)
                .and_then(|net| host.remove_network(net.name()))
        };
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("underlay: {e}");
                failed = true;
            }
        }
    }
    // The removed networks' links are deleted on threads of the library's
    // own; this process ends next, so it waits for them.
    host.settle();
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

fn ls(ctx: &Context, args: &[String]) -> CliResult {
    let mut quiet = false;
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{LS_USAGE}");
                return Ok(());
            }
            "-q" | "--quiet" => quiet = true,
            other => {
                return Err(format!(
                    "network ls: unexpected argument {other} (see underlay network ls --help)"
                )
                .into())
            }
        }
    }
    let mut networks = ctx.host()?.networks()?;
    networks.sort_by(|a, b| a.name().cmp(b.name()));
    if quiet {
        for net in &networks {
            println!("{}", net.name());
        }
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "DRIVER".to_owned(),
        "PARENT".to_owned(),
        "SUBNETS".to_owned(),
    ]];
    for net in &networks {
        let subnets: Vec<String> = net
            .ipam()
            .subnets()
            .iter()
            .map(|s| s.subnet().to_string())
            .collect();
        rows.push([
            net.name().to_owned(),
            net.driver().name().to_owned(),
            net.parent().name.clone(),
            subnets.join(","),
        ]);
    }
    let width = |c: usize| rows.iter().map(|r| r[c].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for row in &rows {
        out.push_str(&format!(
            "{:<w0$}   {:<w1$}   {:<w2$}   {}\n",
            row[0], row[1], row[2], row[3]
        ));
    }
    print!("{out}");
    Ok(())
}

fn inspect(ctx: &Context, args: &[String]) -> CliResult {
    if args.iter().any(|a| is_help(a)) {
        print!("{INSPECT_USAGE}");
        return Ok(());
    }
    if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
        return Err(format!(
            "network inspect: unknown option {flag} (see underlay network inspect --help)"
        )
        .into());
    }
    if args.is_empty() {
        return Err(
            "network inspect: give at least one network (see underlay network inspect --help)"
                .to_owned()
                .into(),
        );
    }
    let host = ctx.host()?;
    let mut out = Vec::new();
    let mut failed = false;
    for name in args {
        match host
            .network(name)
            .and_then(|net| Ok((net.endpoints()?, net)))
        {
            Ok((endpoints, net)) => {
                let mut value =
                    serde_json::to_value(&net).map_err(|e| format!("serialize {name}: {e}"))?;
                let endpoints = serde_json::to_value(&endpoints)
                    .map_err(|e| format!("serialize {name}: {e}"))?;
                if let serde_json::Value::Object(map) = &mut value {
                    map.insert("endpoints".into(), endpoints);
                }
                out.push(value);
            }
            Err(e) => {
                eprintln!("underlay: {e}");
                failed = true;
            }
        }
    }
    let text = serde_json::to_string_pretty(&out).map_err(|e| format!("serialize: {e}"))?;
    println!("{text}");
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

/// A NETNS argument: a path as given, or a name under /run/netns.
fn netns_path(arg: &str) -> PathBuf {
    if arg.contains('/') {
        PathBuf::from(arg)
    } else {
        Path::new("/run/netns").join(arg)
    }
}

/// Exactly NETWORK and NETNS, from the positional arguments of `command`.
fn network_and_netns<'a>(
    command: &str,
    positional: &'a [String],
) -> Result<(&'a str, &'a str), String> {
    match positional {
        [network, netns] => Ok((network, netns)),
        [] | [_] => Err(format!(
            "network {command}: give NETWORK and NETNS (see underlay network {command} --help)"
        )),
        [_, _, extra, ..] => Err(format!(
            "network {command}: unexpected argument {extra:?}: give NETWORK and NETNS only"
        )),
    }
}

fn connect(ctx: &Context, args: &[String]) -> CliResult {
    let mut options = AttachOptions::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if is_help(arg) {
            print!("{CONNECT_USAGE}");
            return Ok(());
        }
        if !arg.starts_with('-') || arg == "-" {
            positional.push(arg.clone());
            continue;
        }
        let (flag, inline) = split_flag(arg);
        match flag {
            "--ip" | "--ip6" => {
                let value = flag_value(flag, inline, args, &mut i)?;
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| format!("invalid {flag} {value:?}: expected an IP address"))?;
                if ip.is_ipv4() != (flag == "--ip") {
                    let want = if flag == "--ip" { "IPv4" } else { "IPv6" };
                    return Err(
                        format!("invalid {flag} {value:?}: expected an {want} address").into(),
                    );
                }
                options = options.ip(ip);
            }
            "--mac-address" => {
                let value = flag_value(flag, inline, args, &mut i)?;
                options = options.mac(value.parse::<MacAddress>()?);
            }
            "--alias" => options = options.dns_name(&flag_value(flag, inline, args, &mut i)?),
            "--ifname" => options = options.ifname(&flag_value(flag, inline, args, &mut i)?),
            "--name" => options = options.name(&flag_value(flag, inline, args, &mut i)?),
            "--no-default-route" => options = options.no_default_route(),
            "--metric" => {
                let value = flag_value(flag, inline, args, &mut i)?;
                let metric: u32 = value
                    .parse()
                    .map_err(|_| format!("invalid --metric {value:?}: expected a number"))?;
                options = options.metric(metric);
            }
            _ => {
                return Err(format!(
                    "network connect: unknown option {flag} (see underlay network connect --help)"
                )
                .into())
            }
        }
    }
    let (name, netns) = network_and_netns("connect", &positional)?;
    let host = ctx.host()?;
    let net = host.network(name)?;
    let container = NetNs::open(netns_path(netns))?;
    let endpoint = net.attach(&container, &options)?;
    let addresses: Vec<String> = endpoint.addresses().iter().map(|a| a.to_string()).collect();
    println!("{} {}", endpoint.ifname(), addresses.join(" "));
    // The links earlier disconnects left: this process has no time for a
    // sweep in the background, so it sweeps before it exits.
    if let Err(e) = net.sweep() {
        log::warn!("network {}: sweep: {e}", net.name());
    }
    Ok(())
}

fn disconnect(ctx: &Context, args: &[String]) -> CliResult {
    let mut positional = Vec::new();
    // No sweep in the background: this process exits at once, and would
    // cut it short. The next connect to the network sweeps.
    let mut options = underlay::endpoint::DetachOptions::new().sweep(false);
    for arg in args {
        if is_help(arg) {
            print!("{DISCONNECT_USAGE}");
            return Ok(());
        }
        if arg == "--wait" {
            options = options.delete_link(true);
            continue;
        }
        if arg.starts_with('-') && arg != "-" {
            return Err(format!(
                "network disconnect: unknown option {arg} (see underlay network disconnect --help)"
            )
            .into());
        }
        positional.push(arg.clone());
    }
    let (name, netns) = network_and_netns("disconnect", &positional)?;
    let path = netns_path(netns);
    let host = ctx.host()?;
    let net = host.network(name)?;
    // The namespace is still there: detach by its identity.
    if let Ok(container) = NetNs::open(&path) {
        if net.detach_with(&container, &options)? {
            return Ok(());
        }
    }
    // Gone (or the path names another namespace now): the endpoint that was
    // connected with this path.
    let endpoint = net
        .endpoints()?
        .into_iter()
        .find(|e| e.netns_path() == path);
    if let Some(endpoint) = endpoint {
        net.detach_endpoint(endpoint.name())?;
        return Ok(());
    }
    // An endpoint name, for a container whose namespace is gone.
    if net.detach_endpoint(netns)? {
        return Ok(());
    }
    Err(format!(
        "{netns:?} is neither a namespace nor an endpoint connected to network {:?}",
        net.name()
    )
    .into())
}

const DNS_USAGE: &str = "\
Usage: underlay dns [--upstream IP[:PORT]]... [--domain DOMAIN]

Serve names in the foreground, as a service would, until SIGTERM or SIGINT:
a DNS server at 127.0.0.11:53 (UDP and TCP) inside every connected
container's network namespace, which answers the names of the containers on
the same networks (`--name`, `--alias`, alone or under DOMAIN) and their
addresses (PTR), and relays every other query to the host's resolvers.
Containers use it with `nameserver 127.0.0.11` in their resolv.conf. It
follows connects and disconnects as they happen. Logs go to stderr
(UNDERLAY_LOG=debug for each query path).

Options:
      --upstream IP[:PORT]  relay to this resolver (repeatable; default: the
                            nameserver lines of /etc/resolv.conf)
      --domain DOMAIN       the search domain (default underlay.internal)
";

#[cfg(feature = "dns")]
fn dns(ctx: &Context, args: &[String]) -> CliResult {
    use underlay::resolver::{Resolver, ResolverOptions};
    let mut options = ResolverOptions::new();
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = split_flag(&args[i]);
        i += 1;
        match flag {
            "-h" | "--help" => {
                print!("{DNS_USAGE}");
                return Ok(());
            }
            "--upstream" => {
                let value = flag_value(flag, inline, args, &mut i)?;
                let address = value
                    .parse::<std::net::SocketAddr>()
                    .or_else(|_| {
                        value
                            .parse::<std::net::IpAddr>()
                            .map(|ip| std::net::SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| {
                        format!("dns: invalid --upstream {value:?}: expected IP or IP:PORT")
                    })?;
                options = options.upstream(address);
            }
            "--domain" => {
                let value = flag_value(flag, inline, args, &mut i)?;
                options = options.domain(&value)?;
            }
            other => {
                return Err(
                    format!("dns: unknown argument {other} (see underlay dns --help)").into(),
                )
            }
        }
    }
    // SIGTERM and SIGINT are taken from every thread (the resolver's
    // inherit the mask) and waited for here.
    // SAFETY: plain signal-mask calls on a zeroed set.
    let mask = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::sigaddset(&mut mask, libc::SIGTERM);
        libc::sigaddset(&mut mask, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
        mask
    };
    let host = ctx.host()?;
    let resolver = Resolver::start(&host, options)?;
    log::info!(
        "serving names at 127.0.0.11 in {} namespace(s); SIGTERM or SIGINT stops",
        resolver.served()
    );
    let mut signal = 0;
    // SAFETY: sigwait on the mask built above.
    unsafe { libc::sigwait(&mask, &mut signal) };
    log::info!("signal {signal}: stopping");
    resolver.stop();
    Ok(())
}

#[cfg(not(feature = "dns"))]
fn dns(_: &Context, args: &[String]) -> CliResult {
    if args.iter().any(|a| is_help(a)) {
        print!("{DNS_USAGE}");
        return Ok(());
    }
    Err("dns: this build has no resolver: build with --features dns"
        .to_owned()
        .into())
}

/// `underlay host forget ID`.
fn host_command(ctx: &Context, args: &[String]) -> CliResult {
    const USAGE: &str = "Usage: underlay --etcd URL host forget HOST_ID\n\nReleases every address the host (a state directory's id, as `cat STATE_DIR/id`\nshows) claimed in the shared store, and its part in every shared network.\nOnly for a host that is gone for good: no host frees another's addresses on its own.\n";
    match args {
        [command, id] if command == "forget" => {
            let released = ctx.host()?.forget_host(id)?;
            println!("forgot host {id}: released {released} address(es)");
            Ok(())
        }
        [flag] | [_, flag] if flag == "-h" || flag == "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(
            String::from("usage: underlay host forget HOST_ID (see underlay host --help)").into(),
        ),
    }
}

fn recover(ctx: &Context, args: &[String]) -> CliResult {
    let mut json = false;
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{RECOVER_USAGE}");
                return Ok(());
            }
            "--json" => json = true,
            other => {
                return Err(format!(
                    "recover: unknown argument {other} (see underlay recover --help)"
                )
                .into())
            }
        }
    }
    let report = ctx.host()?.recover()?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| format!("cannot encode the report: {e}"))?;
        println!("{text}");
        return Ok(());
    }
    let lines: [(&str, &Vec<String>); 8] = [
        ("released shared claims of", &report.released_claims),
        ("recreated parent", &report.recreated_parents),
        ("recreated host shim", &report.recreated_shims),
        ("undid the creation of network", &report.undone_creations),
        ("finished removing network", &report.finished_removals),
        ("deleted unexplained link", &report.removed_links),
        ("released endpoint", &report.released_endpoints),
        ("undid the attach of", &report.undone_attaches),
    ];
    for (what, items) in lines {
        for item in items {
            println!("{what} {item}");
        }
    }
    for (network, reason) in &report.broken_networks {
        println!("cannot restore network {network}: {reason}");
    }
    for (place, reason) in &report.quarantined {
        println!("moved aside {place}: {reason}");
    }
    Ok(())
}

/// Logs to stderr at the level in `UNDERLAY_LOG` (error, warn, info, debug,
/// trace); nothing when it is unset.
fn init_logger() {
    /// Prints at `level` and below; with a crash point, dies by SIGKILL the
    /// moment the library logs a message containing it (any level), as
    /// `kill -9` at that step would.
    struct Stderr {
        level: log::LevelFilter,
        crash_at: Option<String>,
    }
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.level() <= self.level {
                eprintln!(
                    "underlay: {}: {}",
                    record.level().as_str().to_lowercase(),
                    record.args()
                );
            }
            if let Some(point) = &self.crash_at {
                if record.args().to_string().contains(point.as_str()) {
                    let _ = rustix::process::kill_process(
                        rustix::process::getpid(),
                        rustix::process::Signal::KILL,
                    );
                    std::process::abort(); // not reached
                }
            }
        }
        fn flush(&self) {}
    }
    let level = match std::env::var("UNDERLAY_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        // `underlay dns` runs as a service: it says what it does.
        _ if std::env::args().skip(1).any(|a| a == "dns") => log::LevelFilter::Info,
        _ => log::LevelFilter::Off,
    };
    // For crash tests: UNDERLAY_CRASH_AT=TEXT.
    let crash_at = std::env::var("UNDERLAY_CRASH_AT").ok();
    let max = if crash_at.is_some() {
        log::LevelFilter::Trace
    } else {
        level
    };
    if max != log::LevelFilter::Off
        && log::set_boxed_logger(Box::new(Stderr { level, crash_at })).is_ok()
    {
        log::set_max_level(max);
    }
}
