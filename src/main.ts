#!/usr/bin/env node
// podgate command line: serve | demo | token. Loads configuration, wires, starts, and
// drains on SIGTERM/SIGINT.
import { parseArgs } from 'node:util'
import { mintToken } from './auth/mint.ts'
import { isValidUserId } from './auth/user-id.ts'
import { loadConfig, parseDuration } from './config.ts'
import { PodgateError } from './errors.ts'
import { ListenError } from './listen.ts'
import { createLogger, type Logger } from './log.ts'

const USAGE = `usage: podgate <command>

commands:
  serve                 run the gateway (and provisioner) against Kubernetes
  demo                  run the whole flow locally with per-user processes (npm start)
  token <user> [--ttl 1h]
                        print an HS256 token for <user>, signed with PODGATE_JWT_SECRET

configuration: PODGATE_* environment variables (see README.md)`

export async function main (argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'serve': return await serve(env)
    case 'demo': return await demo(env)
    case 'token': return await token(rest, env)
    case undefined: case '-h': case '--help': case 'help':
      process.stdout.write(USAGE + '\n')
      return command === undefined ? 2 : 0
    default:
      process.stderr.write(`podgate: unknown command ${JSON.stringify(command)}\n${USAGE}\n`)
      return 2
  }
}

async function serve (env: NodeJS.ProcessEnv): Promise<number> {
  const config = loadConfig(env)
  const logger = createLogger(config.logLevel)
  const { runServe } = await import('./serve.ts')
  const running = await runServe(config, logger)
  logger.info({ gateway: running.podgate.gatewayUrl, admin: running.podgate.adminUrl }, 'podgate serving')
  await untilSignal(logger)
  await running.close()
  return 0
}

async function demo (env: NodeJS.ProcessEnv): Promise<number> {
  const config = loadConfig(env, { requireKey: false })
  // stdout carries the instructions to paste; logs go beside them on stderr.
  const logger = createLogger(config.logLevel, process.stderr)
  const { runDemo } = await import('./demo.ts')
  const running = await runDemo({ config, env, logger, out: process.stdout })
  await untilSignal(logger)
  await running.close()
  return 0
}

async function token (args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { positionals, values } = parseArgs({ args: [...args], allowPositionals: true, options: { ttl: { type: 'string', default: '1h' } } })
  const user = positionals[0]
  if (user === undefined || positionals.length > 1) throw new UsageError('usage: podgate token <user> [--ttl 1h]')
  if (!isValidUserId(user)) throw new UsageError(`podgate: ${JSON.stringify(user)} is not a valid user id (lowercase letters, digits and '-', at most 63)`)
  const ttlMs = parseDuration(values.ttl)
  if (ttlMs === undefined || ttlMs < 1000) throw new UsageError(`podgate: --ttl: expected a duration such as 30m or 12h, got ${JSON.stringify(values.ttl)}`)
  const config = loadConfig(env)
  if (config.auth.key.kind !== 'secret') throw new UsageError('podgate: token needs PODGATE_JWT_SECRET (tokens for public keys come from your identity provider)')
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

class UsageError extends Error {}

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

if (import.meta.main) {
  main(process.argv.slice(2), process.env).then((code) => {
    process.exitCode = code
  }, (err: unknown) => {
    if (err instanceof UsageError) process.stderr.write(err.message + '\n')
    else if (err instanceof PodgateError && err.code === 'PODGATE_CONFIG') process.stderr.write(`podgate: ${err.message}\n`)
    // A port that cannot be opened is the operator's to fix, not a bug: one line, no stack.
    else if (err instanceof ListenError) process.stderr.write(`podgate: ${err.message}\n`)
    else process.stderr.write(`podgate: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    const code = err instanceof UsageError || (err instanceof PodgateError && err.code === 'PODGATE_CONFIG') ? 2 : 1
    process.exitCode = code
    // A failed start closes what it opened; should anything still hold the process, it must not hang there.
    setTimeout(() => {
      process.stderr.write('podgate: still running 5 s after failing to start; exiting\n')
      process.exit(code)
    }, 5000).unref()
  })
}
