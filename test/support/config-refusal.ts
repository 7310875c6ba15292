// The ConfigError loadConfig throws for `env`, or undefined when it loads: config tests assert
// on the refusal's variable and message. Anything other than a ConfigError is rethrown.
import { loadConfig, type Env } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'

export function refusal (env: Env): ConfigError | undefined {
  try {
    loadConfig(env)
    return undefined
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
}
