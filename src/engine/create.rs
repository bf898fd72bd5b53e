//! Creating a network.

use ipnet::IpNet;

use super::Engine;
use crate::ipam::{NetworkIpamConfig, SubnetConfig};
use crate::parent;
use crate::route::IpFamily;
use crate::spec::NetworkSpec;
use crate::store::{NetworkRecord, NetworkState};
use crate::{Error, Result};

impl Engine {
    /// Creates a network: checks that the kernel has the driver, resolves
    /// (or creates) the parent, fills in default subnets and gateways, and
    /// records it. On any error nothing is created and the store is as it
    /// was.
    pub fn create_network(&self, spec: NetworkSpec) -> Result<NetworkRecord> {
        if crate::names::is_network_id(spec.name()) {
            // The store notes work on a removed network's links under its
            // id: a network named so could end another's note. (Refused
            // for new networks only: one made before keeps its name.)
            return Err(Error::invalid(
                "network name",
                spec.name(),
                "64 lower-case hexadecimal digits is the form of a network id, reserved for them; choose another name",
            ));
        }
        // Links a forced removal left to delete would still be on their
        // parent, seen as the removed network's (and refused beside a
        // link of another driver): gone first.
        if self.deletions.running() {
            self.wait_for_deletions();
        }
        // Say now, not at the first attach, that the kernel lacks the driver.
        self.capabilities()?.require(spec.driver().feature())?;
        let _lock = self.networks.lock()?;
        let records = self.networks.networks()?;
        if records.iter().any(|r| r.name == spec.name()) {
            return Err(Error::NetworkExists {
                name: spec.name().to_owned(),
            });
        }
        let mut ipam = self.complete_ipam(&spec, &records)?;
        // A network several hosts share: its definition is the first
        // host's; the others check theirs against it and take its
        // addresses (default pools and inferred gateways included).
        let shared = match &self.shared {
            Some(shared) => {
                self.join_shared(shared.as_ref(), &spec, &mut ipam)?;
                Some(shared)
            }
            None => None,
        };
        let name = spec.name().to_owned();
        let created = self.create_local(spec, ipam, &records);
        if let (Err(_), Some(shared)) = (&created, shared) {
            if let Err(e) = shared.leave(&name, self.networks.host_id()) {
                log::warn!("network {name}: cannot leave the shared definition: {e}");
            }
        }
        created
    }

    /// Defines or joins the shared network `spec` describes: `ipam`, this
    /// host's proposal, becomes the stored definition's.
    fn join_shared(
        &self,
        shared: &dyn crate::store::SharedStore,
        spec: &NetworkSpec,
        ipam: &mut NetworkIpamConfig,
    ) -> Result<()> {
        if let Some(request) = spec.host_shim() {
            return Err(Error::invalid(
                "host_shim",
                format!("{request:?}"),
                "a network shared with other hosts cannot have a host shim yet",
            ));
        }
        let parent = parent::ParentLink {
            name: String::new(),
            kind: parent::ParentKind::Existing,
        };
        let proposal = spec
            .clone()
            .into_record(String::new(), parent, ipam.clone());
        let proposal = crate::store::definition_of(&proposal)?;
        let own = ipam.clone();
        for _ in 0..3 {
            let definition = match shared.define(spec.name(), &proposal)? {
                Some(text) => {
                    let stored = crate::store::read_definition(spec.name(), &text)?;
                    if let Some((field, stored, requested)) = spec.difference_but_parent(&stored) {
                        return Err(Error::DefinitionDiffers {
                            network: spec.name().to_owned(),
                            field,
                            stored,
                            requested,
                        });
                    }
                    *ipam = stored.ipam;
                    text
                }
                None => {
                    *ipam = own.clone();
                    proposal.clone()
                }
            };
            // Not joined if the definition went or changed meanwhile (its
            // last host left; removed everywhere and defined anew): defined
            // or compared again, then.
            if shared.join(spec.name(), self.networks.host_id(), &definition)? {
                return Ok(());
            }
        }
        Err(Error::SharedStoreUnavailable {
            tried: format!(
                "the shared definition of network {:?} kept changing while this host joined it: try again",
                spec.name()
            ),
        })
    }

    /// The local half of [`create_network`](Self::create_network), under
    /// the state lock.
    fn create_local(
        &self,
        spec: NetworkSpec,
        mut ipam: NetworkIpamConfig,
        records: &[NetworkRecord],
    ) -> Result<NetworkRecord> {
        let id = crate::random::hex(32)?;
        let shim = match spec.host_shim() {
            Some(request) => Some(self.plan_shim(request, &id, spec.families(), &mut ipam)?),
            None => None,
        };
        let dummy = spec
            .parent()
            .is_none()
            .then(|| spec.driver().dummy_parent_name(&id));
        let plan = parent::plan(&self.nl, spec.parent(), dummy)?;
        if let (Some(mtu), true) = (spec.mtu(), plan.index != 0) {
            // The endpoints' MTU cannot exceed the parent's (for a VLAN to be
            // made, its master's).
            let parent = self.nl.link_by_index(plan.index)?;
            if mtu > parent.mtu {
                return Err(Error::invalid(
                    "mtu",
                    mtu.to_string(),
                    format!(
                        "above the MTU of parent {} ({}): raise the parent's first, or choose {} or less",
                        parent.name, parent.mtu, parent.mtu
                    ),
                ));
            }
        }
        if let Some(holder) = records.iter().find(|r| r.parent.name == plan.parent.name) {
            return Err(Error::ParentInUse {
                parent: plan.parent.name.clone(),
                network: holder.name.clone(),
            });
        }
        let mut record = spec.into_record(id, plan.parent.clone(), ipam);
        record.host_shim = shim;
        record.shared = self.shared.is_some();
        let mark = self.parent_mark(&record);
        // Record the intent first: if we die after creating the parent,
        // recovery finds the record and undoes the creation.
        self.networks.begin(&record.name)?;
        if let Err(e) = self.networks.save(&record) {
            self.networks.end(&record.name);
            return Err(e);
        }
        log::debug!("network {}: recorded as creating", record.name);
        if let Err(e) = plan.realize(&self.nl, &mark) {
            self.networks.remove(&record.name)?;
            self.networks.end(&record.name);
            return Err(e);
        }
        if let Some(shim) = &record.host_shim {
            if let Err(e) = self.create_shim(&record, shim) {
                let _ = parent::remove(&self.nl, &record.parent, &mark, true);
                self.networks.remove(&record.name)?;
                self.networks.end(&record.name);
                return Err(e);
            }
            log::debug!("network {}: created host shim {}", record.name, shim.link);
        }
        record.state = NetworkState::Ready;
        if let Err(e) = self.networks.save(&record) {
            if let Some(shim) = &record.host_shim {
                let _ = crate::shim::remove(&self.nl, shim, &self.shim_mark(&record), true);
            }
            let _ = parent::remove(&self.nl, &record.parent, &mark, false);
            let _ = self.networks.remove(&record.name);
            self.networks.end(&record.name);
            return Err(e);
        }
        self.networks.end(&record.name);
        // Make the endpoint state now, so that attaches (failed ones
        // included) only ever add to it.
        self.endpoints.add_network(&record)?;
        log::info!(
            "created network {} ({} on {})",
            record.name,
            record.driver,
            record.parent.name
        );
        Ok(record)
    }

    /// The network's subnets: the given ones (they may overlap other
    /// networks': each network is its own parent's L2 segment, as in
    /// today's Docker); missing families from the default pools, which
    /// avoid every subnet in use; gateways inferred.
    fn complete_ipam(
        &self,
        spec: &NetworkSpec,
        records: &[NetworkRecord],
    ) -> Result<NetworkIpamConfig> {
        let existing: Vec<(String, Vec<IpNet>)> = records
            .iter()
            .map(|r| (r.name.clone(), r.ipam.prefixes().collect()))
            .collect();
        let mut ipam = spec.ipam().clone();
        let (ipv4, ipv6) = spec.families();
        let has =
            |ipam: &NetworkIpamConfig, v4: bool| ipam.prefixes().any(|p| p.addr().is_ipv4() == v4);
        if (ipv4 && !has(&ipam, true)) || (ipv6 && !has(&ipam, false)) {
            let mut in_use: Vec<IpNet> = existing
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .collect();
            in_use.extend(self.host_prefixes()?);
            in_use.extend(self.reserved_prefixes.iter().copied());
            if ipv4 && !has(&ipam, true) {
                let subnet = self.default_pools.pick_ipv4(in_use.iter().copied())?;
                ipam.add_subnet(SubnetConfig::new(subnet)?)?;
                in_use.push(subnet);
            }
            if ipv6 && !has(&ipam, false) {
                let mut global_id = [0u8; 5];
                crate::random::fill(&mut global_id)?;
                let subnet = self.default_pools.pick_ipv6(global_id, in_use)?;
                ipam.add_subnet(SubnetConfig::new(subnet)?)?;
            }
        }
        if !spec.no_gateway() {
            ipam.infer_gateways();
        }
        ipam.check_allocatable()?;
        Ok(ipam)
    }

    /// Prefixes on the host's links and in its main routing tables, which
    /// default pools avoid.
    fn host_prefixes(&self) -> Result<Vec<IpNet>> {
        let nl = &self.nl;
        let mut out: Vec<IpNet> = nl
            .addresses(None)?
            .into_iter()
            .map(|a| a.address.trunc())
            .filter(|p| !p.addr().is_loopback())
            .collect();
        for family in [IpFamily::V4, IpFamily::V6] {
            out.extend(nl.routes(family)?.into_iter().filter_map(|r| r.destination));
        }
        Ok(out)
    }
}
