//! Prometheus metrics (text exposition format), kept as plain atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Request counters and latency histogram.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_sum_us: AtomicU64,
    duration_count: AtomicU64,
    in_flight: AtomicU64,
    /// Blob bytes received by uploads.
    pub bytes_received: AtomicU64,
    /// Blob bytes sent by GET.
    pub bytes_sent: AtomicU64,
    /// Completed blob uploads.
    pub uploads_completed: AtomicU64,
    /// Manifests pushed.
    pub manifests_pushed: AtomicU64,
}

impl Metrics {
    /// Marks a request as started.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished request.
    pub fn record(&self, method: &str, status: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((method.to_string(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP skiff_registry_requests_total HTTP requests by method and status.\n");
        s.push_str("# TYPE skiff_registry_requests_total counter\n");
        for ((m, st), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                s,
                "skiff_registry_requests_total{{method=\"{m}\",status=\"{st}\"}} {n}"
            );
        }
        s.push_str("# HELP skiff_registry_request_duration_seconds Request latency.\n");
        s.push_str("# TYPE skiff_registry_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "skiff_registry_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "skiff_registry_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "skiff_registry_request_duration_seconds_sum {}",
            self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "skiff_registry_request_duration_seconds_count {count}");
        for (name, help, kind, v) in [
            (
                "in_flight_requests",
                "Requests being served.",
                "gauge",
                &self.in_flight,
            ),
            (
                "blob_bytes_received_total",
                "Blob bytes uploaded.",
                "counter",
                &self.bytes_received,
            ),
            (
                "blob_bytes_sent_total",
                "Blob bytes served.",
                "counter",
                &self.bytes_sent,
            ),
            (
                "uploads_completed_total",
                "Blob uploads completed.",
                "counter",
                &self.uploads_completed,
            ),
            (
                "manifests_pushed_total",
                "Manifests pushed.",
                "counter",
                &self.manifests_pushed,
            ),
        ] {
            let _ = writeln!(s, "# HELP skiff_registry_{name} {help}");
            let _ = writeln!(s, "# TYPE skiff_registry_{name} {kind}");
            let _ = writeln!(s, "skiff_registry_{name} {}", v.load(Ordering::Relaxed));
        }
        s
    }
}
