import { createConnection } from 'mysql2/promise';

/**
 * scripts/setup.sh --mysql: whether the test server keeps a row-format binary log (the binlog
 * change source reads it: src/core/change-binlog.ts), and shutting it down so that setup can
 * restart it with one. `check <url>` prints `ok` or what is missing; `shutdown <url>` stops it.
 */
async function main() {
  const [command, url] = process.argv.slice(2);
  if ((command !== 'check' && command !== 'shutdown') || !url)
    throw new Error('usage: row-binlog.ts check|shutdown <mysql-url>');
  const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
  const connection = await createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  });
  try {
    if (command === 'shutdown') {
      await connection.query('SHUTDOWN');
      return;
    }
    const [rows] = await connection.query(
      'SELECT @@log_bin AS log_bin, @@global.binlog_format AS format, @@global.binlog_row_image AS image',
    );
    const [server] = rows as { log_bin: number; format: string; image: string }[];
    const ok = Number(server!.log_bin) === 1 && server!.format === 'ROW' && server!.image === 'FULL';
    console.log(
      ok
        ? 'ok'
        : `log_bin=${server!.log_bin} binlog_format=${server!.format} binlog_row_image=${server!.image}`,
    );
  } finally {
    await connection.end().catch(() => undefined);
  }
}

main().catch((error: unknown) => {
  console.error(`[setup] ERROR: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
