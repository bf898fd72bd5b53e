//! IPAM benchmarks: allocate-until-full and churn (release then allocate) on
//! an IPv4 /16, an IPv4 /8 and an IPv6 /64 holding 1 M allocations, plus the
//! heap used by that /64.
//!
//! Run with `cargo bench --bench ipam`. The criterion groups use small
//! samples; the /8 fill (16.7 M allocations) and the /64 fill are timed as
//! single passes and printed, as is the heap measured by a counting global
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use underlay::ipam::{AllocationPolicy, IpFamily, Ipam, NetworkIpamConfig};

/// Counts live heap bytes and their peak.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn record_growth(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only
// counters are updated around it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record_growth(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            record_growth(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

struct Pool {
    label: &'static str,
    subnet: &'static str,
    family: IpFamily,
    /// How many allocations fill it (or the live count for the /64).
    fill: usize,
}

const V4_16: Pool = Pool {
    label: "ipv4 /16",
    subnet: "10.0.0.0/16",
    family: IpFamily::V4,
    fill: 65_533,
};
const V4_8: Pool = Pool {
    label: "ipv4 /8",
    subnet: "10.0.0.0/8",
    family: IpFamily::V4,
    fill: 16_777_213,
};
const V6_64: Pool = Pool {
    label: "ipv6 /64, 1M live",
    subnet: "fd11::/64",
    family: IpFamily::V6,
    fill: 1_000_000,
};

fn network(pool: &Pool) -> Ipam {
    let mut config = NetworkIpamConfig::from_docker_lists(&[pool.subnet], &[], &[], &[])
        .expect("valid benchmark subnet");
    config.infer_gateways();
    Ipam::new(pool.label, &config, AllocationPolicy::LowestFree)
}

/// Allocates `pool.fill` addresses (or until full), returning how many.
fn fill(ipam: &mut Ipam, pool: &Pool) -> usize {
    let mut count = 0;
    while count < pool.fill && ipam.allocate(pool.family, count as u64).is_ok() {
        count += 1;
    }
    count
}

/// A filled network and the list of its addresses, for churn.
fn filled(pool: &Pool) -> (Ipam, Vec<IpAddr>) {
    let mut ipam = network(pool);
    fill(&mut ipam, pool);
    let addresses = ipam.allocations().map(|a| a.ip()).collect();
    (ipam, addresses)
}

/// A cheap pseudo-random walk over indices (64-bit LCG).
struct Walk(u64);

impl Walk {
    fn next(&mut self, len: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % len as u64) as usize
    }
}

/// Releases a random allocated address and allocates one (lowest free,
/// so the same one comes back).
fn churn_once(ipam: &mut Ipam, addresses: &mut [IpAddr], walk: &mut Walk, family: IpFamily) {
    let index = walk.next(addresses.len());
    let holder = ipam.release(addresses[index]).expect("allocated");
    let allocation = ipam.allocate(family, holder).expect("room after release");
    addresses[index] = black_box(allocation).ip();
}

fn allocate_until_full(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate_until_full");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(V4_16.fill as u64));
    group.bench_function(BenchmarkId::from_parameter(V4_16.label), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let mut ipam = network(&V4_16);
                let start = Instant::now();
                let count = fill(&mut ipam, &V4_16);
                total += start.elapsed();
                assert_eq!(count, V4_16.fill);
                drop(black_box(ipam));
            }
            total
        })
    });
    group.finish();
}

fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("churn_release_then_allocate");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for pool in [&V4_16, &V4_8, &V6_64] {
        let (mut ipam, mut addresses) = filled(pool);
        let mut walk = Walk(7);
        group.bench_function(BenchmarkId::from_parameter(pool.label), |b| {
            b.iter(|| churn_once(&mut ipam, &mut addresses, &mut walk, pool.family))
        });
    }
    group.finish();
}

fn rate(count: usize, elapsed: Duration, unit: &str) -> String {
    format!(
        "{count} {unit} in {:.3} s = {:.2} M {unit}/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64() / 1e6
    )
}

/// Single timed passes too long for criterion's repetitions, and the heap.
fn single_passes() {
    println!("\nipam single passes");
    for pool in [&V4_16, &V4_8, &V6_64] {
        let mut ipam = network(pool);
        let start = Instant::now();
        let count = fill(&mut ipam, pool);
        let elapsed = start.elapsed();
        assert_eq!(count, pool.fill);
        println!(
            "  allocate until full, {}: {}",
            pool.label,
            rate(count, elapsed, "allocations")
        );

        let mut addresses: Vec<IpAddr> = ipam.allocations().map(|a| a.ip()).collect();
        let mut walk = Walk(11);
        // Best of three rounds: the machine may be shared.
        let pairs = 1_000_000;
        let best = (0..3)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..pairs {
                    churn_once(&mut ipam, &mut addresses, &mut walk, pool.family);
                }
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        println!(
            "  churn (random release, then allocate), {}: {}",
            pool.label,
            rate(pairs, best, "pairs")
        );
    }

    // Heap of the /64 with 1 M live allocations: measured alone.
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut ipam = network(&V6_64);
    fill(&mut ipam, &V6_64);
    let live = LIVE.load(Ordering::Relaxed) - base;
    let peak = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "  heap, {}: live {:.1} MiB ({:.1} bytes/allocation), peak {:.1} MiB",
        V6_64.label,
        live as f64 / (1 << 20) as f64,
        live as f64 / V6_64.fill as f64,
        peak as f64 / (1 << 20) as f64
    );
    // Churn keeps it there.
    let mut addresses: Vec<IpAddr> = ipam.allocations().map(|a| a.ip()).collect();
    let with_list = LIVE.load(Ordering::Relaxed);
    let mut walk = Walk(13);
    for _ in 0..1_000_000 {
        churn_once(&mut ipam, &mut addresses, &mut walk, V6_64.family);
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "  heap after 1 M churn pairs: {:+} bytes",
        after as i64 - with_list as i64
    );
    drop(black_box(ipam));

    // Worst case for memory: addresses requested at random over the /64.
    let sparse = 100_000;
    let base = LIVE.load(Ordering::Relaxed);
    let mut ipam = network(&V6_64);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let prefix = u128::from(std::net::Ipv6Addr::new(0xfd11, 0, 0, 0, 0, 0, 0, 0));
    let mut placed = 0;
    while placed < sparse {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let address = std::net::Ipv6Addr::from(prefix | u128::from(state));
        if ipam.request(address.into(), placed).is_ok() {
            placed += 1;
        }
    }
    let live = LIVE.load(Ordering::Relaxed) - base;
    println!(
        "  heap, ipv6 /64 with {sparse} addresses requested at random: {:.1} MiB ({:.0} bytes/allocation)",
        live as f64 / (1 << 20) as f64,
        live as f64 / sparse as f64
    );
    drop(black_box(ipam));
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    allocate_until_full(&mut criterion);
    churn(&mut criterion);
    criterion.final_summary();
    single_passes();
}
