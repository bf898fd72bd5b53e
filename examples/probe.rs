//! Prints which link kinds the running kernel can make.
//!
//! `cargo run --example probe` (as root, or with CAP_NET_ADMIN and
//! CAP_SYS_ADMIN).

use underlay::capability::KernelCapabilities;

fn main() {
    match KernelCapabilities::probe() {
        Ok(caps) => {
            for feature in KernelCapabilities::FEATURES {
                let state = if caps.supports(feature) { "yes" } else { "no" };
                println!(
                    "{:<12} {state:<4} ({})",
                    feature.name(),
                    feature.config_option()
                );
            }
        }
        Err(e) => {
            eprintln!("probe failed: {e}");
            std::process::exit(1);
        }
    }
}
