#!/usr/bin/python3
"""kiln contract image (test double): NOT HedgeDoc, NOT Nextcloud.

A stand-in for an upstream image that cannot be built on kiln's lab machine. It checks kiln's
side of the image's documented contract (environment variables, secret files, the database
it is given, its data paths and their owners, its port and health path) and nothing else:
it is never evidence that the application works. Every line it prints starts with PREFIX.

    contract.py hedgedoc [COMMAND...]    HedgeDoc 1.x (quay.io/hedgedoc/hedgedoc)
    contract.py nextcloud [COMMAND...]   Nextcloud, apache variant (docker.io/library/nextcloud)
    contract.py broken                   any image: runs, never healthy (500 on every path)
    contract.py php ARGS...              the Nextcloud image's `php` (cron.php, occ)

Written for kiln; contains no code of the applications it stands in for.
"""

import ipaddress
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "kiln contract image (test double): "
UPSTREAM = os.environ.get("KILN_CONTRACT_UPSTREAM", "an upstream image")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def log(message, stream=None):
    stream = stream or sys.stderr
    for line in str(message).splitlines() or [""]:
        stream.write(PREFIX + line + "\n")
    stream.flush()


class Refuse(Exception):
    """A broken contract: logged, exit status 1."""


def env(name):
    value = os.environ.get(name)
    return None if value is None or value == "" else value


def require(name, hint):
    value = env(name)
    if value is None:
        raise Refuse(f"{name} is not set: {hint}")
    return value


def must_equal(name, expected, hint):
    value = require(name, hint)
    if value != expected:
        raise Refuse(f"{name}={value!r} is malformed: it must be {expected} ({hint})")


def boolean(name):
    value = env(name)
    if value is not None and value not in ("true", "false"):
        raise Refuse(f"{name}={value!r} is malformed: it must be true or false")


def read_file(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise Refuse(f"{what}: cannot read {path} as UID {os.getuid()}: {e.strerror}")


def exit_on_signals():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGWINCH):
        signal.signal(s, lambda *_: os._exit(0))


def write_as_me(path, content, mode=0o640):
    """Writes `path` atomically as the current user; a failure names path and UID."""
    tmp = f"{path}.kiln-contract-tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except OSError as e:
        raise Refuse(f"cannot write {path} as UID {os.getuid()}: {e.strerror} (the upstream image writes there as UID {os.getuid()})")


# --- the database ------------------------------------------------------------------------

TRANSIENT = (
    "could not connect",
    "connection refused",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "no route to host",
    "timeout expired",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "server closed the connection unexpectedly",
)


def connect(params, what, wait_s):
    """Connects, retrying for `wait_s` while the server is unreachable; refuses at once on
    anything else (wrong password, missing role or database)."""
    import psycopg2

    deadline = time.monotonic() + wait_s
    said = None
    while True:
        try:
            conn = psycopg2.connect(connect_timeout=5, **params)
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError as e:
            message = " ".join(str(e).split())
            if not any(t in message.lower() for t in TRANSIENT):
                raise Refuse(f"the database given by {what} refused the connection: {message}")
            if time.monotonic() > deadline:
                raise Refuse(
                    f"the database given by {what} ({params['host']}:{params['port']}) was not reachable within {wait_s} s: {message}"
                )
            if message != said:
                log(f"waiting for the database at {params['host']}:{params['port']}: {message}")
                said = message
            time.sleep(1)


def write_row(conn, app, detail):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS kiln_contract (app text, at timestamptz DEFAULT now(), detail text)")
        cur.execute("INSERT INTO kiln_contract (app, detail) VALUES (%s, %s)", (app, json.dumps(detail, sort_keys=True)))


# --- HTTP --------------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6

    def server_bind(self):
        # Both IPv6 and IPv4 (localhost may resolve to either).
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Server4(Server):
    address_family = socket.AF_INET

    def server_bind(self):
        ThreadingHTTPServer.server_bind(self)


def bind(port, routes):
    """A server on `port` (bound, not yet listening): `routes(handler)` returns
    (status, content type, body) for each GET."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "kiln-contract-image"

        def do_GET(self):
            status, ctype, body = routes(self)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            log("http: " + (fmt % args))

        def log_request(self, code="-", size="-"):
            # Passing health probes every second would bury everything else.
            if not (isinstance(code, int) and code < 400 and self.path in QUIET_PATHS):
                super().log_request(code, size)

    for cls in (Server, Server4):
        try:
            return cls(("::" if cls is Server else "0.0.0.0", port), Handler, bind_and_activate=False)
        except OSError:
            continue
    raise Refuse(f"cannot create a socket for port {port}")


QUIET_PATHS = ("/_health", "/status", "/status.php", "/health")


def listen(server, port):
    try:
        server.server_bind()
        server.server_activate()
    except OSError as e:
        raise Refuse(f"cannot listen on port {port} as UID {os.getuid()}: {e.strerror}")


def serve_in_background(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


def sleep_forever():
    while True:
        time.sleep(3600)


def port_from(name, default):
    value = env(name) or default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise Refuse(f"{name}={value!r} is malformed: it must be a port number")
    return int(value)


# --- HedgeDoc 1.x ------------------------------------------------------------------------

HEDGEDOC_UID = 10000
HEDGEDOC_UPLOADS = "/hedgedoc/public/uploads"
SECRETS = "/run/secrets"


def hedgedoc_secret(variable, secret):
    """HedgeDoc reads a Docker secret /run/secrets/<secret> in place of <variable>."""
    path = os.path.join(SECRETS, secret)
    if os.path.exists(path):
        return read_file(path, f"the Docker secret for {variable}"), f"{path} (in place of {variable})"
    return env(variable), variable


def parse_db_url(url, source):
    u = urllib.parse.urlsplit(url.strip())
    try:
        port = u.port or 5432
    except ValueError:
        raise Refuse(f"{source} is malformed: its port is not a number")
    database = u.path.lstrip("/")
    missing = [n for n, v in (("user", u.username), ("password", u.password), ("host", u.hostname), ("database", database)) if not v]
    if u.scheme not in ("postgres", "postgresql") or missing or "/" in database:
        why = f"it lacks the {', '.join(missing)}" if missing else f"scheme `{u.scheme}`"
        raise Refuse(f"{source} is malformed ({why}): it must be postgres://user:password@host:port/database")
    return {
        "host": u.hostname,
        "port": port,
        "user": urllib.parse.unquote(u.username),
        "password": urllib.parse.unquote(u.password),
        "dbname": urllib.parse.unquote(database),
    }


def hedgedoc(args):
    if args:
        os.execvp(args[0], args)
    log(f"standing in for HedgeDoc 1.x ({UPSTREAM}); checks kiln's side of the image's contract, it is not HedgeDoc")
    uid, gid = os.getuid(), os.getgid()
    if (uid, gid) != (HEDGEDOC_UID, HEDGEDOC_UID):
        raise Refuse(f"runs as UID/GID {HEDGEDOC_UID} like the upstream image, not as {uid}/{gid}")
    port = port_from("CMD_PORT", "3000")
    url, url_source = hedgedoc_secret("CMD_DB_URL", "dbURL")
    if url is None:
        raise Refuse("CMD_DB_URL is not set (nor the Docker secret /run/secrets/dbURL): HedgeDoc needs its PostgreSQL database")
    db = parse_db_url(url, url_source)
    domain = require("CMD_DOMAIN", "the public host name HedgeDoc builds its links with")
    if not HOSTNAME.match(domain):
        raise Refuse(f"CMD_DOMAIN={domain!r} is malformed: it must be a host name (no scheme, port or path)")
    must_equal("CMD_PROTOCOL_USESSL", "true", "HedgeDoc sits behind kiln's TLS proxy: its links are https")
    must_equal("CMD_URL_ADDPORT", "false", "the proxy serves it on the default port")
    secret, secret_source = hedgedoc_secret("CMD_SESSION_SECRET", "sessionsecret")
    if secret is None:
        raise Refuse("CMD_SESSION_SECRET is not set (nor the Docker secret /run/secrets/sessionsecret): sessions would not survive a restart")
    if len(secret) != 64:
        newline = " (a trailing newline counts)" if secret.endswith("\n") else ""
        raise Refuse(f"the session secret from {secret_source} is malformed: it has {len(secret)} characters{newline}, kiln's recipe gives 64")
    for name in ("CMD_ALLOW_ANONYMOUS", "CMD_ALLOW_ANONYMOUS_EDITS", "CMD_ALLOW_FREEURL", "CMD_CSP_ENABLE",
                 "CMD_CSP_ALLOW_FRAMING", "CMD_EMAIL", "CMD_ALLOW_EMAIL_REGISTER", "CMD_HSTS_ENABLE"):
        boolean(name)
    upload = os.path.join(HEDGEDOC_UPLOADS, "kiln-contract-hedgedoc.txt")
    write_as_me(upload, f"written by the kiln contract image (test double) for HedgeDoc as UID {uid}\n", 0o644)
    log(f"wrote {upload} as UID {uid}")

    ready = threading.Event()

    def routes(h):
        path = h.path.split("?")[0]
        if path == "/_health":
            return (200, "application/json", '{"ready":true}') if ready.is_set() else (503, "application/json", '{"ready":false}')
        if path == "/status":
            if not ready.is_set():
                return 503, "text/plain", "not ready"
            return 200, "application/json", json.dumps({"onlineNotes": 0, "onlineUsers": 0, "kilnContractImage": "test double"})
        return 200, "text/plain", f"{PREFIX}HedgeDoc stand-in for https://{domain}/; it is not HedgeDoc\n"

    server = bind(port, routes)
    listen(server, port)
    serve_in_background(server)
    log(f"listening on port {port}; /_health answers 503 until the database row is written")
    conn = connect(db, url_source, 60)
    write_row(conn, "hedgedoc", {"upstream": UPSTREAM, "domain": domain, "uid": uid})
    conn.close()
    ready.set()
    log(f"ready: row ('hedgedoc', …) written to table kiln_contract of database {db['dbname']} on {db['host']}:{db['port']}; /_health and /status answer 200")
    sleep_forever()


# --- Nextcloud (apache variant) ---------------------------------------------------------

WWW_DATA = 33
HTML = "/var/www/html"
DATA = os.path.join(HTML, "data")
CONFIG_DIR = os.path.join(HTML, "config")
CONFIG_PHP = os.path.join(CONFIG_DIR, "config.php")
SETTINGS = os.path.join(CONFIG_DIR, "kiln-contract.json")


def file_env(name, required_hint=None):
    """The Nextcloud image's VAR / VAR_FILE convention (exclusive; a file's trailing
    newlines dropped, as a shell's $(< file) does)."""
    value, file_name = env(name), env(name + "_FILE")
    if value is not None and file_name is not None:
        raise Refuse(f"both {name} and {name}_FILE are set (but are exclusive)")
    if file_name is not None:
        value = read_file(file_name, f"{name}_FILE").rstrip("\n")
        if value == "":
            raise Refuse(f"{name}_FILE={file_name} is empty")
    if value is None and required_hint is not None:
        raise Refuse(f"{name} is not set (nor {name}_FILE): {required_hint}")
    return value


def load_settings():
    try:
        with open(SETTINGS, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise Refuse(f"cannot read {SETTINGS} as UID {os.getuid()}: {e}")


def save_settings(settings):
    write_as_me(SETTINGS, json.dumps(settings, indent=2, sort_keys=True) + "\n", 0o640)


def nextcloud_version(tag):
    parts = [p for p in re.split(r"[.-]", tag)]
    digits = []
    for p in parts:
        if not p.isdigit():
            break
        digits.append(p)
    return ".".join((digits + ["0"] * 4)[:4]) if digits else "0.0.0.0"


def nextcloud(args):
    if args and args != ["apache2-foreground"]:
        os.execvp(args[0], args)
    log(f"standing in for Nextcloud ({UPSTREAM}); checks kiln's side of the image's contract, it is not Nextcloud")
    host = file_env("POSTGRES_HOST", "Nextcloud is installed on the PostgreSQL it names")
    database = file_env("POSTGRES_DB", "the database Nextcloud installs into")
    user = file_env("POSTGRES_USER", "the role Nextcloud connects as")
    password = file_env("POSTGRES_PASSWORD", "the password of POSTGRES_USER")
    file_env("NEXTCLOUD_ADMIN_USER", "the first admin account, created at installation")
    file_env("NEXTCLOUD_ADMIN_PASSWORD", "the first admin account's password")
    domains = require("NEXTCLOUD_TRUSTED_DOMAINS", "the host names Nextcloud answers to (space separated)").split()
    for d in domains:
        if not HOSTNAME.match(d.rsplit(":", 1)[0] if d.count(":") == 1 else d):
            raise Refuse(f"NEXTCLOUD_TRUSTED_DOMAINS has a malformed entry {d!r}: it must be a host name")
    proxies = require("TRUSTED_PROXIES", "the proxy's addresses (space separated IPs or CIDR ranges)").split()
    for p in proxies:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise Refuse(f"TRUSTED_PROXIES has a malformed entry {p!r}: it must be an IP address or a CIDR range")
    must_equal("OVERWRITEPROTOCOL", "https", "Nextcloud sits behind kiln's TLS proxy")
    overwrite_host = env("OVERWRITEHOST")
    if overwrite_host is not None and not HOSTNAME.match(overwrite_host.split(":")[0]):
        raise Refuse(f"OVERWRITEHOST={overwrite_host!r} is malformed: it must be a host name (and port)")
    cli_url = env("OVERWRITECLIURL")
    if cli_url is not None and not re.match(r"^https?://[^/\s]+", cli_url):
        raise Refuse(f"OVERWRITECLIURL={cli_url!r} is malformed: it must be an http(s) URL")
    db_host, _, db_port = host.partition(":")
    if db_port and not db_port.isdigit():
        raise Refuse(f"POSTGRES_HOST={host!r} is malformed: host or host:port")

    # As apache: bind port 80 as root, then run as www-data.
    server = bind(80, lambda h: nextcloud_routes(h, domains))
    try:
        server.server_bind()
    except OSError as e:
        raise Refuse(f"cannot bind port 80 as UID {os.getuid()}: {e.strerror}")
    if os.getuid() == 0:
        os.setgroups([WWW_DATA])
        os.setgid(WWW_DATA)
        os.setuid(WWW_DATA)
    if os.getuid() != WWW_DATA:
        raise Refuse(f"the web part runs as www-data (UID {WWW_DATA}) like the upstream image, not as UID {os.getuid()}")
    os.environ["HOME"] = "/var/www"

    # Installation: config and data as www-data, then the database.
    for d, mode in ((CONFIG_DIR, 0o750), (DATA, 0o770)):
        try:
            os.makedirs(d, mode=mode, exist_ok=True)
        except OSError as e:
            raise Refuse(f"cannot create {d} as UID {WWW_DATA}: {e.strerror}")
    mode = os.stat(DATA).st_mode & 0o777
    if mode & 0o007:
        # As Nextcloud: try 0770, refuse when the data stays readable by others.
        try:
            os.chmod(DATA, 0o770)
        except OSError:
            pass
        if os.stat(DATA).st_mode & 0o007:
            raise Refuse(f"{DATA} is readable by other users (mode {mode:o}) and UID {WWW_DATA} cannot change it to 770")
    settings = load_settings()
    if settings is None:
        settings = {
            "installed": False,
            "maintenance": False,
            "db": {"host": db_host, "port": int(db_port or 5432), "user": user, "password": password, "dbname": database},
            "trusted_domains": ["localhost"] + domains,
        }
        save_settings(settings)
    else:
        # An installed Nextcloud keeps the database settings of its installation.
        log(f"{SETTINGS} exists: using the database settings of the installation")
    write_as_me(CONFIG_PHP, "<?php\n// kiln contract image (test double): not Nextcloud's configuration; see kiln-contract.json\n$CONFIG = array();\n", 0o640)
    write_as_me(os.path.join(DATA, ".ocdata"), "", 0o640)
    log(f"wrote {CONFIG_PHP}, {SETTINGS} and {DATA}/.ocdata as UID {WWW_DATA}")
    db = settings["db"]
    conn = connect(db, "POSTGRES_HOST/POSTGRES_DB/POSTGRES_USER/POSTGRES_PASSWORD", 60)
    write_row(conn, "nextcloud", {"upstream": UPSTREAM, "trusted_domains": domains, "uid": os.getuid()})
    conn.close()
    settings["installed"] = True
    save_settings(settings)
    log(f"installed: row ('nextcloud', …) written to table kiln_contract of database {db['dbname']} on {db['host']}:{db['port']}")
    # As upstream, the web server starts once installation is done.
    try:
        server.server_activate()
    except OSError as e:
        raise Refuse(f"cannot listen on port 80: {e.strerror}")
    log("listening on port 80 as www-data; /status.php answers")
    serve_in_background(server)
    sleep_forever()


def nextcloud_routes(h, domains):
    settings = load_settings() or {}
    path = h.path.split("?")[0]
    tag = UPSTREAM.rsplit(":", 1)[-1]
    if path == "/status.php":
        return 200, "application/json", json.dumps({
            "installed": bool(settings.get("installed")),
            "maintenance": bool(settings.get("maintenance")),
            "needsDbUpgrade": False,
            "version": nextcloud_version(tag),
            "versionstring": tag,
            "edition": "",
            "productname": "kiln contract image (test double) for Nextcloud",
            "extendedSupport": False,
        })
    raw = h.headers.get("Host") or ""
    host = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw
    if host not in settings.get("trusted_domains", []) and host not in ("127.0.0.1", "[::1]"):
        return 400, "text/plain", f"{PREFIX}Access through untrusted domain {host!r} (NEXTCLOUD_TRUSTED_DOMAINS)\n"
    if settings.get("maintenance"):
        return 503, "text/plain", f"{PREFIX}in maintenance mode\n"
    return 200, "text/plain", f"{PREFIX}Nextcloud stand-in; it is not Nextcloud\n"


# --- php (cron.php and occ of the Nextcloud image) --------------------------------------


def as_config_owner(what):
    """As Nextcloud's console: it runs as the owner of config/config.php only."""
    try:
        owner = os.stat(CONFIG_PHP).st_uid
    except FileNotFoundError:
        raise Refuse(f"{what}: Nextcloud is not installed ({CONFIG_PHP} is missing)")
    if os.getuid() != owner:
        raise Refuse(
            f"{what}: Console has to be executed with the user that owns the file config/config.php\n"
            f"Current user id: {os.getuid()}\nOwner id of config.php: {owner}\n"
            "Try adding 'sudo -u #" + str(owner) + "' to the beginning of the command (without the single quotes)"
        )
    settings = load_settings()
    if not settings or not settings.get("installed"):
        raise Refuse(f"{what}: Nextcloud is not installed")
    return settings


def php(args):
    if args[:1] == ["-f"]:
        args = args[1:]
    if not args:
        raise Refuse("php: this contract image's php runs `php -f /var/www/html/cron.php` and `php occ ...` only")
    script = os.path.normpath(os.path.join(os.getcwd(), args[0]))
    if script == os.path.join(HTML, "cron.php"):
        return cron()
    if script == os.path.join(HTML, "occ"):
        return occ(args[1:])
    raise Refuse(f"php {args[0]}: not part of the contract image (cron.php and occ are)")


def cron():
    settings = as_config_owner("cron.php")
    if settings.get("maintenance"):
        log("cron.php: in maintenance mode, no background jobs run", sys.stdout)
        return 0
    conn = connect(settings["db"], "the installation's database settings", 10)
    write_row(conn, "nextcloud-cron", {"upstream": UPSTREAM, "uid": os.getuid()})
    conn.close()
    log("cron.php: background jobs ran (row ('nextcloud-cron', …) written)", sys.stdout)
    return 0


def occ(args):
    settings = as_config_owner("occ")
    command = args[0] if args else "list"
    options = args[1:]
    if command == "maintenance:mode":
        if options == ["--on"] or options == ["--off"]:
            settings["maintenance"] = options == ["--on"]
            save_settings(settings)
            log("Maintenance mode " + ("enabled" if settings["maintenance"] else "disabled"), sys.stdout)
            return 0
        if not options:
            log("Maintenance mode is currently " + ("enabled" if settings.get("maintenance") else "disabled"), sys.stdout)
            return 0
    elif command == "background:cron" and not options:
        settings["background_jobs"] = "cron"
        save_settings(settings)
        log("Set mode for background jobs to 'cron'", sys.stdout)
        return 0
    elif command == "status" and not options:
        log(f"installed: true\nversionstring: {UPSTREAM.rsplit(':', 1)[-1]}\nmaintenance: {str(bool(settings.get('maintenance'))).lower()}", sys.stdout)
        return 0
    raise Refuse(f"occ {' '.join(args)}: not part of the contract image (maintenance:mode [--on|--off], background:cron and status are)")


# --- broken: runs, never healthy ----------------------------------------------------------


def broken(_args):
    log(f"deliberately unhealthy: standing in for {UPSTREAM}; every path answers 500 on ports 8008, 3000 and 80")

    def routes(h):
        log(f"deliberately unhealthy: 500 for {h.command} {h.path}")
        return 500, "text/plain", f"{PREFIX}deliberately unhealthy\n"

    for port in (8008, 3000, 80):
        server = bind(port, routes)
        try:
            listen(server, port)
            serve_in_background(server)
        except Refuse as e:
            log(f"deliberately unhealthy: {e}")
    sleep_forever()


def main(argv):
    exit_on_signals()
    apps = {"hedgedoc": hedgedoc, "nextcloud": nextcloud, "broken": broken, "php": php}
    if len(argv) < 2 or argv[1] not in apps:
        log(f"usage: contract.py {'|'.join(apps)} [ARGS...]")
        return 2
    try:
        return apps[argv[1]](argv[2:]) or 0
    except Refuse as e:
        log(f"refusing to start: {e}" if argv[1] != "php" else str(e))
        return 1
    except Exception:
        log("failed:\n" + traceback.format_exc())
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
