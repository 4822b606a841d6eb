import { postJson, type Attempt, type Channel, type ChannelDeps, type ChannelMessage } from '../channel.ts';
import type { PagerDutyDestination } from '../config.ts';
import { pagerDutyEvent, type PagerDutyEvent } from '../format.ts';

/** PagerDuty Events API v2: trigger, acknowledge, resolve under the alert's dedup key. */
export function pagerDutyChannel(dest: PagerDutyDestination, deps: ChannelDeps): Channel {
  const render = (msg: ChannelMessage): PagerDutyEvent =>
    pagerDutyEvent(msg.view, msg.eventAction === 'notify' ? 'trigger' : msg.eventAction, deps.source);
  return {
    pages: true,
    render,
    // The routing key is added here only: records and logs carry the rendered event without it.
    deliver: (msg, signal): Promise<Attempt> =>
      postJson(deps, dest.url, JSON.stringify({ routing_key: dest.routingKey.reveal(), ...render(msg) }), signal),
  };
}
