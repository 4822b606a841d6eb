import nodemailer from 'nodemailer';
import { isStop, type Attempt, type Channel, type ChannelDeps, type ChannelMessage } from '../channel.ts';
import type { EmailDestination } from '../config.ts';

/** An email as rendered (no SMTP credentials). */
export interface EmailBody {
  from: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
}

const html = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function lead(msg: ChannelMessage): { subject: string; intro: string } {
  const v = msg.view;
  switch (msg.variant.type) {
    case 'reminder':
      return { subject: `Reminder ${msg.variant.n - 1}: ${v.title}`, intro: `Not acknowledged yet. ${v.summary}` };
    case 'acknowledged':
      return { subject: `Acknowledged: ${v.title}`, intro: `${msg.variant.actor} acknowledged: ${v.summary}` };
    case 'lifted':
      return { subject: `Lifted: ${v.scope}`, intro: `${v.scope} is now ${msg.variant.state}${msg.variant.actor ? `, lifted by ${msg.variant.actor}` : ''}.` };
    default:
      return { subject: v.title, intro: v.summary };
  }
}

/** Renders an alert as a plain-text + HTML email: the summary, every fact (value, threshold, 7-day burn, top component), the links. */
export function emailBody(msg: ChannelMessage, from: string, to: readonly string[]): EmailBody {
  const v = msg.view;
  const { subject, intro } = lead(msg);
  const facts = v.facts.map((f) => `${f.label}: ${f.value}`);
  const text = [intro, '', ...facts, '', `Dashboard: ${v.links.dashboard}`, `Acknowledge: ${v.links.acknowledge}`, '', `${new Date(v.at).toISOString()} · ${v.dedupKey}`].join('\n');
  const rows = v.facts.map((f) => `<tr><th align="left">${html(f.label)}</th><td>${html(f.value)}</td></tr>`).join('');
  const body = `<p>${html(intro)}</p><table>${rows}</table><p><a href="${html(v.links.dashboard)}">Dashboard</a> · <a href="${html(v.links.acknowledge)}">Acknowledge</a></p>`;
  return { from, to: [...to], subject: subject.replace(/[\r\n]+/g, ' ').slice(0, 200), text, html: body };
}

/**
 * Email through SMTP (nodemailer). Transient SMTP answers (4xx) and connection failures are retried like
 * an HTTP 5xx; a permanent refusal (5xx: unknown mailbox, auth) is not. The password never leaves here.
 */
export function emailChannel(dest: EmailDestination, deps: ChannelDeps): Channel {
  const transport = nodemailer.createTransport({
    host: dest.host,
    port: dest.port,
    secure: dest.secure,
    requireTLS: dest.requireTLS,
    ignoreTLS: !dest.secure && !dest.requireTLS && dest.ignoreTLS,
    ...(dest.username !== undefined ? { auth: { user: dest.username, pass: dest.password?.reveal() ?? '' } } : {}),
    connectionTimeout: dest.retry.timeoutMs,
    greetingTimeout: dest.retry.timeoutMs,
    socketTimeout: dest.retry.timeoutMs,
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  const render = (msg: ChannelMessage): EmailBody => emailBody(msg, dest.from, msg.to ?? dest.to);
  return {
    pages: false,
    render,
    async deliver(msg, signal): Promise<Attempt> {
      const mail = render(msg);
      if (mail.to.length === 0) return { ok: false, retryable: false, error: 'no recipient: the destination has no `to` and the alert named none' };
      const aborted = new Promise<Attempt>((resolve) => {
        const stop = (): void => resolve({ ok: false, retryable: !isStop(signal), error: 'SMTP send aborted (timeout or stop)' });
        if (signal.aborted) stop();
        else signal.addEventListener('abort', stop, { once: true });
      });
      const sent = transport.sendMail({ ...mail, headers: { 'X-Forge-Dedup-Key': msg.view.dedupKey } }).then(
        (): Attempt => ({ ok: true, httpStatus: 250 }),
        (e: unknown): Attempt => {
          const code = (e as { responseCode?: number }).responseCode;
          const retryable = code === undefined ? !isStop(signal) : code < 500;
          return { ok: false, retryable, ...(code !== undefined ? { httpStatus: code } : {}), error: deps.redactor.error(e) };
        },
      );
      return Promise.race([sent, aborted]);
    },
    close: () => transport.close(),
  };
}
