import { postJson, type Attempt, type Channel, type ChannelDeps, type ChannelMessage } from '../channel.ts';
import type { WebhookDestination } from '../config.ts';

/** The generic webhook body: the alert view as JSON, versioned. */
export interface WebhookBody {
  version: 1;
  source: string;
  action: ChannelMessage['eventAction'];
  variant: ChannelMessage['variant']['type'];
  kind: string;
  scope: string;
  condition: string;
  state?: string;
  severity: string;
  dedupKey: string;
  at: string;
  title: string;
  summary: string;
  facts: ReadonlyArray<{ label: string; value: string }>;
  details: Record<string, unknown>;
  links: { dashboard: string; acknowledge: string };
}

/** Any HTTP endpoint taking JSON (the URL is the secret: it often embeds a token). */
export function webhookChannel(dest: WebhookDestination, deps: ChannelDeps): Channel {
  const render = (msg: ChannelMessage): WebhookBody => {
    const v = msg.view;
    return {
      version: 1,
      source: deps.source,
      action: msg.eventAction,
      variant: msg.variant.type,
      kind: v.kind,
      scope: v.scope,
      condition: v.condition,
      ...(v.state ? { state: v.state } : {}),
      severity: v.severity,
      dedupKey: v.dedupKey,
      at: new Date(v.at).toISOString(),
      title: v.title,
      summary: v.summary,
      facts: v.facts,
      details: v.details,
      links: v.links,
    };
  };
  return {
    pages: false,
    render,
    deliver: (msg, signal): Promise<Attempt> => postJson(deps, dest.url.reveal(), JSON.stringify(render(msg)), signal),
  };
}
