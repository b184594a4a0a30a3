// The meshd command line. Each command is a small module; this file only
// wires them into yargs and turns errors into one line and an exit code.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CliError } from './errors.js';
import { genkey, genpsk, pubkey, readStdin } from './keys.js';
import { runDaemon } from './daemon.js';

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
    .command(
      'daemon',
      'Run a WireGuard interface in the foreground (wg-quick config optional; serves the wg UAPI socket)',
      (y) =>
        y
          .option('tun', { type: 'string', default: 'meshd0', describe: 'TUN interface name' })
          .option('config', { type: 'string', describe: 'wg-quick style config file' })
          .option('port', { type: 'number', describe: 'UDP listen port (default: ListenPort from the config, else random)' })
          .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error'] })
          .option('aead', { type: 'string', default: 'auto', choices: ['auto', 'native', 'node'], describe: 'transport cipher: the addon (native), node:crypto, or native when built (auto)' }),
      async (a) => {
        if (a.port !== undefined && (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535)) throw new CliError('EUSAGE', `--port must be 0..65535, got ${a.port}`, 2);
        await runDaemon({ tun: a.tun, config: a.config, port: a.port, logLevel: a['log-level'], aead: a.aead as 'auto' | 'native' | 'node' });
      },
    )
    .demandCommand(1, 'meshd: a command is required (see meshd --help)')
    .strict()
    .fail((msg, err) => fail(err ?? new CliError('EUSAGE', msg, 2)))
    .help()
    .version()
    .parseAsync();
}

main(process.argv).catch(fail);
