// Errors the CLI reports as one line on stderr with a non-zero exit.
export class CliError extends Error {
  constructor(readonly code: string, message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}
