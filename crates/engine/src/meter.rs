//! CPU and memory of processes, on every platform (sysinfo): the CLI's summary and the
//! benches read their figures here, not from `/proc` by hand.

use std::time::{Duration, Instant};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One process's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// CPU time used since the process started.
    pub cpu_time: Duration,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
}

/// Reads processes' CPU time and memory.
#[derive(Debug)]
pub struct Meter {
    system: System,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    #[must_use]
    pub fn new() -> Self {
        Self {
            system: System::new(),
        }
    }

    /// `pid`'s figures now; `None` when it does not exist (or is not readable).
    pub fn sample(&mut self, pid: u32) -> Option<Sample> {
        let pid = Pid::from_u32(pid);
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let p = self.system.process(pid)?;
        Some(Sample {
            cpu_time: Duration::from_millis(p.accumulated_cpu_time()),
            rss_bytes: p.memory(),
        })
    }

    /// Every process and its parent (pid, parent, name), for finding a process tree.
    pub fn processes(&mut self) -> Vec<(u32, Option<u32>, String)> {
        // Without threads: sysinfo lists each thread (Linux task) as a process of its own,
        // child of its process and with the whole process's memory and CPU, which made every
        // client count about seven times over.
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().without_tasks(),
        );
        self.system
            .processes()
            .iter()
            .filter(|(_, p)| p.thread_kind().is_none())
            .map(|(pid, p)| {
                (
                    pid.as_u32(),
                    p.parent().map(Pid::as_u32),
                    p.name().to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    /// `root` and its descendants; `skip_root` leaves out the root itself.
    pub fn tree(&mut self, root: u32, skip_root: bool) -> Vec<u32> {
        let all = self.processes();
        let mut out = Vec::new();
        let mut todo = vec![root];
        while let Some(p) = todo.pop() {
            if p != root || !skip_root {
                out.push(p);
            }
            todo.extend(
                all.iter()
                    .filter(|(_, parent, _)| *parent == Some(p))
                    .map(|(pid, _, _)| *pid),
            );
        }
        out
    }
}

/// This process's use since it was made: CPU as a percentage of one core, resident memory
/// now, and the highest resident memory seen by [`OwnUsage::sample`].
#[derive(Debug)]
pub struct OwnUsage {
    meter: Meter,
    start: Instant,
    start_cpu: Duration,
    peak_rss: u64,
}

impl Default for OwnUsage {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`OwnUsage::report`] says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_percent: f64,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
}

impl OwnUsage {
    #[must_use]
    pub fn new() -> Self {
        let mut meter = Meter::new();
        let now = meter.sample(std::process::id());
        Self {
            meter,
            start: Instant::now(),
            start_cpu: now.map(|s| s.cpu_time).unwrap_or_default(),
            peak_rss: now.map(|s| s.rss_bytes).unwrap_or_default(),
        }
    }

    /// Samples memory for the peak (call it now and then; it reads a few system files).
    pub fn sample(&mut self) -> Option<Sample> {
        let s = self.meter.sample(std::process::id())?;
        self.peak_rss = self.peak_rss.max(s.rss_bytes);
        Some(s)
    }

    /// The figures since [`OwnUsage::new`].
    pub fn report(&mut self) -> Option<Usage> {
        let s = self.sample()?;
        let elapsed = self.start.elapsed().as_secs_f64();
        let cpu = s.cpu_time.saturating_sub(self.start_cpu).as_secs_f64();
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        Some(Usage {
            cpu_percent: if elapsed > 0.0 {
                100.0 * cpu / elapsed
            } else {
                0.0
            },
            rss_mb: mb(s.rss_bytes),
            peak_rss_mb: mb(self.peak_rss),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_holds_processes_not_threads() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = stopped.recv();
        });
        let me = std::process::id();
        let tree = Meter::new().tree(me, false);
        let _ = stop.send(());
        let _ = thread.join();
        assert_eq!(tree, vec![me], "this test process has threads, no children");
    }

    #[test]
    fn this_process_is_measured_and_a_missing_one_is_none() {
        let mut usage = OwnUsage::new();
        // Burn some CPU and memory so the figures have something to show.
        let mut v = vec![0u8; 32 << 20];
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            for b in v.iter_mut().step_by(4096) {
                x = x.wrapping_mul(31).wrapping_add(u64::from(*b));
                *b = x as u8;
            }
        }
        let Some(u) = usage.report() else {
            panic!("no figures for this process");
        };
        assert!(u.rss_mb > 10.0, "{u:?} (x = {x})");
        assert!(u.peak_rss_mb >= u.rss_mb);
        assert!(u.cpu_percent > 10.0, "{u:?}");
        let mut meter = Meter::new();
        assert!(meter.sample(u32::MAX - 1).is_none());
        assert!(
            meter
                .processes()
                .iter()
                .any(|(pid, _, _)| *pid == std::process::id())
        );
        assert_eq!(
            meter.tree(std::process::id(), false).first(),
            Some(&std::process::id())
        );
        assert!(
            !meter
                .tree(std::process::id(), true)
                .contains(&std::process::id())
        );
        drop(v);
    }
}
