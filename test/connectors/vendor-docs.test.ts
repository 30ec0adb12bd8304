import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { VENDOR_SPEC_FOLDERS } from '../helpers/vendors';
import { sandboxHarnesses } from '../sandbox/select';

/**
 * docs/connectors.md promises, per vendor destination: the vendor's spec in the repository with
 * its source, what the emulator does not emulate, and the sandbox variables. Each promise is
 * checked against the code, so the docs cannot drift from it.
 */

const root = path.join(__dirname, '../..');
const docs = readFileSync(path.join(root, 'docs/connectors.md'), 'utf8');
/** Text as read: whitespace, code spans and typographic apostrophes do not count. */
const flat = (text: string) =>
  text
    .replace(/\s+/g, ' ')
    .replace(/`/g, '')
    .replace(/\u2019/g, "'");

for (const [type, folder] of Object.entries(VENDOR_SPEC_FOLDERS)) {
  test(`${type}: its spec is in the repository with its source, and the docs say what is not emulated`, () => {
    const source = path.join(root, 'test/vendor-specs', folder, 'SOURCE.md');
    assert.ok(existsSync(source), `${source} exists`);
    assert.match(readFileSync(source, 'utf8'), /2026-\d\d-\d\d/, 'SOURCE.md dates what was retrieved');

    const section = docs.indexOf(`### \`${type}\``);
    assert.ok(section >= 0, `docs/connectors.md has a section for ${type}`);
    const end = docs.indexOf('\n### ', section + 1);
    const text = flat(docs.slice(section, end < 0 ? undefined : end));
    assert.match(text, new RegExp(`test/vendor-specs/${folder}/`), 'the section names the spec');
    for (const cited of text.matchAll(/`(test\/vendor-specs\/[^`\s]+)`/g)) {
      assert.ok(existsSync(path.join(root, cited[1]!)), `${cited[1]} exists`);
    }

    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the folder's emulator, by name
    const { NOT_EMULATED } = require(`../../src/connectors/${type}/emulator`) as {
      NOT_EMULATED?: readonly string[];
    };
    assert.ok(NOT_EMULATED && NOT_EMULATED.length > 0, `${type}'s emulator exports NOT_EMULATED`);
    for (const item of NOT_EMULATED) assert.ok(text.includes(flat(item)), `the docs list: ${item}`);

    const harness = sandboxHarnesses().find((h) => h.type === type);
    assert.ok(harness, `${type} has a sandbox harness`);
    for (const variable of Object.keys(harness.requires)) assert.match(text, new RegExp(variable));
  });
}
