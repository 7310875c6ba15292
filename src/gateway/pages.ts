// The pages a person's browser gets where a program gets JSON: the workspace is starting, or
// why it cannot be reached and what to do. Small and self-contained: no scripts, no external
// resources, one inline style allowed by its hash (CONTENT_SECURITY_POLICY); all text escaped.
import { createHash } from 'node:crypto'
import { STATUS_CODES } from './node-http.ts'
import {
  AuthError, DrainingError, ForbiddenError, LoginFailedError, retryAfterOf, UpstreamError, UpstreamTimeoutError, WorkloadFailedError, WorkloadNotFoundError,
  type PodgateError,
} from '../errors.ts'

const STYLE = [
  'body{margin:0;min-height:100vh;display:grid;place-items:center;background:#f6f7f9;color:#1f2328;font:16px/1.5 system-ui,sans-serif}',
  'main{max-width:34rem;padding:2rem;text-align:center}',
  'h1{font-size:1.4rem;margin:0 0 .5rem}',
  '.spinner{width:2rem;height:2rem;margin:0 auto 1rem;border:3px solid #d0d7de;border-top-color:#0969da;border-radius:50%;animation:spin 1s linear infinite}',
  '@keyframes spin{to{transform:rotate(360deg)}}',
  '@media (prefers-reduced-motion:reduce){.spinner{animation:none}}',
  'pre{white-space:pre-wrap;word-break:break-word;text-align:left;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.75rem;font-size:.85rem}',
  'small{color:#57606a}',
  'a{color:#0969da}',
].join('')

/** Sent with every page: nothing may load or run but the page's own style, and no one may frame it. */
export const CONTENT_SECURITY_POLICY = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`

export interface StartingPageOptions {
  readonly user: string
  /** Seconds until the page reloads itself. */
  readonly refreshSeconds: number
}

/** "Your workspace is starting": it reloads itself until the workspace answers instead. */
export function startingPage (options: StartingPageOptions): string {
  const refresh = wholeSeconds(options.refreshSeconds)
  return page({
    title: 'Starting your workspace',
    role: 'status',
    refreshSeconds: refresh,
    lead: '<div class="spinner" aria-hidden="true"></div>',
    main: `<p>The workspace for <strong>${escapeHtml(options.user)}</strong> is starting. It opens here as soon as it is ready.</p>${reloadsIn(refresh)}`,
  })
}

/**
 * The page for one of podgate's errors: what happened, to whom (`user`, once the token named
 * one), and what the person can do; the error's message below, as the JSON would carry it. It
 * reloads itself only where waiting helps: an error with a Retry-After (a 503 while starting or
 * draining, a 429), never a failed workload, which waits for someone to act.
 */
export function errorPage (error: PodgateError, user: string | undefined): string {
  const who = user === undefined ? '' : ` for <strong>${escapeHtml(user)}</strong>`
  const detail = `<small>${escapeHtml(error.message)}</small>`
  const again = '<p><a href="">Try again</a></p>'
  if (error instanceof AuthError) {
    const missing = error.reason === 'missing'
    return page({
      title: missing ? 'Sign in to continue' : 'Your sign-in is not valid here',
      role: 'alert',
      main: `<p>${missing ? 'This address needs you to be signed in, and this browser sent no sign-in.' : 'The sign-in this browser sent was refused.'}</p>` +
        `<p>Sign in through the site that sent you here, then open this address again.</p>${detail}`,
    })
  }
  if (error instanceof LoginFailedError) {
    return page({
      title: 'Sign-in did not complete',
      role: 'alert',
      main: `<p>The sign-in with your identity provider did not complete.</p><p>Open the address you wanted again to sign in anew.</p>${detail}`,
    })
  }
  if (error instanceof ForbiddenError) {
    return page({
      title: 'Not allowed',
      role: 'alert',
      main: `<p>You are signed in${user === undefined ? '' : ` as <strong>${escapeHtml(user)}</strong>`}, but may not open this workspace.</p>` +
        `<p>If that is wrong, contact the operator of this service.</p>${detail}`,
    })
  }
  if (error instanceof WorkloadNotFoundError) {
    return page({
      title: 'No workspace for you',
      role: 'alert',
      main: `<p>There is no workspace${who} on this service.</p><p>Ask the operator of this service to create one.</p>${detail}`,
    })
  }
  if (error instanceof WorkloadFailedError) {
    // Permanent until someone acts: no reload, and a link to look again once they have.
    return page({
      title: 'Your workspace could not start',
      role: 'alert',
      main: `<p>The workspace${who} failed to start:</p><pre>${escapeHtml(error.message)}</pre>` +
        '<p>Waiting on this page will not fix it. Tell the operator of this service what it says above; once they have fixed it, <a href="">check again</a>.</p>',
    })
  }
  const retryAfter = retryAfterOf(error)
  if (retryAfter !== undefined) {
    const refresh = wholeSeconds(retryAfter)
    const [title, text] = error instanceof DrainingError
      ? ['Back in a moment', 'This server is restarting; another one takes over.']
      : error.status === 429
        ? ['Too many requests', 'This browser sent more requests than this service takes at once.']
        : ['Not ready yet', `The service cannot answer this request${who} yet.`]
    return page({ title, role: 'status', refreshSeconds: refresh, main: `<p>${text}</p>${detail}<p>${reloadsIn(refresh)}</p>` })
  }
  if (error instanceof UpstreamError || error instanceof UpstreamTimeoutError) {
    return page({
      title: error instanceof UpstreamTimeoutError ? 'Your workspace is taking too long' : 'Your workspace is not answering',
      role: 'alert',
      main: `<p>The workspace${who} ${error instanceof UpstreamTimeoutError ? 'did not answer in time' : 'could not be reached'}. It may be busy or restarting.</p>${detail}${again}`,
    })
  }
  return page({
    title: STATUS_CODES[error.status] ?? 'Error',
    role: 'alert',
    main: `<p>${escapeHtml(error.message)}</p>${error.status >= 500 || error.status === 429 ? again : ''}`,
  })
}

interface PageParts {
  readonly title: string
  readonly role: 'status' | 'alert'
  /** Already escaped HTML, under the title. */
  readonly main: string
  /** Already escaped HTML, above the title. */
  readonly lead?: string
  /** Set only where waiting helps: the page reloads itself after this many seconds. */
  readonly refreshSeconds?: number
}

function page (parts: PageParts): string {
  const refresh = parts.refreshSeconds === undefined ? '' : `<meta http-equiv="refresh" content="${parts.refreshSeconds}">`
  const title = escapeHtml(parts.title)
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `${refresh}<title>${title}</title><style>${STYLE}</style></head>` +
    `<body><main role="${parts.role}">${parts.lead ?? ''}<h1>${title}</h1>${parts.main}</main></body></html>\n`
}

function reloadsIn (seconds: number): string {
  return `<small>This page reloads itself in ${seconds} second${seconds === 1 ? '' : 's'}.</small>`
}

/** At least one second between reloads, whatever Retry-After says. */
function wholeSeconds (seconds: number): number {
  return Math.max(1, Math.round(seconds))
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c)
}
