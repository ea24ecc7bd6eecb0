//! The standard `process_*` metrics (CPU, memory, file descriptors, start time), read from
//! `/proc/self` when `/metrics` is scraped. On systems without `/proc` they are left out.

use std::sync::OnceLock;

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`): 100 on every Linux architecture
/// Tessera builds for.
const TICKS_PER_SECOND: f64 = 100.0;
/// Page size of `statm` figures.
const PAGE_BYTES: f64 = 4096.0;

/// Records the process metrics now.
pub fn record() {
    if let Some(stat) = read("/proc/self/stat") {
        record_stat(&stat);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(entries.count() as f64);
    }
    if let Some(limit) = read("/proc/self/limits").and_then(|l| max_open_files(&l)) {
        metrics::gauge!("process_max_fds").set(limit);
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// CPU time, memory and start time from `/proc/self/stat` (proc(5)).
fn record_stat(stat: &str) {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        metrics::gauge!("process_cpu_seconds_total").set((user + system) / TICKS_PER_SECOND);
    }
    if let Some(virtual_bytes) = field(23) {
        metrics::gauge!("process_virtual_memory_bytes").set(virtual_bytes);
    }
    if let Some(pages) = field(24) {
        metrics::gauge!("process_resident_memory_bytes").set(pages * PAGE_BYTES);
    }
    if let (Some(started), Some(boot)) = (field(22), boot_time()) {
        metrics::gauge!("process_start_time_seconds").set(boot + started / TICKS_PER_SECOND);
    }
}

/// Unix seconds of the system's boot (`btime` in `/proc/stat`), read once.
fn boot_time() -> Option<f64> {
    static BOOT: OnceLock<Option<f64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        read("/proc/stat")?
            .lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(max_open_files("nothing"), None);
    }
}
