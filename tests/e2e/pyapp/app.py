"""A small instrumented shop that sends real OpenTelemetry traces over OTLP/HTTP.

Four services run in one process, each with its own TracerProvider and Resource
(`service.name`), exporting through the OpenTelemetry Python SDK's OTLP/HTTP exporter:

    driver ──HTTP──▶ frontend ──HTTP──▶ checkout ──HTTP──▶ payment
                                           │
                                           └──queue.Queue──▶ fulfillment (a thread)

frontend, checkout and payment are `http.server` servers on 127.0.0.1 ephemeral ports, called
with urllib; the W3C `traceparent` header carries the context (opentelemetry.propagate with the
TraceContextTextMapPropagator). The queue message carries a `headers` dict with the injected
context, so the fulfillment CONSUMER span is a child of checkout's PRODUCER span.

Usage:
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces \\
        python3 app.py [--requests N] [--fail-every K]

    --requests N     requests to send (env PYAPP_REQUESTS, default 3)
    --fail-every K   request i (1-based) fails when i % K == 0 (env PYAPP_FAIL_EVERY, default 3;
                     0 means no request fails). With the defaults, request 3 fails.
    The endpoint defaults to http://127.0.0.1:4318/v1/traces; OTEL_EXPORTER_OTLP_TRACES_TIMEOUT
    (seconds) bounds each export as usual.

Spans of one successful request (one trace, 7 spans; * = set only on some):
    frontend     SERVER    "GET /checkout"        root; http.route=/checkout, http.method=GET,
                                                  http.status_code=200, user.id
    frontend     CLIENT    "POST /api/checkout"   http.method, http.url, http.status_code
    checkout     SERVER    "POST /api/checkout"   http.route=/api/checkout, http.method=POST,
                                                  http.status_code=200
    checkout     CLIENT    "POST /api/charge"     http.method, http.url, http.status_code
    payment      SERVER    "POST /api/charge"     http.route=/api/charge, http.method=POST,
                                                  http.status_code=200
    checkout     PRODUCER  "publish orders"       messaging.system=python.queue,
                                                  messaging.destination.name=orders,
                                                  messaging.operation=publish, messaging.message.id
    fulfillment  CONSUMER  "process orders"       parent: the PRODUCER span; same messaging.*
                                                  with messaging.operation=process; status OK
Every other span's status is UNSET on success.

A failing request (5 spans): payment declines the card and answers 500; its SERVER span has
status ERROR "card declined" and error.type=card_declined. The error propagates up the whole
chain: checkout's CLIENT span (ERROR "HTTP 500"), checkout's SERVER span (ERROR "payment
declined", answers 502), frontend's CLIENT span (ERROR "HTTP 502") and frontend's SERVER span
(ERROR "checkout failed", http.status_code=502). No order is published, so a failing trace has
no PRODUCER or CONSUMER span.

user.id on the frontend SERVER span is "user-1" for odd requests and "user-2" for even ones
(1-based), so "traces of one user" finds about half of them. It is not an indexed attribute.

Output: after force-flushing every provider, ONE JSON document on stdout:
    {"endpoint": "...",
     "requests": [{"index": 1, "trace_id": "<32 hex>", "error": false, "user_id": "user-1",
                   "spans": [{"span_id": "<16 hex>", "parent_span_id": "<16 hex or ''>",
                              "service": "frontend", "name": "GET /checkout", "kind": "SERVER",
                              "status": "UNSET", "status_message": "",
                              "start_time_unix_nano": 0, "end_time_unix_nano": 0,
                              "attributes": {"http.route": "/checkout", ...}}, ...]}, ...]}
Requests are in the order sent, spans of a request in start order; the spans are what the SDK
ended (an in-memory exporter next to the OTLP one), so the list is exactly what was exported.
kind is SERVER/CLIENT/PRODUCER/CONSUMER/INTERNAL, status is OK/ERROR/UNSET.

Exit status: 0 when every span was exported; 1 with a message on stderr when an export failed
or a flush timed out; 2 on bad arguments.
"""

import argparse
import json
import os
import queue
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract, inject, set_global_textmap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
SERVICES = ("frontend", "checkout", "payment", "fulfillment")
FLUSH_TIMEOUT_MILLIS = 30_000


class RecordingExporter(SpanExporter):
    """Wraps the OTLP exporter to remember failures: the batch processor only logs them."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = []
        self.exported = 0
        self.lock = threading.Lock()

    def export(self, spans):
        result = self.inner.export(spans)
        with self.lock:
            if result == SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failures.append(len(spans))
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30_000):
        return self.inner.force_flush(timeout_millis)


class Telemetry:
    """One TracerProvider per service, all feeding the OTLP exporter and one in-memory copy."""

    def __init__(self, endpoint):
        self.memory = InMemorySpanExporter()
        self.providers = {}
        self.exporters = []
        for service in SERVICES:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            exporter = RecordingExporter(OTLPSpanExporter(endpoint=endpoint))
            provider.add_span_processor(BatchSpanProcessor(exporter))
            provider.add_span_processor(SimpleSpanProcessor(self.memory))
            self.providers[service] = provider
            self.exporters.append(exporter)

    def tracer(self, service):
        return self.providers[service].get_tracer("spanline.e2e.pyapp")

    def flush_and_shutdown(self):
        """Returns a list of problems; empty when every span reached the endpoint."""
        problems = []
        for service, provider in self.providers.items():
            if not provider.force_flush(FLUSH_TIMEOUT_MILLIS):
                problems.append(f"{service}: flush timed out")
        for provider in self.providers.values():
            provider.shutdown()
        for service, exporter in zip(SERVICES, self.exporters):
            if exporter.failures:
                problems.append(f"{service}: {sum(exporter.failures)} spans failed to export")
        exported = sum(e.exported for e in self.exporters)
        ended = len(self.memory.get_finished_spans())
        if not problems and exported != ended:
            problems.append(f"exported {exported} spans of {ended} ended")
        return problems


def http_call(tracer, method, url, body):
    """A CLIENT span around one urllib request; returns (status, parsed JSON body)."""
    path = urlparse(url).path
    with tracer.start_as_current_span(f"{method} {path}", kind=SpanKind.CLIENT) as span:
        span.set_attribute("http.method", method)
        span.set_attribute("http.url", url)
        headers = {"Content-Type": "application/json"}
        inject(headers)
        data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        span.set_attribute("http.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        return status, json.loads(payload or b"{}")


def make_handler(service, tracer, routes):
    """An http.server handler running each route in a SERVER span that continues the caller."""

    class Handler(BaseHTTPRequestHandler):
        def handle_request(self, method):
            url = urlparse(self.path)
            route = routes.get((method, url.path))
            if route is None:
                self.reply(404, {"error": "no route"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            # urllib sends "Traceparent"; the dict getter looks up the lowercase W3C name.
            parent = extract({k.lower(): v for k, v in self.headers.items()})
            name = f"{method} {url.path}"
            with tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
                span.set_attribute("http.route", url.path)
                span.set_attribute("http.method", method)
                status, reply = route(span, body, query)
                span.set_attribute("http.status_code", status)
                reply["trace_id"] = format(span.get_span_context().trace_id, "032x")
            self.reply(status, reply)

        def do_GET(self):
            self.handle_request("GET")

        def do_POST(self):
            self.handle_request("POST")

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass  # keep stdout for the one JSON document and stderr for real problems

    Handler.__name__ = f"{service.capitalize()}Handler"
    return Handler


class Shop:
    """The three HTTP services and the fulfillment consumer, started on ephemeral ports."""

    def __init__(self, telemetry):
        self.telemetry = telemetry
        self.orders = queue.Queue()
        self.servers = []
        self.payment_url = self.serve("payment", {("POST", "/api/charge"): self.charge})
        self.checkout_url = self.serve("checkout", {("POST", "/api/checkout"): self.checkout})
        self.frontend_url = self.serve("frontend", {("GET", "/checkout"): self.frontend})
        self.consumer = threading.Thread(target=self.fulfill, name="fulfillment", daemon=True)
        self.consumer.start()

    def serve(self, service, routes):
        handler = make_handler(service, self.telemetry.tracer(service), routes)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=service, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def frontend(self, span, _body, query):
        span.set_attribute("user.id", query.get("user", ""))
        order = {"user": query.get("user", ""), "card": query.get("card", "ok"), "amount": 42}
        tracer = self.telemetry.tracer("frontend")
        status, _ = http_call(tracer, "POST", f"{self.checkout_url}/api/checkout", order)
        if status != 200:
            span.set_status(Status(StatusCode.ERROR, "checkout failed"))
            return 502, {"ok": False}
        return 200, {"ok": True}

    def checkout(self, span, body, _query):
        tracer = self.telemetry.tracer("checkout")
        status, charge = http_call(tracer, "POST", f"{self.payment_url}/api/charge", body)
        if status != 200:
            span.set_status(Status(StatusCode.ERROR, "payment declined"))
            return 502, {"ok": False}
        with tracer.start_as_current_span("publish orders", kind=SpanKind.PRODUCER) as producer:
            message_id = charge.get("charge_id", "")
            set_messaging(producer, "publish", message_id)
            headers = {}
            inject(headers)
            self.orders.put({"headers": headers, "id": message_id, "order": body})
        return 200, {"ok": True}

    def charge(self, span, body, _query):
        if body.get("card") == "declined":
            span.set_attribute("error.type", "card_declined")
            span.set_status(Status(StatusCode.ERROR, "card declined"))
            return 500, {"ok": False}
        charge_id = format(span.get_span_context().span_id, "016x")
        return 200, {"ok": True, "charge_id": charge_id}

    def fulfill(self):
        tracer = self.telemetry.tracer("fulfillment")
        while True:
            message = self.orders.get()
            if message is None:
                self.orders.task_done()
                return
            parent = extract(message["headers"])
            with tracer.start_as_current_span(
                "process orders", context=parent, kind=SpanKind.CONSUMER
            ) as span:
                set_messaging(span, "process", message["id"])
                span.set_status(Status(StatusCode.OK))
            self.orders.task_done()

    def stop(self):
        self.orders.put(None)
        self.orders.join()
        self.consumer.join(timeout=10)
        for server in self.servers:
            server.shutdown()
            server.server_close()


def set_messaging(span, operation, message_id):
    span.set_attribute("messaging.system", "python.queue")
    span.set_attribute("messaging.destination.name", "orders")
    span.set_attribute("messaging.operation", operation)
    span.set_attribute("messaging.message.id", message_id)


def send_requests(shop, count, fail_every):
    """Calls the frontend like a browser would: no trace context, so each request starts a trace."""
    sent = []
    for index in range(1, count + 1):
        fail = fail_every > 0 and index % fail_every == 0
        user = "user-1" if index % 2 == 1 else "user-2"
        card = "declined" if fail else "ok"
        url = f"{shop.frontend_url}/checkout?user={user}&card={card}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        reply = json.loads(payload)
        if (status != 200) != fail:
            raise RuntimeError(f"request {index}: frontend answered {status}, expected fail={fail}")
        sent.append({"index": index, "trace_id": reply["trace_id"], "error": fail, "user_id": user})
    return sent


def describe(span):
    parent = span.parent.span_id if span.parent is not None else None
    return {
        "span_id": format(span.context.span_id, "016x"),
        "parent_span_id": format(parent, "016x") if parent else "",
        "service": span.resource.attributes.get("service.name", ""),
        "name": span.name,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "status_message": span.status.description or "",
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": dict(span.attributes or {}),
    }


def report(endpoint, sent, finished):
    by_trace = {}
    for span in sorted(finished, key=lambda s: s.start_time):
        trace_id = format(span.context.trace_id, "032x")
        by_trace.setdefault(trace_id, []).append(describe(span))
    for request in sent:
        request["spans"] = by_trace.get(request["trace_id"], [])
    return {"endpoint": endpoint, "requests": sent}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Send instrumented shop traces over OTLP/HTTP.")
    parser.add_argument("--requests", type=int, default=int(os.environ.get("PYAPP_REQUESTS", "3")))
    parser.add_argument(
        "--fail-every", type=int, default=int(os.environ.get("PYAPP_FAIL_EVERY", "3"))
    )
    args = parser.parse_args(argv)
    if args.requests < 0 or args.fail_every < 0:
        parser.error("--requests and --fail-every must not be negative")
    return args


def main(argv):
    args = parse_args(argv)
    # W3C traceparent only, whatever OTEL_PROPAGATORS says: the test expects exactly that header.
    set_global_textmap(TraceContextTextMapPropagator())
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or DEFAULT_ENDPOINT
    telemetry = Telemetry(endpoint)
    shop = Shop(telemetry)
    try:
        sent = send_requests(shop, args.requests, args.fail_every)
    finally:
        shop.stop()
    problems = telemetry.flush_and_shutdown()
    if problems:
        print(f"pyapp: export to {endpoint} failed: " + "; ".join(problems), file=sys.stderr)
        return 1
    json.dump(report(endpoint, sent, telemetry.memory.get_finished_spans()), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
