import type { Channel, ChannelDeps } from '../channel.ts';
import type { DestinationConfig } from '../config.ts';
import { emailChannel } from './email.ts';
import { pagerDutyChannel } from './pagerduty.ts';
import { slackChannel } from './slack.ts';
import { webhookChannel } from './webhook.ts';

/** The channel of a configured destination. */
export function channelFor(dest: DestinationConfig, deps: ChannelDeps): Channel {
  switch (dest.type) {
    case 'slack':
      return slackChannel(dest, deps);
    case 'pagerduty':
      return pagerDutyChannel(dest, deps);
    case 'email':
      return emailChannel(dest, deps);
    case 'webhook':
      return webhookChannel(dest, deps);
  }
}
