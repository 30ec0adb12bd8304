import type { CountryCode } from 'libphonenumber-js';
import { normalizeEmail, normalizeName, normalizePhone, sha256Hex } from '../../core/identifiers';
import type { MetaIdentifierKey } from './settings';

/**
 * Meta's "Hashing and normalizing data" rules: people are matched by SHA-256 hashes of normalised
 * identifiers, and raw identifiers never leave this process.
 */

/** Letters only, lower case: Meta wants names and places without punctuation or spaces. */
function lettersOnly(raw: string): string | null {
  const letters = normalizeName(raw)?.replace(/[\s-]/g, '') ?? '';
  return letters === '' ? null : letters;
}

function twoDigits(raw: string, max: number): string | null {
  const n = Number(raw.trim());
  return /^\d{1,2}$/.test(raw.trim()) && n >= 1 && n <= max ? String(n).padStart(2, '0') : null;
}

type Normalizer = (raw: string, defaultCountry?: CountryCode) => string | null;

/**
 * One normaliser per Meta key; `null` means "not usable". E-mail: trimmed and lower-cased.
 * Phone: digits only, with the country code, without '+' or leading zeros (E.164 minus the '+').
 * Names, city, state: lower-case letters only. Gender: m/f. Dates: YYYY, MM, DD. Zip: lower
 * case without spaces, US ZIP+4 cut to 5 digits. Country: ISO alpha-2, lower case.
 */
export const metaNormalizers: Record<MetaIdentifierKey, Normalizer> = {
  EMAIL: (raw) => normalizeEmail(raw),
  PHONE: (raw, country) => normalizePhone(raw, country)?.replace(/^\+/, '') ?? null,
  FN: lettersOnly,
  LN: lettersOnly,
  FI: (raw) => Array.from(lettersOnly(raw) ?? '')[0] ?? null,
  GEN: (raw) => {
    const g = raw.trim().toLowerCase().charAt(0);
    return g === 'm' || g === 'f' ? g : null;
  },
  DOBY: (raw) => (/^\d{4}$/.test(raw.trim()) ? raw.trim() : null),
  DOBM: (raw) => twoDigits(raw, 12),
  DOBD: (raw) => twoDigits(raw, 31),
  CT: lettersOnly,
  ST: lettersOnly,
  ZIP: (raw) => {
    const zip = raw.trim().toLowerCase().replace(/\s/g, '');
    if (/^\d{5}-\d{4}$/.test(zip)) return zip.slice(0, 5);
    return zip === '' ? null : zip;
  },
  COUNTRY: (raw) => (/^[a-z]{2}$/i.test(raw.trim()) ? raw.trim().toLowerCase() : null),
};

/** The hash Meta matches on: SHA-256 of the normalised value, or null when it does not normalise. */
export function metaHash(key: MetaIdentifierKey, raw: string, defaultCountry?: string): string | null {
  const normalized = metaNormalizers[key](raw, defaultCountry as CountryCode | undefined);
  return normalized === null ? null : sha256Hex(normalized);
}
