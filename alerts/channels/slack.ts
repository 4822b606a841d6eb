import { postJson, type Attempt, type Channel, type ChannelDeps, type ChannelMessage } from '../channel.ts';
import type { SlackDestination } from '../config.ts';
import { slackMessage, type SlackMessage } from '../format.ts';

/** Slack incoming webhook (the URL is the secret). */
export function slackChannel(dest: SlackDestination, deps: ChannelDeps): Channel {
  const render = (msg: ChannelMessage): SlackMessage => slackMessage(msg.view, msg.variant);
  return {
    pages: false,
    render,
    deliver: (msg, signal): Promise<Attempt> => postJson(deps, dest.webhookUrl.reveal(), JSON.stringify(render(msg)), signal),
  };
}
