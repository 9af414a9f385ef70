#!/usr/bin/env bash
# Make this Debian 12 machine ready to run and test pingtrack:
#   Debian packages, PostgreSQL 15 with pg_cron, RabbitMQ, the project in .venv/,
#   the database migrated.
# Idempotent and non-interactive: every step checks first and acts only when
# something is missing, so a run on a ready machine takes a few seconds and
# changes nothing. PostgreSQL is restarted only when pg_cron is not loaded yet.
#
#   deploy/setup.sh                 everything
#   deploy/setup.sh --python-only   only .venv/ (enough for lint)
#   deploy/setup.sh --with-browser  also Chromium and the browser test's node packages (make test)
#
# Environment: PYTHON (interpreter for the venv, default python3), and the
# PINGTRACK_* settings, which `pingtrack migrate` reads.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
PG_CLUSTER=main
PG_PORT=5432
PG_CONF_FILE=/etc/postgresql/$PG_MAJOR/$PG_CLUSTER/conf.d/pingtrack.conf
PG_LOG=/var/log/postgresql/postgresql-$PG_MAJOR-$PG_CLUSTER.log
CRON_DATABASE=pingtrack
AMQP_PORT=5672
PYTHON=${PYTHON:-python3}
VENV=$REPO/.venv
STAMP=$VENV/.pingtrack-installed
export DEBIAN_FRONTEND=noninteractive
export PGCONNECT_TIMEOUT=5

STARTED=$SECONDS
step() { printf 'setup: %s\n' "$*"; }
fail() {
    printf '\nsetup: ERROR: %s\n' "$1" >&2
    shift
    local line
    for line in "$@"; do printf '       %s\n' "$line" >&2; done
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }
have_systemd() { [ -d /run/systemd/system ]; }
need_root() {
    is_root || fail "$1 needs root." "Run it as root: sudo make setup (or sudo $0)."
}
# Wait up to $1 seconds for the command after it to succeed.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# psql as the PostgreSQL superuser: over the local socket as the postgres OS
# user when root (peer authentication), else over TCP as role postgres.
pg_admin() {
    if is_root; then
        (cd / && runuser -u postgres -- psql -X -q -At -w -p "$PG_PORT" -v ON_ERROR_STOP=1 "$@")
    else
        psql -X -q -At -w -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 "$@"
    fi
}

# ---------------------------------------------------------------- packages --

python_ok() { command -v "$PYTHON" >/dev/null && "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; }

install_packages() {  # all | python | browser
    local wanted=()
    case "$1" in
        all) wanted=(postgresql "postgresql-$PG_MAJOR" "postgresql-$PG_MAJOR-cron"
            rabbitmq-server fping iproute2 nftables) ;;
        browser)
            # The dashboard's browser test: Debian's Chromium driven by playwright-core.
            wanted=(chromium)
            command -v npm >/dev/null || wanted+=(nodejs npm) ;;
    esac
    if ! python_ok; then
        # Debian splits venv/ensurepip out of python3; another interpreter is the user's own.
        case "$(command -v "$PYTHON" || echo /usr/bin/python3)" in
            /usr/bin/*) wanted+=(python3 python3-venv) ;;
            *) fail "$PYTHON cannot create virtual environments (no venv/ensurepip)." \
                "Install its venv support, or run with PYTHON=/usr/bin/python3." ;;
        esac
    fi
    local missing=() pkg status
    for pkg in "${wanted[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ $status == *" ok installed" ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    is_root || fail "missing Debian packages: ${missing[*]}" \
        "Install them:  sudo apt-get install -y ${missing[*]}" \
        "or run this set-up as root:  sudo make setup"
    step "installing ${missing[*]} (apt)"
    local log
    log=$(mktemp)
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$log" 2>&1; then
        tail -n 25 "$log" >&2
        fail "apt-get could not install: ${missing[*]} (output above)"
    fi
    rm -f "$log"
    python_ok || PYTHON=/usr/bin/python3
}

# A test run killed with -9 leaves its egress guard table (tests/egress_guard.py),
# which drops DNS and TCP SYNs leaving the machine: apt-get and pip would fail.
remove_stale_egress_guards() {
    is_root && command -v nft >/dev/null || return 0
    local table
    for table in $(nft list tables inet 2>/dev/null | awk '$3 ~ /^pingtrack_egress_[0-9]+$/ { print $3 }'); do
        kill -0 "${table##*_}" 2>/dev/null && continue
        step "removing egress guard $table left by a test run that died"
        nft delete table inet "$table"
    done
}

# -------------------------------------------------------------- PostgreSQL --

cluster_field() {  # column $1 of `pg_lsclusters` for our cluster, empty when it does not exist
    pg_lsclusters --no-header 2>/dev/null |
        awk -v v="$PG_MAJOR" -v c="$PG_CLUSTER" -v f="$1" '$1 == v && $2 == c { print $f }'
}

pg_service() {  # start | restart
    if have_systemd; then
        systemctl "$1" "postgresql@$PG_MAJOR-$PG_CLUSTER"
    else
        pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$PG_CLUSTER" "$1"
    fi
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

wait_postgres() {
    wait_for 60 pg_ready || {
        [ -r "$PG_LOG" ] && tail -n 20 "$PG_LOG" >&2
        fail "PostgreSQL $PG_MAJOR/$PG_CLUSTER does not answer on 127.0.0.1:$PG_PORT" \
            "(log: $PG_LOG)"
    }
}

start_postgres() {
    if [ -z "$(cluster_field 1)" ]; then
        need_root "creating PostgreSQL cluster $PG_MAJOR/$PG_CLUSTER"
        step "creating PostgreSQL cluster $PG_MAJOR/$PG_CLUSTER"
        pg_createcluster --port "$PG_PORT" "$PG_MAJOR" "$PG_CLUSTER" >/dev/null
    fi
    local port
    port=$(cluster_field 3)
    [ "$port" = "$PG_PORT" ] || fail "PostgreSQL cluster $PG_MAJOR/$PG_CLUSTER uses port $port" \
        "pingtrack expects $PG_PORT (set port = $PG_PORT in /etc/postgresql/$PG_MAJOR/$PG_CLUSTER/postgresql.conf)."
    if [[ $(cluster_field 4) != online* ]]; then
        need_root "starting PostgreSQL"
        step "starting PostgreSQL $PG_MAJOR/$PG_CLUSTER"
        pg_service start
    fi
    wait_postgres
}

# Last value a configuration file gives to setting $1, ignoring our own file
# when $2 is "others". pg_file_settings re-reads the files on every query.
file_setting() {
    pg_admin -v name="$1" -v skip="$([ "${2:-}" = others ] && echo "$PG_CONF_FILE")" <<'SQL'
SELECT setting FROM pg_file_settings
WHERE name = :'name' AND sourcefile IS DISTINCT FROM :'skip'
ORDER BY seqno DESC LIMIT 1;
SQL
}

running_setting() { pg_admin -c "SELECT current_setting('$1', true)"; }

has_lib() {  # has_lib "lib1, lib2" lib
    local item items
    IFS=, read -ra items <<<"$1"
    for item in "${items[@]}"; do
        item=${item//[\"\' ]/}
        [ "$item" = "$2" ] && return 0
    done
    return 1
}

configure_pg_cron() {
    # Keep whatever other files already preload and add pg_cron to it.
    local libs
    libs=$(file_setting shared_preload_libraries others)
    libs=${libs//[\"\' ]/}
    has_lib "$libs" pg_cron || libs=${libs:+$libs,}pg_cron
    local other_db
    other_db=$(file_setting cron.database_name others)
    if [ -n "$other_db" ] && [ "$other_db" != "$CRON_DATABASE" ]; then
        fail "another PostgreSQL config file sets cron.database_name = '$other_db'" \
            "pingtrack needs pg_cron in database '$CRON_DATABASE' (pg_cron 1.4 serves one database)."
    fi
    local socket_dir
    socket_dir=$(running_setting unix_socket_directories)
    socket_dir=${socket_dir%%,*}
    local wanted
    wanted="# Written by pingtrack's deploy/setup.sh: pg_cron runs pingtrack's scheduled jobs.
# shared_preload_libraries keeps what other config files preload, plus pg_cron.
shared_preload_libraries = '$libs'
cron.database_name = '$CRON_DATABASE'
# Jobs connect over the local socket (peer/trust for postgres) instead of TCP,
# where a password would be needed.
cron.host = '${socket_dir:-/var/run/postgresql}'"
    if [ "$(cat "$PG_CONF_FILE" 2>/dev/null)" != "$wanted" ]; then
        need_root "configuring pg_cron in $PG_CONF_FILE"
        step "writing $PG_CONF_FILE (shared_preload_libraries = '$libs')"
        printf '%s\n' "$wanted" >"$PG_CONF_FILE"
        chown postgres:postgres "$PG_CONF_FILE"
        chmod 0644 "$PG_CONF_FILE"
    fi
    # A file read after ours would override it.
    has_lib "$(file_setting shared_preload_libraries)" pg_cron ||
        fail "a PostgreSQL config file read after $PG_CONF_FILE sets shared_preload_libraries" \
            "without pg_cron: add pg_cron there (see: SELECT * FROM pg_file_settings)."

    local loaded db
    loaded=$(running_setting shared_preload_libraries)
    db=$(running_setting cron.database_name)
    if ! has_lib "$loaded" pg_cron || [ "$db" != "$CRON_DATABASE" ]; then
        need_root "restarting PostgreSQL to load pg_cron"
        step "restarting PostgreSQL to load pg_cron (needed once)"
        pg_service restart
        wait_postgres
        has_lib "$(running_setting shared_preload_libraries)" pg_cron ||
            fail "PostgreSQL restarted but pg_cron is still not loaded (log: $PG_LOG)"
    fi
}

# The default PINGTRACK_DATABASE_URL connects as postgres to 127.0.0.1 without
# a password in the URL. Where that is refused (Debian's default is
# scram-sha-256 for TCP), give the postgres role a random password and store it
# in ~/.pgpass, which libpq and asyncpg read; pg_hba.conf is not loosened.
tcp_login_ok() {
    psql -X -At -w "postgresql://postgres@127.0.0.1:$PG_PORT/postgres" -c 'SELECT 1' >/dev/null 2>&1
}

ensure_tcp_login() {
    tcp_login_ok && return 0
    local passfile=${PGPASSFILE:-${HOME:-/root}/.pgpass}
    local no_password=f
    is_root && no_password=$(pg_admin -c "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'postgres'")
    [ "$no_password" = t ] ||
        fail "PostgreSQL refuses postgres@127.0.0.1:$PG_PORT." \
            "Put its password in $passfile as  127.0.0.1:$PG_PORT:*:postgres:PASSWORD  (mode 0600)," \
            "or set PINGTRACK_DATABASE_URL (and PINGTRACK_TEST_DATABASE_URL for tests) with it."
    step "giving role postgres a random password, stored in $passfile"
    local password
    password=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
    # Through stdin, not argv, so `ps` never shows it.
    pg_admin <<<"ALTER ROLE postgres PASSWORD '$password';"
    touch "$passfile"
    chmod 0600 "$passfile"
    local kept
    kept=$(grep -v -E "^(127\.0\.0\.1|localhost):$PG_PORT:\*:postgres:" "$passfile" || true)
    printf '%s\n' ${kept:+"$kept"} "127.0.0.1:$PG_PORT:*:postgres:$password" \
        "localhost:$PG_PORT:*:postgres:$password" >"$passfile"
    tcp_login_ok || fail "postgres@127.0.0.1 still refused after setting its password" \
        "check the host lines for 127.0.0.1 in /etc/postgresql/$PG_MAJOR/$PG_CLUSTER/pg_hba.conf"
}

ensure_pg_cron_extension() {
    [ "$(pg_admin -c "SELECT 1 FROM pg_database WHERE datname = '$CRON_DATABASE'")" = 1 ] || return 0
    [ "$(pg_admin -d "$CRON_DATABASE" -c "SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'")" = 1 ] &&
        return 0
    step "creating extension pg_cron in database $CRON_DATABASE"
    pg_admin -d "$CRON_DATABASE" -c 'CREATE EXTENSION IF NOT EXISTS pg_cron'
}

# ---------------------------------------------------------------- RabbitMQ --

start_rabbitmq() {
    port_open "$AMQP_PORT" && return 0
    need_root "starting RabbitMQ"
    step "starting RabbitMQ"
    if have_systemd; then
        systemctl start rabbitmq-server
    else
        rabbitmq-server -detached >/dev/null 2>&1
    fi
    wait_for 120 port_open "$AMQP_PORT" ||
        fail "RabbitMQ does not answer on 127.0.0.1:$AMQP_PORT (logs: /var/log/rabbitmq/)"
}

# ------------------------------------------------------------------ Python --

install_venv() {
    local lock=$REPO/requirements-test.txt
    # A new lock makes .venv anew, so nothing the lock no longer lists stays behind.
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
        ! cmp -s "$lock" "$VENV/.pingtrack-lock"; then
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
            fail "$PYTHON is $("$PYTHON" -V 2>&1); pingtrack needs Python 3.11 or newer"
        step "creating $VENV with $("$PYTHON" -V 2>&1)"
        "$PYTHON" -m venv --clear "$VENV"
    fi
    # The stamp holds the hash of the lock and pyproject.toml last installed.
    local want
    want=$(cat "$lock" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && [ -x "$VENV/bin/pingtrack" ]; then
        return 0
    fi
    step "installing pingtrack with its test tools into .venv (pip, requirements-test.txt)"
    # The locked versions, each checked against its hash, then the project alone:
    # an editable install has no file to hash, so it takes a second pip run. That
    # one builds with the locked setuptools (--no-build-isolation): an isolated
    # build would fetch its own, unpinned and unchecked (refused under
    # PIP_REQUIRE_HASHES).
    local pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check) log
    log=$(mktemp)
    if ! { "${pip[@]}" --require-hashes -r "$lock" &&
        "${pip[@]}" --no-deps --no-build-isolation -e "$REPO"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        fail "pip could not install the project into $VENV (output above)"
    fi
    rm -f "$log"
    cp "$lock" "$VENV/.pingtrack-lock"
    printf '%s\n' "$want" >"$STAMP"
}

# The browser test's node packages (playwright-core only: it downloads no browser).
install_browser_tools() {
    local dir="$REPO/tests/browser" want
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$dir/node_modules/.pingtrack-stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    step "installing the browser test's node packages (npm ci)"
    local log
    log=$(mktemp)
    if ! npm ci --prefix "$dir" --no-audit --no-fund >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        fail "npm ci in tests/browser failed (output above)"
    fi
    rm -f "$log"
    printf '%s\n' "$want" >"$dir/node_modules/.pingtrack-stamp"
}

# -------------------------------------------------------------------- main --

main() {
    # One set-up at a time (make test and make up may start together). The lock
    # is held by the flock process alone (-o): daemons started below must not
    # inherit it.
    if [ -z "${_PINGTRACK_SETUP_LOCKED:-}" ]; then
        export _PINGTRACK_SETUP_LOCKED=1
        local rc=0
        flock -o -w 900 -E 75 "${TMPDIR:-/tmp}/pingtrack-setup-$(id -u).lock" \
            bash "${BASH_SOURCE[0]}" "$@" || rc=$?
        [ "$rc" -ne 75 ] || fail "another deploy/setup.sh has held the lock for 15 minutes"
        exit "$rc"
    fi
    remove_stale_egress_guards
    if [ "${1:-}" = --python-only ]; then
        install_packages python
        install_venv
        return 0
    fi
    local with_browser=0
    [ "${1:-}" = --with-browser ] && with_browser=1
    install_packages all
    if ((with_browser)); then
        install_packages browser
        install_browser_tools
    fi
    start_postgres
    start_rabbitmq
    ensure_tcp_login
    configure_pg_cron
    install_venv
    local out
    out=$("$VENV/bin/pingtrack" migrate 2>&1) || fail "pingtrack migrate failed:" "$out"
    step "migrate: $out"
    ensure_pg_cron_extension
    step "ready in $((SECONDS - STARTED))s (PostgreSQL 127.0.0.1:$PG_PORT with pg_cron, RabbitMQ 127.0.0.1:$AMQP_PORT, .venv/bin/pingtrack)"
}

main "$@"
