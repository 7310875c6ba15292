// The page a browser sees while its workspace starts (or after it failed to): small,
// self-contained (no scripts, no external assets), and it reloads itself.

export interface StartingPageOptions {
  readonly user: string
  /** Seconds until the page reloads itself. */
  readonly refreshSeconds: number
  /** Set when the workload failed: the reason shown to the user (ImagePullBackOff: …). */
  readonly failure?: string
}

const STYLE = [
  'body{margin:0;min-height:100vh;display:grid;place-items:center;background:#f6f7f9;color:#1f2328;font:16px/1.5 system-ui,sans-serif}',
  'main{max-width:34rem;padding:2rem;text-align:center}',
  'h1{font-size:1.4rem;margin:0 0 .5rem}',
  '.spinner{width:2rem;height:2rem;margin:0 auto 1rem;border:3px solid #d0d7de;border-top-color:#0969da;border-radius:50%;animation:spin 1s linear infinite}',
  '@keyframes spin{to{transform:rotate(360deg)}}',
  '@media (prefers-reduced-motion:reduce){.spinner{animation:none}}',
  'pre{white-space:pre-wrap;word-break:break-word;text-align:left;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.75rem;font-size:.85rem}',
  'small{color:#57606a}',
].join('')

/** The HTML of the "workspace is starting" page, or of the "could not start" page when `failure` is set. */
export function startingPage (options: StartingPageOptions): string {
  const refresh = Math.max(1, Math.round(options.refreshSeconds))
  const user = escapeHtml(options.user)
  const again = `<small>This page reloads itself in ${refresh} second${refresh === 1 ? '' : 's'}.</small>`
  const title = options.failure === undefined ? 'Starting your workspace' : 'Your workspace could not start'
  const main = options.failure === undefined
    ? `<div class="spinner" aria-hidden="true"></div><h1>${title}</h1><p>The workspace for <strong>${user}</strong> is starting. It opens here as soon as it is ready.</p>${again}`
    : `<h1>${title}</h1><p>The workspace for <strong>${user}</strong> failed to start:</p><pre>${escapeHtml(options.failure)}</pre>${again}`
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<meta http-equiv="refresh" content="${refresh}">` +
    `<title>${title}</title><style>${STYLE}</style></head>` +
    `<body><main role="status">${main}</main></body></html>\n`
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c)
}
