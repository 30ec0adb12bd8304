#!/usr/bin/env bash
# One setup for both README commands: npm packages, the compiled CLI (dist/), the pre-commit hook,
# a Temporal CLI binary, and (with --mysql) a reachable MariaDB/MySQL and Redis for the tests. Each step is skipped when
# already satisfied, so re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_CLI_VERSION=1.5.1
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/deltasync"
CACHED_TEMPORAL="$CACHE_DIR/bin/temporal-$TEMPORAL_CLI_VERSION"

say() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

need_mysql=0
for arg in "$@"; do
  case "$arg" in
    --mysql) need_mysql=1 ;;
    *) die "unknown option '$arg' (known: --mysql)" ;;
  esac
done

# --- Node.js and npm packages -------------------------------------------------------------------
command -v node >/dev/null || die "Node.js 20 or newer is required: install it (e.g. 'apt-get install nodejs npm')."
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js 20 or newer is required, found $(node --version)."
command -v npm >/dev/null || die "npm is required: install it (e.g. 'apt-get install npm')."

# better-sqlite3 compiles from source when no prebuilt binary can be downloaded; Debian ships
# the Node headers under /usr, so point node-gyp there instead of letting it try to download them.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then
  export npm_config_nodedir=/usr
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (the first time this compiles better-sqlite3 and takes a few minutes)"
  # Not `npm ci`: registries that lack other platforms' optional packages (@swc/core-darwin-*, …)
  # leave them out of the lock, which `npm ci` rejects. `npm install` still installs the locked
  # versions and skips optional packages it cannot fetch; --no-save keeps the checkout clean.
  npm install --no-save --no-audit --no-fund --loglevel=error >&2
  touch node_modules/.package-lock.json
fi
if ! node -e "new (require('better-sqlite3'))(':memory:').close()" 2>/dev/null; then
  say "building better-sqlite3 for this Node.js"
  npm rebuild better-sqlite3 --loglevel=error >&2 ||
    die "better-sqlite3 could not be built: install a C++ toolchain and Python ('apt-get install build-essential python3')."
fi

# The SQLite statement time limit (native/statement-timeout.c), against the SQLite headers
# better-sqlite3 ships. Without a C compiler the embedded database runs without the limit.
extension=build/statement-timeout.so
if [ ! -f "$extension" ] || [ native/statement-timeout.c -nt "$extension" ]; then
  if command -v cc >/dev/null; then
    mkdir -p build
    cc -shared -fPIC -O2 -pthread -Inode_modules/better-sqlite3/deps/sqlite3 \
      native/statement-timeout.c -o "$extension" >&2 ||
      say "WARNING: the SQLite statement-timeout extension did not build; SQLite statements will have no time limit"
  else
    say "WARNING: no C compiler (cc): SQLite statements will have no time limit ('apt-get install build-essential')"
  fi
fi

# The CLI and the worker run compiled (bin/deltasync runs dist/ with plain node): build them, again
# whenever a source changed since the last build (bin/build --if-stale, a quick check otherwise).
bin/build --if-stale || die "the TypeScript build (bin/build) failed: see the errors above."

# ESLint, Prettier and tsc before every commit (scripts/git-hooks/pre-commit), unless this clone
# already uses other hooks.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ -z "$(git config core.hooksPath || true)" ]; then
  git config core.hooksPath scripts/git-hooks
fi

# --- Temporal CLI (dev server with Web UI and SQLite persistence) -------------------------------
# The same lookup order lives in src/temporal/cli-binary.ts: TEMPORAL_CLI_PATH, a `temporal` on
# PATH, then our cache. Only the cache is ours to fill.
if [ -n "${TEMPORAL_CLI_PATH:-}" ]; then
  [ -x "$TEMPORAL_CLI_PATH" ] || die "TEMPORAL_CLI_PATH=$TEMPORAL_CLI_PATH is not an executable file."
elif command -v temporal >/dev/null; then
  :
elif [ -x "$CACHED_TEMPORAL" ]; then
  :
elif command -v go >/dev/null; then
  say "building the Temporal CLI $TEMPORAL_CLI_VERSION with Go (once, cached in $CACHE_DIR; takes a few minutes)"
  tmp_bin=$(mktemp -d)
  GOBIN="$tmp_bin" go install "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION" >&2 ||
    die "'go install github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION' failed; install the Temporal CLI and set TEMPORAL_CLI_PATH."
  mkdir -p "$CACHE_DIR/bin"
  mv "$tmp_bin/temporal" "$CACHED_TEMPORAL"
  rmdir "$tmp_bin"
else
  say "no Temporal CLI and no Go toolchain: the Temporal SDK will try to download its dev server (needs internet)."
fi

# --- Services the tests use: MariaDB/MySQL and Redis ---------------------------------------------
reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do reachable "$1" "$2" && return 0; sleep 0.5; done; return 1; }

if [ "$need_mysql" = 1 ]; then
  url="${DELTASYNC_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
  read -r host port <<<"$(node -e 'const u=new URL(process.argv[1]); console.log(`${u.hostname} ${u.port||3306}`)' "$url")"
  if ! reachable "$host" "$port"; then
    mariadbd_bin=$(command -v mariadbd || ls /usr/sbin/mariadbd 2>/dev/null || true)
    [ -n "$mariadbd_bin" ] ||
      die "MariaDB/MySQL is not reachable at $host:$port and no mariadbd is installed: install it ('apt-get install mariadb-server') or set DELTASYNC_TEST_MYSQL_URL."
    say "starting the local MariaDB server ($mariadbd_bin)"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$mariadbd_bin" >&2
    wait_for "$host" "$port" || die "MariaDB was started but does not accept connections on $host:$port; see its error log."
  fi

  # The binary-log change source is tested against the server's own row-format binary log. A local
  # MariaDB without one gets it (a section in /etc/my.cnf, then a restart); another server must be
  # configured by its owner.
  binlog=$(npx tsx scripts/row-binlog.ts check "$url")
  if [ "$binlog" != ok ]; then
    mariadbd_bin=$(command -v mariadbd || ls /usr/sbin/mariadbd 2>/dev/null || true)
    case "$host" in 127.0.0.1 | localhost) local_server=1 ;; *) local_server=0 ;; esac
    [ "$local_server" = 1 ] && [ -n "$mariadbd_bin" ] && [ -w /etc ] ||
      die "MariaDB at $host:$port has $binlog; the tests need log_bin=ON, binlog_format=ROW and binlog_row_image=FULL (see docs/change-sources.md)."
    say "configuring the local MariaDB for a row-format binary log (/etc/my.cnf) and restarting it"
    if ! grep -q 'deltasync: row binlog' /etc/my.cnf 2>/dev/null; then
      cat >>/etc/my.cnf <<'CNF'

[mariadbd]
# deltasync: row binlog for the binary-log change source's tests (scripts/setup.sh)
log_bin = mysql-bin
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
server_id = 1
expire_logs_days = 2
CNF
    fi
    npx tsx scripts/row-binlog.ts shutdown "$url"
    for _ in $(seq 1 120); do reachable "$host" "$port" || break; sleep 0.5; done
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    for _ in $(seq 1 20); do pgrep -x mariadbd >/dev/null || break; sleep 0.5; done
    start-stop-daemon --start --oknodo --background --exec "$mariadbd_bin" >&2
    wait_for "$host" "$port" || die "MariaDB did not come back on $host:$port after enabling its binary log; see its error log."
    binlog=$(npx tsx scripts/row-binlog.ts check "$url")
    [ "$binlog" = ok ] || die "MariaDB at $host:$port still has $binlog after the restart; see /etc/my.cnf."
  fi

  # The tenancy tests read datasets as each tenant's own database user (test/security.test.ts).
  npx tsx scripts/create-test-users.ts >&2

  # The redis-set destination is tested against a real Redis on 127.0.0.1:6379.
  if ! reachable 127.0.0.1 6379; then
    command -v redis-server >/dev/null ||
      die "Redis is not reachable at 127.0.0.1:6379 and no redis-server is installed: install it ('apt-get install redis-server')."
    say "starting a local Redis server (in memory, nothing saved)"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
    wait_for 127.0.0.1 6379 || die "Redis was started but does not accept connections on 127.0.0.1:6379."
  fi
fi
