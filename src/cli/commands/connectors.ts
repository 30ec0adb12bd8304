import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { OnlineCheck } from '../../client';
import type { ConnectorDefinition, ConnectorInput } from '../../core/connector';
import { EXIT, usageError } from '../exit-codes';
import { connectorsTable } from '../format';
import { connect, globalsOf, print, printJson } from '../options';

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `deltasync connectors …`: definitions from YAML or JSON files, scoped to the tenant. */
export function registerConnectors(program: Command): void {
  const connectors = program
    .command('connectors')
    .description('Manage connectors (one dataset wired to one list in one destination)');

  const saving = [
    ['apply', 'Create connectors, or update the ones that exist, from YAML or JSON files', 'apply'],
    ['create', 'Create connectors from YAML or JSON files (fails if one exists)', 'create'],
    ['update', 'Replace existing connectors with the definitions in YAML or JSON files', 'update'],
  ] as const;
  for (const [name, description, verb] of saving) {
    const command = connectors
      .command(`${name} [files...]`)
      .description(description)
      .option('-f, --file <file>', 'a connector definition (.yaml, .yml or .json); repeatable', collect)
      .option('--json', 'print the saved definitions as JSON')
      .addHelpText(
        'after',
        `\nEvery file is validated before any is saved. A file without 'tenant' takes --tenant.\n` +
          `Example: deltasync connectors ${name} -f connectors/crm.yaml`,
      )
      .action(async (positional: string[], opts: { file?: string[]; json?: boolean }, cmd: Command) => {
        const files = [...(opts.file ?? []), ...positional];
        if (files.length === 0) throw usageError(`connectors ${name}: name a file with -f <file>`);
        const tenant = globalsOf(cmd).tenant;
        const definitions = await checkFiles(files, tenant); // all or nothing
        const ctx = await connect(cmd);
        const saved: ConnectorDefinition[] = [];
        for (const { input } of definitions) {
          saved.push(await ctx.withWorker(() => ctx.client.connectors[verb](input)));
        }
        if (opts.json) printJson(saved);
        else {
          const done = { apply: 'applied', create: 'created', update: 'updated' }[verb];
          for (const c of saved)
            print(`${done} connector ${c.id} (${c.destination.type}, tenant ${c.tenant})`);
        }
      });
    if (name === 'apply') command.alias('add');
  }

  connectors
    .command('validate [files-or-ids...]')
    .description(
      'Check connector files locally (no Temporal needed); with --online, also ask a worker to check ' +
        'them (or saved connectors, by id) against the tenant and the destination',
    )
    .summary('Check connector files; --online: also the secrets, dataset and destination')
    .option('-f, --file <file>', 'a connector definition (.yaml, .yml or .json); repeatable', collect)
    .option(
      '--online',
      "ask a worker: the tenant's secrets, allowlist and dataset access, then the destination's own " +
        'check (credentials, list reachable)',
    )
    .option(
      '--json',
      'print JSON for scripts: the validated definitions (defaults filled in); with --online, the checks',
    )
    .addHelpText(
      'after',
      '\nLocally it checks the schema, the destination settings and the tenant: exit code 2 names each\n' +
        'bad field. --online then asks a worker (it holds the secrets; this CLI never does) to run the\n' +
        "checks a save runs (the tenant's secrets, allowed destinations, dataset access) and to call the\n" +
        "destination once with the connector's credentials: one line per connector, exit code 1 when a\n" +
        'destination check fails. With --online, a name that is not a file is a saved connector.\n' +
        'Examples:\n  deltasync connectors validate -f crm.yaml --online\n' +
        '  deltasync connectors validate --online crm-customers',
    )
    .action(
      async (
        positional: string[],
        opts: { file?: string[]; online?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const named = [...(opts.file ?? []), ...positional];
        if (named.length === 0) throw usageError('connectors validate: name a file with -f <file>');
        // Online, a name that is not a file (and does not look like one) is a saved connector's id.
        const isId = (name: string) =>
          opts.online === true &&
          !fs.existsSync(name) &&
          !/\.(ya?ml|json)$/i.test(name) &&
          !name.includes('/');
        const ids = positional.filter(isId);
        const files = named.filter((name) => !ids.includes(name));
        const tenant = globalsOf(cmd).tenant;
        const checked = await checkFiles(files, tenant);
        if (!opts.online) {
          if (opts.json) printJson(checked.map((c) => c.definition));
          else
            for (const c of checked)
              print(`${c.file}: valid (connector ${c.definition.id}, ${c.definition.destination.type})`);
          return;
        }
        const ctx = await connect(cmd);
        const targets = [
          ...checked.map((c) => ({
            label: path.basename(c.file),
            connector: c.input as ConnectorInput | string,
          })),
          ...ids.map((id) => ({ label: id, connector: id as ConnectorInput | string })),
        ];
        const results: (OnlineCheck & { source: string })[] = [];
        for (const { label, connector } of targets) {
          const check = await ctx.withWorker(() =>
            ctx.client.connectors.validateOnline(connector).catch(async (error: unknown) => {
              // The tenant's problems name their field; say which file they are about.
              const { InvalidConnectorError } = await import('../../core/connector.js');
              if (!(error instanceof InvalidConnectorError) || typeof connector === 'string') throw error;
              throw new InvalidConnectorError(error.problems.map((problem) => `${label}: ${problem}`));
            }),
          );
          results.push({ source: label, ...check });
          const connectorOf = `connector ${check.connectorId} (${check.destinationType})`;
          const what = typeof connector === 'string' ? connectorOf : `${label}: ${connectorOf}`;
          // A failed check is said on stderr, with --json too; the exit code says one failed.
          if (!check.ok)
            process.stderr.write(`deltasync: ${what}: destination check failed: ${check.message}\n`);
          else if (!opts.json) print(`${what}: ok: ${check.message}`);
        }
        if (opts.json) printJson(results);
        if (results.some((r) => !r.ok)) process.exitCode = EXIT.failed;
      },
    );

  connectors
    .command('get <connector>')
    .description("Show a connector's definition (YAML; --json for JSON)")
    .option('--json', 'print JSON for scripts')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const connector = await ctx.withWorker(() => ctx.client.connectors.get(id));
      if (opts.json) printJson(connector);
      else print((await import('yaml')).stringify(connector));
    });

  connectors
    .command('list')
    .description("List the tenant's connectors")
    .option('--json', 'print JSON for scripts')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const all = await ctx.withWorker(() => ctx.client.connectors.list());
      if (opts.json) printJson(all);
      else if (all.length === 0) print(`no connectors in tenant '${ctx.options.tenant}'`);
      else print(connectorsTable(all));
    });

  connectors
    .command('delete <connector>')
    .description(
      'Forget a connector: its definition, state, deltalog and schedule (runs stay for audit). ' +
        'The remote list is left as it is. Refused while a refresh of it runs.',
    )
    .summary('Forget a connector (the remote list is left as it is)')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = await connect(cmd);
      await ctx.withWorker(() => ctx.client.connectors.delete(id));
      print(`deleted connector ${id} (the remote list is left as it is)`);
    });
}

/**
 * Load and validate every file; throw one InvalidConnectorError listing every problem of every
 * file (each naming the file and the field), so nothing is saved when any file is bad.
 */
async function checkFiles(files: string[], tenant: string) {
  const [{ loadConnectorFile }, { InvalidConnectorError }, { validateConnector }] = await Promise.all([
    import('../../client/connector-files.js'),
    import('../../core/connector.js'),
    import('../../connectors/catalog.js'),
  ]);
  const problems: string[] = [];
  const checked: { file: string; input: ConnectorInput; definition: ConnectorDefinition }[] = [];
  for (const file of files) {
    const name = path.basename(file);
    if (!fs.existsSync(file)) {
      problems.push(`${file}: no such file`);
      continue;
    }
    if (!/\.(ya?ml|json)$/i.test(file)) {
      problems.push(`${name}: not a .yaml, .yml or .json file`);
      continue;
    }
    try {
      const input = loadConnectorFile(file);
      const definition = validateConnector({ ...input, tenant: input.tenant ?? tenant });
      if (definition.tenant !== tenant) {
        problems.push(
          `${name}: tenant: '${definition.tenant}' is not the tenant in use '${tenant}' (--tenant)`,
        );
        continue;
      }
      checked.push({ file, input, definition });
    } catch (error) {
      if (error instanceof InvalidConnectorError) problems.push(...error.problems);
      else throw error;
    }
  }
  const ids = checked.map((c) => c.definition.id);
  const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (twice.length) problems.push(`id: '${twice[0]}' is defined in more than one file`);
  if (problems.length) throw new InvalidConnectorError(problems);
  return checked;
}
