#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1 and print its SQLAlchemy URL on stdout.
# Installs Debian's postgresql package when no server binaries are found.
# Usage: eval "$(bash .ci/postgres.sh)"   → exports TEST_POSTGRES_URL and PG_DATA_DIR
set -euo pipefail

PORT="${PG_PORT:-55432}"
log() { echo "postgres.sh: $*" >&2; }

find_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x "$dir/initdb" ]]; then echo "$dir"; return 0; fi
    done
    return 1
}

if ! BIN="$(find_bin)"; then
    log "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(find_bin)"
fi

RUN_AS=()
if [[ "$(id -u)" == "0" ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
    RUN_AS=(runuser -u postgres --)
fi

DATA="$(mktemp -d /tmp/balance-bot-pg.XXXXXX)"
SOCK="$DATA/sock"
mkdir -p "$SOCK"
[[ ${#RUN_AS[@]} -gt 0 ]] && chown -R postgres "$DATA"

"${RUN_AS[@]}" "$BIN/initdb" -D "$DATA/db" -U postgres -A trust --no-sync >/dev/null
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA/db" -l "$DATA/log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2
"${RUN_AS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres balance_bot_test
log "started on 127.0.0.1:$PORT (data in $DATA)"
echo "export TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:$PORT/balance_bot_test"
echo "export PG_DATA_DIR=$DATA"
echo "export PG_BIN=$BIN"
