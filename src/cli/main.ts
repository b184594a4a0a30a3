// The meshd command line. Each command is a small module; this file only
// wires them into yargs and turns errors into one line and an exit code.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CliError } from './errors.js';
import { genkey, genpsk, pubkey, readStdin } from './keys.js';
import { runDaemon } from './daemon.js';
import { down, ip, logout, ping, status, up } from './node.js';
import { auditList, DEFAULT_ADMIN_URL, DEFAULT_SERVER_STATE_DIR, defaultTokenFile, keysCreate, keysList, keysRevoke, nodesAction, nodesList, policyGet, policyPut, routesAction, routesList, runServer, type AdminTarget } from './admin.js';
import { DEFAULT_SOCKET } from '../node/localapi.js';
import type { Argv } from 'yargs';

const socketOpt = { type: 'string', default: DEFAULT_SOCKET, describe: 'the daemon\'s control socket' } as const;
const metricsOpt = { type: 'string', describe: 'serve Prometheus metrics at http://ADDR/metrics, ADDR host:port or [v6]:port; keep it on localhost (127.0.0.1:9101); off by default' } as const;

function adminCommands(y: Argv) {
  const target = (a: { server: string; 'token-file'?: string; json: boolean }): AdminTarget => ({ server: a.server, tokenFile: a['token-file'] ?? defaultTokenFile(), json: a.json });
  return y
    .option('server', { type: 'string', default: DEFAULT_ADMIN_URL, describe: 'coordination server URL' })
    .option('token-file', { type: 'string', describe: `admin token file (default ${defaultTokenFile()}; or MESHD_ADMIN_TOKEN)` })
    .option('json', { type: 'boolean', default: false })
    .command('keys <action> [ref]', 'Auth keys: create | list | revoke ID', (k) =>
      k
        .positional('action', { choices: ['create', 'list', 'revoke'] as const, demandOption: true })
        .positional('ref', { type: 'string' })
        .option('user', { type: 'string' })
        .option('tags', { type: 'string', describe: 'tag:a,tag:b (tagged nodes)' })
        .option('reusable', { type: 'boolean', default: false })
        .option('ephemeral', { type: 'boolean', default: false })
        .option('preauthorized', { type: 'boolean', default: false })
        .option('expiry', { type: 'string', default: '90d' }),
      async (a) => {
        const t = target(a);
        if (a.action === 'create') return keysCreate(t, { user: a.user, tags: a.tags, reusable: a.reusable, ephemeral: a.ephemeral, preauthorized: a.preauthorized, expiry: a.expiry });
        if (a.action === 'list') return keysList(t);
        if (!a.ref) throw new CliError('EUSAGE', 'meshd admin keys revoke ID|PREFIX', 2);
        return keysRevoke(t, a.ref);
      },
    )
    .command('nodes <action> [ref] [name]', 'Nodes: list | expire N | delete N | rename N NAME | approve N', (k) =>
      k.positional('action', { choices: ['list', 'expire', 'delete', 'rename', 'approve'] as const, demandOption: true }).positional('ref', { type: 'string' }).positional('name', { type: 'string' }),
      async (a) => {
        const t = target(a);
        if (a.action === 'list') return nodesList(t);
        if (!a.ref) throw new CliError('EUSAGE', `meshd admin nodes ${a.action} ID|NAME|IP${a.action === 'rename' ? ' NEWNAME' : ''}`, 2);
        if (a.action === 'rename' && !a.name) throw new CliError('EUSAGE', 'meshd admin nodes rename ID|NAME|IP NEWNAME', 2);
        return nodesAction(t, a.action, a.ref, a.name);
      },
    )
    .command('routes <action> [ref]', 'Subnet routes: list | approve ID|PREFIX | reject ID|PREFIX', (k) =>
      k.positional('action', { choices: ['list', 'approve', 'reject'] as const, demandOption: true }).positional('ref', { type: 'string' }),
      async (a) => {
        const t = target(a);
        if (a.action === 'list') return routesList(t);
        if (!a.ref) throw new CliError('EUSAGE', `meshd admin routes ${a.action} ID|PREFIX`, 2);
        return routesAction(t, a.action, a.ref);
      },
    )
    .command('policy <action> [file]', 'The policy: get | set FILE | check FILE', (k) =>
      k.positional('action', { choices: ['get', 'set', 'check'] as const, demandOption: true }).positional('file', { type: 'string' }),
      async (a) => {
        const t = target(a);
        if (a.action === 'get') return policyGet(t);
        if (!a.file) throw new CliError('EUSAGE', `meshd admin policy ${a.action} FILE`, 2);
        return policyPut(t, a.action, a.file);
      },
    )
    .command('audit', 'The audit log of control-plane changes', (k) => k.option('limit', { type: 'number', default: 50 }), (a) => auditList(target(a), a.limit))
    .demandCommand(1, 'meshd admin: keys | nodes | routes | policy | audit');
}

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
          .option('state-dir', { type: 'string', describe: 'node state (default /var/lib/meshd); without --config' })
          .option('socket', socketOpt)
          .option('config', { type: 'string', describe: 'wg-quick style config file' })
          .option('port', { type: 'number', describe: 'UDP listen port (default: ListenPort from the config, else random)' })
          .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error'] })
          .option('aead', { type: 'string', default: 'auto', choices: ['auto', 'native', 'node'], describe: 'transport cipher: the addon (native), node:crypto, or native when built (auto)' })
          .option('datapath', { type: 'string', default: 'auto', choices: ['auto', 'native', 'js'], describe: 'packet loop: native threads in the addon, TypeScript (js), or native when built (auto)' })
          .option('tun-queues', { type: 'number', default: 1, describe: 'native datapath: TUN queues (IFF_MULTI_QUEUE), one sending thread each, 1..8' })
          .option('metrics', metricsOpt),
      async (a) => {
        if (!Number.isInteger(a['tun-queues']) || a['tun-queues'] < 1 || a['tun-queues'] > 8) throw new CliError('EUSAGE', `--tun-queues must be 1..8, got ${a['tun-queues']}`, 2);
        if (a.port !== undefined && (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535)) throw new CliError('EUSAGE', `--port must be 0..65535, got ${a.port}`, 2);
        await runDaemon({ tun: a.tun, stateDir: a['state-dir'], socket: a.socket, config: a.config, port: a.port, logLevel: a['log-level'], aead: a.aead as 'auto' | 'native' | 'node', metrics: a.metrics, datapath: a.datapath as 'auto' | 'native' | 'js', tunQueues: a['tun-queues'] });
      },
    )
    .command(
      'up',
      'Log in to a coordination server and bring the mesh interface up (settings persist)',
      (y) =>
        y
          .option('login-server', { type: 'string', describe: 'coordination server URL; ?key=SERVERKEY pins its key' })
          .option('authkey', { type: 'string', describe: 'auth key, or file:PATH' })
          .option('hostname', { type: 'string' })
          .option('advertise-routes', { type: 'string', describe: 'subnets to offer the mesh, CIDR,... ("" for none)' })
          .option('accept-routes', { type: 'boolean', describe: 'route subnets other nodes offer into the TUN' })
          .option('snat-subnet-routes', { type: 'boolean', describe: 'masquerade mesh traffic into advertised subnets (default true)' })
          .option('advertise-tags', { type: 'string', describe: 'tags to carry, tag:a,... (as the key or tagOwners allow)' })
          .option('timeout', { type: 'number', default: 120, describe: 'seconds to wait for an admin\'s approval' })
          .option('socket', socketOpt),
      (a) =>
        up({
          socket: a.socket,
          loginServer: a['login-server'],
          authKey: a.authkey,
          hostname: a.hostname,
          advertiseRoutes: a['advertise-routes'],
          acceptRoutes: a['accept-routes'],
          snatSubnetRoutes: a['snat-subnet-routes'],
          advertiseTags: a['advertise-tags'],
          timeoutS: a.timeout,
        }),
    )
    .command('down', 'Disconnect from the mesh (stays logged in)', (y) => y.option('socket', socketOpt), (a) => down(a.socket))
    .command('logout', 'Remove this node from the mesh and forget its key', (y) => y.option('socket', socketOpt), (a) => logout(a.socket))
    .command('status', 'This node and its peers', (y) => y.option('json', { type: 'boolean', default: false }).option('socket', socketOpt), (a) => status(a.socket, a.json))
    .command(
      'ip [peer]',
      'This node\'s (or a peer\'s) overlay addresses',
      (y) => y.positional('peer', { type: 'string' }).option('4', { type: 'boolean', default: false }).option('6', { type: 'boolean', default: false }).option('socket', socketOpt),
      (a) => ip(a.socket, a['4'] ? 4 : a['6'] ? 6 : null, a.peer),
    )
    .command(
      'ping <peer>',
      'Ping a peer through the mesh (by name, overlay IP or key): path and RTT',
      (y) =>
        y
          .positional('peer', { type: 'string', demandOption: true })
          .option('count', { type: 'number', default: 10, describe: 'tries before giving up (stops at the first reply)' })
          .option('timeout', { type: 'number', default: 1, describe: 'seconds to wait for each reply' })
          .option('socket', socketOpt),
      (a) => ping(a.socket, a.peer, a.count, a.timeout),
    )
    .command(
      'server',
      'Run the coordination server',
      (y) =>
        y
          .option('listen', { type: 'string', default: ':8080', describe: 'host:port, :port or [v6]:port' })
          .option('state-dir', { type: 'string', default: DEFAULT_SERVER_STATE_DIR })
          .option('db', { type: 'string', describe: 'sqlite:PATH (default: meshd.db in the state dir)' })
          .option('policy', { type: 'string', describe: 'policy file to put in force at start (refused if it does not check)' })
          .option('tls-cert', { type: 'string' })
          .option('tls-key', { type: 'string' })
          .option('ephemeral-timeout', { type: 'string', describe: 'remove ephemeral nodes offline this long (default 2m)' })
          .option('node-key-expiry', { type: 'string', describe: 'node key lifetime (default 180d; 0 for never)' })
          .option('metrics', metricsOpt)
          .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error'] }),
      (a) =>
        runServer({
          listen: a.listen,
          stateDir: a['state-dir'],
          db: a.db,
          logLevel: a['log-level'],
          policyFile: a.policy,
          tlsCert: a['tls-cert'],
          tlsKey: a['tls-key'],
          ephemeralTimeout: a['ephemeral-timeout'],
          nodeKeyExpiry: a['node-key-expiry'],
          metrics: a.metrics,
        }),
    )
    .command('admin', 'Administer a coordination server', adminCommands)
    .demandCommand(1, 'meshd: a command is required (see meshd --help)')
    .strict()
    .fail((msg, err) => fail(err ?? new CliError('EUSAGE', msg, 2)))
    .help()
    .version()
    .parseAsync();
}

main(process.argv).catch(fail);
