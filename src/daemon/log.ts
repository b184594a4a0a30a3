// The daemon's logger: pino JSON lines on stdout (journald collects them).
// Key material never reaches a log call; as a second line of defence pino
// redacts any field named like a secret.
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export function createLogger(level = 'info'): Logger {
  return pino({
    level,
    base: { service: 'meshd' },
    redact: { paths: ['privateKey', 'presharedKey', 'authKey', 'token', '*.privateKey', '*.presharedKey', '*.authKey', '*.token'], censor: '[redacted]' },
  });
}
