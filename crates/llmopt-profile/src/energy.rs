//! Energy of a measured interval: the Linux powercap (RAPL) package counters where readable,
//! otherwise an estimate from the process's CPU time and a watts-per-busy-core figure.

use std::path::{Path, PathBuf};

use crate::report::EnergySource;

/// Where RAPL's package domains live on Linux.
const POWERCAP: &str = "/sys/class/powercap";

/// One package domain: its counter file and the value at which the counter wraps.
#[derive(Debug)]
struct Domain {
    energy_uj: PathBuf,
    max_uj: u64,
    start_uj: u64,
}

/// Reads the RAPL package counters at start and on demand. Empty (and [`EnergyMeter::joules`]
/// `None`) where powercap is missing or unreadable, as on most VMs.
#[derive(Debug)]
pub struct EnergyMeter {
    domains: Vec<Domain>,
}

impl EnergyMeter {
    /// Starts counting on every readable package domain (`intel-rapl:N`, which AMD also uses).
    pub fn start() -> Self {
        Self::start_at(Path::new(POWERCAP))
    }

    fn start_at(root: &Path) -> Self {
        let mut domains = Vec::new();
        let Ok(entries) = std::fs::read_dir(root) else { return Self { domains } };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let name =
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // Package domains only (`intel-rapl:0`), not their sub-zones (`intel-rapl:0:0`).
            if !name.starts_with("intel-rapl:") || name.matches(':').count() != 1 {
                continue;
            }
            let energy_uj = dir.join("energy_uj");
            let (Some(start_uj), Some(max_uj)) =
                (read_u64(&energy_uj), read_u64(&dir.join("max_energy_range_uj")))
            else {
                continue;
            };
            domains.push(Domain { energy_uj, max_uj, start_uj });
        }
        Self { domains }
    }

    /// Whether any counter is readable.
    pub fn available(&self) -> bool {
        !self.domains.is_empty()
    }

    /// Joules since [`EnergyMeter::start`], summed over packages (one counter wrap allowed).
    pub fn joules(&self) -> Option<f64> {
        if self.domains.is_empty() {
            return None;
        }
        let mut uj = 0u64;
        for d in &self.domains {
            let now = read_u64(&d.energy_uj)?;
            uj += if now >= d.start_uj { now - d.start_uj } else { d.max_uj - d.start_uj + now };
        }
        Some(uj as f64 * 1e-6)
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// User plus system CPU seconds of this process, all threads (`/proc/self/stat`, 10 ms ticks).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat)
}

/// Parses `utime` and `stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its closing `)`.
fn cpu_seconds_of(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ, which /proc reports in, is 100 on every Linux ABI.
    Some((utime + stime) as f64 / 100.0)
}

/// How a run's energy is obtained: the counters when readable, else the CPU-time estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EnergyModel {
    /// RAPL package counters (whole packages: other processes' work counts too).
    Rapl,
    /// `cpu_seconds × watts_per_core`.
    Estimate { watts_per_core: f64 },
}

impl EnergyModel {
    /// RAPL when readable, else the estimate with `watts_per_core`.
    pub fn detect(watts_per_core: f64) -> Self {
        if EnergyMeter::start().available() {
            Self::Rapl
        } else {
            Self::Estimate { watts_per_core }
        }
    }

    /// The report's label and explanation.
    pub fn source(&self) -> EnergySource {
        match *self {
            Self::Rapl => EnergySource {
                kind: "rapl".into(),
                detail: "Linux powercap (RAPL) package energy counters, read before and after each \
                         cell; they count the whole CPU packages, so other work on the machine is \
                         included, and DRAM and the rest of the system are not"
                    .into(),
            },
            Self::Estimate { watts_per_core } => EnergySource {
                kind: "estimate".into(),
                detail: format!(
                    "estimate: this process's CPU time (user + system, all threads) × \
                     {watts_per_core} W per busy core (--watts-per-core); no energy counter was \
                     readable (RAPL under /sys/class/powercap is absent or closed, as in most VMs); \
                     idle power, memory and the rest of the machine are not counted"
                ),
            },
        }
    }

    /// Joules of an interval from its counters or CPU time; `None` when neither was available.
    pub fn joules(&self, measured: Option<f64>, cpu_s: Option<f64>) -> Option<f64> {
        match *self {
            Self::Rapl => measured,
            Self::Estimate { watts_per_core } => cpu_s.map(|s| s * watts_per_core),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_a_tricky_command_name() {
        // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime ...
        let line = "4242 (my (odd) prog) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds_of(line), Some(3.0));
        assert_eq!(cpu_seconds_of("garbage"), None);
        assert_eq!(cpu_seconds_of("1 (x) R 1 2"), None);
    }

    #[test]
    fn this_process_has_cpu_time_that_grows() {
        let a = cpu_seconds().expect("/proc/self/stat on Linux");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 60 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = cpu_seconds().unwrap();
        assert!(b >= a + 0.02, "{a} -> {b}");
    }

    #[test]
    fn rapl_counters_from_a_powercap_tree_with_a_wrap() {
        let dir = std::env::temp_dir().join(format!("llmopt-rapl-{}", std::process::id()));
        let pkg = dir.join("intel-rapl:0");
        let sub = dir.join("intel-rapl:0:0");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(pkg.join("energy_uj"), "999000000\n").unwrap();
        std::fs::write(pkg.join("max_energy_range_uj"), "1000000000\n").unwrap();
        // A sub-zone is not counted twice.
        std::fs::write(sub.join("energy_uj"), "5\n").unwrap();
        std::fs::write(sub.join("max_energy_range_uj"), "1000000000\n").unwrap();
        let m = EnergyMeter::start_at(&dir);
        assert!(m.available());
        std::fs::write(pkg.join("energy_uj"), "2000000\n").unwrap();
        // 1 J to the wrap plus 2 J after it.
        assert!((m.joules().unwrap() - 3.0).abs() < 1e-9);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!EnergyMeter::start_at(&dir).available());
    }

    #[test]
    fn the_estimate_is_cpu_time_times_watts() {
        let m = EnergyModel::Estimate { watts_per_core: 8.0 };
        assert_eq!(m.joules(Some(100.0), Some(2.5)), Some(20.0));
        assert_eq!(m.joules(None, None), None);
        assert_eq!(EnergyModel::Rapl.joules(Some(7.0), Some(2.5)), Some(7.0));
        assert!(m.source().detail.contains("8 W per busy core"));
    }
}
