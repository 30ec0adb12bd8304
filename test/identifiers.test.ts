import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeEmail, normalizeName, normalizePhone, sha256Hex } from '../src/core/identifiers';

test('SHA-256 of known vectors (FIPS 180-2 and the common e-mail example)', () => {
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(
    sha256Hex(normalizeEmail('  Test@Example.COM ')!),
    '973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b',
  );
});

test('e-mail normalisation', () => {
  assert.equal(normalizeEmail(' John.Doe@Example.com '), 'john.doe@example.com');
  assert.equal(normalizeEmail('john.doe@gmail.com', { removeGmailDots: true }), 'johndoe@gmail.com');
  assert.equal(normalizeEmail('john.doe@example.com', { removeGmailDots: true }), 'john.doe@example.com');
  assert.equal(normalizeEmail('not an email'), null);
  assert.equal(normalizeEmail(''), null);
});

test('phone numbers become E.164', () => {
  assert.equal(normalizePhone('+49 (151) 234-56789'), '+4915123456789');
  assert.equal(normalizePhone('0151 23456789', 'DE'), '+4915123456789');
  assert.equal(normalizePhone('(650) 253-0000', 'US'), '+16502530000');
  assert.equal(normalizePhone('12'), null);
  assert.equal(normalizePhone('0151 23456789'), null, 'no country: not guessable');
});

test('names: lower case, no punctuation, letters of any script kept', () => {
  assert.equal(normalizeName("  O'Brien. "), 'obrien');
  assert.equal(normalizeName('Zoë'), 'zoë');
  assert.equal(normalizeName('Anne-Marie'), 'anne-marie');
  assert.equal(normalizeName('...'), null);
});
