"""A small OTLP/HTTP traces receiver for the tracing tests.

It listens on 127.0.0.1 (a free port), prints `listening PORT`, and for each POST to /v1/traces
decodes the `ExportTraceServiceRequest` with the official protobuf definitions (PyPI
`opentelemetry-proto`), prints every span as one JSON line (`span {...}`), and answers with an
empty `ExportTraceServiceResponse`, as a collector does. Anything else gets 404. It runs until it
is killed, or for at most ten minutes.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

KINDS = {value: name for name, value in trace_pb2.Span.SpanKind.items()}
STATUS = {value: name for name, value in trace_pb2.Status.StatusCode.items()}
LOCK = threading.Lock()


def value(any_value):
    """An attribute's value as plain JSON."""
    kind = any_value.WhichOneof("value")
    if kind == "string_value":
        return any_value.string_value
    if kind == "int_value":
        return any_value.int_value
    if kind == "bool_value":
        return any_value.bool_value
    if kind == "double_value":
        return any_value.double_value
    return str(any_value)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        lines = []
        for resource_spans in request.resource_spans:
            resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append("span " + json.dumps({
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": KINDS.get(span.kind, str(span.kind)),
                        "status": STATUS.get(span.status.code, str(span.status.code)),
                        "message": span.status.message,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                        "service": resource.get("service.name"),
                        "header": self.headers.get("x-test-header", ""),
                    }, sort_keys=True))
        with LOCK:
            for line in lines:
                print(line)
            sys.stdout.flush()
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    print(f"listening {server.server_address[1]}", flush=True)
    timer = threading.Timer(600, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()


if __name__ == "__main__":
    main()
