"""moto's S3 server with every request serialized, a request log, and an access-key check.

usage: python moto_serial.py PORT [HOST]

- One lock per request: plain moto_server checks a conditional write and then writes without
  a lock, so about one round in 200 of 32 concurrent create-only puts gets several winners.
  Holding a lock around each request makes If-None-Match / If-Match atomic.
- TALLY_S3_LOG=path appends one JSON line per request: method, bucket, key, query, status.
  Tests count these lines to check request budgets against the server's own view.
- TALLY_S3_KEYS=key1,key2 rejects signed requests from any other access key with
  403 InvalidAccessKeyId, as a real server would (moto itself accepts any key).
"""
import json
import os
import sys
import threading
from urllib.parse import unquote

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
log_path = os.environ.get("TALLY_S3_LOG")
allowed = {k for k in os.environ.get("TALLY_S3_KEYS", "").split(",") if k}
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
log = open(log_path, "a", buffering=1) if log_path else None

DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidAccessKeyId</Code>'
    b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>"
)


def access_key(environ):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return None
    return auth.split(marker, 1)[1].split("/", 1)[0]


def serialized(environ, start_response):
    key = access_key(environ)
    if allowed and key is not None and key not in allowed:
        start_response("403 Forbidden", [("Content-Type", "application/xml")])
        return [DENIED]
    status = []

    def recording_start(s, headers, exc_info=None):
        status.append(s.split(" ", 1)[0])
        return start_response(s, headers, exc_info)

    with lock:
        body = list(app(environ, recording_start))  # materialize the body inside the lock
        if log is not None and not environ.get("PATH_INFO", "").startswith("/moto-api"):
            path = unquote(environ.get("PATH_INFO", "")).lstrip("/")
            bucket, _, obj = path.partition("/")
            log.write(
                json.dumps(
                    {
                        "method": environ.get("REQUEST_METHOD"),
                        "bucket": bucket,
                        "key": obj,
                        "query": environ.get("QUERY_STRING", ""),
                        "status": int(status[0]) if status else 0,
                    }
                )
                + "\n"
            )
        return body


run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)
