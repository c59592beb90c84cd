//! Gateway metrics in the Prometheus text exposition format (version 0.0.4).
//!
//! Exposes the OpenFaaS gateway metric families (same names and labels, so
//! existing dashboards and the OpenFaaS autoscaling rules keep working) plus
//! wasmgate's own runtime metrics. Only `std` is used.
//!
//! Hot path: recording takes a shared (read) lock on the function map, does a
//! single `HashMap` lookup by `&str` (no allocation) and updates atomics. The
//! write lock is only taken the first time a function name (or status code for
//! a function) is seen.
//!
//! Cardinality bound: at most `function_cap` (default [`MAX_SERIES_FUNCTIONS`])
//! distinct function names plus [`OTHER_FUNCTION`] are tracked. Per tracked
//! function there is one series per distinct HTTP status code (a handful in
//! practice, at most 65 536 in theory). `gateway_service_count` is not capped:
//! it only exists for functions the caller deployed and is removed by
//! [`Metrics::forget_function`].
//!
//! Over 600 lines: one noun, the gateway's metric registry (recording on the request path and its
//! exposition, about 430 lines); the last 300 are the tests of the exposition.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};

use super::connectors::ConnectorCounts;
use super::histogram::Histogram;
use super::prometheus::{escape_label, header, sample};

/// Content type of the output of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Default maximum number of distinct function names that get their own series.
///
/// Function names come from request paths, so a client can invoke arbitrarily
/// many non-existent functions. Without a cap each new name would create new
/// series forever (counters are never removed), growing memory and the scrape
/// size without bound and eventually overloading the gateway and Prometheus.
/// Beyond the cap, new names are aggregated under [`OTHER_FUNCTION`].
pub const MAX_SERIES_FUNCTIONS: usize = 10_000;

/// `function_name` label value used for functions beyond the cap.
pub const OTHER_FUNCTION: &str = "_other";

/// Buckets (seconds) for request and compile durations; `+Inf` is implicit.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets (seconds) for instantiation, which is much faster than a request.
const INSTANTIATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1,
];

/// Per-function series (everything labelled only by function, plus per-code).
struct FunctionStats {
    started: AtomicU64,
    cold_starts: AtomicU64,
    /// When the last cold start began, in milliseconds since the Unix epoch; 0 if never.
    last_cold_start_ms: AtomicU64,
    /// Calls it received from other functions (also counted as invocations).
    calls_from_functions: AtomicU64,
    compile: Histogram,
    /// Sorted by status code. The histogram count doubles as the
    /// `gateway_function_invocation_total` counter for that code.
    by_code: RwLock<Vec<(u16, Histogram)>>,
}

impl FunctionStats {
    fn new() -> Self {
        FunctionStats {
            started: AtomicU64::new(0),
            cold_starts: AtomicU64::new(0),
            last_cold_start_ms: AtomicU64::new(0),
            calls_from_functions: AtomicU64::new(0),
            compile: Histogram::new(DURATION_BUCKETS),
            by_code: RwLock::new(Vec::new()),
        }
    }

    fn finished(&self, status: u16, seconds: f64) {
        {
            let codes = self.by_code.read().unwrap_or_else(|p| p.into_inner());
            if let Ok(i) = codes.binary_search_by_key(&status, |(c, _)| *c) {
                codes[i].1.observe(seconds);
                return;
            }
        }
        let mut codes = self.by_code.write().unwrap_or_else(|p| p.into_inner());
        let i = match codes.binary_search_by_key(&status, |(c, _)| *c) {
            Ok(i) => i,
            Err(i) => {
                codes.insert(i, (status, Histogram::new(DURATION_BUCKETS)));
                i
            }
        };
        codes[i].1.observe(seconds);
    }
}

/// All gateway metrics. Cheap to record into from many threads; share it as
/// `Arc<Metrics>`.
pub struct Metrics {
    function_cap: usize,
    functions: RwLock<HashMap<String, FunctionStats>>,
    replicas: Mutex<BTreeMap<String, u64>>,
    instantiation: Histogram,
    instances_in_use: AtomicI64,
    idle_evicted: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    functions_loaded: AtomicU64,
    /// What the event connectors count, rendered with the rest.
    pub connectors: ConnectorCounts,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates an empty registry capped at [`MAX_SERIES_FUNCTIONS`] functions.
    pub fn new() -> Metrics {
        Self::with_function_cap(MAX_SERIES_FUNCTIONS)
    }

    /// Creates an empty registry tracking at most `cap` distinct function names
    /// (further names go to [`OTHER_FUNCTION`]). Mainly for tests.
    pub fn with_function_cap(cap: usize) -> Metrics {
        Metrics {
            function_cap: cap,
            functions: RwLock::new(HashMap::new()),
            replicas: Mutex::new(BTreeMap::new()),
            instantiation: Histogram::new(INSTANTIATION_BUCKETS),
            instances_in_use: AtomicI64::new(0),
            idle_evicted: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            functions_loaded: AtomicU64::new(0),
            connectors: ConnectorCounts::default(),
        }
    }

    /// Runs `f` on the stats of `function` (or of [`OTHER_FUNCTION`] once the
    /// cap is reached), creating them on first use.
    fn with_stats<R>(&self, function: &str, f: impl FnOnce(&FunctionStats) -> R) -> R {
        {
            let map = self.functions.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = map.get(function) {
                return f(s);
            }
            if self.at_cap(&map)
                && let Some(s) = map.get(OTHER_FUNCTION)
            {
                return f(s);
            }
        }
        let mut map = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let key = if map.contains_key(function) || !self.at_cap(&map) {
            function
        } else {
            OTHER_FUNCTION
        };
        let stats = map
            .entry(key.to_string())
            .or_insert_with(FunctionStats::new);
        f(stats)
    }

    fn at_cap(&self, map: &HashMap<String, FunctionStats>) -> bool {
        let real = map.len() - usize::from(map.contains_key(OTHER_FUNCTION));
        real >= self.function_cap
    }

    /// Records that a request for `function` ("name.namespace") started.
    pub fn invocation_started(&self, function: &str) {
        self.with_stats(function, |s| s.started.fetch_add(1, Relaxed));
    }

    /// Records a finished request with its HTTP `status` and duration in seconds.
    pub fn invocation_finished(&self, function: &str, status: u16, seconds: f64) {
        self.with_stats(function, |s| s.finished(status, seconds));
    }

    /// Records a request that had to load/compile `function` first, and when.
    pub fn cold_start(&self, function: &str) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.with_stats(function, |s| {
            s.cold_starts.fetch_add(1, Relaxed);
            s.last_cold_start_ms.fetch_max(now_ms, Relaxed);
        });
    }

    /// Records how long compiling `function` took, in seconds.
    pub fn compiled(&self, function: &str, seconds: f64) {
        self.with_stats(function, |s| s.compile.observe(seconds));
    }

    /// Records how long instantiating a module took, in seconds.
    pub fn instantiated(&self, seconds: f64) {
        self.instantiation.observe(seconds);
    }

    /// Increments `wasmgate_instances_in_use`.
    pub fn instance_acquired(&self) {
        self.instances_in_use.fetch_add(1, Relaxed);
    }

    /// Decrements `wasmgate_instances_in_use`.
    pub fn instance_released(&self) {
        self.instances_in_use.fetch_sub(1, Relaxed);
    }

    /// Counts a module cache hit.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    /// Counts a module cache miss.
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }

    /// Sets `wasmgate_functions_loaded`.
    pub fn set_functions_loaded(&self, n: u64) {
        self.functions_loaded.store(n, Relaxed);
    }

    /// Sets `gateway_service_count` (replicas) for a deployed `function`.
    pub fn set_replicas(&self, function: &str, replicas: u64) {
        let mut map = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(function) {
            Some(v) => *v = replicas,
            None => {
                map.insert(function.to_string(), replicas);
            }
        }
    }

    /// Removes the `gateway_service_count` series of a deleted `function`.
    /// Its counters and histograms stay, as Prometheus expects of counters.
    pub fn forget_function(&self, function: &str) {
        let mut map = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(function);
    }

    /// Total finished invocations of `function` over all status codes
    /// (for `FunctionStatus.invocationCount`). 0 for functions beyond the cap.
    pub fn invocation_count(&self, function: &str) -> u64 {
        let map = self.functions.read().unwrap_or_else(|p| p.into_inner());
        map.get(function).map_or(0, |s| {
            let codes = s.by_code.read().unwrap_or_else(|p| p.into_inner());
            codes.iter().map(|(_, h)| h.count()).sum()
        })
    }

    /// Renders every metric family in the text exposition format, with series
    /// sorted by `function_name` and then `code`. Functions that never compiled
    /// get no `wasmgate_compile_seconds` series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let map = self.functions.read().unwrap_or_else(|p| p.into_inner());
        let mut sorted: Vec<(&String, &FunctionStats)> = map.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let fns: Vec<(String, &FunctionStats)> = sorted
            .into_iter()
            .map(|(k, v)| (escape_label(k), v))
            .collect();

        let name = "gateway_function_invocation_total";
        header(
            &mut out,
            name,
            "counter",
            "Function invocations by HTTP status code.",
        );
        each_code(&fns, |labels, h| {
            sample(&mut out, name, &labels, h.count());
        });
        let name = "gateway_functions_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Function invocation duration in seconds.",
        );
        each_code(&fns, |labels, h| h.render(&mut out, name, &labels));
        let name = "gateway_function_invocation_started";
        header(&mut out, name, "counter", "Function invocations started.");
        each_fn(&mut out, &fns, name, |s| s.started.load(Relaxed));
        let name = "gateway_service_count";
        header(&mut out, name, "gauge", "Number of function replicas.");
        for (f, v) in self
            .replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = format!("function_name=\"{}\"", escape_label(f));
            sample(&mut out, name, &labels, v);
        }
        let name = "wasmgate_cold_starts_total";
        header(
            &mut out,
            name,
            "counter",
            "Requests that had to load/compile first.",
        );
        each_fn(&mut out, &fns, name, |s| s.cold_starts.load(Relaxed));
        let name = "wasmgate_last_cold_start_timestamp_seconds";
        header(
            &mut out,
            name,
            "gauge",
            "When the function last had to load/compile for a request, in seconds since the Unix epoch.",
        );
        for (f, s) in fns.iter() {
            let ms = s.last_cold_start_ms.load(Relaxed);
            if ms > 0 {
                let _ = writeln!(
                    out,
                    "{name}{{function_name=\"{f}\"}} {}.{:03}",
                    ms / 1000,
                    ms % 1000
                );
            }
        }
        let name = "wasmgate_function_calls_total";
        header(
            &mut out,
            name,
            "counter",
            "Invocations that came from other functions (http://NAME.NAMESPACE/), served in process.",
        );
        each_fn(&mut out, &fns, name, |s| {
            s.calls_from_functions.load(Relaxed)
        });
        let name = "wasmgate_compile_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Module compile time in seconds.",
        );
        for (f, s) in fns.iter().filter(|(_, s)| s.compile.count() > 0) {
            s.compile
                .render(&mut out, name, &format!("function_name=\"{f}\""));
        }
        drop(map);

        let name = "wasmgate_instantiation_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Module instantiation time in seconds.",
        );
        self.instantiation.render(&mut out, name, "");
        let plain = [
            (
                "wasmgate_instances_in_use",
                "gauge",
                "Instances currently in use.",
                self.instances_in_use.load(Relaxed).to_string(),
            ),
            (
                "wasmgate_idle_instances_evicted_total",
                "counter",
                "Instances kept for reuse dropped to make room in a full pool.",
                self.idle_evicted.load(Relaxed).to_string(),
            ),
            (
                "wasmgate_cache_hits_total",
                "counter",
                "Module cache hits.",
                self.cache_hits.load(Relaxed).to_string(),
            ),
            (
                "wasmgate_cache_misses_total",
                "counter",
                "Module cache misses.",
                self.cache_misses.load(Relaxed).to_string(),
            ),
            (
                "wasmgate_functions_loaded",
                "gauge",
                "Functions currently loaded.",
                self.functions_loaded.load(Relaxed).to_string(),
            ),
        ];
        for (name, kind, help, value) in plain {
            header(&mut out, name, kind, help);
            sample(&mut out, name, "", value);
        }
        self.connectors.render(&mut out);
        out
    }
}

/// Calls `f` with the label string and histogram of every (function, code) series.
fn each_code(fns: &[(String, &FunctionStats)], mut f: impl FnMut(String, &Histogram)) {
    for (name, s) in fns {
        let codes = s.by_code.read().unwrap_or_else(|p| p.into_inner());
        for (code, h) in codes.iter() {
            f(format!("function_name=\"{name}\",code=\"{code}\""), h);
        }
    }
}

/// Writes one `metric{function_name="..."} value` line per function.
fn each_fn(
    out: &mut String,
    fns: &[(String, &FunctionStats)],
    metric: &str,
    value: impl Fn(&FunctionStats) -> u64,
) {
    for (name, s) in fns {
        sample(out, metric, &format!("function_name=\"{name}\""), value(s));
    }
}

/// The runtime reports its events straight into the metrics.
impl wasmgate_runtime::Observer for Metrics {
    fn cold_start(&self, function: &str) {
        Metrics::cold_start(self, function);
        self.cache_miss();
    }
    fn warm_start(&self, _function: &str) {
        self.cache_hit();
    }
    fn compiled(&self, function: &str, seconds: f64) {
        Metrics::compiled(self, function, seconds);
    }
    fn instantiated(&self, seconds: f64) {
        Metrics::instantiated(self, seconds);
    }
    fn instance_acquired(&self) {
        Metrics::instance_acquired(self);
    }
    fn instance_released(&self) {
        Metrics::instance_released(self);
    }
    fn idle_instance_evicted(&self) {
        self.idle_evicted.fetch_add(1, Relaxed);
    }
    fn call_started(&self, _caller: &str, callee: &str) {
        self.invocation_started(callee);
        self.with_stats(callee, |s| s.calls_from_functions.fetch_add(1, Relaxed));
    }
    fn call_finished(&self, _caller: &str, callee: &str, status: u16, seconds: f64) {
        self.invocation_finished(callee, status, seconds);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const FAMILIES: &[(&str, &str)] = &[
        ("gateway_function_invocation_total", "counter"),
        ("gateway_functions_seconds", "histogram"),
        ("gateway_function_invocation_started", "counter"),
        ("gateway_service_count", "gauge"),
        ("wasmgate_cold_starts_total", "counter"),
        ("wasmgate_last_cold_start_timestamp_seconds", "gauge"),
        ("wasmgate_function_calls_total", "counter"),
        ("wasmgate_compile_seconds", "histogram"),
        ("wasmgate_instantiation_seconds", "histogram"),
        ("wasmgate_instances_in_use", "gauge"),
        ("wasmgate_idle_instances_evicted_total", "counter"),
        ("wasmgate_cache_hits_total", "counter"),
        ("wasmgate_cache_misses_total", "counter"),
        ("wasmgate_functions_loaded", "gauge"),
    ];

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    /// Value of the sample line starting with `series ` (exact series match).
    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
            .expect("series present");
        line[series.len() + 1..].parse().expect("float value")
    }

    /// Parses `name{k="v",...} value` or `name value`; returns (name, labels).
    fn parse_sample(line: &str) -> (String, Vec<(String, String)>) {
        let (series, val) = line.rsplit_once(' ').expect("space before value");
        assert!(
            matches!(val, "+Inf" | "-Inf" | "NaN") || val.parse::<f64>().is_ok(),
            "bad value in {line:?}"
        );
        let (name, rest) = match series.find('{') {
            Some(i) => (&series[..i], Some(&series[i + 1..])),
            None => (series, None),
        };
        let ok_name = name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        assert!(!name.is_empty() && ok_name, "bad name in {line:?}");
        let mut labels = Vec::new();
        if let Some(mut rest) = rest {
            while !rest.starts_with('}') {
                let (key, after) = rest.split_once("=\"").expect("label key");
                let mut v = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().expect("unterminated label value") {
                        (_, '\\') => match chars.next().expect("escape").1 {
                            'n' => v.push('\n'),
                            c @ ('\\' | '"') => v.push(c),
                            c => panic!("bad escape \\{c} in {line:?}"),
                        },
                        (i, '"') => break i,
                        (_, c) => v.push(c),
                    }
                };
                labels.push((key.to_string(), v));
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            assert_eq!(rest, "}", "trailing text in {line:?}");
        }
        (name.to_string(), labels)
    }

    #[test]
    fn invocation_counts_by_code() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.invocation_started("hello.openfaas-fn");
            m.invocation_finished("hello.openfaas-fn", 200, 0.01);
        }
        m.invocation_finished("hello.openfaas-fn", 500, 0.02);
        let text = m.render();
        let l = lines(&text);
        let t = "gateway_function_invocation_total{function_name=\"hello.openfaas-fn\",code=";
        assert!(l.contains(&format!("{t}\"200\"}} 3").as_str()), "{text}");
        assert!(l.contains(&format!("{t}\"500\"}} 1").as_str()), "{text}");
        assert!(l.contains(
            &"gateway_function_invocation_started{function_name=\"hello.openfaas-fn\"} 3"
        ));
        assert_eq!(m.invocation_count("hello.openfaas-fn"), 4);
        assert_eq!(m.invocation_count("absent.openfaas-fn"), 0);
        // Deterministic: 200 before 500.
        let i200 = text.find("code=\"200\"}").expect("200");
        let i500 = text.find("code=\"500\"}").expect("500");
        assert!(i200 < i500);
    }

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::new();
        m.invocation_finished("f.ns", 200, 0.003);
        m.invocation_finished("f.ns", 200, 0.2);
        let text = m.render();
        let b = |le: &str| {
            value(
                &text,
                &format!(
                    "gateway_functions_seconds_bucket{{function_name=\"f.ns\",code=\"200\",le=\"{le}\"}}"
                ),
            )
        };
        for (le, want) in [
            ("0.0005", 0.0),
            ("0.0025", 0.0),
            ("0.005", 1.0),
            ("0.1", 1.0),
        ] {
            assert_eq!(b(le), want, "le={le}");
        }
        for le in ["0.25", "1", "10", "+Inf"] {
            assert_eq!(b(le), 2.0, "le={le}");
        }
        let l = "{function_name=\"f.ns\",code=\"200\"}";
        assert_eq!(
            value(&text, &format!("gateway_functions_seconds_count{l}")),
            2.0
        );
        let sum = value(&text, &format!("gateway_functions_seconds_sum{l}"));
        assert!((sum - 0.203).abs() < 1e-9, "sum {sum}");
        let mut prev = 0.0;
        for line in text
            .lines()
            .filter(|l| l.starts_with("gateway_functions_seconds_bucket"))
        {
            let v: f64 = line.rsplit_once(' ').expect("v").1.parse().expect("f64");
            assert!(v >= prev, "not cumulative: {line}");
            prev = v;
        }
        m.instantiated(0.00003);
        m.instantiated(f64::NAN);
        let text = m.render();
        let inst = "wasmgate_instantiation_seconds";
        assert_eq!(
            value(&text, &format!("{inst}_bucket{{le=\"0.00001\"}}")),
            1.0
        );
        assert_eq!(
            value(&text, &format!("{inst}_bucket{{le=\"0.00005\"}}")),
            2.0
        );
        assert_eq!(value(&text, &format!("{inst}_count")), 2.0);
        assert!((value(&text, &format!("{inst}_sum")) - 0.00003).abs() < 1e-12);
    }

    #[test]
    fn label_escaping() {
        for (raw, want) in [
            ("a\"b", "a\\\"b"),
            ("a\\b", "a\\\\b"),
            ("a\nb", "a\\nb"),
            ("plain.ns", "plain.ns"),
        ] {
            assert_eq!(escape_label(raw), want);
            let m = Metrics::new();
            m.cold_start(raw);
            let line = format!("wasmgate_cold_starts_total{{function_name=\"{want}\"}} 1");
            let text = m.render();
            assert!(lines(&text).contains(&line.as_str()), "{text}");
            let sample = text.lines().find(|l| l.starts_with("wasmgate_cold"));
            let (_, labels) = parse_sample(sample.expect("sample"));
            assert_eq!(labels, vec![("function_name".to_string(), raw.to_string())]);
        }
    }

    #[test]
    fn every_family_has_help_type_and_valid_samples() {
        let m = Metrics::new();
        assert_eq!(
            m.render().lines().filter(|l| l.starts_with('#')).count(),
            // 14 families of the gateway's own, 3 of the connectors', two lines each.
            34
        );
        assert!(
            !m.render()
                .contains("wasmgate_last_cold_start_timestamp_seconds{"),
            "no cold start yet, no sample"
        );
        m.invocation_started("a.ns");
        m.invocation_finished("a.ns", 200, 0.5);
        m.invocation_finished("odd\"name\n.ns", 404, 20.0);
        m.cold_start("a.ns");
        m.compiled("a.ns", 0.3);
        m.instantiated(0.0001);
        m.instance_acquired();
        m.instance_acquired();
        m.instance_released();
        m.cache_hit();
        m.cache_miss();
        m.set_functions_loaded(7);
        m.set_replicas("a.ns", 1);
        m.set_replicas("b.ns", 2);
        m.set_replicas("b.ns", 3);
        m.forget_function("a.ns");
        let text = m.render();
        for (name, kind) in FAMILIES {
            let help = format!("# HELP {name} ");
            let typ = format!("# TYPE {name} {kind}");
            assert_eq!(text.lines().filter(|l| l.starts_with(&help)).count(), 1);
            assert_eq!(text.lines().filter(|l| *l == typ).count(), 1, "{name}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, _) = parse_sample(line);
            let known = FAMILIES.iter().any(|(f, kind)| {
                name == *f
                    || (*kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name == format!("{f}{s}")))
            });
            assert!(known, "unknown family in {line:?}");
        }
        let l = lines(&text);
        assert!(l.contains(&"gateway_service_count{function_name=\"b.ns\"} 3"));
        assert!(!text.contains("gateway_service_count{function_name=\"a.ns\"}"));
        assert!(l.contains(&"gateway_function_invocation_started{function_name=\"a.ns\"} 1"));
        assert!(l.contains(&"wasmgate_compile_seconds_count{function_name=\"a.ns\"} 1"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        let last = value(
            &text,
            "wasmgate_last_cold_start_timestamp_seconds{function_name=\"a.ns\"}",
        );
        assert!(
            (now - last).abs() < 60.0,
            "last cold start {last}, now {now}"
        );
        assert!(
            !text.contains("wasmgate_last_cold_start_timestamp_seconds{function_name=\"b.ns\"}")
        );
        for want in [
            "wasmgate_instances_in_use 1",
            "wasmgate_cache_hits_total 1",
            "wasmgate_cache_misses_total 1",
            "wasmgate_functions_loaded 7",
            "wasmgate_instantiation_seconds_count 1",
        ] {
            assert!(l.contains(&want), "{want}");
        }
    }

    #[test]
    fn series_cap_folds_into_other() {
        let m = Metrics::with_function_cap(2);
        m.invocation_finished("a.ns", 200, 0.1);
        m.invocation_finished("b.ns", 200, 0.1);
        m.invocation_finished("c.ns", 200, 0.1);
        m.invocation_finished("d.ns", 200, 0.1);
        m.cold_start("e.ns");
        m.invocation_finished("a.ns", 200, 0.1);
        let text = m.render();
        let l = lines(&text);
        let total = |f: &str, n: u64| {
            format!("gateway_function_invocation_total{{function_name=\"{f}\",code=\"200\"}} {n}")
        };
        assert!(l.contains(&total("a.ns", 2).as_str()), "{text}");
        assert!(l.contains(&total("b.ns", 1).as_str()));
        assert!(l.contains(&total(OTHER_FUNCTION, 2).as_str()));
        assert!(l.contains(&"wasmgate_cold_starts_total{function_name=\"_other\"} 1"));
        assert!(!text.contains("c.ns") && !text.contains("d.ns") && !text.contains("e.ns"));
        assert_eq!(m.invocation_count(OTHER_FUNCTION), 2);
        assert_eq!(m.invocation_count("c.ns"), 0);
    }

    #[test]
    fn concurrent_recording_is_exact() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        let code = if (i + t) % 2 == 0 { 200 } else { 502 };
                        m.invocation_finished("hot.ns", code, 0.001);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread panicked");
        }
        assert_eq!(m.invocation_count("hot.ns"), 40_000);
        let text = m.render();
        let l = "{function_name=\"hot.ns\",code=\"200\"}";
        assert_eq!(
            value(&text, &format!("gateway_functions_seconds_count{l}")),
            20_000.0
        );
    }
}
