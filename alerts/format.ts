import { createHash } from 'node:crypto';
import { byComponent, componentSpec, dayLabel, dayOf, microsToUsd, stateRank, parseScope, type ConditionHit, type ConditionId, type GuardState, type StateChange } from '../rules/index.ts';
import type { AlertsConfig } from './config.ts';
import type { AlertView, ComponentFailureAlert, EventAction, HungTaskAlert, PagerDutySeverity } from './types.ts';

const CONDITION_LABELS: Record<ConditionId, string> = {
  day_soft: 'day total >= B_day_soft',
  week_soft: 'rolling 7-day total >= B_week_soft',
  unit_near_cap: 'operation cost >= 0.9 x B_unit_cap',
  day_projected: 'day total + the rolling week\'s burn rate x time left in the UTC day >= B_day_hard (day still under B_day_soft)',
  week_projected: 'rolling 7-day total at its burn rate over the next 7 days >= B_week_hard (week still under B_week_soft)',
  day_hard: 'day total >= B_day_hard',
  week_hard: 'rolling 7-day total >= B_week_hard',
  run_cap: 'run cumulative >= B_run_cap',
  unit_cap_consecutive: 'operation cost >= B_unit_cap for K consecutive tasks',
  failure_burn: 'failure rate > 0.2 while day total >= B_day_soft',
  day_emergency: 'day total >= 1.1 x B_day_hard',
  unit_emergency: 'one operation >= 1.25 x B_unit_cap',
  hard_three_days: 'hard stops on 3 consecutive UTC days',
};

const COMPONENT_LABELS: Record<ConditionHit['topComponent'], string> = byComponent((k) => componentSpec(k).label);

const STATE_SEVERITY: Record<GuardState, PagerDutySeverity> = {
  NORMAL: 'info',
  WARNING: 'warning',
  HARD_STOP: 'error',
  EMERGENCY_STOP: 'critical',
};

export function conditionLabel(id: string): string {
  return (CONDITION_LABELS as Record<string, string>)[id] ?? id;
}

/** Formats a condition value for people: USD from micros, a ratio as percent, a count as is. */
export function formatValue(unit: ConditionHit['unit'], v: number): string {
  if (unit === 'usd_micros') return `$${microsToUsd(v)}`;
  if (unit === 'ratio') return `${(v * 100).toFixed(1)}%`;
  return String(v);
}

/** Dedup key per scope + condition + UTC day; hashed when longer than PagerDuty's 255 characters. */
export function dedupKeyOf(scope: string, condition: string, at: number): string {
  const k = `forge/${scope}/${condition}/${dayLabel(dayOf(at))}`;
  if (k.length <= 255) return k;
  return `forge/h/${createHash('sha256').update(k).digest('hex')}`;
}

export function link(template: string, scope: string): string {
  return template.replace(/\{scope\}/g, encodeURIComponent(scope));
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/** The hit that stands for a state change: the first at the new state's level, else the highest. */
export function primaryHit(change: StateChange): ConditionHit | undefined {
  const same = change.holds.find((h) => h.level === change.state);
  if (same) return same;
  return [...change.holds].sort((a, b) => stateRank(b.level) - stateRank(a.level))[0];
}

/** The view of a guardrail state change (WARNING, HARD_STOP, EMERGENCY_STOP). */
export function guardView(change: StateChange, config: AlertsConfig): AlertView {
  const hit = primaryHit(change);
  const condition = hit?.id ?? `state_${change.state.toLowerCase()}`;
  const week = `$${microsToUsd(change.weekMicros)}`;
  const value = hit ? formatValue(hit.unit, hit.value) : 'n/a';
  const threshold = hit ? formatValue(hit.unit, hit.threshold) : 'n/a';
  const top = hit ? COMPONENT_LABELS[hit.topComponent] : 'n/a';
  const what = hit ? conditionLabel(hit.id) : change.reason;
  const links = {
    dashboard: link(config.links.dashboardUrl, change.scope),
    acknowledge: link(config.links.acknowledgeUrl, change.scope),
  };
  const summary = truncate(
    `[${change.state}] ${change.scope}: ${what}: ${value} (threshold ${threshold}); 7-day burn ${week}; top component ${top}`,
    1024,
  );
  return {
    kind: 'guard',
    scope: change.scope,
    condition,
    state: change.state,
    previous: change.previous,
    severity: STATE_SEVERITY[change.state],
    dedupKey: dedupKeyOf(change.scope, condition, change.at),
    at: change.at,
    title: `${change.state.replace('_', ' ')} · ${change.scope}`,
    summary,
    facts: [
      { label: 'Scope', value: change.scope },
      { label: 'State', value: `${change.previous} → ${change.state}` },
      { label: 'Condition', value: what },
      { label: hit?.id === 'day_projected' || hit?.id === 'week_projected' ? 'Projected value' : 'Current value', value },
      { label: 'Threshold breached', value: threshold },
      { label: 'Trailing 7-day burn', value: week },
      { label: 'Top component', value: top },
      ...(change.actor ? [{ label: 'Actor', value: change.actor }] : []),
    ],
    details: {
      scope: change.scope,
      state: change.state,
      previous: change.previous,
      seq: change.seq,
      reason: change.reason,
      condition,
      metric: hit?.metric ?? null,
      current_value: value,
      threshold,
      unit: hit?.unit ?? null,
      trailing_7d_burn_usd: microsToUsd(change.weekMicros),
      top_component: hit?.topComponent ?? null,
      conditions: change.holds.map((h) => ({
        id: h.id,
        level: h.level,
        metric: h.metric,
        value: formatValue(h.unit, h.value),
        threshold: formatValue(h.unit, h.threshold),
        top_component: h.topComponent,
      })),
      actor: change.actor ?? null,
      dashboard_url: links.dashboard,
      acknowledge_url: links.acknowledge,
    },
    links,
  };
}

export function hungTaskView(a: HungTaskAlert & { at: number }, config: AlertsConfig): AlertView {
  const scope = `run:${a.tenantId}/${a.runId}`;
  const condition = `hung_task:${a.taskId}`;
  const minutes = (a.silentForMs / 60_000).toFixed(1);
  const links = { dashboard: link(config.links.dashboardUrl, scope), acknowledge: link(config.links.acknowledgeUrl, scope) };
  return {
    kind: 'hung_task',
    scope,
    condition,
    severity: 'warning',
    dedupKey: dedupKeyOf(scope, condition, a.at),
    at: a.at,
    title: `Hung task · ${scope}`,
    summary: truncate(`[HUNG TASK] ${scope}: task ${a.taskId} silent for ${minutes} min`, 1024),
    facts: [
      { label: 'Scope', value: scope },
      { label: 'Task', value: a.taskId },
      { label: 'Silent for', value: `${minutes} min` },
    ],
    details: {
      scope,
      tenant_id: a.tenantId,
      run_id: a.runId,
      task_id: a.taskId,
      silent_for_ms: a.silentForMs,
      dashboard_url: links.dashboard,
      acknowledge_url: links.acknowledge,
    },
    links,
  };
}

export function componentFailureView(a: ComponentFailureAlert & { at: number; errorText: string }, config: AlertsConfig): AlertView {
  const scope = 'global';
  const condition = `component_failure:${a.component}`;
  const links = { dashboard: link(config.links.dashboardUrl, scope), acknowledge: link(config.links.acknowledgeUrl, scope) };
  return {
    kind: 'component_failure',
    scope,
    condition,
    severity: 'error',
    dedupKey: dedupKeyOf(scope, condition, a.at),
    at: a.at,
    title: `Forge ${a.component} failing`,
    summary: truncate(`[COMPONENT FAILURE] forge ${a.component}: ${a.errorText} (guardrails may be blind)`, 1024),
    facts: [
      { label: 'Component', value: a.component },
      { label: 'Error', value: truncate(a.errorText, 500) },
    ],
    details: { component: a.component, error: truncate(a.errorText, 2000), dashboard_url: links.dashboard },
    links,
  };
}

// ---------------------------------------------------------------- Slack

export type SlackVariant =
  | { type: 'new' }
  | { type: 'reminder'; n: number }
  | { type: 'acknowledged'; actor: string }
  | { type: 'lifted'; actor?: string; state: GuardState };

/** Slack escapes these three in mrkdwn and plain text. */
export function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const EMOJI: Record<string, string> = {
  WARNING: ':warning:',
  HARD_STOP: ':octagonal_sign:',
  EMERGENCY_STOP: ':rotating_light:',
  hung_task: ':hourglass:',
  component_failure: ':fire:',
};

export interface SlackMessage {
  text: string;
  blocks: Array<Record<string, unknown>>;
}

/** An incoming-webhook message: `text` (notification fallback) and Block Kit `blocks`. */
export function slackMessage(view: AlertView, variant: SlackVariant): SlackMessage {
  const key = view.state ?? view.kind;
  let emoji = EMOJI[key] ?? ':bell:';
  let title = view.title;
  let lead = view.summary;
  if (variant.type === 'reminder') {
    title = `Reminder ${variant.n - 1} · ${title}`;
    lead = `Not acknowledged yet. ${view.summary}`;
  } else if (variant.type === 'acknowledged') {
    emoji = ':ballot_box_with_check:';
    title = `Acknowledged · ${view.scope}`;
    lead = `${variant.actor} acknowledged: ${view.summary}`;
  } else if (variant.type === 'lifted') {
    emoji = ':white_check_mark:';
    title = `Lifted · ${view.scope}`;
    lead = `${view.scope} is now ${variant.state}${variant.actor ? `, lifted by ${variant.actor}` : ''}.`;
  }
  const text = truncate(`${emoji} ${title}: ${lead}`, 3000);
  const fields = view.facts.slice(0, 10).map((f) => ({
    type: 'mrkdwn',
    text: truncate(`*${slackEscape(f.label)}*\n${slackEscape(f.value)}`, 2000),
  }));
  const blocks: Array<Record<string, unknown>> = [
    { type: 'header', text: { type: 'plain_text', text: truncate(`${emoji} ${title}`, 150), emoji: true } },
    { type: 'section', text: { type: 'mrkdwn', text: truncate(slackEscape(lead), 3000) } },
  ];
  if (fields.length > 0) blocks.push({ type: 'section', fields });
  const buttons: Array<Record<string, unknown>> = [
    { type: 'button', text: { type: 'plain_text', text: 'Dashboard' }, url: view.links.dashboard, action_id: 'forge_dashboard' },
  ];
  if (variant.type === 'new' || variant.type === 'reminder') {
    buttons.push({
      type: 'button',
      text: { type: 'plain_text', text: 'Acknowledge' },
      url: view.links.acknowledge,
      style: 'primary',
      action_id: 'forge_acknowledge',
    });
  }
  blocks.push({ type: 'actions', elements: buttons });
  blocks.push({
    type: 'context',
    elements: [{ type: 'mrkdwn', text: slackEscape(`${new Date(view.at).toISOString()} · dedup ${view.dedupKey}`) }],
  });
  return { text, blocks };
}

// ---------------------------------------------------------------- PagerDuty

/** A PagerDuty Events API v2 event without `routing_key` (the sender adds it; nothing else sees it). */
export interface PagerDutyEvent {
  event_action: Exclude<EventAction, 'notify'>;
  dedup_key: string;
  payload?: {
    summary: string;
    source: string;
    severity: PagerDutySeverity;
    timestamp: string;
    component: string;
    group: string;
    class: string;
    custom_details: Record<string, unknown>;
  };
  links?: Array<{ href: string; text: string }>;
  client?: string;
  client_url?: string;
}

export function pagerDutyEvent(view: AlertView, action: PagerDutyEvent['event_action'], source: string): PagerDutyEvent {
  if (action !== 'trigger') return { event_action: action, dedup_key: view.dedupKey };
  const parsed = parseScope(view.scope);
  return {
    event_action: 'trigger',
    dedup_key: view.dedupKey,
    payload: {
      summary: view.summary,
      source,
      severity: view.severity,
      timestamp: new Date(view.at).toISOString(),
      component: view.scope,
      group: parsed?.tenantId ?? 'global',
      class: view.condition,
      custom_details: view.details,
    },
    links: [
      { href: view.links.dashboard, text: 'Forge dashboard' },
      { href: view.links.acknowledge, text: 'Acknowledge in Forge' },
    ],
    client: 'Forge',
    client_url: view.links.dashboard,
  };
}
