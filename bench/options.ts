import { InvalidArgumentError } from 'commander';

/** Option parsers and defaults the benchmarks share (commander: a bad value is reported, exit 1). */

/** The MariaDB server a benchmark creates its own database on. */
export const BENCH_MYSQL_URL = process.env.DELTASYNC_BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

/** A positive whole number, with an optional k or M: 10M, 500k, 20. */
export function wholeCount(value: string): number {
  const n = Number(value.replace(/_/g, '').replace(/k$/i, '000').replace(/m$/i, '000000'));
  if (!Number.isInteger(n) || n <= 0)
    throw new InvalidArgumentError('a positive whole number (10M, 500k, 20)');
  return n;
}

/** A positive number (a rate, a duration). */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('a positive number');
  return n;
}

/** A percentage in (0, 100], with or without its %. */
export function percentage(value: string): number {
  const n = Number(value.replace(/%$/, ''));
  if (!Number.isFinite(n) || n <= 0 || n > 100) throw new InvalidArgumentError('a percentage in (0, 100]');
  return n;
}

/** A size such as 4G or 512M, in bytes. */
export function byteSize(value: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(value);
  if (!match) throw new InvalidArgumentError('a size such as 4G, 512M');
  return Number(match[1]) * 1024 ** ' KMG'.indexOf((match[2] || ' ').toUpperCase());
}
