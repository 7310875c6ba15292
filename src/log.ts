import { pino, type Logger, type LoggerOptions } from 'pino'
import type { LogLevel } from './config.ts'

export type { Logger }

/** Paths that may carry credentials; pino replaces their values. */
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'headers.authorization', 'headers.cookie', 'token', 'secret',
]

export function createLogger (level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = { level, base: { service: 'podgate' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }
  return destination === undefined ? pino(options) : pino(options, destination)
}
