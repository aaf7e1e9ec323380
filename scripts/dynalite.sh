#!/usr/bin/env bash
# dynalite, an independent DynamoDB implementation on node (npm package `dynalite`), for the
# tests that check our requests against something stricter than moto (indexes, TTL, tags).
#
#   scripts/dynalite.sh install   npm-install it into .dynalite/ (project-local; idempotent)
#   scripts/dynalite.sh up        install, start on 127.0.0.1:$DYNALITE_PORT, print exports
#   scripts/dynalite.sh down      stop the server `up` started
#   scripts/dynalite.sh bin       print the path of the installed program (exit 1: none)
#
# Settings (environment): DYNALITE_DIR (install folder, default <repo>/.dynalite),
# DYNALITE_PORT (4567), DYNALITE_VERSION (4.0.0). Without node and npm, `install` says so
# and exits 3; the test fixture then skips the dynalite tests with that message.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DYNALITE_DIR=${DYNALITE_DIR:-$ROOT/.dynalite}
DYNALITE_PORT=${DYNALITE_PORT:-4567}
DYNALITE_VERSION=${DYNALITE_VERSION:-4.0.0}
BIN="$DYNALITE_DIR/node_modules/dynalite/cli.js"
PIDFILE="$DYNALITE_DIR/dynalite-$DYNALITE_PORT.pid"

say() { echo "dynalite.sh: $*" >&2; }

install() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        say "node and npm are not installed: the dynalite tests are skipped (apt-get install nodejs npm)"
        exit 3
    fi
    mkdir -p "$DYNALITE_DIR"
    # One install at a time (pytest-xdist workers and make may ask together).
    exec 8>"$DYNALITE_DIR/.lock"
    flock 8
    if [[ -f $BIN ]] && grep -q "\"version\": \"$DYNALITE_VERSION\"" \
        "$DYNALITE_DIR/node_modules/dynalite/package.json" 2>/dev/null; then
        return 0
    fi
    say "installing dynalite@$DYNALITE_VERSION into $DYNALITE_DIR"
    npm install --prefix "$DYNALITE_DIR" --no-audit --no-fund --no-save --loglevel=error \
        "dynalite@$DYNALITE_VERSION" >&2
    [[ -f $BIN ]] || { say "error: npm ran but $BIN is missing"; exit 1; }
}

case ${1:-} in
install) install ;;
bin)
    [[ -f $BIN ]] || exit 1
    echo "$BIN"
    ;;
up)
    install
    if [[ -s $PIDFILE ]] && kill -0 "$(<"$PIDFILE")" 2>/dev/null; then
        say "already running (pid $(<"$PIDFILE"))"
    else
        node "$BIN" --host 127.0.0.1 --port "$DYNALITE_PORT" --createTableMs 0 \
            --deleteTableMs 0 --updateTableMs 0 >"$DYNALITE_DIR/dynalite-$DYNALITE_PORT.log" 2>&1 &
        echo $! >"$PIDFILE"
        for _ in $(seq 50); do
            curl -s -o /dev/null "http://127.0.0.1:$DYNALITE_PORT/" && break
            sleep 0.1
        done
    fi
    echo "export DYNALITE_ENDPOINT=http://127.0.0.1:$DYNALITE_PORT"
    ;;
down)
    if [[ -s $PIDFILE ]]; then
        kill "$(<"$PIDFILE")" 2>/dev/null || true
        rm -f "$PIDFILE"
    fi
    ;;
*)
    echo "usage: $0 install|up|down|bin" >&2
    exit 2
    ;;
esac
