"""A small local stand-in for the Hugging Face Hub API (tests only, loopback).

It implements just what ``HfApi.create_repo`` and ``HfApi.upload_folder`` call
when every file is uploaded "regular" (inline in the commit): repo creation,
the model card's YAML check, the pre-upload check and the NDJSON commit. Files land in ``root/<repo_id>/``
so a test can compare them byte for byte with what was pushed.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class HubStandIn:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests: list[tuple[str, str]] = []
        #: the Authorization header of each request, and the body of each repository creation
        self.authorizations: list[str | None] = []
        self.created: list[dict] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _reply(self, code: int, body: dict | None = None):
                data = json.dumps(body or {}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self):
                standin.requests.append(("POST", self.path))
                standin.authorizations.append(self.headers.get("Authorization"))
                body = self._body()
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    req = json.loads(body)
                    standin.created.append(req)
                    repo_id = f"{req.get('organization') or 'user'}/{req['name']}" if "/" not in req["name"] \
                        else req["name"]
                    (standin.root / repo_id).mkdir(parents=True, exist_ok=True)
                    return self._reply(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
                if path == "/api/validate-yaml":  # the model card's metadata
                    return self._reply(200, {"errors": [], "warnings": []})
                if "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
                if "/commit/" in path:
                    repo_id = path.split("/api/models/")[1].split("/commit/")[0]
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item.get("key") == "file":
                            value = item["value"]
                            dest = standin.root / repo_id / value["path"]
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            dest.write_bytes(base64.b64decode(value["content"]))
                    oid = "1" * 40
                    return self._reply(200, {"commitUrl": f"{standin.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                             "success": True})
                return self._reply(404, {"error": f"stand-in does not implement POST {path}"})

            def do_GET(self):
                standin.requests.append(("GET", self.path))
                standin.authorizations.append(self.headers.get("Authorization"))
                return self._reply(404, {"error": f"stand-in does not implement GET {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
