//! `hardlab capacity`: how much host a workshop needs, from the per-node reservation the
//! settings give each learner's cluster (memory and CPU limits; on a Kubernetes host those are
//! also the pods' requests, so the scheduler holds them) and the size of one host.
//!
//! The figure to compare against is measured, not assumed: a kind node running a lab's workloads
//! takes about 1–1.5 GiB (research in docs/architecture.md, "Sizing"), and the test node 350 MiB
//! idle (BENCHMARKS.md); the default 2 GiB limit leaves room above both.

use serde::Serialize;

use crate::config::ClusterSettings;

/// What one host offers learners' nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostSize {
    pub memory_gib: f64,
    pub cpus: f64,
    /// The share kept free for the system, the server and bursts (0.25: a quarter).
    pub headroom: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CapacityPlan {
    pub learners: u64,
    /// Clusters at once: one per learner and the warm pool.
    pub clusters: u64,
    pub node_memory_gib: f64,
    pub node_cpus: f64,
    pub total_memory_gib: f64,
    pub total_cpus: f64,
    /// Nodes one host holds by memory, by CPU, and by the per-host cap of the settings.
    pub per_host_by_memory: u64,
    pub per_host_by_cpu: u64,
    pub per_host_cap: u64,
    pub hosts: u64,
    /// Which of the three limits decides.
    pub limited_by: &'static str,
}

/// The plan for `learners` learners plus `pool_labs` labs' warm pools of the settings' size.
pub fn plan(
    settings: &ClusterSettings,
    learners: u64,
    pool_labs: u64,
    host: HostSize,
) -> Result<CapacityPlan, String> {
    if settings.node_memory_mb <= 0 || settings.node_cpus <= 0.0 {
        return Err(
            "the node memory and CPU limits are off (0): without a per-node reservation no host size can be derived; set --node-memory-mb and --node-cpus".to_owned(),
        );
    }
    if !(0.0..1.0).contains(&host.headroom) || host.memory_gib <= 0.0 || host.cpus <= 0.0 {
        return Err("the host needs memory and CPUs above 0 and a headroom below 1".to_owned());
    }
    let clusters = learners + pool_labs * settings.pool_size as u64;
    // Sizes are small positive numbers; the casts below only round them.
    #[allow(clippy::cast_precision_loss)]
    let node_memory_gib = settings.node_memory_mb as f64 / 1024.0;
    let usable = 1.0 - host.headroom;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let per_host_by_memory = (host.memory_gib * usable / node_memory_gib).floor() as u64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let per_host_by_cpu = (host.cpus * usable / settings.node_cpus).floor() as u64;
    let per_host_cap = settings.max_clusters as u64;
    let (per_host, limited_by) = [
        (per_host_by_memory, "memory"),
        (per_host_by_cpu, "cpu"),
        (per_host_cap, "max-clusters"),
    ]
    .into_iter()
    .min_by_key(|(count, _)| *count)
    .unwrap_or((0, "memory"));
    if per_host == 0 {
        return Err(format!(
            "one host of {} GiB and {} CPUs cannot hold even one node of {node_memory_gib} GiB and {} CPUs with {}% headroom",
            host.memory_gib,
            host.cpus,
            settings.node_cpus,
            (host.headroom * 100.0).round()
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let clusters_f = clusters as f64;
    Ok(CapacityPlan {
        learners,
        clusters,
        node_memory_gib,
        node_cpus: settings.node_cpus,
        total_memory_gib: clusters_f * node_memory_gib,
        total_cpus: clusters_f * settings.node_cpus,
        per_host_by_memory,
        per_host_by_cpu,
        per_host_cap,
        hosts: clusters.div_ceil(per_host),
        limited_by,
    })
}

impl std::fmt::Display for CapacityPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} learners: {} clusters at once (one each, plus the warm pool)",
            self.learners, self.clusters
        )?;
        writeln!(
            f,
            "each node reserves {:.1} GiB and {} CPUs: {:.0} GiB and {:.0} CPUs in all",
            self.node_memory_gib, self.node_cpus, self.total_memory_gib, self.total_cpus
        )?;
        writeln!(
            f,
            "one host holds {} nodes by memory, {} by CPU, {} by the per-host cap (--max-clusters)",
            self.per_host_by_memory, self.per_host_by_cpu, self.per_host_cap
        )?;
        write!(
            f,
            "you need {} host(s) of this size; {} decides",
            self.hosts, self.limited_by
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn host(memory_gib: f64, cpus: f64) -> HostSize {
        HostSize {
            memory_gib,
            cpus,
            headroom: 0.25,
        }
    }

    #[test]
    fn a_workshop_of_200_on_64_gib_hosts_is_sized_by_the_tightest_limit() {
        let settings = ClusterSettings {
            node_memory_mb: 1536,
            node_cpus: 1.0,
            max_clusters: 100,
            ..ClusterSettings::default()
        };
        let plan = plan(&settings, 200, 0, host(64.0, 32.0)).unwrap();
        // 48 GiB usable / 1.5 GiB = 32 by memory, 24 CPUs / 1 = 24 by CPU.
        assert_eq!((plan.per_host_by_memory, plan.per_host_by_cpu), (32, 24));
        assert_eq!(plan.limited_by, "cpu");
        assert_eq!(plan.hosts, 9);
        assert!(plan.to_string().contains("you need 9 host(s)"), "{plan}");
    }

    #[test]
    fn the_warm_pool_counts_and_the_per_host_cap_can_decide() {
        let settings = ClusterSettings {
            pool_size: 2,
            max_clusters: 5,
            ..ClusterSettings::default()
        };
        let plan = plan(&settings, 20, 3, host(256.0, 128.0)).unwrap();
        assert_eq!(plan.clusters, 26);
        assert_eq!(plan.limited_by, "max-clusters");
        assert_eq!(plan.hosts, 6);
    }

    #[test]
    fn a_host_too_small_for_one_node_or_limits_turned_off_say_so() {
        let error = plan(&ClusterSettings::default(), 10, 0, host(2.0, 1.0)).unwrap_err();
        assert!(error.contains("cannot hold even one node"), "{error}");
        let unlimited = ClusterSettings {
            node_memory_mb: 0,
            ..ClusterSettings::default()
        };
        assert!(
            plan(&unlimited, 10, 0, host(64.0, 16.0))
                .unwrap_err()
                .contains("--node-memory-mb")
        );
    }
}
