//! Host pressure: how busy the box is, the live signals the resource router
//! (DESIGN.md) weighs before it keeps work local: CPU load, memory in use
//! and, when the engines run on an NVIDIA GPU, GPU memory in use. Read from
//! `/proc` and `nvidia-smi`; the daemon samples them on its main-loop tick
//! and exports them as metrics.

use std::time::Duration;

/// How long `nvidia-smi` may take before the GPU reading is skipped.
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(2);

/// One sample. `None` where the signal could not be read (no GPU, `/proc`
/// hidden), so a missing reading is never mistaken for an idle box.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    /// One-minute load average divided by the cores available (1.0 = every core busy).
    pub cpu_load: Option<f64>,
    /// Share of memory not available to new work (1 − MemAvailable/MemTotal).
    pub memory_used: Option<f64>,
    /// Share of GPU memory in use, the fullest GPU if there are several.
    pub gpu_memory_used: Option<f64>,
}

/// Resident memory of process `pid` in KiB (`VmRSS`), `None` when it is
/// gone: what the soak and the tests report for the daemon's footprint.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads CPU load and memory; GPU memory too when `gpu` (the engines run on
/// one), through `nvidia-smi`. On a Jetson, whose GPU shares system memory
/// and has no `nvidia-smi` memory query, `memory_used` is the GPU's figure.
pub async fn sample(gpu: bool) -> Pressure {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|t| parse_loadavg(&t, cores));
    let memory_used = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| parse_meminfo(&t));
    let gpu_memory_used = if gpu { nvidia_smi_memory().await } else { None };
    Pressure { cpu_load, memory_used, gpu_memory_used }
}

async fn nvidia_smi_memory() -> Option<f64> {
    let query = tokio::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(NVIDIA_SMI_TIMEOUT, query).await.ok()?.ok()?;
    if !output.status.success() {
        return None;
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&output.stdout))
}

/// The one-minute load average per core from `/proc/loadavg`.
pub fn parse_loadavg(text: &str, cores: usize) -> Option<f64> {
    let one_minute: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(one_minute / cores.max(1) as f64)
}

/// 1 − MemAvailable/MemTotal from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| (1.0 - available / total).clamp(0.0, 1.0))
}

/// The fullest GPU's used/total from `nvidia-smi --query-gpu=memory.used,memory.total
/// --format=csv,noheader,nounits` (one "used, total" line per GPU, MiB; "[N/A]" where
/// a board cannot tell).
pub fn parse_nvidia_smi(text: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| {
            let (used, total) = line.split_once(',')?;
            let used: f64 = used.trim().parse().ok()?;
            let total: f64 = total.trim().parse().ok()?;
            (total > 0.0).then(|| used / total)
        })
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn load_is_per_core() {
        assert_eq!(parse_loadavg("1.70 0.90 0.40 2/311 12345\n", 2), Some(0.85));
        assert_eq!(parse_loadavg("", 2), None);
    }

    #[test]
    fn memory_used_is_what_is_not_available() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    6000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(0.75));
        assert_eq!(parse_meminfo("MemTotal: 100 kB\n"), None);
    }

    #[test]
    fn gpu_memory_is_the_fullest_gpu_and_unreadable_boards_are_skipped() {
        assert_eq!(parse_nvidia_smi("1024, 8192\n7168, 8192\n"), Some(0.875));
        assert_eq!(parse_nvidia_smi("[N/A], [N/A]\n"), None);
        assert_eq!(parse_nvidia_smi(""), None);
    }

    #[tokio::test]
    async fn this_host_reports_cpu_and_memory() {
        let pressure = sample(false).await;
        assert!(pressure.cpu_load.unwrap() >= 0.0);
        let memory = pressure.memory_used.unwrap();
        assert!(memory > 0.0 && memory < 1.0, "{memory}");
        assert_eq!(pressure.gpu_memory_used, None);
    }
}
