"""pynotes: a small notes app for erg, in plain Python 3 (stdlib only).

It shows how an existing program is ported: erg runs the machine's own
python3 in a grain, packed with the part of its standard library that
`erg app dev` saw the app use (erg-files.list).

Notes are JSON files in /var/notes. erg's proxy says who is asking in
X-Erg-Username and what they may do in X-Erg-Permissions; writing needs
"write", reading needs "read".

    GET    /                 the notes, with a form to add one
    GET    /notes            JSON: [{"name", "title", "author", "updated"}]
    GET    /notes/NAME       JSON: the note
    PUT    /notes/NAME       JSON body {"title", "body"}: create or replace
    POST   /notes            form title=..&body=..: create, then back to /
    DELETE /notes/NAME
"""

import html
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NOTES = os.path.join(os.environ.get("NOTES_DIR", "/var"), "notes")
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BODY = 1 << 20


def permissions(headers):
    return {p.strip() for p in headers.get("X-Erg-Permissions", "").split(",") if p.strip()}


def load(name):
    with open(os.path.join(NOTES, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def save(name, note):
    """Write the note whole or not at all: a temp file renamed into place."""
    os.makedirs(NOTES, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=NOTES, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(note, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(NOTES, name + ".json"))
    except BaseException:
        os.unlink(tmp)
        raise


def listing():
    try:
        names = sorted(n[:-5] for n in os.listdir(NOTES) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        note = load(n)
        out.append({"name": n, "title": note["title"], "author": note["author"], "updated": note["updated"]})
    return out


def slug(title):
    s = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:48] or "note"
    return "%s-%d" % (s, time.time_ns() % 1000000)


class Handler(BaseHTTPRequestHandler):
    server_version = "pynotes/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("pynotes: %s %s\n" % (self.address_string(), fmt % args))

    def reply(self, status, body, ctype="application/json"):
        if not isinstance(body, bytes):
            body = (json.dumps(body) if ctype == "application/json" else body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype + "; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, status, why):
        self.reply(status, {"error": why})

    def allowed(self, perm):
        if perm in permissions(self.headers):
            return True
        self.fail(HTTPStatus.FORBIDDEN, "you may not %s here" % perm)
        return False

    def note_name(self):
        name = self.path.split("?", 1)[0][len("/notes/"):]
        if not NAME.match(name):
            self.fail(HTTPStatus.BAD_REQUEST, "bad note name")
            return None
        return name

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "note too large")
            return None
        return self.rfile.read(n)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if not self.allowed("read"):
            return
        if path == "/":
            return self.page()
        if path == "/notes":
            return self.reply(HTTPStatus.OK, listing())
        if path.startswith("/notes/"):
            name = self.note_name()
            if name is None:
                return
            try:
                return self.reply(HTTPStatus.OK, load(name))
            except FileNotFoundError:
                return self.fail(HTTPStatus.NOT_FOUND, "no such note")
        self.fail(HTTPStatus.NOT_FOUND, "not found")

    do_HEAD = do_GET

    def do_PUT(self):
        if not self.path.startswith("/notes/") or not self.allowed("write"):
            return
        name = self.note_name()
        raw = None if name is None else self.body()
        if raw is None:
            return
        try:
            data = json.loads(raw)
            title, text = str(data["title"]), str(data.get("body", ""))
        except (ValueError, KeyError, TypeError):
            return self.fail(HTTPStatus.BAD_REQUEST, 'want JSON {"title": ..., "body": ...}')
        self.store(name, title, text)
        self.reply(HTTPStatus.OK, load(name))

    def do_POST(self):
        if self.path != "/notes" or not self.allowed("write"):
            return
        raw = self.body()
        if raw is None:
            return
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        title = form.get("title", [""])[0].strip()
        if not title:
            return self.fail(HTTPStatus.BAD_REQUEST, "a note needs a title")
        self.store(slug(title), title, form.get("body", [""])[0])
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", "/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):
        if not self.path.startswith("/notes/") or not self.allowed("write"):
            return
        name = self.note_name()
        if name is None:
            return
        try:
            os.unlink(os.path.join(NOTES, name + ".json"))
        except FileNotFoundError:
            return self.fail(HTTPStatus.NOT_FOUND, "no such note")
        self.reply(HTTPStatus.OK, {"deleted": name})

    def store(self, name, title, text):
        author = urllib.parse.unquote(self.headers.get("X-Erg-Username", "")) or "anonymous"
        save(name, {"title": title[:200], "body": text, "author": author,
                    "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def page(self):
        esc = html.escape
        user = urllib.parse.unquote(self.headers.get("X-Erg-Username", "")) or "anonymous"
        rows = []
        for n in listing():
            note = load(n["name"])
            rows.append("<article><h2>%s</h2><p class=meta>%s, %s</p><pre>%s</pre></article>" % (
                esc(note["title"]), esc(note["author"]), esc(note["updated"]), esc(note["body"])))
        form = ""
        if "write" in permissions(self.headers):
            form = ('<form method=post action="/notes"><input name=title placeholder=Title required>'
                    '<textarea name=body rows=4 placeholder="Write a note"></textarea>'
                    '<button>Add note</button></form>')
        self.reply(HTTPStatus.OK, """<!doctype html><meta charset="utf-8"><title>pynotes</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}
input,textarea{display:block;width:100%%;margin:.3em 0}.meta{color:#666;font-size:.9em}</style>
<h1>Notes</h1><p>Hello, %s (python %s).</p>%s%s""" % (
            esc(user), esc(sys.version.split()[0]), form, "".join(rows) or "<p>No notes yet.</p>"),
            "text/html")


def main():
    port = int(os.environ.get("PORT", "8000"))
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    sys.stderr.write("pynotes: listening on 127.0.0.1:%d, notes in %s\n" % (port, NOTES))
    try:
        srv.serve_forever()
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
