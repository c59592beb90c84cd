//! OTLP's protobuf encoding of spans, written straight from the SDK's `SpanData` into one buffer.
//!
//! `opentelemetry-otlp` first converts every span into its generated protobuf structs (each id,
//! name and attribute copied into new vectors, spans grouped through a map), then encodes those
//! and frees both. At every request sampled, that conversion was the larger half of what tracing
//! cost (BENCHMARKS.md, "where its cost goes"). Here each message is encoded once, in order, from
//! the span as the SDK hands it over; only a span's own bytes are staged, to learn its length.
//!
//! The messages and field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto` and
//! `collector/trace/v1/trace_service.proto` (`ExportTraceServiceRequest`). Default values are left
//! out, as protobuf 3 does; a `oneof` member is always written.

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use std::time::{SystemTime, UNIX_EPOCH};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags`: the flags say whether the parent is remote.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// The encoded `Resource` message, made once when the exporter learns its resource.
pub(crate) fn resource(resource: &Resource) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in resource.iter() {
        key_value(&mut out, 1, key.as_str(), value);
    }
    out
}

/// A span encoded as a `Span` message's fields, with its scope: made when the span ends, on the
/// thread that ended it, so the span's data is freed there, at once, while it is still in cache.
/// Handing the SDK's `SpanData` to the export task instead (its strings and vectors freed later,
/// cold, by another thread) cost more than the encoding itself.
#[derive(Debug)]
pub(crate) struct EncodedSpan {
    scope: InstrumentationScope,
    bytes: Vec<u8>,
}

impl EncodedSpan {
    pub(crate) fn new(span: SpanData) -> EncodedSpan {
        let mut bytes = Vec::with_capacity(256);
        encode_span(&mut bytes, &span, &mut Vec::new());
        EncodedSpan {
            scope: span.instrumentation_scope,
            bytes,
        }
    }
}

/// An `ExportTraceServiceRequest` of `spans`, under the encoded `resource`, with one
/// `ScopeSpans` per instrumentation scope (in the order the scopes first appear).
pub(crate) fn export_request(
    resource: &[u8],
    schema_url: Option<&str>,
    spans: &[EncodedSpan],
) -> Vec<u8> {
    // Almost always one scope: the gateway's tracer.
    let mut scopes: Vec<(&InstrumentationScope, Vec<&[u8]>)> = Vec::new();
    let mut size = resource.len() + 64;
    for span in spans {
        size += span.bytes.len() + 4;
        match scopes.iter_mut().find(|(s, _)| **s == span.scope) {
            Some((_, list)) => list.push(&span.bytes),
            None => scopes.push((&span.scope, vec![&span.bytes])),
        }
    }
    let mut resource_spans = Vec::with_capacity(size);
    message(&mut resource_spans, 1, resource);
    let mut scope_spans = Vec::with_capacity(size);
    let mut scratch = Vec::new();
    for (scope, list) in scopes {
        scope_spans.clear();
        scratch.clear();
        instrumentation_scope(&mut scratch, scope);
        message(&mut scope_spans, 1, &scratch);
        for span in list {
            message(&mut scope_spans, 2, span);
        }
        string(&mut scope_spans, 3, scope.schema_url().unwrap_or_default());
        message(&mut resource_spans, 2, &scope_spans);
    }
    string(&mut resource_spans, 3, schema_url.unwrap_or_default());
    let mut out = Vec::with_capacity(resource_spans.len() + 8);
    message(&mut out, 1, &resource_spans);
    out
}

fn instrumentation_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(out, 1, scope.name());
    string(out, 2, scope.version().unwrap_or_default());
    for attribute in scope.attributes() {
        key_value(out, 3, attribute.key.as_str(), &attribute.value);
    }
}

/// A `Span` message's fields; `scratch` stages nested messages.
fn encode_span(out: &mut Vec<u8>, span: &SpanData, scratch: &mut Vec<u8>) {
    let context = &span.span_context;
    bytes(out, 1, &context.trace_id().to_bytes());
    bytes(out, 2, &context.span_id().to_bytes());
    string(out, 3, &context.trace_state().header());
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    uint(out, 6, kind);
    fixed64(out, 7, nanos(span.start_time));
    fixed64(out, 8, nanos(span.end_time));
    for attribute in &span.attributes {
        key_value(out, 9, attribute.key.as_str(), &attribute.value);
    }
    uint(out, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        scratch.clear();
        fixed64(scratch, 1, nanos(event.timestamp));
        string(scratch, 2, &event.name);
        for attribute in &event.attributes {
            key_value(scratch, 3, attribute.key.as_str(), &attribute.value);
        }
        uint(scratch, 4, u64::from(event.dropped_attributes_count));
        message(out, 11, scratch);
    }
    uint(out, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        scratch.clear();
        let linked = &link.span_context;
        bytes(scratch, 1, &linked.trace_id().to_bytes());
        bytes(scratch, 2, &linked.span_id().to_bytes());
        string(scratch, 3, &linked.trace_state().header());
        for attribute in &link.attributes {
            key_value(scratch, 4, attribute.key.as_str(), &attribute.value);
        }
        uint(scratch, 5, u64::from(link.dropped_attributes_count));
        let flags = span_flags(linked.is_remote(), linked.trace_flags().to_u8());
        fixed32(scratch, 6, flags);
        message(out, 13, scratch);
    }
    uint(out, 14, u64::from(span.links.dropped_count));
    let (code, text) = match &span.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    };
    if code != 0 {
        scratch.clear();
        string(scratch, 2, text);
        uint(scratch, 3, code);
        message(out, 15, scratch);
    }
    let flags = span_flags(span.parent_span_is_remote, context.trace_flags().to_u8());
    fixed32(out, 16, flags);
}

fn span_flags(remote: bool, trace_flags: u8) -> u32 {
    let mut flags = u32::from(trace_flags) | CONTEXT_HAS_IS_REMOTE;
    if remote {
        flags |= CONTEXT_IS_REMOTE;
    }
    flags
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A `KeyValue` message as field `field`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    let key_len = if key.is_empty() {
        0
    } else {
        field_len(key.len())
    };
    let value_len = any_value_len(value);
    tag(out, field, LEN);
    varint(out, (key_len + field_len(value_len)) as u64);
    string(out, 1, key);
    tag(out, 2, LEN);
    varint(out, value_len as u64);
    any_value(out, value);
}

/// The length of a length-delimited field of `len` bytes of content, past its tag (always one byte
/// here: every field number used is below 16).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The encoded length of an `AnyValue` message holding `value`.
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(_) => 2,
        Value::I64(n) => 1 + varint_len(*n as u64),
        Value::F64(_) => 9,
        Value::String(s) => field_len(s.as_str().len()),
        Value::Array(array) => field_len(array_len(array)),
        other => field_len(other.to_string().len()),
    }
}

/// The encoded length of an `ArrayValue` message holding `array`: each element is an `AnyValue`.
fn array_len(array: &Array) -> usize {
    match array {
        Array::Bool(values) => values.len() * field_len(2),
        Array::I64(values) => values
            .iter()
            .map(|n| field_len(1 + varint_len(*n as u64)))
            .sum(),
        Array::F64(values) => values.len() * field_len(9),
        Array::String(values) => values
            .iter()
            .map(|s| field_len(field_len(s.as_str().len())))
            .sum(),
        other => field_len(field_len(other.to_string().len())),
    }
}

/// An `AnyValue` message's one field.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            tag(out, 2, VARINT);
            out.push(u8::from(*b));
        }
        Value::I64(n) => {
            tag(out, 3, VARINT);
            varint(out, *n as u64);
        }
        Value::F64(f) => {
            tag(out, 4, FIXED64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => always_bytes(out, 1, s.as_str().as_bytes()),
        Value::Array(array) => {
            tag(out, 5, LEN);
            varint(out, array_len(array) as u64);
            array_values(out, array);
        }
        other => always_bytes(out, 1, other.to_string().as_bytes()),
    }
}

fn array_values(out: &mut Vec<u8>, array: &Array) {
    let element = |out: &mut Vec<u8>, value: Value| {
        tag(out, 1, LEN);
        varint(out, any_value_len(&value) as u64);
        any_value(out, &value);
    };
    match array {
        Array::Bool(values) => values.iter().for_each(|v| element(out, Value::Bool(*v))),
        Array::I64(values) => values.iter().for_each(|v| element(out, Value::I64(*v))),
        Array::F64(values) => values.iter().for_each(|v| element(out, Value::F64(*v))),
        Array::String(values) => values
            .iter()
            .for_each(|v| element(out, Value::String(v.clone()))),
        other => element(out, Value::String(other.to_string().into())),
    }
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from((field << 3) | wire));
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(n: u64) -> usize {
    // 7 bits a byte; 0 takes one.
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// A `uint32`/`uint64`/enum field, left out when 0.
fn uint(out: &mut Vec<u8>, field: u32, n: u64) {
    if n != 0 {
        tag(out, field, VARINT);
        varint(out, n);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, n: u64) {
    if n != 0 {
        tag(out, field, FIXED64);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, field: u32, n: u32) {
    if n != 0 {
        tag(out, field, FIXED32);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// A string field, left out when empty.
fn string(out: &mut Vec<u8>, field: u32, text: &str) {
    bytes(out, field, text.as_bytes());
}

/// A bytes field, left out when empty.
fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    if !data.is_empty() {
        always_bytes(out, field, data);
    }
}

fn always_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    tag(out, field, LEN);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// A nested message as field `field` (written even when empty: its presence is its meaning).
fn message(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    always_bytes(out, field, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_as_long_as_they_encode() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            varint(&mut out, n);
            assert_eq!(out.len(), varint_len(n), "{n}");
        }
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02], "the protobuf documentation's example");
    }

    #[test]
    fn values_are_as_long_as_their_lengths_say() {
        let values = [
            Value::Bool(true),
            Value::I64(-1),
            Value::I64(0),
            Value::I64(1 << 40),
            Value::F64(0.5),
            Value::String("".into()),
            Value::String("x".repeat(200).into()),
            Value::Array(Array::Bool(vec![true, false])),
            Value::Array(Array::I64(vec![-5, 7, 1 << 50])),
            Value::Array(Array::F64(vec![1.0, 2.5])),
            Value::Array(Array::String(vec!["a".into(), "b".repeat(130).into()])),
        ];
        for value in values {
            let mut out = Vec::new();
            any_value(&mut out, &value);
            assert_eq!(out.len(), any_value_len(&value), "{value:?}");
            let mut kv = Vec::new();
            key_value(&mut kv, 9, "faas.name", &value);
            // tag, length, then the key field and the value field.
            let inner = field_len("faas.name".len()) + field_len(out.len());
            assert_eq!(kv.len(), 1 + varint_len(inner as u64) + inner, "{value:?}");
        }
    }

    #[test]
    fn a_key_value_is_laid_out_as_protobuf_says() {
        let mut out = Vec::new();
        key_value(&mut out, 9, "k", &Value::I64(150));
        // field 9, length 8: key "k" (0a 01 6b), value (12 03) int_value 150 (18 96 01).
        assert_eq!(
            out,
            [0x4a, 0x08, 0x0a, 0x01, b'k', 0x12, 0x03, 0x18, 0x96, 0x01]
        );
    }
}
