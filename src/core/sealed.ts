import {
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  constants,
  type KeyObject,
} from 'node:crypto';

/**
 * Answers that carry record keys (the change log's pages) travel back to the caller through a
 * workflow's result, so through Temporal's history. Sealed for the caller's one-off public key,
 * they are stored there only as ciphertext that nobody but the caller, who holds the private key
 * in memory for the length of the request, can open: AES-256-GCM for the data, its key wrapped
 * with RSA-OAEP (SHA-256).
 */
export interface Sealed {
  sealed: 'rsa-oaep-256+aes-256-gcm';
  key: string;
  iv: string;
  tag: string;
  data: string;
}

export function sealFor(recipientPublicKeyPem: string, value: unknown): Sealed {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const data = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  const wrapped = publicEncrypt(
    { key: recipientPublicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    key,
  );
  return {
    sealed: 'rsa-oaep-256+aes-256-gcm',
    key: wrapped.toString('base64'),
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    data: data.toString('base64'),
  };
}

/** A key pair for one request: send `publicKey`, open the answer with `open`. */
export function newRecipient(): { publicKey: string; open<T>(sealed: Sealed): T } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    open: (s) => open(privateKey, s),
  };
}

function open<T>(privateKey: KeyObject, sealed: Sealed): T {
  const key = privateDecrypt(
    { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    Buffer.from(sealed.key, 'base64'),
  );
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'));
  decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
  const text = Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]);
  return JSON.parse(text.toString('utf8')) as T;
}
