//! Facts about the machine a run ran on, the ones that move speed figures: CPU model, cores,
//! memory, OS, and the SIMD features llmopt's kernels choose between at run time.

use std::collections::HashSet;

use serde::Serialize;

/// The machine a run ran on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Host {
    /// CPU model name (`model name` in /proc/cpuinfo), `unknown` where not found.
    pub cpu: String,
    /// Logical CPUs (hardware threads) and physical cores (distinct core ids per package).
    pub logical_cores: u32,
    pub physical_cores: u32,
    /// Total memory in bytes (`MemTotal` in /proc/meminfo), 0 where not found.
    pub memory_bytes: u64,
    /// Distribution, kernel release and architecture, e.g. `Debian GNU/Linux 12 (bookworm); Linux
    /// 6.1.0-18-amd64; x86_64`.
    pub os: String,
    /// SIMD features present, from [`Host::FEATURES`] (detected at run time).
    pub cpu_features: Vec<String>,
}

impl Host {
    /// The CPU features recorded: those llmopt's kernels pick their paths by.
    pub const FEATURES: &'static [&'static str] =
        &["sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni"];

    /// Reads the facts of this machine; what cannot be read is `unknown` or 0, never an error.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = CpuInfo::parse(&read("/proc/cpuinfo"));
        let logical_std = std::thread::available_parallelism().map_or(1, |n| n.get());
        let logical = if cpu.logical > 0 { cpu.logical } else { logical_std };
        let physical = if cpu.physical > 0 { cpu.physical.min(logical) } else { logical };
        let distro = os_release_name(&read("/etc/os-release"));
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
        let kernel = if kernel.is_empty() {
            std::env::consts::OS.to_string()
        } else {
            format!("{} {kernel}", capitalized(std::env::consts::OS))
        };
        let os = [distro, Some(kernel), Some(std::env::consts::ARCH.to_string())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            cpu: cpu.model.unwrap_or_else(|| "unknown".into()),
            logical_cores: u32::try_from(logical).unwrap_or(u32::MAX),
            physical_cores: u32::try_from(physical).unwrap_or(u32::MAX),
            memory_bytes: mem_total_bytes(&read("/proc/meminfo")).unwrap_or(0),
            os,
            cpu_features: detected_features(),
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// What /proc/cpuinfo says about the processor.
#[derive(Debug, Default, PartialEq)]
struct CpuInfo {
    model: Option<String>,
    /// `processor` entries.
    logical: usize,
    /// Distinct (`physical id`, `core id`) pairs.
    physical: usize,
}

impl CpuInfo {
    fn parse(text: &str) -> Self {
        let mut info = Self::default();
        let mut package = String::new();
        let mut cores = HashSet::new();
        for (key, value) in text.lines().filter_map(|l| l.split_once(':')) {
            let value = value.trim();
            match key.trim() {
                "processor" => info.logical += 1,
                "model name" if info.model.is_none() => info.model = Some(value.to_string()),
                "physical id" => package = value.to_string(),
                "core id" => {
                    cores.insert((package.clone(), value.to_string()));
                }
                _ => {}
            }
        }
        info.physical = cores.len();
        info
    }
}

/// `MemTotal` of /proc/meminfo (given in kB) in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `PRETTY_NAME` (else `NAME`) of /etc/os-release, unquoted.
fn os_release_name(text: &str) -> Option<String> {
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_string())
            .filter(|v| !v.is_empty())
    };
    get("PRETTY_NAME").or_else(|| get("NAME"))
}

#[cfg(target_arch = "x86_64")]
fn detected_features() -> Vec<String> {
    macro_rules! present {
        ($($f:tt),*) => { [$(($f, std::arch::is_x86_feature_detected!($f))),*] };
    }
    let found = present!(
        "sse4.2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vnni"
    );
    debug_assert_eq!(found.map(|(f, _)| f), *Host::FEATURES);
    found.iter().filter(|(_, on)| *on).map(|(f, _)| f.to_string()).collect()
}

#[cfg(not(target_arch = "x86_64"))]
fn detected_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_counts_threads_and_cores() {
        // Two packages, two cores each, two threads per core.
        let mut text = String::new();
        for (n, (pkg, core)) in
            [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0), (0, 1), (1, 0), (1, 1)].iter().enumerate()
        {
            text += &format!(
                "processor\t: {n}\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n\
                 physical id\t: {pkg}\ncore id\t\t: {core}\n\n"
            );
        }
        let info = CpuInfo::parse(&text);
        assert_eq!(info.model.as_deref(), Some("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"));
        assert_eq!((info.logical, info.physical), (8, 4));
        assert_eq!(CpuInfo::parse(""), CpuInfo::default());
    }

    #[test]
    fn meminfo_and_os_release() {
        assert_eq!(
            mem_total_bytes("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(25_165_824_000)
        );
        assert_eq!(mem_total_bytes("nothing"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_release_name(os).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os_release_name("NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(os_release_name(""), None);
    }

    #[test]
    fn this_machine_has_facts() {
        let h = Host::detect();
        assert!(h.logical_cores >= 1 && h.physical_cores >= 1, "{h:?}");
        assert!(h.physical_cores <= h.logical_cores, "{h:?}");
        assert!(!h.os.is_empty());
        assert!(h.cpu_features.iter().all(|f| Host::FEATURES.contains(&f.as_str())));
    }
}
