// The meshd command line. Each command is a small module; this file only
// wires them into yargs and turns errors into one line and an exit code.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CliError } from './errors.js';
import { genkey, genpsk, pubkey, readStdin } from './keys.js';

function fail(err: unknown): never {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`meshd: ${msg}\n`);
  process.exit(err instanceof CliError ? err.exitCode : 1);
}

export async function main(argv: string[]): Promise<void> {
  await yargs(hideBin(argv))
    .scriptName('meshd')
    .usage('$0 <command> [options]')
    .command('genkey', 'Generate a private key (base64, like wg genkey)', {}, () => {
      process.stdout.write(genkey());
    })
    .command('pubkey', 'Read a private key on stdin and print its public key (like wg pubkey)', {}, async () => {
      process.stdout.write(pubkey(await readStdin()));
    })
    .command('genpsk', 'Generate a pre-shared key (like wg genpsk)', {}, () => {
      process.stdout.write(genpsk());
    })
    .demandCommand(1, 'meshd: a command is required (see meshd --help)')
    .strict()
    .fail((msg, err) => fail(err ?? new CliError('EUSAGE', msg, 2)))
    .help()
    .version()
    .parseAsync();
}

main(process.argv).catch(fail);
