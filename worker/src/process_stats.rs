//! This process's memory and CPU use, read from /proc (Linux), for heartbeats and benchmarks.

use std::time::Instant;

/// Resident set size in MiB, if /proc is readable.
pub fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) in seconds, if /proc is readable.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // /proc reports clock ticks of USER_HZ, which is 100 on every Linux ABI we run on.
    Some((utime + stime) / 100.0)
}

/// CPU use between two calls, in percent of one core.
#[derive(Debug)]
pub struct CpuSampler {
    last_cpu: f64,
    last_at: Instant,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self {
            last_cpu: cpu_seconds().unwrap_or(0.0),
            last_at: Instant::now(),
        }
    }
}

impl CpuSampler {
    pub fn percent(&mut self) -> f64 {
        let cpu = cpu_seconds().unwrap_or(self.last_cpu);
        let wall = self.last_at.elapsed().as_secs_f64();
        let pct = if wall > 0.0 {
            (cpu - self.last_cpu) / wall * 100.0
        } else {
            0.0
        };
        self.last_cpu = cpu;
        self.last_at = Instant::now();
        (pct * 10.0).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_mb().is_some_and(|mb| mb > 0.0));
        assert!(cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(CpuSampler::default().percent() >= 0.0);
    }
}
