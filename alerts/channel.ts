import type { SlackVariant } from './format.ts';
import type { Redactor } from './secret.ts';
import type { AlertView, EventAction } from './types.ts';

/** What one destination is asked to say: the alert, the action, and (for notifications) its variant. */
export interface ChannelMessage {
  view: AlertView;
  eventAction: EventAction;
  /** New, reminder, acknowledged, lifted (notifications; paging channels read eventAction). */
  variant: SlackVariant;
  /** Recipients chosen at send time (a user's email for spend alerts); else the destination's own. */
  to?: readonly string[];
}

/** One delivery attempt's outcome. */
export type Attempt =
  | { ok: true; httpStatus: number }
  | { ok: false; retryable: boolean; httpStatus?: number; error: string; retryAfterMs?: number };

/**
 * A destination's transport and format (Slack, PagerDuty, email, webhook): a new channel is one file in
 * alerts/channels/. Retries, rate limits, idempotency and the alert log stay in DestinationSender, so
 * every channel gets the same dedup, retry and re-notify rules.
 */
export interface Channel {
  /** Whether the channel pages (trigger / acknowledge / resolve incidents) or notifies. */
  readonly pages: boolean;
  /** The body as sent, without secrets: kept with dead letters for a manual replay. */
  render(msg: ChannelMessage): unknown;
  /** One attempt; never rejects. `signal` carries the per-attempt timeout and the dispatcher's stop. */
  deliver(msg: ChannelMessage, signal: AbortSignal): Promise<Attempt>;
  /** Releases connections (SMTP pools). */
  close?(): void;
}

export interface ChannelDeps {
  fetch: typeof fetch;
  redactor: Redactor;
  /** PagerDuty payload.source and the email sender name. */
  source: string;
}

/** POSTs JSON; 408, 429, 5xx and network errors are retryable, other 4xx are not. */
export async function postJson(deps: ChannelDeps, url: string, body: string, signal: AbortSignal, headers: Record<string, string> = {}): Promise<Attempt> {
  let res: Response;
  try {
    res = await deps.fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal });
  } catch (e) {
    return { ok: false, retryable: !isStop(signal), error: deps.redactor.error(e) };
  }
  const text = await res.text().catch(() => '');
  if (res.ok) return { ok: true, httpStatus: res.status };
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  const ra = Number(res.headers.get('retry-after'));
  return {
    ok: false,
    retryable,
    httpStatus: res.status,
    error: deps.redactor.text(`HTTP ${res.status}: ${text.slice(0, 200)}`),
    ...(Number.isFinite(ra) && ra > 0 ? { retryAfterMs: ra * 1000 } : {}),
  };
}

/** True when the signal fired for a reason other than the per-attempt timeout (the dispatcher stopped). */
export function isStop(signal: AbortSignal): boolean {
  return signal.aborted && !(signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError');
}
