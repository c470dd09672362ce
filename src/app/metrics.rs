//! The service's counters, rendered as Prometheus text at `GET /metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Questions by platform and outcome (answered, customer, busy, timeout, limited, error, duplicate).
    pub questions: IntCounterVec,
    /// Seconds per stage (route, tool, compose, total) and platform.
    pub stage_seconds: HistogramVec,
    /// Questions waiting for or holding a worker.
    pub queue_depth: IntGauge,
    /// Questions the LLM was consulted on.
    pub llm_consultations: IntCounter,
    /// HTTP requests by route and status.
    pub http: IntCounterVec,
    /// Chat platform calls that failed and were retried, by platform and reason.
    pub platform_retries: IntCounterVec,
    /// Times the shared results were recomputed because the data changed.
    pub data_refreshes: IntCounter,
    /// Customer messages by what became of them (answered, relayed, or the handoff's reason).
    pub support: IntCounterVec,
    /// Composed replies the grounding check stopped (a figure not in the tool's output), by tool: the
    /// plain output was sent instead.
    pub ungrounded_replies: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("dongcha".into()), None).expect("valid prefix");
        let questions = IntCounterVec::new(
            Opts::new("questions_total", "Questions by platform and outcome"),
            &["platform", "outcome"],
        )
        .expect("valid metric");
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("stage_seconds", "Seconds per answering stage").buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["stage", "platform"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new("queue_depth", "Questions waiting for or holding a worker")
            .expect("valid metric");
        let llm_consultations = IntCounter::new(
            "llm_consultations_total",
            "Questions the LLM was consulted on",
        )
        .expect("valid metric");
        let http = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let platform_retries = IntCounterVec::new(
            Opts::new("platform_retries_total", "Chat platform calls retried"),
            &["platform", "reason"],
        )
        .expect("valid metric");
        let data_refreshes = IntCounter::new(
            "data_refreshes_total",
            "Shared results recomputed after a data change",
        )
        .expect("valid metric");
        let support = IntCounterVec::new(
            Opts::new(
                "support_messages_total",
                "Customer messages: answered from the knowledge base, relayed, or handed over (by reason)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let ungrounded_replies = IntCounterVec::new(
            Opts::new(
                "ungrounded_replies_total",
                "Composed replies replaced by the plain tool output: a figure was not in the output",
            ),
            &["tool"],
        )
        .expect("valid metric");
        for c in [
            Box::new(questions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(stage_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(llm_consultations.clone()),
            Box::new(http.clone()),
            Box::new(platform_retries.clone()),
            Box::new(data_refreshes.clone()),
            Box::new(support.clone()),
            Box::new(ungrounded_replies.clone()),
        ] {
            registry.register(c).expect("metrics registered once");
        }
        Self {
            registry,
            questions,
            stage_seconds,
            queue_depth,
            llm_consultations,
            http,
            platform_retries,
            data_refreshes,
            support,
            ungrounded_replies,
        }
    }

    /// A chat platform call that failed and is tried again.
    pub fn retried(&self, platform: &str, reason: &str) {
        self.platform_retries
            .with_label_values(&[platform, reason])
            .inc();
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .ok();
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
