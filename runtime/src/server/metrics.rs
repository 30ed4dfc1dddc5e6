//! Prometheus metrics of the server: requests, latencies, in-flight and queued requests,
//! rejections, embedding batch sizes, the engines and providers in use, enrolled speakers.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    pub queue_depth: IntGauge,
    pub rejected: IntCounterVec,
    pub batch_size: Histogram,
    pub engine_info: IntGaugeVec,
    pub enrolled: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "voxq_requests_total",
                "HTTP requests by endpoint and status",
            ),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "voxq_request_duration_seconds",
                "HTTP request latency (queue wait included)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let in_flight =
            IntGauge::new("voxq_in_flight", "Requests being processed").expect("valid metric");
        let queue_depth = IntGauge::new(
            "voxq_queue_depth",
            "Requests waiting for a processing slot (--max-concurrent)",
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "voxq_rejected_total",
                "Requests refused by back-pressure (overloaded), cut by --timeout-s (timeout) or by --body-timeout-s (slow_client)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "voxq_batch_size",
                "Utterances per embedding model run (dynamic batching)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )
        .expect("valid metric");
        let engine_info = IntGaugeVec::new(
            Opts::new(
                "voxq_engine_info",
                "Loaded engines: model name, role and ONNX Runtime execution provider",
            ),
            &["model", "role", "provider"],
        )
        .expect("valid metric");
        let enrolled =
            IntGauge::new("voxq_enrolled_speakers", "Speakers in the store").expect("valid metric");
        let registry = Registry::new();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(queue_depth.clone()),
            Box::new(rejected.clone()),
            Box::new(batch_size.clone()),
            Box::new(engine_info.clone()),
            Box::new(enrolled.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            duration,
            in_flight,
            queue_depth,
            rejected,
            batch_size,
            engine_info,
            enrolled,
        }
    }

    /// The text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
