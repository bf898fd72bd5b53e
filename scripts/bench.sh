#!/usr/bin/env bash
# scripts/bench.sh: underlay's end-to-end benchmark against its peers (issue 7).
#
# Usage: scripts/bench.sh [--micro] [--section all|e2e|scale|inproc|dns|etcd] [-n N]
#   (no option)   install what is missing, build release (library, CLI example,
#                 benches), run benches/e2e.rs: per-endpoint attach/detach of
#                 macvlan IPv4 and dual-stack for underlay in-process, the underlay
#                 CLI example and the underlay-cni plugin (one process per call),
#                 netavark, the CNI macvlan
#                 plugin + host-local, and the kernel floor, on one sandbox; bulk
#                 teardown; then the scale section (1 vs 200 networks, the attach
#                 curve to 2000 and 10000 endpoints, opening 10000 records).
#                 Prints the tables and the targets, met or MISSED.
#   --micro       also run the CPU micro-benchmarks (cargo bench --bench netlink)
#   --section S   only one section of the e2e bench: e2e, scale, or inproc (the
#                 in-process attach broken down against the kernel floor); or dns:
#                 only the resolver bench (benches/dns.rs: 1000 endpoints served,
#                 queries/s and p99 at 127.0.0.11 against dnsmasq, memory per
#                 endpoint, how soon a new name resolves); or etcd: only the
#                 shared-store bench (benches/etcd.rs: attach with addresses
#                 claimed in etcd beside the local store, attaches/s with one
#                 and three hosts); "all" runs both last
#   -n N          containers per tool in the e2e section (default 100)
#
# Must run as root (network namespaces, macvlan links). Nothing outside the
# bench's own throw-away namespaces and temporary directories is touched.
#
# Environment knobs (passed to the bench):
#   UNDERLAY_BENCH_N          containers per tool (default 100; -n sets it)
#   UNDERLAY_BENCH_CHUNK      tools take turns every CHUNK containers (default 10)
#   UNDERLAY_BENCH_SCALE_N    the curve's target endpoint (default 2000)
#   UNDERLAY_BENCH_RECORDS    endpoints (one namespace each) for the open test (10000)
#   UNDERLAY_BENCH_NETWORKS   networks in the "many networks" case (default 200)
#   UNDERLAY_BENCH_SKIP       comma list of tools not to run: cli,underlay-cni,netavark,cni
#                             (printed as skipped; a missing tool is an error)
#   UNDERLAY_BENCH_STRICT=1   exit 3 when a target is missed
#   UNDERLAY_CLI, UNDERLAY_CNI, NETAVARK, CNI_PATH   where the tools are
# The report is also written to <target>/bench-report.txt.
set -euo pipefail

micro=0
section=${UNDERLAY_BENCH:-all}
while (($#)); do
    case "$1" in
        --micro) micro=1 ;;
        --section) shift; section=${1:?--section needs a value} ;;
        --section=*) section=${1#*=} ;;
        -n) shift; export UNDERLAY_BENCH_N=${1:?-n needs a value} ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$section" in
    all | e2e | scale | inproc | dns | etcd) ;;
    *) echo "bench.sh: unknown section $section (all, e2e, scale, inproc, dns, etcd)" >&2; exit 2 ;;
esac
export UNDERLAY_BENCH=$section

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
[[ -d $HOME/.cargo/bin ]] && PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

((EUID == 0)) || die "run as root (network namespaces and macvlan links need CAP_NET_ADMIN)"

# ---------------------------------------------------------------- installs
apt_ensure() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "apt-get install ${missing[*]}"
    local opts=(-q -o DPkg::Lock::Timeout=900)
    apt-get "${opts[@]}" update >/dev/null || die "apt-get update failed"
    apt-get "${opts[@]}" install -y "${missing[@]}" >/tmp/underlay-bench-apt.log 2>&1 ||
        { tail -n 40 /tmp/underlay-bench-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
}
apt_ensure netavark containernetworking-plugins iproute2 iputils-ping jq dnsmasq-base
[[ -x ${NETAVARK:-/usr/lib/podman/netavark} ]] || die "no netavark at ${NETAVARK:-/usr/lib/podman/netavark}"
[[ -x ${CNI_PATH:-/usr/lib/cni}/macvlan ]] || die "no CNI macvlan plugin in ${CNI_PATH:-/usr/lib/cni}"
log "peers: $("${NETAVARK:-/usr/lib/podman/netavark}" --version), CNI plugins $(dpkg-query -W -f='${Version}' containernetworking-plugins 2>/dev/null || echo '?')"

# ---------------------------------------------------------------- build
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
log "building release: the library, the CLI example, the benches"
cargo build --release --example underlay ||
    die "the CLI example does not build (cargo build --release --example underlay); set UNDERLAY_BENCH_SKIP=cli to run without it"
export UNDERLAY_CLI=${UNDERLAY_CLI:-$TARGET/release/examples/underlay}
# underlay-cni as the README installs it: statically linked, as the stock CNI
# plugins are (a process per call pays no dynamic loading).
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$TRIPLE" --bin underlay-cni ||
    die "underlay-cni does not build (RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target $TRIPLE --bin underlay-cni); set UNDERLAY_BENCH_SKIP=underlay-cni to run without it"
export UNDERLAY_CNI=${UNDERLAY_CNI:-$TARGET/$TRIPLE/release/underlay-cni}
cargo bench --no-run --bench e2e
cargo bench --no-run --features dns --bench dns
cargo bench --no-run --features etcd --bench etcd
# etcd for the etcd section: Debian's etcd-server unpacked into <target>/etcd,
# never installed (its package starts a service).
if [[ ! -x $TARGET/etcd/usr/bin/etcd ]]; then
    log "apt-get download etcd-server (unpacked into $TARGET/etcd)"
    rm -rf "$TARGET/etcd.download" && mkdir -p "$TARGET/etcd.download"
    (cd "$TARGET/etcd.download" && apt-get -q download etcd-server) >/tmp/underlay-bench-apt.log 2>&1 ||
        die "apt-get download etcd-server failed"
    dpkg-deb -x "$TARGET"/etcd.download/etcd-server_*.deb "$TARGET/etcd" || die "dpkg-deb -x failed"
    rm -rf "$TARGET/etcd.download"
fi
export UNDERLAY_ETCD_BIN=${UNDERLAY_ETCD_BIN:-$TARGET/etcd/usr/bin/etcd}
((micro)) && cargo bench --no-run --bench netlink

# ---------------------------------------------------------------- run
export UNDERLAY_BENCH_REPORT=$TARGET/bench-report.txt
status=0
if [[ $section != dns && $section != etcd ]]; then
    log "e2e bench (section $section, N=${UNDERLAY_BENCH_N:-100}); report: $UNDERLAY_BENCH_REPORT"
    cargo bench --bench e2e || status=$?
fi
if [[ $section == all || $section == dns ]]; then
    log "resolver bench: cargo bench --features dns --bench dns"
    cargo bench --features dns --bench dns 2>/dev/null | tee -a "$UNDERLAY_BENCH_REPORT" || status=1
fi
if [[ $section == all || $section == etcd ]]; then
    log "shared-store bench: cargo bench --features etcd --bench etcd"
    cargo bench --features etcd --bench etcd 2>/dev/null | tee -a "$UNDERLAY_BENCH_REPORT" || status=1
fi
if ((micro)); then
    log "micro-benchmarks: cargo bench --bench netlink"
    cargo bench --bench netlink -- --noplot 2>&1 | grep -E '^[a-z_]+/|time:' || status=1
fi
exit "$status"
