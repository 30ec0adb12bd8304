import { createHash } from 'node:crypto';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/**
 * Identifier normalisation and hashing for destinations that match people by hashed
 * identifiers (Meta, Google). Raw identifiers never leave for such a destination: its module
 * normalises and hashes before anything is sent. Pure functions; `null` means "not a usable
 * identifier" (reported as a record-level rejection, never sent).
 */

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/**
 * Trim and lower-case. With `removeGmailDots`, dots before the @ of gmail.com and googlemail.com
 * addresses are dropped (they do not change the mailbox), as Google's matching expects.
 */
export function normalizeEmail(raw: string, options: { removeGmailDots?: boolean } = {}): string | null {
  let email = raw.trim().toLowerCase();
  if (!EMAIL.test(email)) return null;
  if (options.removeGmailDots) {
    const [local, domain] = email.split('@') as [string, string];
    if (domain === 'gmail.com' || domain === 'googlemail.com')
      email = `${local.replace(/\./g, '')}@${domain}`;
  }
  return email;
}

/** E.164 (`+4915123456789`); numbers without a country code are read in `defaultCountry`. */
export function normalizePhone(raw: string, defaultCountry?: CountryCode): string | null {
  const parsed = parsePhoneNumberFromString(raw.trim(), defaultCountry);
  return parsed?.isValid() ? parsed.number : null;
}

/** Lower-case, trimmed, punctuation removed, letters (any script) and inner spaces kept. */
export function normalizeName(raw: string): string | null {
  const name = raw
    .trim()
    .toLowerCase()
    .normalize('NFC')
    .replace(/[^\p{L}\p{M}\s-]/gu, '')
    .replace(/\s+/g, ' ');
  return name === '' ? null : name;
}
