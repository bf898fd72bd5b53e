#!/usr/bin/env bash
# scripts/test.sh: the one test command of underlay (README and .ci/run call it).
#
# Usage: scripts/test.sh [--host-only | --vm-only]
#   (no option)   run both tiers (what CI does)
#   --host-only   host tier only: `cargo test --no-fail-fast` (unit, integration and
#                 doc tests) on this machine's kernel; needs_* tests show as skipped;
#                 with UNDERLAY_REQUIRE_RUNTIMES=1, so tests/cni_runtimes.rs (podman,
#                 containerd) fails rather than skips when a runtime is missing
#   --vm-only     real-kernel tier only: Debian's kernel booted under QEMU (TCG) with
#                 virtme-ng, the host's root filesystem read-only over 9p, running the
#                 already-built tests/*.rs binaries with --include-ignored, and the
#                 lib unit-test binary with --include-ignored (--vm-only) or, when the
#                 host tier runs them anyway, --ignored (only its needs_* tests);
#                 never cni_runtimes (it needs podman, containerd and the machine's
#                 writable /var and /run: host tier only) nor etcd (host tier only);
#                 a guest that dies under a binary (QEMU/TCG does, now and then) is
#                 booted once more for the binaries that did not finish, and the
#                 summary says so; one that dies again fails the tier
#
# Tests that need ipvlan / 802.1q VLAN / dummy are #[ignore]d and have a path segment
# needs_ipvlan / needs_vlan / needs_dummy; the real-kernel tier fails unless at least
# one test of each kind passed in it.
#
# Installs what is missing (apt: qemu-system-x86 linux-image-amd64 linux-image-6.12-amd64 busybox-static
# iputils-ping iproute2 jq dnsmasq-base; for the host tier, without recommends: podman
# containernetworking-plugins runc conmon uidmap slirp4netns catatonit busybox-static;
# pip: virtme-ng), idempotently. containerd is downloaded, never installed (its package
# would start a service): `apt-get download` + `dpkg-deb -x` into <target>/containerd,
# whose usr/bin the host tier gets as UNDERLAY_CONTAINERD_BIN; likewise etcd-server
# into <target>/etcd (UNDERLAY_ETCD_BIN), for tests/etcd.rs. Builds with every
# feature (`--all-features`: the resolver's tests need `dns`).
#
# Environment knobs:
#   UNDERLAY_VM_KERNEL        kernel images, space-separated (default: the newest
#                             /boot/vmlinuz-6.1.*-amd64 and /boot/vmlinuz-6.12.*-amd64,
#                             one real-kernel tier each)
#   UNDERLAY_VM_TIMEOUT       seconds for the whole VM run, boot included (default 2400)
#   UNDERLAY_VM_TEST_TIMEOUT  seconds per test binary inside the guest (default 1200)
#   UNDERLAY_VM_THREADS       --test-threads inside the guest (default 2)
#   UNDERLAY_VM_MEMORY        guest memory (default 1G)
#   UNDERLAY_VM_BINS          only these test targets in the VM, e.g. "netlink underlay"
#
# Logs: <target>/test-logs/ (cargo output, guest console, per-binary guest output).
# Ends with `host: ...`, one `real-kernel-VERSION: ...` per kernel and
# `total: N passed, N failed, N skipped`;
# exits non-zero if any test failed, a tier did not run, or the needs_* check failed.
# A test binary that crashed or never finished, and each needs_* kind with no passing
# test, count as one failure each in the real-kernel line.
set -euo pipefail

mode=both
for arg in "$@"; do
    case "$arg" in
        --host-only) mode=host ;;
        --vm-only) mode=vm ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done
run_host=0 run_vm=0
[[ $mode == both || $mode == host ]] && run_host=1
[[ $mode == both || $mode == vm ]] && run_vm=1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)
export HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
[[ -d $HOME/.cargo/bin ]] && PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }
show_tail() { # file [lines]
    echo "---- last ${2:-40} lines of $1 ----"
    tail -n "${2:-40}" "$1" || true
    echo "---- end of $1 ----"
}

# ---------------------------------------------------------------- installs
apt_ensure() { # [--no-install-recommends] package...
    local missing=() extra=() p
    [[ ${1:-} == --no-install-recommends ]] && { extra+=("$1"); shift; }
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "apt-get install ${missing[*]}"
    local opts=(-q -o DPkg::Lock::Timeout=900)
    apt-get "${opts[@]}" update >/dev/null ||
        die "apt-get update failed"
    apt-get "${opts[@]}" install -y "${extra[@]}" "${missing[@]}" >/tmp/underlay-apt.log 2>&1 ||
        { show_tail /tmp/underlay-apt.log; die "apt-get install ${missing[*]} failed"; }
}

PY=""
find_python() {
    local c
    for c in python3 /usr/bin/python3; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys' 2>/dev/null; then
            PY=$(command -v "$c"); return 0
        fi
    done
    return 1
}

VNG=""
find_vng() { # pip may put it in a pyenv version dir without a shim yet
    local c dirs=()
    if c=$(command -v vng 2>/dev/null) && "$c" --version >/dev/null 2>&1; then VNG=$c; return 0; fi
    if [[ -n $PY ]]; then
        dirs+=("$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)")
        dirs+=("$("$PY" -m site --user-base 2>/dev/null || true)/bin")
    fi
    dirs+=("$HOME/.local/bin" "$HOME/.pyenv/shims" "$HOME"/.pyenv/versions/*/bin /usr/local/bin)
    for c in "${dirs[@]}"; do
        if [[ -n $c && -x $c/vng ]] && "$c/vng" --version >/dev/null 2>&1; then VNG=$c/vng; return 0; fi
    done
    return 1
}

ensure_vng() {
    find_python || { apt_ensure python3 python3-pip; find_python || die "no python3"; }
    find_vng && return 0
    "$PY" -m pip --version >/dev/null 2>&1 || apt_ensure python3-pip
    log "pip install virtme-ng"
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$PY" -m pip install -q virtme-ng >/tmp/underlay-pip.log 2>&1 ||
        { show_tail /tmp/underlay-pip.log; die "pip install virtme-ng failed"; }
    command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
    hash -r
    find_vng || die "virtme-ng installed but no working vng found"
}

# containernetworking-plugins: the stock plugins tests/cni.rs chains and delegates to
# (tuning, host-local, static), in both tiers.
pkgs=(jq containernetworking-plugins)
# dnsmasq-base: the upstream resolver of the resolver's tests (a binary, no service).
((run_host)) && pkgs+=(iproute2 iputils-ping dnsmasq-base)
# virtme-ng needs a static busybox for the guest's initramfs (the 9p modules).
# Both of Debian's kernel lines: 6.1 (linux-image-amd64) and 6.12.
((run_vm)) && pkgs+=(iproute2 iputils-ping dnsmasq-base qemu-system-x86 linux-image-amd64 linux-image-6.12-amd64 busybox-static)
apt_ensure "${pkgs[@]}"
# podman with its CNI backend, for tests/cni_runtimes.rs (recommends would bring
# netavark, fuse-overlayfs, ...: not needed).
((run_host)) && apt_ensure --no-install-recommends podman containernetworking-plugins runc conmon \
    uidmap slirp4netns catatonit busybox-static
((run_vm)) && ensure_vng

TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
LOGS=$TARGET/test-logs
mkdir -p "$LOGS"

# containerd for tests/cni_runtimes.rs: Debian's package unpacked into
# <target>/containerd (kept between runs), never installed.
ensure_containerd() {
    local dir=$TARGET/containerd bin deb
    bin=$dir/usr/bin
    if [[ ! -x $bin/containerd || ! -x $bin/ctr || ! -x $bin/containerd-shim-runc-v2 ]]; then
        log "apt-get download containerd (unpacked into $dir, not installed)"
        local dl=$dir.download opts=(-q -o DPkg::Lock::Timeout=900)
        rm -rf "$dl" "$dir" && mkdir -p "$dl"
        # An old or missing package list: update once and try again.
        (cd "$dl" && apt-get "${opts[@]}" download containerd) >/tmp/underlay-apt.log 2>&1 ||
            { apt-get "${opts[@]}" update >/dev/null &&
                (cd "$dl" && apt-get "${opts[@]}" download containerd) >/tmp/underlay-apt.log 2>&1; } ||
            { show_tail /tmp/underlay-apt.log; die "apt-get download containerd failed"; }
        deb=$(ls "$dl"/containerd_*.deb 2>/dev/null | head -n 1)
        [[ -n $deb ]] || die "apt-get download containerd left no containerd_*.deb"
        rm -rf "$dir.tmp"
        dpkg-deb -x "$deb" "$dir.tmp" && mv "$dir.tmp" "$dir" ||
            die "dpkg-deb -x $deb failed"
        rm -rf "$dl"
    fi
    export UNDERLAY_CONTAINERD_BIN=$bin
}
((run_host)) && ensure_containerd

# etcd for tests/etcd.rs (feature etcd): Debian's etcd-server unpacked into
# <target>/etcd (kept between runs), never installed (its package starts a
# service); the tests run it inside their own namespaces.
ensure_etcd() {
    local dir=$TARGET/etcd deb
    if [[ ! -x $dir/usr/bin/etcd ]]; then
        log "apt-get download etcd-server (unpacked into $dir, not installed)"
        local dl=$dir.download opts=(-q -o DPkg::Lock::Timeout=900)
        rm -rf "$dl" "$dir" && mkdir -p "$dl"
        (cd "$dl" && apt-get "${opts[@]}" download etcd-server) >/tmp/underlay-apt.log 2>&1 ||
            { apt-get "${opts[@]}" update >/dev/null &&
                (cd "$dl" && apt-get "${opts[@]}" download etcd-server) >/tmp/underlay-apt.log 2>&1; } ||
            { show_tail /tmp/underlay-apt.log; die "apt-get download etcd-server failed"; }
        deb=$(ls "$dl"/etcd-server_*.deb 2>/dev/null | head -n 1)
        [[ -n $deb ]] || die "apt-get download etcd-server left no etcd-server_*.deb"
        rm -rf "$dir.tmp"
        dpkg-deb -x "$deb" "$dir.tmp" && mv "$dir.tmp" "$dir" ||
            die "dpkg-deb -x $deb failed"
        rm -rf "$dl"
    fi
    export UNDERLAY_ETCD_BIN=$dir/usr/bin/etcd
}
((run_host)) && ensure_etcd

# ---------------------------------------------------------------- build once
log "building test binaries (cargo test --all-features --no-run)"
t0=$(now)
if ! cargo test --all-features --no-run --message-format=json >"$LOGS/build.json" 2>"$LOGS/build.log"; then
    jq -rs '[.[] | select(.reason == "compiler-message" and .message.level == "error")
        | .message.rendered] | unique | .[]' "$LOGS/build.json" | tail -n 60
    show_tail "$LOGS/build.log"
    die "build failed"
fi
# name<TAB>path of lib/bin unit-test and integration-test executables
mapfile -t BINS < <(jq -r 'select(.reason=="compiler-artifact" and .profile.test and .executable != null)
    | select([.target.kind[] | select(. == "example" or . == "bench" or . == "custom-build")] | length == 0)
    | "\(.target.name)-\(.target.kind | map(select(. == "test")) | if length > 0 then "test" else "unit" end)\t\(.executable)"' \
    "$LOGS/build.json" | sort -u)
log "built ${#BINS[@]} test binaries in $(($(now) - t0))s"
# Host tier only: tests that drive podman and containerd (they need the
# machine's userland and writable /var and /run, which the guest lacks).
HOST_ONLY_BINS="cni_runtimes etcd"
keep=()
for entry in "${BINS[@]}"; do
    name=${entry%%$'\t'*}
    [[ " $HOST_ONLY_BINS " == *" ${name%-*} "* ]] || keep+=("$entry")
done
BINS=("${keep[@]}")
if [[ -n ${UNDERLAY_VM_BINS:-} ]]; then # developer knob: only these targets in the VM
    keep=()
    for entry in "${BINS[@]}"; do
        name=${entry%%$'\t'*}
        [[ " $UNDERLAY_VM_BINS " == *" ${name%-*} "* ]] && keep+=("$entry")
    done
    BINS=("${keep[@]}")
fi

# ---------------------------------------------------------------- parsing
# sum_results FILE... -> "passed failed ignored" from libtest `test result:` lines
sum_results() {
    cat "$@" | awk '/^test result: /{
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed;?$/) p += $i
            if ($(i+1) ~ /^failed;?$/) f += $i
            if ($(i+1) ~ /^ignored;?$/) s += $i
        } } END { printf "%d %d %d\n", p, f, s }'
}
# needs_counts FILE... -> "ipvlan vlan dummy": passing tests with that path segment
needs_counts() {
    cat "$@" | awk 'match($0, /test [^ ]+ \.\.\. ok$/) {
        n = split(substr($0, RSTART + 5, RLENGTH - 12), seg, "::")
        a = b = c = 0
        for (i = 1; i <= n; i++) {
            if (seg[i] == "needs_ipvlan") a = 1
            if (seg[i] == "needs_vlan") b = 1
            if (seg[i] == "needs_dummy") c = 1
        }
        ip += a; vl += b; dm += c
    } END { printf "%d %d %d\n", ip, vl, dm }'
}

declare -A P F S STATUS NOTE
status=0
tiers=()

# ---------------------------------------------------------------- host tier
# What the tests could leave on the machine, and only that (other processes may
# make links and namespaces of their own meanwhile): links in the machine's
# namespace with the names underlay gives (temporary "ul..." names, "dm-"/"di-"
# dummy parents, "hs-" host shims, capability "probe" links), named namespaces starting with
# "underlay" or "ul-", underlay's default runtime directory, and the tests'
# state directories.
machine_state() {
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(ul|dm-|di-|hs-|probe)' | sort || true
    echo "-- netns"
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(underlay|ul-)' | sort || true
    echo "-- runtime"
    ls /run/underlay 2>/dev/null || true
    echo "-- state"
    ls -d "${TMPDIR:-/tmp}"/underlay-test-* 2>/dev/null || true
}

host_tier() {
    local t0 rc=0 hlog=$LOGS/host.log
    t0=$(now)
    log "host tier: cargo test --all-features --no-fail-fast (log: $hlog)"
    # The tests must leave the machine as they found it: no link in its own
    # namespace, no named namespace, no runtime state.
    local before after
    before=$(machine_state)
    # UNDERLAY_REQUIRE_RUNTIMES: tests/cni_runtimes.rs fails, rather than skips,
    # when podman or containerd is missing.
    UNDERLAY_REQUIRE_RUNTIMES=1 cargo test --all-features --no-fail-fast >"$hlog" 2>&1 || rc=$?
    # The CNI plugin as the README installs it, statically linked (a debug
    # build, so that its crash hooks work): tests/cni.rs again, against it.
    local triple static_dir
    triple=$(rustc -vV | sed -n 's/^host: //p')
    static_dir=$TARGET/static
    log "host tier: tests/cni.rs against the statically linked plugin ($triple, crt-static)"
    if RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$static_dir \
        cargo build --target "$triple" --bin underlay-cni >>"$hlog" 2>&1; then
        UNDERLAY_CNI_BIN=$static_dir/$triple/debug/underlay-cni \
            cargo test --all-features --no-fail-fast --test cni >>"$hlog" 2>&1 || rc=$?
    else
        echo "test cni-static-build ... FAILED" >>"$hlog"
        rc=1
    fi
    after=$(machine_state)
    read -r "P[host]" "F[host]" "S[host]" < <(sum_results "$hlog")
    # Only what appeared counts: something another process removed meanwhile
    # (its own temporary state) is not the tests' doing.
    local left
    left=$(comm -13 <(echo "$before" | sort) <(echo "$after" | sort) | grep -v '^-- netns$' || true)
    if [[ -n $left ]]; then
        F[host]=$((F[host] + 1))
        echo "host: the tests left something behind on the machine:"
        echo "$left"
    fi
    read -r hi hv hd < <(needs_counts "$hlog")
    NOTE[host]="host: ran $hi needs_ipvlan, $hv needs_vlan, $hd needs_dummy"
    STATUS[host]=ok
    if ((rc != 0 && F[host] == 0)); then
        F[host]=1 # a crash, a doc-test build error...: no failing test counted, still a failure
        NOTE[host]+=$'\n'"host: cargo test exited $rc without a counted failure (crash or build error)"
    fi
    if ((P[host] + F[host] == 0)); then
        STATUS[host]="did not run"
    elif ((F[host] > 0)); then
        STATUS[host]=failed
    fi
    if [[ ${STATUS[host]} != ok ]]; then
        grep -E '^test .* FAILED$|^---- .* stdout ----$|panicked at' "$hlog" | head -n 40 || true
        show_tail "$hlog" 60
    fi
    log "host tier done in $(($(now) - t0))s"
}

# ---------------------------------------------------------------- real-kernel tier
# The kernels of the real-kernel tier: UNDERLAY_VM_KERNEL (a list), or the
# newest installed image of each of Debian's lines, 6.1 and 6.12.
vm_kernels() {
    if [[ -n ${UNDERLAY_VM_KERNEL:-} ]]; then
        printf '%s\n' $UNDERLAY_VM_KERNEL
        return
    fi
    local line k
    for line in 6.1 6.12; do
        k=$(ls /boot/vmlinuz-"$line".*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
        [[ -n $k ]] && echo "$k"
    done
}

# vm_tier KERNEL TIER: the tests under KERNEL; results under the key TIER.
vm_tier() {
    local kernel=$1 vm=$2 timeout=${UNDERLAY_VM_TIMEOUT:-2400}
    local per_bin=${UNDERLAY_VM_TEST_TIMEOUT:-1200} threads=${UNDERLAY_VM_THREADS:-2}
    local mem=${UNDERLAY_VM_MEMORY:-1G} t0 rc=0 rw entry name path
    STATUS[$vm]="did not run" P[$vm]=0 F[$vm]=0 S[$vm]=0 NOTE[$vm]=""
    [[ -n $kernel && -r $kernel ]] || { NOTE[$vm]="$vm: kernel image ${kernel:-?} not found"; return; }
    ((${#BINS[@]} > 0)) || { NOTE[$vm]="$vm: no test binaries"; return; }

    mkdir -p "$TARGET/vm-tier" "$TARGET/tmp"
    rw=$(mktemp -d "$TARGET/vm-tier/run.XXXXXX")
    # The guest: root fs read-only 9p; /tmp, /run, /var/tmp writable (RAM); $rw is a
    # read-write 9p share for results; $TARGET/tmp (CARGO_TARGET_TMPDIR) an overlay.
    {
        echo '#!/bin/bash'
        echo 'set -u'
        echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
        echo 'export HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1 UNDERLAY_TIER=real-kernel'
        printf 'export CARGO_MANIFEST_DIR=%q\n' "$ROOT"
        printf 'cd %q || exit 1\n' "$ROOT"
        printf 'out=%q\n' "$rw"
        echo '[[ -f "$out/guest-start" ]] || date +%s.%N >"$out/guest-start"'
        echo '{ uname -a; id; mount; } >"$out/guest-env.txt" 2>&1'
        for entry in "${BINS[@]}"; do
            name=${entry%%$'\t'*} path=${entry#*$'\t'} which=--include-ignored
            # Unit tests are kernel-independent, and TCG makes pure CPU work ~15x
            # slower: when the host tier runs them, the guest runs only their ignored
            # (needs_*) ones.
            [[ $name == *-unit ]] && ((run_host)) && which=--ignored
            # (A binary that finished in an earlier boot of this tier is not run
            # again: see the second boot below.)
            printf '[[ -f "$out/%s.rc" ]] || { timeout -k 10 %d %q %s --test-threads=%d >"$out/%s.log" 2>&1; echo $? >"$out/%s.rc"; }\n' \
                "$name" "$per_bin" "$path" "$which" "$threads" "$name" "$name"
        done
        echo 'date +%s.%N >"$out/guest-done"'
        echo 'sync'
    } >"$rw/guest.sh"
    chmod +x "$rw/guest.sh"

    log "real-kernel tier: $(basename "$kernel") under QEMU/TCG, ${#BINS[@]} binaries (timeout ${timeout}s, log: $LOGS/$vm-console.log)"
    t0=$(date +%s.%N)
    # timeout signals its whole process group, so qemu (exec'd by virtme-run) dies too.
    timeout -k 30 "$timeout" "$VNG" --run "$kernel" --disable-kvm --force-9p \
        --cpus 2 --memory "$mem" --rwdir "$rw" --overlay-rwdir "$TARGET/tmp" \
        --exec "$rw/guest.sh" </dev/null >"$LOGS/$vm-console.log" 2>&1 || rc=$?
    local rebooted="" elapsed
    elapsed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%d", b-a}')
    if ((rc != 0 && rc != 124 && rc != 137 && elapsed < timeout)) && [[ ! -f $rw/guest-done ]] &&
        ! grep -qE 'Kernel panic|BUG:|Oops|general protection fault' "$LOGS/$vm-console.log"; then
        # The emulated guest died under a binary, with no kernel error in its
        # console (QEMU/TCG exits 255 now and then on a loaded machine):
        # booted once more, within what is left of the timeout, for the
        # binaries that did not finish; one that kills it again fails the
        # tier. What the first boot wrote of the unfinished binary's log is
        # kept beside it (NAME.first-boot.log).
        local finished=0 done_rc entry_name
        for done_rc in "$rw"/*.rc; do [[ -e $done_rc ]] && finished=$((finished + 1)); done
        for entry in "${BINS[@]}"; do
            entry_name=${entry%%$'\t'*}
            [[ -f $rw/$entry_name.log && ! -f $rw/$entry_name.rc ]] &&
                mv "$rw/$entry_name.log" "$rw/$entry_name.first-boot.log"
        done
        rebooted="$vm: the guest died (vng exit $rc) after $finished of ${#BINS[@]} binaries; booted again for the rest"
        log "$rebooted"
        rc=0
        timeout -k 30 "$((timeout - elapsed))" "$VNG" --run "$kernel" --disable-kvm --force-9p \
            --cpus 2 --memory "$mem" --rwdir "$rw" --overlay-rwdir "$TARGET/tmp" \
            --exec "$rw/guest.sh" </dev/null >>"$LOGS/$vm-console.log" 2>&1 || rc=$?
    fi
    local t1
    t1=$(date +%s.%N)

    local logs=() failed_bins=()
    for entry in "${BINS[@]}"; do
        name=${entry%%$'\t'*}
        if [[ ! -f $rw/$name.rc ]]; then
            failed_bins+=("$name (never finished)")
        else
            local brc
            brc=$(<"$rw/$name.rc")
            logs+=("$rw/$name.log")
            if ! grep -q '^test result: ' "$rw/$name.log"; then
                failed_bins+=("$name (exit $brc, no test result: crash or timeout)")
            elif [[ $brc != 0 ]]; then
                grep -q '^test result: FAILED' "$rw/$name.log" || failed_bins+=("$name (exit $brc)")
            fi
        fi
    done
    rm -rf "${LOGS:?}/$vm-last" && cp -r "$rw" "$LOGS/$vm-last" || true

    if ((${#logs[@]} > 0)); then
        read -r "P[$vm]" "F[$vm]" "S[$vm]" < <(sum_results "${logs[@]}")
        read -r vi vv vd < <(needs_counts "${logs[@]}")
    else
        vi=0 vv=0 vd=0
    fi
    F[$vm]=$((F[$vm] + ${#failed_bins[@]}))
    NOTE[$vm]="$vm: ran $vi needs_ipvlan, $vv needs_vlan, $vd needs_dummy"
    if [[ -f $rw/guest-start ]]; then
        NOTE[$vm]+=$'\n'"$vm: $(basename "$kernel"), boot $(awk -v a="$t0" -v b="$(<"$rw/guest-start")" 'BEGIN{printf "%.1f", b-a}')s, whole VM run $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
    fi
    [[ -n $rebooted ]] && NOTE[$vm]+=$'\n'"$rebooted"
    local f
    for f in "${failed_bins[@]}"; do NOTE[$vm]+=$'\n'"$vm: binary $f"; done

    if ((rc == 124 || rc == 137)); then
        NOTE[$vm]+=$'\n'"$vm: VM run timed out after ${timeout}s"
        STATUS[$vm]=failed
    elif [[ ! -f $rw/guest-done ]]; then
        NOTE[$vm]+=$'\n'"$vm: the guest did not finish (vng exit $rc)"
        STATUS[$vm]="did not run"
    elif ((P[$vm] + F[$vm] == 0)); then
        STATUS[$vm]="did not run"
    elif ((F[$vm] > 0)); then
        STATUS[$vm]=failed
    else
        STATUS[$vm]=ok
    fi
    local miss=()
    ((vi > 0)) || miss+=(needs_ipvlan)
    ((vv > 0)) || miss+=(needs_vlan)
    ((vd > 0)) || miss+=(needs_dummy)
    if ((${#miss[@]} > 0)); then
        NOTE[$vm]+=$'\n'"$vm: FAILED feature check: no passing test with path segment ${miss[*]}"
        F[$vm]=$((F[$vm] + ${#miss[@]})) # each missing kind counts as one failure
        [[ ${STATUS[$vm]} == ok ]] && STATUS[$vm]="feature check failed"
    fi
    if [[ ${STATUS[$vm]} != ok ]]; then
        for f in "${logs[@]}"; do
            grep -E '^test .* FAILED$|panicked at' "$f" | head -n 20 || true
        done
        [[ -f $rw/guest-start ]] || show_tail "$LOGS/$vm-console.log" 40
        echo "(guest output kept in $LOGS/$vm-last/)"
    fi
    rm -rf "$rw"
}

if ((run_host)); then host_tier; tiers+=(host); fi
if ((run_vm)); then
    mapfile -t KERNELS < <(vm_kernels)
    if ((${#KERNELS[@]} == 0)); then
        tiers+=(real-kernel) STATUS[real-kernel]="did not run" P[real-kernel]=0 F[real-kernel]=0 S[real-kernel]=0
        NOTE[real-kernel]="real-kernel: no /boot/vmlinuz-6.1.*-amd64 or 6.12 image found"
    fi
    for kernel in "${KERNELS[@]}"; do
        # The tier's name says the kernel: real-kernel-6.1.0-57, real-kernel-6.12.57+deb12
        tier=$(basename "$kernel")
        tier=real-kernel-${tier#vmlinuz-}
        tier=${tier%-amd64}
        vm_tier "$kernel" "$tier"
        tiers+=("$tier")
    done
fi

# ---------------------------------------------------------------- summary
echo
echo "==================== summary ===================="
tp=0 tf=0 ts=0
for t in "${tiers[@]}"; do
    [[ -n ${NOTE[$t]} ]] && printf '%s\n' "${NOTE[$t]}"
    [[ ${STATUS[$t]} == ok ]] || { echo "$t tier: ${STATUS[$t]}"; status=1; }
done
((run_host)) || echo "(host tier not run: --vm-only)"
((run_vm)) || echo "(real-kernel tier not run: --host-only)"
for t in "${tiers[@]}"; do
    echo "$t: ${P[$t]} passed, ${F[$t]} failed, ${S[$t]} skipped"
    tp=$((tp + P[$t])) tf=$((tf + F[$t])) ts=$((ts + S[$t]))
done
echo "total: $tp passed, $tf failed, $ts skipped"
exit "$status"
