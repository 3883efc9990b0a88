"""start.py runs Radicale, the CalDAV and CardDAV server, in a grain.

A grain is one calendar and one address book. Radicale keeps them as files
under /var/collections, in the collections of one Radicale user, "grain",
whoever is asking: erg decides who may ask, so Radicale's own login is
driven by erg's identity headers (auth type http_x_remote_user, with the
header set here and never taken from the request). Writing needs the
"write" permission in X-Erg-Permissions; a viewer's request that would
change anything is refused here, before Radicale sees it. CalDAV clients
reach the grain through erg's API origin with a grain API token; the
browser reaches Radicale's web view through the shell.
"""

import json
import os
import sys

from radicale import app, config, server

PORT = int(os.environ.get("PORT", "8000"))
ROOT = os.environ.get("RADICALE_ROOT", "/var/collections")
USER = "grain"

# The methods that only read; every other one (PUT, DELETE, MKCOL,
# MKCALENDAR, PROPPATCH, MOVE, POST, ...) may change the collections.
READING = {"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"}

# The collections a new grain starts with, as Radicale itself writes them
# (a dir with its properties in .Radicale.props).
FIRST = {
    "calendar": {"tag": "VCALENDAR", "D:displayname": "Calendar",
                 "C:supported-calendar-component-set": "VEVENT,VTODO,VJOURNAL"},
    "contacts": {"tag": "VADDRESSBOOK", "D:displayname": "Address book"},
}


def first_start():
    home = os.path.join(ROOT, "collection-root", USER)
    for name, props in FIRST.items():
        d = os.path.join(home, name)
        if os.path.exists(os.path.join(d, ".Radicale.props")):
            continue
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = os.path.join(d, ".Radicale.props.new")
        with open(tmp, "w") as f:
            json.dump(props, f)
        os.rename(tmp, os.path.join(d, ".Radicale.props"))


def permissions(environ):
    return {p.strip() for p in environ.get("HTTP_X_ERG_PERMISSIONS", "").split(",")}


class Gate:
    """Gate is the WSGI app the server runs: erg's identity in front of
    Radicale's Application."""

    def __init__(self, radicale):
        self.radicale = radicale

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] not in READING and "write" not in permissions(environ):
            body = b"Your role in this grain may only read it.\n"
            start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        # Radicale's user is the grain's, whatever the request said; the
        # Basic login Radicale's web view sends means nothing here.
        environ["HTTP_X_REMOTE_USER"] = USER
        environ.pop("HTTP_AUTHORIZATION", None)
        return self.radicale(environ, start_response)


def main():
    first_start()
    configuration = config.load()
    configuration.update({
        "server": {"hosts": "127.0.0.1:%d" % PORT},
        "auth": {"type": "http_x_remote_user"},
        "rights": {"type": "owner_only"},
        "storage": {"filesystem_folder": ROOT},
        "web": {"type": "internal"},
        "logging": {"level": os.environ.get("RADICALE_LOG", "warning")},
    }, "start.py")
    # Radicale's own threaded server, running the gate: serve builds its
    # Application by this name.
    server.Application = lambda conf: Gate(app.Application(conf))
    server.serve(configuration)


if __name__ == "__main__":
    sys.exit(main())
