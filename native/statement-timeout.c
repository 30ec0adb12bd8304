/*
 * A statement time limit for SQLite. SQLite has none of its own, better-sqlite3 runs statements
 * synchronously (no JavaScript timer can fire while one runs) and is built without the progress
 * handler, so a watchdog thread does it: the trace callback tells it when a statement starts and
 * ends, and once one has run longer than the limit it calls sqlite3_interrupt(), which SQLite
 * allows from another thread. The statement then fails with SQLITE_INTERRUPT ("interrupted") and
 * its transaction is rolled back.
 *
 * Loaded into every connection of the embedded database (src/db/index.ts). SELECT
 * deltasync_statement_timeout(ms) sets the limit for the connection's later statements (0: none).
 * Built by scripts/setup.sh with the SQLite headers better-sqlite3 ships.
 */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef struct {
  sqlite3 *db;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t changed;
  int64_t limit_ms;       /* 0: no limit */
  void *statement;        /* the top-level statement running now, or 0 */
  int64_t started_ms;     /* when it started */
  int interrupted;        /* the watchdog interrupted it already */
  int closing;
} Watchdog;

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *watch(void *context) {
  Watchdog *w = context;
  pthread_mutex_lock(&w->lock);
  while (!w->closing) {
    if (w->statement == 0 || w->limit_ms == 0 || w->interrupted) {
      pthread_cond_wait(&w->changed, &w->lock);
      continue;
    }
    int64_t deadline = w->started_ms + w->limit_ms;
    int64_t now = monotonic_ms();
    if (now >= deadline) {
      sqlite3_interrupt(w->db);
      w->interrupted = 1;
      continue;
    }
    /* pthread_cond_timedwait takes CLOCK_REALTIME: wait the remaining time from now. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t wait_ms = deadline - now;
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_sec += 1;
      until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&w->changed, &w->lock, &until);
  }
  pthread_mutex_unlock(&w->lock);
  return 0;
}

/* A statement starts (SQLITE_TRACE_STMT; trigger programs report "--" comments) or ends (PROFILE). */
static int on_trace(unsigned type, void *context, void *statement, void *detail) {
  Watchdog *w = context;
  const char *sql = detail;
  pthread_mutex_lock(&w->lock);
  if (type == SQLITE_TRACE_STMT && w->statement == 0 && !(sql && sql[0] == '-' && sql[1] == '-')) {
    w->statement = statement;
    w->started_ms = monotonic_ms();
    w->interrupted = 0;
    pthread_cond_signal(&w->changed);
  } else if (type == SQLITE_TRACE_PROFILE && statement == w->statement) {
    w->statement = 0;
    pthread_cond_signal(&w->changed);
  }
  pthread_mutex_unlock(&w->lock);
  return 0;
}

static void set_timeout(sqlite3_context *context, int argc, sqlite3_value **argv) {
  Watchdog *w = sqlite3_user_data(context);
  sqlite3_int64 ms = sqlite3_value_int64(argv[0]);
  (void)argc;
  pthread_mutex_lock(&w->lock);
  w->limit_ms = ms > 0 ? ms : 0;
  pthread_cond_signal(&w->changed);
  pthread_mutex_unlock(&w->lock);
  sqlite3_result_int64(context, ms > 0 ? ms : 0);
}

/* Called when the connection closes (the function is dropped with it). */
static void stop_watchdog(void *context) {
  Watchdog *w = context;
  pthread_mutex_lock(&w->lock);
  w->closing = 1;
  pthread_cond_signal(&w->changed);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, 0);
  pthread_cond_destroy(&w->changed);
  pthread_mutex_destroy(&w->lock);
  sqlite3_free(w);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_statementtimeout_init(sqlite3 *db, char **error, const sqlite3_api_routines *api) {
  Watchdog *w;
  (void)error;
  SQLITE_EXTENSION_INIT2(api);
  w = sqlite3_malloc(sizeof *w);
  if (w == 0) return SQLITE_NOMEM;
  w->db = db;
  w->limit_ms = 0;
  w->statement = 0;
  w->started_ms = 0;
  w->interrupted = 0;
  w->closing = 0;
  pthread_mutex_init(&w->lock, 0);
  pthread_cond_init(&w->changed, 0);
  if (pthread_create(&w->thread, 0, watch, w) != 0) {
    sqlite3_free(w);
    return SQLITE_ERROR;
  }
  sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, on_trace, w);
  return sqlite3_create_function_v2(db, "deltasync_statement_timeout", 1, SQLITE_UTF8, w, set_timeout, 0, 0,
                                    stop_watchdog);
}
