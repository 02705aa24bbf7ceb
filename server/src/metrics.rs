//! Prometheus metrics in the text exposition format, kept in memory per instance.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (count, bound) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (method, route, status) → count
    requests: BTreeMap<(String, String, u16), u64>,
    /// route → latency
    request_seconds: BTreeMap<String, Histogram>,
    /// (lab, step, result) → count
    check_runs: BTreeMap<(String, String, String), u64>,
    check_seconds: Histogram,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner
                .requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
            inner
                .request_seconds
                .entry(route.to_owned())
                .or_default()
                .observe(elapsed.as_secs_f64());
        }
    }

    pub fn record_check_run(&self, lab: &str, step: &str, result: &str, elapsed: Duration) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner
                .check_runs
                .entry((lab.to_owned(), step.to_owned(), result.to_owned()))
                .or_default() += 1;
            inner.check_seconds.observe(elapsed.as_secs_f64());
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(inner) = self.inner.lock() else {
            return out;
        };
        out.push_str(
            "# HELP hardlab_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE hardlab_http_requests_total counter\n");
        for ((method, route, status), count) in &inner.requests {
            let _ = writeln!(
                out,
                "hardlab_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                label(method),
                label(route)
            );
        }
        out.push_str("# HELP hardlab_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE hardlab_http_request_duration_seconds histogram\n");
        for (route, histogram) in &inner.request_seconds {
            histogram.write(
                &mut out,
                "hardlab_http_request_duration_seconds",
                &format!("route=\"{}\"", label(route)),
            );
        }
        out.push_str("# HELP hardlab_check_runs_total Presses of Check by lab, step and result.\n");
        out.push_str("# TYPE hardlab_check_runs_total counter\n");
        for ((lab, step, result), count) in &inner.check_runs {
            let _ = writeln!(
                out,
                "hardlab_check_runs_total{{lab=\"{}\",step=\"{}\",result=\"{}\"}} {count}",
                label(lab),
                label(step),
                label(result)
            );
        }
        out.push_str("# HELP hardlab_check_run_duration_seconds Time to grade one step.\n");
        out.push_str("# TYPE hardlab_check_run_duration_seconds histogram\n");
        inner
            .check_seconds
            .write(&mut out, "hardlab_check_run_duration_seconds", "");
        out
    }
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
