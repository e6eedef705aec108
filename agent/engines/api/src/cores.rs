//! How many threads one inference may use now. ggml's thread pool meets at
//! a barrier after every operation and its threads spin there: with as many
//! threads as cores and one core taken by other work (Zigbee2MQTT, a
//! database, a compile), every barrier waits for the thread the scheduler
//! put behind that work. Measured on two cores with one busy: whisper tiny.en
//! with 2 threads took 704 ms a clip (127 ms quiet), with 1 thread 166 ms.
//!
//! So each request uses the cores that other work left idle over the last
//! second: a sampler thread reads the machine's CPU time (`/proc/stat`) and
//! hearken's own (this engine, its sibling engines and the daemon that
//! started them, through [`crate::PARENT_ENV`]) every 200 ms; a request
//! subtracts the two over the window. hearken's own work does not count:
//! the intent request that follows a transcription must not see the
//! transcription as a competitor.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the sampler reads the CPU counters.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How far back a request looks.
const WINDOW: Duration = Duration::from_secs(1);
/// `/proc` counts CPU time in these ticks per second (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// An engine's thread choice: its most threads, and whether it leaves the
/// cores other work is using alone (the default) or always uses them all
/// (`--fixed-threads`, to measure what adapting saves).
#[derive(Debug, Clone)]
pub struct ThreadBudget {
    max: usize,
    samples: Option<Arc<Mutex<VecDeque<CpuSample>>>>,
}

/// CPU time at one moment, in ticks: the machine's busy time and hearken's.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    busy: u64,
    hearken: u64,
}

impl ThreadBudget {
    /// A budget of at most `max` threads (at least 1); `adaptive` starts the
    /// sampler (where there is a `/proc`).
    pub fn new(max: usize, adaptive: bool) -> ThreadBudget {
        let max = max.max(1);
        let samples = (adaptive && max > 1 && CpuSample::now().is_some()).then(|| {
            let samples = Arc::new(Mutex::new(VecDeque::new()));
            let writer = samples.clone();
            let spawned = std::thread::Builder::new().name("cpu-sampler".into()).spawn(move || loop {
                if let Some(sample) = CpuSample::now() {
                    let mut window = writer.lock().unwrap_or_else(|p| p.into_inner());
                    window.push_back(sample);
                    while window.front().is_some_and(|s| sample.at.duration_since(s.at) > WINDOW * 2) {
                        window.pop_front();
                    }
                }
                std::thread::sleep(SAMPLE_EVERY);
            });
            spawned.ok().map(|_| samples)
        });
        ThreadBudget { max, samples: samples.flatten() }
    }

    /// The threads for a request starting now: the cores other work left
    /// idle over the last second, rounded, within 1..=max; `max` when not
    /// adaptive or before the sampler has a second of history.
    pub fn now(&self) -> usize {
        let Some(samples) = &self.samples else { return self.max };
        let Some(latest) = CpuSample::now() else { return self.max };
        let oldest = {
            let window = samples.lock().unwrap_or_else(|p| p.into_inner());
            window.iter().find(|s| latest.at.duration_since(s.at) <= WINDOW + SAMPLE_EVERY).copied()
        };
        let Some(oldest) = oldest.filter(|o| latest.at.duration_since(o.at) >= WINDOW / 2) else { return self.max };
        let seconds = latest.at.duration_since(oldest.at).as_secs_f64();
        let others =
            latest.busy.saturating_sub(oldest.busy).saturating_sub(latest.hearken.saturating_sub(oldest.hearken));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        threads_beside(cores, others as f64 / TICKS_PER_SECOND / seconds, self.max)
    }
}

impl CpuSample {
    fn now() -> Option<CpuSample> {
        let at = Instant::now();
        let busy = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(busy_ticks)?;
        Some(CpuSample { at, busy, hearken: hearken_ticks() })
    }
}

/// Threads for a request when other work kept `others` cores busy on
/// average: the free cores (a core counts as taken from half busy on),
/// within 1..=max.
pub fn threads_beside(cores: usize, others: f64, max: usize) -> usize {
    let taken = (others.max(0.0) + 0.5).floor() as usize;
    cores.saturating_sub(taken).clamp(1, max.max(1))
}

/// The machine's busy CPU time in ticks from `/proc/stat` text: the first
/// line's user, nice, system, irq, softirq and steal.
pub fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    (fields.len() >= 4).then(|| at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// A process's CPU time (user + system) and its parent, from its
/// `/proc/<pid>/stat` line.
pub fn process_ticks(stat: &str) -> Option<(u64, u32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ppid(1) … utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime, ppid))
}

/// hearken's CPU time: this process, and when a supervisor started it, the
/// supervisor and every process it started (the other engine).
fn hearken_ticks() -> u64 {
    let read = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let own = read("self").as_deref().and_then(process_ticks).map_or(0, |(ticks, _)| ticks);
    let Some(supervisor) = crate::supervisor().filter(|&s| s == std::os::unix::process::parent_id()) else {
        return own;
    };
    let Ok(processes) = std::fs::read_dir("/proc") else { return own };
    let mut total = 0;
    for entry in processes.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some((ticks, ppid)) = read(&pid.to_string()).as_deref().and_then(process_ticks) {
            if ppid == supervisor || pid == supervisor {
                total += ticks;
            }
        }
    }
    total.max(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_cores_within_one_and_the_most() {
        assert_eq!(threads_beside(2, 0.1, 2), 2);
        assert_eq!(threads_beside(2, 0.97, 2), 1);
        assert_eq!(threads_beside(2, 0.4, 2), 2, "a broker forwarding packets takes no core");
        assert_eq!(threads_beside(2, 5.0, 2), 1, "never no thread");
        assert_eq!(threads_beside(16, 1.0, 4), 4, "never more than --threads");
        assert_eq!(threads_beside(4, 1.2, 4), 3);
    }

    #[test]
    fn cpu_times_are_read_from_proc() {
        let stat = "cpu  10 2 30 400 5 6 7 8 0 0\ncpu0 1 2 3 4\nprocs_running 3\n";
        assert_eq!(busy_ticks(stat), Some(10 + 2 + 30 + 6 + 7 + 8));
        assert_eq!(busy_ticks("intr 5\n"), None);
        let process = "1234 (hearken (x) y) R 77 1 1 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 3 0";
        assert_eq!(process_ticks(process), Some((290, 77)));
        assert!(std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(busy_ticks).is_some());
        assert!(hearken_ticks() > 0 || CpuSample::now().is_some());
    }

    #[test]
    fn without_history_a_request_gets_the_most() {
        assert_eq!(ThreadBudget::new(2, true).now(), 2, "no second of samples yet");
        assert_eq!(ThreadBudget::new(3, false).now(), 3);
    }
}
