"""An independent DICOMweb peer for tests/integration/dicomweb.rs, in the standard library and pydicom.

  dicomweb_peer.py upload ORTHANC_URL DIR        POST every .dcm file under DIR to Orthanc's REST API
  dicomweb_peer.py retrieve DICOMWEB_URL STUDY SERIES
                                                 WADO-RS: print {SOPInstanceUID: sha256} as JSON
  dicomweb_peer.py proxy DICOMWEB_URL MODE       a faulty proxy in front of the server: prints
                                                 its port, then serves until killed. MODE: `drop`
                                                 (WADO-RS answers end half-way), `500` (WADO-RS
                                                 answers HTTP 500), `slow` (WADO-RS never answers)

Credentials come from ORTHANC_AUTH (user:password).
"""

import base64
import email.parser
import hashlib
import http.server
import io
import json
import os
import socketserver
import sys
import time
import urllib.request

import pydicom


def auth_header():
    return "Basic " + base64.b64encode(os.environ["ORTHANC_AUTH"].encode()).decode()


def request(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    req.add_header("Authorization", auth_header())
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, dict(r.headers), r.read()


def upload(base, folder):
    n = 0
    for root, _, files in os.walk(folder):
        for f in sorted(x for x in files if x.endswith(".dcm")):
            with open(os.path.join(root, f), "rb") as fh:
                status, _, _ = request(base.rstrip("/") + "/instances", fh.read(),
                                       {"Content-Type": "application/dicom"}, "POST")
            assert status == 200, status
            n += 1
    print(json.dumps({"uploaded": n}))


def retrieve(url, study, series):
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    _, headers, body = request(f"{url.rstrip('/')}/studies/{study}/series/{series}",
                               headers={"Accept": accept})
    ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
    msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    out = {}
    for part in msg.get_payload():
        data = part.get_payload(decode=True)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = hashlib.sha256(data).hexdigest()
    print(json.dumps(out))


def proxy(upstream, mode):
    upstream = upstream.rstrip("/")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            prefix = "/dicom-web"
            path = self.path[len(prefix):] if self.path.startswith(prefix) else self.path
            retrieval = "/series/" in path and not path.split("?")[0].endswith(("/instances", "/series"))
            if retrieval and mode == "500":
                body = b"internal error (test)"
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if retrieval and mode == "slow":
                time.sleep(30)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept",)}
            try:
                status, rh, body = request(upstream + path, headers=headers)
            except urllib.error.HTTPError as e:
                status, rh, body = e.code, dict(e.headers), e.read()
            self.send_response(status)
            for k, v in rh.items():
                if k.lower() == "content-type":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if retrieval and mode == "drop":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "upload":
        upload(sys.argv[2], sys.argv[3])
    elif cmd == "retrieve":
        retrieve(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "proxy":
        proxy(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
