import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/** One message the loopback SMTP server accepted, parsed. */
export interface ReceivedMail {
  envelopeFrom: string;
  envelopeTo: string[];
  /** The AUTH user, when the client logged in. */
  user?: string;
  parsed: ParsedMail;
}

/**
 * A real SMTP server on loopback (npm smtp-server) that parses what it receives (mailparser). It can be told
 * to refuse the next N messages with a transient (451) or permanent (550) reply.
 */
export class SmtpReceiver {
  readonly mails: ReceivedMail[] = [];
  readonly #failures: number[] = [];
  #waiters: Array<{ n: number; resolve: () => void }> = [];

  private constructor(
    private readonly server: SMTPServer,
    readonly port: number,
  ) {}

  static async start(opts: { user?: string; password?: string } = {}): Promise<SmtpReceiver> {
    const box: { self?: SmtpReceiver } = {};
    const server = new SMTPServer({
      disabledCommands: opts.user ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
      authOptional: opts.user === undefined,
      allowInsecureAuth: true,
      logger: false,
      onAuth(auth, _session, cb) {
        if (auth.username === opts.user && auth.password === opts.password) cb(null, { user: auth.username });
        else cb(Object.assign(new Error('authentication failed'), { responseCode: 535 }));
      },
      onData(stream, session, cb) {
        const self = box.self as SmtpReceiver;
        const fail = self.#failures.shift();
        simpleParser(stream).then(
          (parsed) => {
            if (fail !== undefined) return cb(Object.assign(new Error(fail >= 500 ? 'mailbox unavailable' : 'try again later'), { responseCode: fail }));
            self.mails.push({
              envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              envelopeTo: session.envelope.rcptTo.map((r) => r.address),
              ...(typeof session.user === 'string' ? { user: session.user } : {}),
              parsed,
            });
            cb();
            self.#notify();
          },
          (e: unknown) => cb(e as Error),
        );
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = (server.server.address() as AddressInfo);
    box.self = new SmtpReceiver(server, port);
    return box.self;
  }

  /** The next `n` messages are refused with `code` (451 transient, 550 permanent). */
  failNext(n: number, code = 451): void {
    for (let i = 0; i < n; i++) this.#failures.push(code);
  }

  /** Resolves once `n` messages were accepted. */
  waitFor(n: number): Promise<void> {
    if (this.mails.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  #notify(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (this.mails.length >= w.n) w.resolve();
      return this.mails.length < w.n;
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
