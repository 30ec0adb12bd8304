import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { InvalidConnectorError, type ConnectorInput } from '../core/connector';
import { validateConnector } from '../connectors/catalog';

/**
 * Read a connector definition from a YAML or JSON file and validate it. Errors name the file and
 * the bad field (`connector.yaml: destination.baseUrl: Invalid URL`), and for YAML syntax errors
 * the line. Returns the definition as written (a missing `tenant` stays missing, so the client's
 * tenant applies).
 */
export function loadConnectorFile(file: string): ConnectorInput {
  const text = fs.readFileSync(file, 'utf8');
  const name = path.basename(file);
  let parsed: unknown;
  if (/\.ya?ml$/i.test(file)) {
    const document = YAML.parseDocument(text, { prettyErrors: true });
    if (document.errors.length > 0) {
      throw new InvalidConnectorError(document.errors.map((e) => `${name}: ${e.message.split('\n')[0]}`));
    }
    parsed = document.toJS();
  } else {
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new InvalidConnectorError([`${name}: not valid JSON: ${(error as Error).message}`]);
    }
  }
  try {
    validateConnector(parsed);
    return parsed as ConnectorInput;
  } catch (error) {
    if (error instanceof InvalidConnectorError) {
      throw new InvalidConnectorError(error.problems.map((problem) => `${name}: ${problem}`));
    }
    throw error;
  }
}
