#!/usr/bin/env node
// podgate command line: serve | demo | token | help. Parses arguments, loads configuration,
// wires, starts, drains on SIGTERM/SIGINT, and turns every failure to start into one line.
import { inspect, parseArgs, type ParseArgsConfig } from 'node:util'
import { mintToken } from './auth/mint.ts'
import { isDnsLabel } from './kube/labels.ts'
import { loadConfig, parseDuration } from './config.ts'
import { PodgateError } from './errors.ts'
import { ListenError } from './listen.ts'
import { createLogger, type Logger } from './log.ts'
import { applyGatewayV8Flags } from './workers/worker-options.ts'

/** Exit codes: 1 when podgate could not do its work, 2 when it was asked wrongly (arguments, configuration). */
const FAILED = 1
const MISUSED = 2

interface Command {
  readonly usage: string
  readonly summary: string
  readonly options?: NonNullable<ParseArgsConfig['options']>
  readonly optionHelp?: readonly string[]
  readonly positionals?: boolean
  readonly run: (positionals: readonly string[], values: Readonly<Record<string, unknown>>, env: NodeJS.ProcessEnv) => Promise<number>
}

const COMMANDS: Readonly<Record<string, Command>> = {
  serve: {
    usage: 'podgate serve',
    summary: 'run the gateway (and provisioner) against Kubernetes',
    run: (_positionals, _values, env) => serve(env),
  },
  demo: {
    usage: 'podgate demo [--login]',
    summary: 'run the whole flow locally with per-user processes (npm start)',
    options: { login: { type: 'boolean', default: false } },
    optionHelp: ['--login            sign in with a browser: a local OpenID provider and podgate\'s own login'],
    run: (_positionals, values, env) => demo(env, values.login === true),
  },
  token: {
    usage: 'podgate token <user> [--ttl 1h]',
    summary: 'print an HS256 token for <user>, signed with PODGATE_JWT_SECRET',
    options: { ttl: { type: 'string', default: '1h' } },
    optionHelp: ['--ttl <duration>   how long the token is valid: 30m, 12h (default 1h)'],
    positionals: true,
    run: (positionals, values, env) => token(positionals, String(values.ttl), env),
  },
  help: {
    usage: 'podgate help [command]',
    summary: 'print this, or the usage of one command',
    positionals: true,
    run: (positionals) => help(positionals),
  },
}

const USAGE = `usage: podgate <command> [--help]

commands:
${Object.values(COMMANDS).map((c) => `  ${c.usage.slice('podgate '.length).padEnd(26)}${c.summary}`).join('\n')}

configuration: PODGATE_* environment variables (see README.md)
exit status: 0 done, 1 failed (a port taken, anything unexpected), 2 wrong arguments or configuration`

function commandUsage (command: Command): string {
  return [
    `usage: ${command.usage}`,
    '',
    command.summary,
    '',
    'options:',
    ...(command.optionHelp ?? []).map((line) => `  ${line}`),
    '  -h, --help         print this',
    '',
    'configuration: PODGATE_* environment variables (see README.md)',
  ].join('\n')
}

/** Wrong arguments: one line, then the usage of what was asked for; exit status 2. */
class UsageError extends Error {
  readonly usage: string

  constructor (message: string, usage: string) {
    super(message)
    this.usage = usage
  }
}

export async function main (argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined) throw new UsageError('missing command', USAGE)
  if (name === '-h' || name === '--help') return help([])
  if (name.startsWith('-')) throw new UsageError(`unknown option ${name}`, USAGE)
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
  if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`, USAGE)
  const usage = commandUsage(command)
  // --help wins over whatever else is wrong on the line.
  const beforeEnd = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest
  if (beforeEnd.includes('-h') || beforeEnd.includes('--help')) {
    process.stdout.write(usage + '\n')
    return 0
  }
  let parsed: { positionals: string[], values: Readonly<Record<string, unknown>> }
  try {
    parsed = parseArgs({ args: [...rest], options: command.options ?? {}, allowPositionals: command.positionals ?? false, strict: true })
  } catch (err) {
    throw new UsageError(parseArgsMessage(err), usage)
  }
  return await command.run(parsed.positionals, parsed.values, env)
}

/** parseArgs' message on one line; an unknown option said plainly (its hint is about positionals). */
function parseArgsMessage (err: unknown): string {
  const { code, message } = err as { code?: string, message?: string }
  const option = /'([^']*)'/.exec(message ?? '')?.[1]
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) return `unknown option ${option}`
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && option !== undefined) return `unexpected argument ${JSON.stringify(option)}`
  return oneLine(message ?? String(err))
}

function help (positionals: readonly string[]): Promise<number> {
  if (positionals.length > 1) throw new UsageError(`expected at most one command, got ${positionals.length}`, commandUsage(COMMANDS.help as Command))
  const name = positionals[0]
  if (name === undefined) {
    process.stdout.write(USAGE + '\n')
    return Promise.resolve(0)
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
  if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`, USAGE)
  process.stdout.write(commandUsage(command) + '\n')
  return Promise.resolve(0)
}

async function serve (env: NodeJS.ProcessEnv): Promise<number> {
  applyGatewayV8Flags(process.execArgv)
  const config = loadConfig(env)
  const logger = createLogger(config.logLevel)
  const { runServe } = await import('./serve.ts')
  const running = await runServe(config, logger)
  logger.info({ gateway: running.podgate.gatewayUrl, admin: running.podgate.adminUrl }, 'podgate serving')
  await untilSignal(logger)
  await running.close()
  return 0
}

async function demo (env: NodeJS.ProcessEnv, login: boolean): Promise<number> {
  applyGatewayV8Flags(process.execArgv)
  const config = loadConfig(env, { requireKey: false })
  // stdout carries the instructions to paste; logs go beside them on stderr.
  const logger = createLogger(config.logLevel, process.stderr)
  const { runDemo } = await import('./local/demo.ts')
  const running = await runDemo({ config, env, logger, out: process.stdout, login })
  await untilSignal(logger)
  await running.close()
  return 0
}

async function token (positionals: readonly string[], ttl: string, env: NodeJS.ProcessEnv): Promise<number> {
  const usage = commandUsage(COMMANDS.token as Command)
  const user = positionals[0]
  if (user === undefined) throw new UsageError('token: missing <user>', usage)
  if (positionals.length > 1) throw new UsageError(`token: expected one user, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(' ')}`, usage)
  if (!isDnsLabel(user)) throw new UsageError(`${JSON.stringify(user)} is not a valid user id (lowercase letters, digits and '-', at most 63)`, usage)
  const ttlMs = parseDuration(ttl)
  if (ttlMs === undefined || ttlMs < 1000) throw new UsageError(`--ttl: expected a duration of at least 1s such as 30m or 12h, got ${JSON.stringify(ttl)}`, usage)
  const config = loadConfig(env)
  if (config.auth.key.kind !== 'secret') throw new UsageError('token needs PODGATE_JWT_SECRET (tokens for public keys come from your identity provider)', usage)
  const jwt = await mintToken({
    secret: config.auth.key.secret,
    user,
    ttlSeconds: Math.floor(ttlMs / 1000),
    claim: config.auth.userClaim,
    issuer: config.auth.issuer?.[0],
    audience: config.auth.audience?.[0],
  })
  process.stdout.write(jwt + '\n')
  return 0
}

/** Resolves on the first SIGTERM or SIGINT; a second one exits at once. */
function untilSignal (logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'shutting down')
      process.once('SIGTERM', () => process.exit(1))
      process.once('SIGINT', () => process.exit(1))
      resolve()
    }
    process.once('SIGTERM', onSignal)
    process.once('SIGINT', onSignal)
  })
}

function oneLine (text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

/**
 * What the operator reads when podgate stops on an error, and the exit status. Expected
 * failures (arguments, configuration, a port) are one line and never a stack; anything else is
 * one line too, with the stack and causes below it only when PODGATE_LOG_LEVEL is debug or trace.
 */
export function explainFailure (err: unknown, env: NodeJS.ProcessEnv): { text: string, code: number } {
  if (err instanceof UsageError) return { text: `podgate: ${err.message}\n${err.usage}\n`, code: MISUSED }
  if (err instanceof PodgateError && err.code === 'PODGATE_CONFIG') return { text: `podgate: ${oneLine(err.message)}\n`, code: MISUSED }
  if (err instanceof ListenError) return { text: `podgate: ${err.message}\n`, code: FAILED }
  const message = err instanceof Error ? err.message || err.name : String(err)
  const verbose = env.PODGATE_LOG_LEVEL === 'debug' || env.PODGATE_LOG_LEVEL === 'trace'
  return {
    text: `podgate: ${oneLine(message)}\n${verbose ? `${inspect(err, { depth: 4 })}\n` : ''}`,
    code: FAILED,
  }
}

if (import.meta.main) {
  main(process.argv.slice(2), process.env).then((code) => {
    process.exitCode = code
  }, (err: unknown) => {
    const { text, code } = explainFailure(err, process.env)
    process.stderr.write(text)
    process.exitCode = code
    // A failed start closes what it opened; should anything still hold the process, it must not hang there.
    setTimeout(() => {
      process.stderr.write('podgate: still running 5 s after failing to start; exiting\n')
      process.exit(code)
    }, 5000).unref()
  })
}
