"""Checks app.py against a tiny local OTLP/HTTP sink: every span it reports must arrive as sent.

Runs app.py twice:
  1. against a sink that accepts POST /v1/traces, decodes each ExportTraceServiceRequest with
     opentelemetry-proto and records every span; then checks that each span of the app's JSON
     arrived with the same trace, parent, service, name, kind and status, that nothing else
     arrived, and that the traces have the shape app.py documents;
  2. against a sink that refuses every export with 400, and checks app.py exits non-zero with a
     message on stderr.

Usage: python3 tests/e2e/pyapp/sink_check.py   (exit 0 when everything holds)
"""

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")
REQUESTS = 7
FAIL_EVERY = 3
KINDS = {
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
STATUSES = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}


class Sink:
    """An OTLP/HTTP trace endpoint on an ephemeral port; `refuse` answers every export with 400."""

    def __init__(self, refuse=False):
        self.spans = {}  # (trace_id, span_id) -> summary
        self.duplicates = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler(refuse))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def handler(self, refuse):
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.path != "/v1/traces":
                    self.answer(404, b"")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if refuse:
                    self.answer(400, b"refused by sink_check")
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                sink.record(request)
                self.answer(200, ExportTraceServiceResponse().SerializeToString())

            def answer(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def record(self, request):
        with self.lock:
            for resource_spans in request.resource_spans:
                service = ""
                for attribute in resource_spans.resource.attributes:
                    if attribute.key == "service.name":
                        service = attribute.value.string_value
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        key = (span.trace_id.hex(), span.span_id.hex())
                        if key in self.spans:
                            self.duplicates.append(key)
                        self.spans[key] = summarize(span, service)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def summarize(span, service):
    attributes = {}
    for attribute in span.attributes:
        value = attribute.value
        attributes[attribute.key] = getattr(value, value.WhichOneof("value") or "string_value")
    return {
        "parent_span_id": span.parent_span_id.hex(),
        "service": service,
        "name": span.name,
        "kind": KINDS.get(span.kind, str(span.kind)),
        "status": STATUSES.get(span.status.code, str(span.status.code)),
        "attributes": attributes,
    }


def run_app(endpoint):
    env = dict(os.environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint)
    env["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] = "5"
    args = [sys.executable, APP, "--requests", str(REQUESTS), "--fail-every", str(FAIL_EVERY)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def check_arrived(document, sink, problems):
    """Every reported span arrived unchanged, and nothing else did."""
    reported = set()
    for request in document["requests"]:
        for span in request["spans"]:
            key = (request["trace_id"], span["span_id"])
            reported.add(key)
            got = sink.spans.get(key)
            if got is None:
                problems.append(f"span {key} ({span['service']}: {span['name']}) never arrived")
                continue
            for field in ("parent_span_id", "service", "name", "kind", "status"):
                if got[field] != span[field]:
                    problems.append(f"span {key} {field}: sent {span[field]!r}, got {got[field]!r}")
    for key in sink.spans.keys() - reported:
        problems.append(f"span {key} arrived but the app did not report it")
    if sink.duplicates:
        problems.append(f"spans arrived twice: {sink.duplicates}")


def check_shape(document, sink, problems):
    """The traces look the way app.py documents them."""
    requests = document["requests"]
    if len(requests) != REQUESTS:
        problems.append(f"{len(requests)} requests reported, expected {REQUESTS}")
    trace_ids = [r["trace_id"] for r in requests]
    if len(set(trace_ids)) != len(trace_ids):
        problems.append(f"trace ids repeat: {trace_ids}")
    for request in requests:
        check_request(request, sink, problems)


def check_request(request, sink, problems):
    index, trace_id = request["index"], request["trace_id"]
    where = f"request {index} ({trace_id})"
    fail = index % FAIL_EVERY == 0
    if request["error"] != fail:
        problems.append(f"{where}: error={request['error']}, expected {fail}")
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        problems.append(f"{where}: trace id is not 32 hex digits")
    spans = request["spans"]
    by_id = {s["span_id"]: s for s in spans}
    expected_count = 5 if fail else 7
    if len(spans) != expected_count:
        problems.append(f"{where}: {len(spans)} spans, expected {expected_count}")
    roots = [s for s in spans if s["parent_span_id"] == ""]
    if [(r["service"], r["kind"], r["name"]) for r in roots] != [
        ("frontend", "SERVER", "GET /checkout")
    ]:
        problems.append(f"{where}: roots are {roots}")
    for span in spans:
        if len(span["span_id"]) != 16:
            problems.append(f"{where}: span id {span['span_id']!r} is not 16 hex digits")
        parent = span["parent_span_id"]
        if parent and parent not in by_id:
            problems.append(f"{where}: {span['name']} has a parent outside the trace")
    expected_chain = [
        ("frontend", "SERVER", None),
        ("frontend", "CLIENT", ("frontend", "SERVER")),
        ("checkout", "SERVER", ("frontend", "CLIENT")),
        ("checkout", "CLIENT", ("checkout", "SERVER")),
        ("payment", "SERVER", ("checkout", "CLIENT")),
    ]
    if not fail:
        expected_chain += [
            ("checkout", "PRODUCER", ("checkout", "SERVER")),
            ("fulfillment", "CONSUMER", ("checkout", "PRODUCER")),
        ]
    for service, kind, parent in expected_chain:
        matches = [s for s in spans if (s["service"], s["kind"]) == (service, kind)]
        if len(matches) != 1:
            problems.append(f"{where}: {len(matches)} {service} {kind} spans, expected 1")
            continue
        span = matches[0]
        got_parent = by_id.get(span["parent_span_id"])
        got = (got_parent["service"], got_parent["kind"]) if got_parent else None
        if got != parent:
            problems.append(f"{where}: {service} {kind} parent is {got}, expected {parent}")
        wanted_status = "ERROR" if fail else ("OK" if kind == "CONSUMER" else "UNSET")
        if span["status"] != wanted_status:
            got_status = span["status"]
            problems.append(f"{where}: {service} {kind} is {got_status}, not {wanted_status}")
    check_attributes(request, sink, where, problems)


def check_attributes(request, sink, where, problems):
    """Key attributes arrive on the wire, including the unindexed user.id."""
    for span in request["spans"]:
        got = sink.spans.get((request["trace_id"], span["span_id"]))
        if got is None:
            continue
        attributes = got["attributes"]
        if span["kind"] == "SERVER":
            for key in ("http.route", "http.method", "http.status_code"):
                if key not in attributes:
                    problems.append(f"{where}: {span['name']} lacks {key}")
        if span["kind"] == "SERVER" and span["service"] == "frontend":
            user = attributes.get("user.id")
            if user != request["user_id"]:
                problems.append(f"{where}: user.id {user!r}, expected {request['user_id']!r}")
            code = attributes.get("http.status_code")
            if code != (502 if request["error"] else 200):
                problems.append(f"{where}: frontend answered {code}")
        messaging = span["kind"] in ("PRODUCER", "CONSUMER")
        if messaging and attributes.get("messaging.system") != "python.queue":
            problems.append(f"{where}: {span['name']} lacks messaging.system")


def check_delivery():
    sink = Sink()
    try:
        result = run_app(sink.endpoint)
    finally:
        sink.close()
    if result.returncode != 0:
        return [f"app exited {result.returncode}: {result.stderr.strip()}"]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        return [f"expected one JSON line on stdout, got {len(lines)}"]
    document = json.loads(lines[0])
    problems = []
    check_arrived(document, sink, problems)
    check_shape(document, sink, problems)
    spans = sum(len(r["spans"]) for r in document["requests"])
    traces = len(document["requests"])
    print(f"delivery: {traces} traces, {spans} spans reported, {len(sink.spans)} received")
    return problems


def check_refused_export():
    sink = Sink(refuse=True)
    try:
        result = run_app(sink.endpoint)
    finally:
        sink.close()
    last = result.stderr.strip().splitlines()[-1:]
    print(f"refused export: exit {result.returncode}, stderr: {last}")
    problems = []
    if result.returncode == 0:
        problems.append("app exited 0 although every export was refused")
    if "export" not in result.stderr:
        problems.append(f"no export failure on stderr: {result.stderr!r}")
    if result.stdout.strip():
        problems.append("app printed a report although the export failed")
    return problems


def main():
    problems = check_delivery() + check_refused_export()
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
