//! The `process_*` metrics every Prometheus exporter has, read from
//! `/proc/self` at each scrape. The `prometheus` crate's own process
//! collector counts CPU in whole seconds (it divides clock ticks by the
//! tick rate in integers), so a proxy using 0.4 s of CPU a minute showed
//! none; this one keeps the fraction.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, IntGauge, Opts};

/// `process_cpu_seconds_total`, memory, file descriptors, threads and the
/// start time of this process.
pub struct ProcessMetrics {
    descs: Vec<Desc>,
    cpu: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    vsize: IntGauge,
    rss: IntGauge,
    start_time: IntGauge,
    threads: IntGauge,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    // The names are constants: a failure is a programming error.
    IntGauge::with_opts(Opts::new(name, help)).expect("process gauge")
}

impl ProcessMetrics {
    pub fn new() -> ProcessMetrics {
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))
        .expect("process cpu counter");
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        );
        if let (Ok(boot), Ok(stat)) = (
            procfs::boot_time_secs(),
            procfs::process::Process::myself().and_then(|p| p.stat()),
        ) {
            let tps = procfs::ticks_per_second().max(1);
            start_time.set((stat.starttime / tps + boot) as i64);
        }
        let m = ProcessMetrics {
            descs: Vec::new(),
            cpu,
            open_fds: gauge("process_open_fds", "Number of open file descriptors."),
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            vsize: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            rss: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            start_time,
            threads: gauge("process_threads", "Number of OS threads in the process."),
        };
        let descs = m
            .collectors()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        ProcessMetrics { descs, ..m }
    }

    fn collectors(&self) -> impl Iterator<Item = &dyn Collector> {
        [
            &self.cpu as &dyn Collector,
            &self.open_fds,
            &self.max_fds,
            &self.vsize,
            &self.rss,
            &self.start_time,
            &self.threads,
        ]
        .into_iter()
    }

    /// Read `/proc/self` into the metrics.
    fn refresh(&self) {
        let Ok(p) = procfs::process::Process::myself() else {
            return;
        };
        if let Ok(n) = p.fd_count() {
            self.open_fds.set(n as i64);
        }
        if let Ok(limits) = p.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                self.max_fds.set(max as i64);
            }
        }
        if let Ok(stat) = p.stat() {
            self.vsize.set(stat.vsize as i64);
            self.rss.set(stat.rss as i64 * procfs::page_size() as i64);
            self.threads.set(stat.num_threads);
            let tps = procfs::ticks_per_second().max(1) as f64;
            let total = (stat.utime + stat.stime) as f64 / tps;
            // Two scrapes at once may both add: only ever move forward.
            let delta = total - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        ProcessMetrics::new()
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        self.collectors().flat_map(|c| c.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_keeps_its_fraction_and_every_metric_is_there() {
        let m = ProcessMetrics::new();
        // Burn some CPU so the counter is above zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let ticks = || {
            let s = procfs::process::Process::myself().unwrap().stat().unwrap();
            (s.utime + s.stime) as f64 / procfs::ticks_per_second() as f64
        };
        let before = ticks();
        let families = m.collect();
        let after = ticks();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for n in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        // The counter is the clock ticks in seconds, fraction kept (the
        // prometheus crate's collector floors it to whole seconds).
        let cpu = m.cpu.get();
        assert!(
            cpu > 0.0 && cpu >= before && cpu <= after,
            "{before} <= {cpu} <= {after}"
        );
    }
}
