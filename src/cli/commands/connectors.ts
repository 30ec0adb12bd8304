import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import YAML from 'yaml';
import { loadConnectorFile } from '../../client/connector-files';
import {
  InvalidConnectorError,
  parseConnector,
  type ConnectorDefinition,
  type ConnectorInput,
} from '../../connectors/definition';
import { connect, globalsOf, print, printJson } from '../context';
import { usageError } from '../errors';
import { connectorsTable } from '../format';

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
        const definitions = checkFiles(files, tenant); // all or nothing
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
    .command('validate [files...]')
    .description('Check connector files locally (no Temporal needed); exit code 2 names each bad field')
    .option('-f, --file <file>', 'a connector definition (.yaml, .yml or .json); repeatable', collect)
    .option('--json', 'print the validated definitions (with defaults filled in) as JSON')
    .addHelpText(
      'after',
      '\nChecks the schema, the destination settings and the tenant. Whether the dataset can be read is\n' +
        'checked by the worker when the connector is saved.',
    )
    .action((positional: string[], opts: { file?: string[]; json?: boolean }, cmd: Command) => {
      const files = [...(opts.file ?? []), ...positional];
      if (files.length === 0) throw usageError('connectors validate: name a file with -f <file>');
      const checked = checkFiles(files, globalsOf(cmd).tenant);
      if (opts.json) printJson(checked.map((c) => c.definition));
      else
        for (const c of checked)
          print(`${c.file}: valid (connector ${c.definition.id}, ${c.definition.destination.type})`);
    });

  connectors
    .command('get <connector>')
    .description("Show a connector's definition (YAML; --json for JSON)")
    .option('--json', 'print JSON for scripts')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const connector = await ctx.withWorker(() => ctx.client.connectors.get(id));
      if (opts.json) printJson(connector);
      else print(YAML.stringify(connector));
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
function checkFiles(files: string[], tenant: string) {
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
      const definition = parseConnector({ ...input, tenant: input.tenant ?? tenant });
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
