export * as blake2s from './blake2s.js';
export * as aead from './aead.js';
export * from './x25519.js';
export { equal as constantTimeEqual, isZero } from './constantTime.js';
