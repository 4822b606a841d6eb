import { z } from 'zod';
import type { AlertsConfig } from './config.ts';
import { dedupKeyOf, link, truncate } from './format.ts';
import type { AlertView } from './types.ts';

/**
 * A user's provider key (BYOK) is failing, as a runner reported it at settle (billing/key-health.ts raises
 * it): delivered on routes.key_health, to the user's email and the team's Slack.
 */
export interface KeyHealthNotice {
  kind: 'key_health';
  tenantId: string;
  userId: string;
  /** Who is told by email: the user's address(es); absent: the route's configured `to`. */
  email?: string | readonly string[];
  provider: string;
  /** '*' for the user's default key. */
  agentId: string;
  status: 'provider_error' | 'rate_limited' | 'expired' | 'invalid';
  /** Expired and invalid keys must be replaced; the others may pass. */
  severity: 'warning' | 'action_required';
  message: string;
  /** Epoch ms. */
  at: number;
}

const EMAIL = z.string().regex(/^[^\s@<>,;"]{1,64}@[^\s@<>,;"]{1,255}$/, 'is not an email address');
const id = z.string().regex(/^[A-Za-z0-9._:@*-]{1,128}$/);
export const keyHealthSchema = z.object({
  kind: z.literal('key_health'),
  tenantId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
  userId: id,
  email: z.union([EMAIL, z.array(EMAIL).min(1).max(100)]).optional(),
  provider: z.string().regex(/^[a-z0-9_-]{1,64}$/),
  agentId: id,
  status: z.enum(['provider_error', 'rate_limited', 'expired', 'invalid']),
  severity: z.enum(['warning', 'action_required']),
  message: z.string().max(500),
  at: z.number().int().nonnegative(),
});

const STATUS: Record<KeyHealthNotice['status'], string> = {
  provider_error: 'the provider returned an error',
  rate_limited: 'the provider rate-limited the call',
  expired: 'the provider reports the key expired',
  invalid: 'the provider rejected the key',
};

/** The view of a key-health alert: once per user, provider, agent, status and UTC day. */
export function keyHealthView(a: KeyHealthNotice, config: AlertsConfig): AlertView {
  const scope = `tenant:${a.tenantId}`;
  const condition = `key_health:${a.userId}:${a.provider}:${a.agentId}:${a.status}`;
  const links = { dashboard: link(config.links.dashboardUrl, scope), acknowledge: link(config.links.acknowledgeUrl, scope) };
  const action = a.severity === 'action_required' ? 'Replace the key (POST /v1/billing/tenants/{t}/users/{u}/keys), or calls fall back to the platform key where allowed.' : 'Calls may pass again; nothing to do unless it repeats.';
  return {
    kind: 'key_health',
    scope,
    condition,
    severity: a.severity === 'action_required' ? 'error' : 'warning',
    dedupKey: dedupKeyOf(scope, condition, a.at),
    at: a.at,
    title: `Forge: your ${a.provider} key ${a.severity === 'action_required' ? 'needs replacing' : 'is failing'} (${a.tenantId} / ${a.userId})`,
    summary: truncate(`[KEY] ${a.message}`, 1024),
    facts: [
      { label: 'Account', value: `${a.tenantId} / ${a.userId}` },
      { label: 'Provider', value: a.provider },
      { label: 'Key', value: a.agentId === '*' ? 'the user\'s default key' : `the key of agent ${a.agentId}` },
      { label: 'Status', value: `${a.status}: ${STATUS[a.status]}` },
      { label: 'What to do', value: action },
    ],
    details: { tenant_id: a.tenantId, user_id: a.userId, provider: a.provider, agent_id: a.agentId, status: a.status, severity: a.severity, dashboard_url: links.dashboard },
    links,
  };
}
