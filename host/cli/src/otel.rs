//! `wasmgate serve`'s tracing flags ([`TraceArgs`]), each also read from the standard `OTEL_*`
//! variable the OpenTelemetry specification names, and their validation into a [`TraceConfig`].
//! Tracing is on when an endpoint is given (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and `OTEL_SDK_DISABLED` is not `true`.

use std::time::Duration;

use anyhow::{Context, bail};
use wasmgate_gateway::observe::traces::{
    self, DEFAULT_EXPORT_TIMEOUT, DEFAULT_SERVICE_NAME, DEFAULT_TRACE_BATCH, DEFAULT_TRACE_DELAY,
    DEFAULT_TRACE_QUEUE, MAX_TRACE_QUEUE, SamplerSetting, TraceConfig,
};

/// The tracing flags of `wasmgate serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// Export traces with OTLP over HTTP (protobuf) to this collector, e.g. http://127.0.0.1:4318;
    /// spans go to its /v1/traces. Tracing is off without it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// The collector's full traces URL, used as it is (overrides --otlp-endpoint).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_name = "URL")]
    pub otlp_traces_endpoint: Option<String>,

    /// Headers sent with every export, as key=value,key=value (values %-encoded), e.g. a
    /// collector's API key. OTEL_EXPORTER_OTLP_TRACES_HEADERS, when set, is used instead.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", value_name = "LIST")]
    pub otlp_headers: Option<String>,

    /// Headers for the traces export only (replaces --otlp-headers).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_HEADERS", hide = true)]
    pub otlp_traces_headers: Option<String>,

    /// The spans' service.name.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = DEFAULT_SERVICE_NAME)]
    pub otel_service_name: String,

    /// Which traces are recorded: always_on, always_off, traceidratio, parentbased_always_on,
    /// parentbased_always_off or parentbased_traceidratio ("parentbased": as the caller's
    /// traceparent says, when there is one).
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        default_value = "parentbased_always_on"
    )]
    pub traces_sampler: String,

    /// The ratio of the *traceidratio samplers, from 0 to 1.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", value_name = "RATIO")]
    pub traces_sampler_arg: Option<String>,

    /// Spans waiting for export at most; past it, new spans are dropped (and counted in
    /// wasmgate_trace_spans_dropped_total): requests never wait for the collector.
    #[arg(long, env = "OTEL_BSP_MAX_QUEUE_SIZE", default_value_t = DEFAULT_TRACE_QUEUE)]
    pub trace_queue: usize,

    /// Spans in one export at most.
    #[arg(long, env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", default_value_t = DEFAULT_TRACE_BATCH)]
    pub trace_batch: usize,

    /// How long a span waits for its batch to fill, in milliseconds.
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", default_value_t = DEFAULT_TRACE_DELAY.as_millis() as u64, value_name = "MS")]
    pub trace_delay_ms: u64,

    /// How long one export may take, in milliseconds (its spans are dropped after that).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TIMEOUT", default_value_t = DEFAULT_EXPORT_TIMEOUT.as_millis() as u64, value_name = "MS")]
    pub otlp_timeout_ms: u64,
}

impl TraceArgs {
    /// The validated configuration, `None` when tracing is off.
    pub fn into_config(self) -> anyhow::Result<Option<TraceConfig>> {
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let endpoint = traces::traces_endpoint(
            self.otlp_endpoint.as_deref(),
            self.otlp_traces_endpoint.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        let (Some(endpoint), false) = (endpoint, disabled) else {
            return Ok(None);
        };
        let headers = match self.otlp_traces_headers.or(self.otlp_headers) {
            Some(list) => traces::parse_headers(&list).map_err(anyhow::Error::msg)?,
            None => Vec::new(),
        };
        let sampler =
            SamplerSetting::parse(&self.traces_sampler, self.traces_sampler_arg.as_deref())
                .map_err(anyhow::Error::msg)
                .context("--traces-sampler (OTEL_TRACES_SAMPLER)")?;
        if self.trace_queue == 0 || self.trace_queue > MAX_TRACE_QUEUE {
            bail!("--trace-queue (OTEL_BSP_MAX_QUEUE_SIZE) must be from 1 to {MAX_TRACE_QUEUE}");
        }
        if self.trace_batch == 0 {
            bail!("--trace-batch (OTEL_BSP_MAX_EXPORT_BATCH_SIZE) must be at least 1");
        }
        if self.otlp_timeout_ms == 0 {
            bail!("--otlp-timeout-ms (OTEL_EXPORTER_OTLP_TIMEOUT) must be more than zero");
        }
        if self.otel_service_name.trim().is_empty() {
            bail!("--otel-service-name (OTEL_SERVICE_NAME) must not be empty");
        }
        Ok(Some(TraceConfig {
            endpoint,
            headers,
            service_name: self.otel_service_name.trim().to_string(),
            sampler,
            max_queue: self.trace_queue,
            max_batch: self.trace_batch.min(self.trace_queue),
            delay: Duration::from_millis(self.trace_delay_ms),
            timeout: Duration::from_millis(self.otlp_timeout_ms),
        }))
    }
}
