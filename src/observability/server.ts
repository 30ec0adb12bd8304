import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError, type Logger } from '../logging';

/**
 * The worker's operations endpoint (node:http, no framework):
 *   GET /metrics  the Prometheus text exposition
 *   GET /healthz  200 {"status":"ok",…} when healthy, 503 {"status":"unavailable",…} otherwise
 */

export interface HealthReport {
  healthy: boolean;
  /** Shown as the JSON body, next to `status`. */
  details: Record<string, unknown>;
}

export interface OpsServerOptions {
  port: number;
  /**
   * Default 127.0.0.1: metrics name tenants and connectors, so exposing them beyond the machine is
   * the operator's choice (e.g. 0.0.0.0 in a container, behind a network policy).
   */
  host?: string;
  metrics: () => Promise<{ contentType: string; body: string }>;
  health: () => Promise<HealthReport>;
  logger: Logger;
}

export interface OpsServer {
  /** The port it listens on (the one asked for, or the one picked for port 0). */
  port: number;
  close(): Promise<void>;
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const server = http.createServer((req, res) => {
    void answer(req, options).then(
      ({ status, contentType, body }) => {
        res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (error: unknown) => {
        options.logger.error({ error: describeError(error), path: req.url }, 'ops endpoint failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Scrapers keep connections alive; do not wait for their idle timeout.
        server.closeAllConnections();
      }),
  };
}

async function answer(
  req: http.IncomingMessage,
  options: OpsServerOptions,
): Promise<{ status: number; contentType: string; body: string }> {
  const path = new URL(req.url ?? '/', 'http://ops').pathname;
  const json = (status: number, value: unknown) => ({
    status,
    contentType: 'application/json',
    body: `${JSON.stringify(value)}\n`,
  });
  if (path !== '/metrics' && path !== '/healthz') return json(404, { error: 'not found' });
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed' });
  if (path === '/metrics') {
    const { contentType, body } = await options.metrics();
    return { status: 200, contentType, body };
  }
  const report = await options.health();
  return json(report.healthy ? 200 : 503, {
    status: report.healthy ? 'ok' : 'unavailable',
    ...report.details,
  });
}
